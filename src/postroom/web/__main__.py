"""``python -m postroom.web --site S --fd N``: the web process ``postroom serve`` starts
(``service.WebProcess``), serving on the listening socket it inherits as fd N. SIGHUP
re-reads the site (last good wins), SIGTERM finishes the requests in progress and exits."""

from __future__ import annotations

import argparse
import signal
import socket
import sys

from postroom import maillog
from postroom.runtime import Reloader


def main(argv: list[str] | None = None) -> None:
    from postroom.children import die_with_parent

    die_with_parent()
    ap = argparse.ArgumentParser(prog="postroom-web")
    ap.add_argument("--site", required=True)
    ap.add_argument("--fd", type=int, required=True)
    args = ap.parse_args(argv)
    import uvicorn
    import uvloop

    from postroom.web.app import create_app
    from postroom.web.service import limit_page_threads, uvicorn_config

    reloader = Reloader(args.site)
    site = reloader.current.site
    maillog.open_log(site.log_path, site.profile.site.hostname)
    sock = socket.socket(fileno=args.fd)
    app = create_app(lambda: reloader.current, tls=site.profile.web.tls)
    signal.signal(signal.SIGHUP, lambda *_: reloader.reload())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master decides; SIGTERM stops us
    server = uvicorn.Server(uvicorn_config(app, site))

    async def serve() -> None:
        limit_page_threads(site)
        await server.serve(sockets=[sock])

    uvloop.run(serve())


if __name__ == "__main__":
    main(sys.argv[1:])
