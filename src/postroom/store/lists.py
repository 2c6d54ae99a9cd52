"""Mailing lists in the store, and ``StoreLists``, the resolver's view of them.

A list is ``name@domain``; besides its posting address it answers for the service
addresses ``NAME-request``, ``-owner``, ``-bounces``, ``-join``, ``-leave`` and ``-confirm``.
The resolver asks ``StoreLists.lookup(local, domain)`` for every local name; the answer is
the canonical list address (``name@domain`` or ``name-request@domain``...) or None.

A list is found in its own domain and in every local domain of the site, so
``services-unit@inf.example.ac.uk`` reaches ``services-unit@lists.inf.example.ac.uk``.
When two lists share a name, the one in the asked domain wins, then the one in a local
domain, then the first domain in sort order.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import inspect, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from postroom import addresses as addr_mod
from postroom import control
from postroom.errors import AddressError
from postroom.site import Site
from postroom.store import ListExists, StoreValueError, UnknownList
from postroom.store.db import engine_for, exists, explain, session, store_url
from postroom.store.listnames import SERVICE_SUFFIXES, ListNames
from postroom.store.models import ADDRESS_MAX, LIST_NAME_MAX, ListRole, MailingList

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = [
    "SERVICE_SUFFIXES",
    "ListInfo",
    "StoreLists",
    "all_lists",
    "check_address",
    "create_list",
    "delete_list",
    "split_list_address",
]


_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$")
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


@dataclass(frozen=True, slots=True)
class ListInfo:
    name: str
    domain: str
    created: datetime

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}"


class StoreLists(ListNames):
    """Every list of the store, read once; answers the resolver without touching the database.

    ``load`` again to see changes (``postroom reload`` builds a new runtime, which does).
    """

    @classmethod
    def load(cls, site: Site) -> StoreLists:
        """Read all lists in one query; an empty source when the store is not made yet."""
        url = store_url(site)
        if not exists(url):
            return cls((), site.local_domains)
        try:
            with engine_for(site).connect() as conn:
                try:
                    rows = conn.execute(select(MailingList.name, MailingList.domain)).all()
                except DBAPIError:
                    conn.rollback()
                    if not inspect(conn).has_table(MailingList.__tablename__):
                        return cls((), site.local_domains)  # not upgraded yet
                    raise
        except DBAPIError as e:
            raise explain(e, url) from e
        return cls([(r[0], r[1]) for r in rows], site.local_domains)


def split_list_address(address: str, default_domain: str = "") -> tuple[str, str]:
    """``NAME@DOMAIN`` -> (name, domain), lower case; ``NAME`` alone takes default_domain."""
    name, at, domain = address.strip().rpartition("@")
    if not at:
        name, domain = address.strip(), default_domain
    if not domain:
        raise StoreValueError(f"{address!r}: write the list as NAME@DOMAIN")
    return _check_name(name), _check_domain(domain)


def _check_name(name: str) -> str:
    name = name.strip().lower()
    if not _NAME.match(name) or len(name) > LIST_NAME_MAX:
        raise StoreValueError(
            f"list name {name!r}: use 1 to {LIST_NAME_MAX} letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit")
    for suffix in SERVICE_SUFFIXES:
        if name.endswith(suffix):
            raise StoreValueError(f"list name {name!r} ends in {suffix}, which every list "
                                  "uses for a service address; choose another name")
    return name


def _check_domain(domain: str) -> str:
    domain = domain.strip().lower().rstrip(".")
    if not _DOMAIN.match(domain):
        raise StoreValueError(f"list domain {domain!r} is not a domain name")
    return domain


def check_address(address: str, what: str = "address") -> str:
    """``Alice@Inf.Example.AC.UK`` -> ``alice@inf.example.ac.uk``; StoreValueError naming
    ``what`` (e.g. ``owner``) when it is not a usable user@domain address."""
    try:
        parsed = addr_mod.parse(address)
    except AddressError as e:
        raise StoreValueError(f"{what} {address.strip()!r}: {e.reason}") from None
    if not parsed.domain or not parsed.local:
        raise StoreValueError(f"{what} {address.strip()!r} needs a domain (user@domain)")
    text = str(parsed).lower()
    if not _DOMAIN.match(parsed.domain) and not addr_mod.is_address_literal(parsed.domain):
        raise StoreValueError(f"{what} {address.strip()!r}: {parsed.domain!r} is not a domain "
                              "name (write non-ASCII domains in their xn-- form)")
    if len(text) > ADDRESS_MAX:
        raise StoreValueError(f"{what} {address.strip()!r} is longer than {ADDRESS_MAX} "
                              "characters")
    return text


def create_list(site: Site | str | URL, name: str, domain: str, *,
                owners: Iterable[str] = (), description: str = "") -> ListInfo:
    """Create ``name@domain`` with its owners, a description and a fresh random secret;
    ListExists if it is there already. Every other setting starts at its default.

    Given a Site, the domain must be one of its local or hosted domains, or no mail
    would ever reach the list.
    """
    name, domain = _check_name(name), _check_domain(domain)
    owner_addresses = sorted({check_address(a, "owner") for a in owners})
    if isinstance(site, Site):
        known = site.local_domains | site.hosted_domains
        if domain not in known:
            raise StoreValueError(
                f"{domain} is not a domain of this site, so no mail would reach "
                f"{name}@{domain} (fix: add it to site.host_names or site.domains in "
                f"{site.profile_path})")
    try:
        with session(site) as s:
            taken = s.scalar(select(MailingList.id).where(MailingList.name == name,
                                                          MailingList.domain == domain))
            if taken is not None:
                raise ListExists(f"{name}@{domain}")
            mlist = MailingList(name=name, domain=domain, description=description,
                                secret=secrets.token_hex(32))
            s.add(mlist)
            s.flush()
            s.add_all(ListRole(list_id=mlist.id, role="owner", address=a)
                      for a in owner_addresses)
            info = ListInfo(mlist.name, mlist.domain, mlist.created)
    except IntegrityError as e:
        raise ListExists(f"{name}@{domain}") from e
    _announce(site)
    return info


def _announce(site: Site | str | URL) -> None:
    """Committed: tell a running server, which routes the change at once."""
    if isinstance(site, Site):
        control.tell(site.state_dir, "lists")


def delete_list(site: Site | str | URL, name: str, domain: str) -> None:
    """Delete ``name@domain``; UnknownList if there is no such list."""
    name, domain = name.strip().lower(), domain.strip().lower().rstrip(".")
    with session(site) as s:
        mlist = s.scalars(select(MailingList).where(MailingList.name == name,
                                                    MailingList.domain == domain)).one_or_none()
        if mlist is None:
            raise UnknownList(f"{name}@{domain}")
        s.delete(mlist)
    _announce(site)


def all_lists(site: Site | str | URL) -> list[ListInfo]:
    """Every list, by domain then name."""
    with session(site) as s:
        rows = s.scalars(select(MailingList).order_by(MailingList.domain, MailingList.name))
        return [ListInfo(m.name, m.domain, m.created) for m in rows]
