"""For machines: ``/healthz`` for a load balancer, ``/metrics`` for Prometheus, and
``/export/valid-addresses`` for the upstream relays (the file ``postroom export-addresses``
and the periodic export write, served as it is).

``/metrics`` is open to ``[web] metrics_networks`` (loopback by default), the export to
``[web] export_networks``; anyone else needs an API token with the ``read`` (metrics) or
``export`` scope.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from postroom.web.context import ctx_of
from postroom.web.deps import ApiAuth
from postroom.web.metrics import exposition
from postroom.web.security import client_ip, in_networks

router = APIRouter()
EXPORT_FILE = "valid-addresses.txt"


async def _network_or_token(request: Request, networks: list[str], scope: str) -> None:
    if in_networks(client_ip(request), networks):
        return
    if not request.headers.get("authorization"):
        raise HTTPException(403, "not open to your address; send an API token with the "
                                 f"{scope!r} scope")
    await ApiAuth(scope)(request)


@router.get("/healthz", include_in_schema=False)
def healthz(request: Request) -> JSONResponse:
    site = ctx_of(request).site
    ok = site.state_dir.is_dir()
    return JSONResponse({"ok": ok, "quiescent": site.quiescent_now()},
                        status_code=200 if ok else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    await _network_or_token(request, ctx_of(request).web.metrics_networks, "read")
    return await run_in_threadpool(exposition, request)


@router.get("/export/valid-addresses", include_in_schema=False)
async def valid_addresses(request: Request) -> Any:
    await _network_or_token(request, ctx_of(request).web.export_networks, "export")
    path = ctx_of(request).site.home / "export" / EXPORT_FILE
    if not path.is_file():
        raise HTTPException(404, "no export yet (postroom export-addresses makes it)")
    return FileResponse(path, media_type="text/plain; charset=utf-8")
