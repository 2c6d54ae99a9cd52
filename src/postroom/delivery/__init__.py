"""Couriers: one module per mailer, behind one seam (``postroom.types.Courier``).

    esmtp   mx.py + smtp_client.py   other domains by MX, or a bracketed host (smtp/: the client)
    relay   smtp_client.py           named relay hosts with TLS/AUTH settings
    local   local.py                 Maildir under SITE/mail/USER
    prog    prog.py                  pipe into a command (sysexits contract)
    file    file.py                  append to an mbox file
    list    list.py                  hand over to the list engine

``couriers_for(site)`` builds them all from the profile; the queue runner picks one by the
delivery's mailer and holds it to the contract of ``postroom.types``.
"""

from __future__ import annotations

from postroom.delivery.esmtp import EsmtpCourier
from postroom.delivery.file import FileCourier
from postroom.delivery.list import ListCourier, ListHandler
from postroom.delivery.local import LocalCourier
from postroom.delivery.mx import MxResolver
from postroom.delivery.prog import ProgCourier
from postroom.delivery.relay import RelayCourier
from postroom.site import Site
from postroom.types import Courier

__all__ = [
    "EsmtpCourier",
    "FileCourier",
    "ListCourier",
    "LocalCourier",
    "ProgCourier",
    "RelayCourier",
    "aclose_all",
    "couriers_for",
]


def couriers_for(site: Site, *, list_handler: ListHandler | None = None) -> dict[str, Courier]:
    """One courier per mailer name, sharing one MX resolver; close with ``aclose_all``."""
    resolver = MxResolver.from_site(site)
    return {
        "esmtp": EsmtpCourier(site, resolver),
        "relay": RelayCourier(site, resolver),
        "local": LocalCourier(site),
        "prog": ProgCourier(site, list_handler),
        "file": FileCourier(site),
        "list": ListCourier(list_handler),
    }


async def aclose_all(couriers: dict[str, Courier]) -> None:
    for courier in couriers.values():
        await courier.aclose()
