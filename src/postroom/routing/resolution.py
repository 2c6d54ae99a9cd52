"""What the resolver answers: a ``Resolution`` (the routes, the ``--explain`` steps, the
verdict), the error routes it builds, and the seam for the list store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from postroom import addresses
from postroom.errors import AddressError
from postroom.types import Route


class ListSource(Protocol):
    """The seam for the list store: the list address that owns a local name, or None."""

    def lookup(self, local: str, domain: str) -> str | None: ...

    def __len__(self) -> int:
        """How many lists there are."""
        ...


class NoLists:
    def lookup(self, local: str, domain: str) -> str | None:
        return None

    def __len__(self) -> int:
        return 0


@dataclass(slots=True)
class Step:
    depth: int
    text: str


@dataclass(slots=True)
class Resolution:
    routes: list[Route]
    steps: list[Step] = field(default_factory=list)
    local: bool = False  # the address is in a local or hosted domain (or names this host)
    refused: Route | None = None  # the address itself was refused, before any map

    @property
    def deliverable(self) -> bool:
        return bool(self.routes) and all(r.deliverable for r in self.routes)

    @property
    def refusal(self) -> Route | None:
        """The verdict: the error route that refuses the address (the address itself, or
        every route it has failed), or None when mail for it is taken. RCPT answers
        ``{code} {status} <address>: {text}``; local submission leaves it out."""
        if self.refused is not None:
            return self.refused
        routes = self.routes
        for r in routes:
            if r.deliverable:
                return None
        return routes[0] if routes else None


def error_route(address: str, code: int, status: str, text: str) -> Route:
    return Route("error", "", address, address, code, status, text)


NO_SUCH_USER = (550, "5.1.1", "No such user")
RELAY_TRICK = (553, "5.7.1")   # "Relaying denied: source route not accepted", ...
BAD_SYNTAX = (553, "5.1.3")    # "more than one @ in address", ...
BAD_SRS = (550, "5.7.1")       # "Invalid SRS address: the SRS hash does not match ..."


def address_refusal(address: str, error: AddressError) -> Route:
    """The error route for an address ``addresses.parse`` refused."""
    if isinstance(error, addresses.RelayTrick):
        return error_route(address, *RELAY_TRICK, f"Relaying denied: {error.reason}")
    return error_route(address, *BAD_SYNTAX, error.reason)
