"""`postroom verify` starts fast because it imports only what routing needs: no other
command's modules, no server, queue, list, web or signing code, none of their libraries.
(What the imports cost is for bench/bench_routing.py to say; this says what is imported.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# the code of the other commands and of the server
NOT_POSTROOM = ("queue", "smtp", "lists", "web", "runner", "delivery", "serve", "signing",
                "ops", "intake", "control", "worker", "children", "maillog")
# the libraries only those need (import names)
NOT_LIBRARIES = ("sqlalchemy", "alembic", "aiosmtpd", "aiosmtplib", "uvloop", "dns", "dkim",
                 "nacl", "authres", "fastapi", "starlette", "jinja2", "uvicorn", "psycopg",
                 "rich", "argon2", "flufl", "nh3", "prometheus_client", "asyncio", "ssl")

CODE = """\
import sys
from postroom.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    print("exit", e.code, file=sys.stderr)
print("\\n".join(sorted(sys.modules)))
"""


def test_verify_imports_no_other_command(example_site: Path) -> None:
    r = subprocess.run([sys.executable, "-c", CODE, "verify", "--site", str(example_site),
                        "neilb"], capture_output=True, text=True, timeout=60)
    assert r.stderr.strip() == "exit 0", r.stderr
    first, *modules = r.stdout.splitlines()
    assert first.startswith("neilb@staffmail.example.ac.uk... deliverable")
    top = {m.split(".")[0] for m in modules}
    assert sorted(top & set(NOT_LIBRARIES)) == []
    ours = [m for m in modules if m.startswith("postroom.")]
    assert [m for m in ours if m.split(".")[1] in NOT_POSTROOM] == []
    assert [m for m in ours if m.startswith("postroom.cli.")] == ["postroom.cli.options",
                                                                 "postroom.cli.verify"]
