"""``python -m postroom.worker``: one intake process started by ``postroom serve``."""

import sys

from postroom.serve.master import worker_main

if __name__ == "__main__":
    worker_main(sys.argv[1:])
