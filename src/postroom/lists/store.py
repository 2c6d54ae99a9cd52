"""Lists and members in the store, as the model's dataclasses (no ORM object leaves here).

The engine's reads, one query each (SQLAlchemy core, no ORM session):

    target_for(site, address)      the list a posting or service address belongs to, and
                                   which service (``LIST-request@``, ``LIST-bounces+x=y@``...)
    settings_for(site, address)    its ListSettings, or None
    member(site, list, address)    one Member, or None
    members_for_delivery(site, list, batch=5000)
                                   pages of the members that get each post (delivery on,
                                   regular mode), in address order (keyset paging)
    roles(site, list)              the owners and moderators

Administration (the ``postroom lists`` and ``postroom members`` commands), each call one
transaction: ``get_settings``, ``update_settings``, ``parse_settings`` (KEY=VALUE text against
the model's types), ``add_members`` (bulk insert), ``remove_members``, ``page_members``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    delete,
    insert,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError

from postroom.lists.model import AddressRule, DeliveryMode, ListSettings, Member, RuleAction
from postroom.lists.settings_text import ROW_FIELDS, SCALARS, from_column, to_column
from postroom.store import StoreValueError, UnknownList
from postroom.store.db import engine_for, explain, store_url
from postroom.store.listnames import SERVICE_SUFFIXES
from postroom.store.lists import split_list_address
from postroom.store.models import (
    ListAddressRule,
    ListMember,
    ListRole,
    MailingList,
)

if TYPE_CHECKING:
    from postroom.site import Site

__all__ = [
    "CHUNK",
    "AddResult",
    "ListRoles",
    "ListTarget",
    "add_members",
    "find_list",
    "get_settings",
    "member",
    "members_for_delivery",
    "remove_members",
    "roles",
    "settings_for",
    "target_for",
    "update_settings",
]

CHUNK = 5000          # rows per executemany / IN (...) batch (SQLite allows 32766 variables)
Progress = Callable[[int], None]  # called with the number of rows just written

ROLE_OWNER = "owner"
ROLE_MODERATOR = "moderator"

# the ListSettings fields kept in other tables, and those that name the list


# -- the engine's reads -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ListTarget:
    """What an address of a list is: ``service`` "" for posts, else ``request``, ``owner``,
    ``bounces``, ``join``, ``leave`` or ``confirm``; ``detail`` the part after ``+``
    (a VERP ``user=domain`` or a confirm token); ``secret`` keys the list's HMAC tokens."""

    settings: ListSettings
    service: str
    detail: str
    secret: str


@dataclass(frozen=True, slots=True)
class ListRoles:
    owners: tuple[str, ...]
    moderators: tuple[str, ...]

    def of(self, address: str) -> frozenset[str]:
        """The roles ``address`` has: ``{"owner"}``, ``{"moderator"}``, both or none."""
        address = address.lower()
        found = set()
        if address in self.owners:
            found.add(ROLE_OWNER)
        if address in self.moderators:
            found.add(ROLE_MODERATOR)
        return frozenset(found)


def _split(list_address: str) -> tuple[str, str]:
    name, _, domain = list_address.strip().lower().rpartition("@")
    return name, domain.rstrip(".")


def _list_query(names: Sequence[str], domain: str) -> Any:
    """The list rows for ``names``@``domain`` joined with their roles and rules: one row
    per role or rule (kind "r" role, "a" rule), or one with kind NULL for a bare list."""
    extra = union_all(
        select(ListRole.list_id, literal("r").label("kind"), literal(0).label("pos"),
               ListRole.role.label("a"), ListRole.address.label("b")),
        select(ListAddressRule.list_id, literal("a"), ListAddressRule.position,
               ListAddressRule.action, ListAddressRule.pattern),
    ).subquery()
    lists = cast(Table, MailingList.__table__)
    return (select(*lists.c, extra.c.kind, extra.c.pos, extra.c.a, extra.c.b)
            .outerjoin(extra, extra.c.list_id == MailingList.id)
            .where(MailingList.domain == domain, MailingList.name.in_(names))
            .order_by(MailingList.id, extra.c.kind, extra.c.pos, extra.c.b))


def _settings_from_rows(rows: Sequence[Any]) -> dict[str, tuple[ListSettings, str]]:
    """name -> (settings, secret) from ``_list_query`` rows."""
    out: dict[str, tuple[ListSettings, str]] = {}
    for row in rows:
        ml = row._mapping
        got = out.get(ml["name"])
        if got is None:
            got = out[ml["name"]] = (_settings_of(ml), ml["secret"])
        settings = got[0]
        kind, a, b = row.kind, row.a, row.b
        if kind == "r":
            (settings.owners if a == ROLE_OWNER else settings.moderators).append(b)
        elif kind == "a":
            settings.address_rules.append(AddressRule(b, RuleAction(a)))
    return out


def _settings_of(ml: Mapping[str, Any]) -> ListSettings:
    s = ListSettings(name=ml["name"], domain=ml["domain"])
    for f in SCALARS:
        setattr(s, f.name, from_column(f.name, ml[f.name]))
    return s


def with_connection(site: Site, fn: Callable[[Connection], Any]) -> Any:
    try:
        with engine_for(site).connect() as conn:
            return fn(conn)
    except DBAPIError as e:
        raise explain(e, store_url(site)) from e


def target_for(site: Site, address: str) -> ListTarget | None:
    """The list ``address`` (``LIST@``, ``LIST-request@``, ``LIST-bounces+u=d@``...) belongs
    to, in its own domain (the resolver has made it canonical); None if no list has it."""
    local, domain = _split(address)
    base, _, detail = local.partition("+")
    candidates: dict[str, str] = {base: ""}  # list name -> service
    for suffix in SERVICE_SUFFIXES:
        if base.endswith(suffix) and len(base) > len(suffix):
            candidates[base[: -len(suffix)]] = suffix[1:]
    rows = with_connection(site, lambda c: c.execute(_list_query(list(candidates), domain)).all())
    found = _settings_from_rows(rows)
    for name, service in candidates.items():
        if name in found:
            settings, secret = found[name]
            return ListTarget(settings, service, detail, secret)
    return None


def settings_for(site: Site, list_address: str) -> ListSettings | None:
    """The settings of the list that ``list_address`` (or one of its service addresses)
    belongs to; None if there is none. ``target_for`` also says which service."""
    target = target_for(site, list_address)
    return target.settings if target is not None else None


MEMBER_COLUMNS = (ListMember.address, ListMember.display_name, ListMember.delivery_enabled,
                   ListMember.mode, ListMember.moderated, ListMember.bounce_score)


_MODES = {m.value: m for m in DeliveryMode}


def member_of(row: Any) -> Member:
    return Member(row[0], row[1], bool(row[2]), _MODES[row[3]], bool(row[4]), float(row[5]))


def _of_list(list_address: str) -> Any:
    name, domain = _split(list_address)
    return (select(*MEMBER_COLUMNS).join(MailingList, MailingList.id == ListMember.list_id)
            .where(MailingList.name == name, MailingList.domain == domain))


# The statements of the web's every request, built once: building one and its cache key
# costs several times what running it does (docs/performance.md, web)
_MEMBER = (select(*MEMBER_COLUMNS).join(MailingList, MailingList.id == ListMember.list_id)
           .where(MailingList.name == bindparam("name"), MailingList.domain == bindparam("domain"),
                  ListMember.address == bindparam("address")))
_ROLES = (select(MailingList.id, ListRole.role, ListRole.address)
          .outerjoin(ListRole, ListRole.list_id == MailingList.id)
          .where(MailingList.name == bindparam("name"), MailingList.domain == bindparam("domain"))
          .order_by(ListRole.address))
_LIST_ID = select(MailingList.id).where(MailingList.name == bindparam("name"),
                                        MailingList.domain == bindparam("domain"))


def member(site: Site, list_address: str, address: str) -> Member | None:
    """``address`` (any case) as a member of ``list_address``; None if not a member."""
    name, domain = _split(list_address)
    values = {"name": name, "domain": domain, "address": address.strip().lower()}
    row = with_connection(site, lambda c: c.execute(_MEMBER, values).first())
    return member_of(row) if row is not None else None


def _fetch_all(query: Any) -> Callable[[Connection], list[Any]]:
    def fetch(conn: Connection) -> list[Any]:
        return list(conn.execute(query).all())
    return fetch


def members_for_delivery(site: Site, list_address: str, batch: int = CHUNK
                         ) -> Iterator[list[Member]]:
    """The members that get each post (delivery enabled, regular mode), ``batch`` at a time
    in address order; each page is one indexed query, so a long fan-out holds no
    transaction open and a member added meanwhile after the current page is included."""
    base = _of_list(list_address).where(ListMember.delivery_enabled.is_(True),
                                        ListMember.mode == DeliveryMode.REGULAR.value)
    after = ""
    while True:
        query = base.where(ListMember.address > after).order_by(ListMember.address).limit(batch)
        rows: list[Any] = with_connection(site, _fetch_all(query))
        if not rows:
            return
        yield [member_of(r) for r in rows]
        if len(rows) < batch:
            return
        after = rows[-1][0]


def roles(site: Site, list_address: str) -> ListRoles | None:
    """The owners and moderators of a list (sorted); None if there is no such list."""
    name, domain = _split(list_address)
    rows = with_connection(site, lambda c: c.execute(_ROLES, {"name": name,
                                                              "domain": domain}).all())
    if not rows:
        return None
    return ListRoles(tuple(r[2] for r in rows if r[1] == ROLE_OWNER),
                     tuple(r[2] for r in rows if r[1] == ROLE_MODERATOR))


# -- administration ---------------------------------------------------------------------------

def find_list(site: Site, text: str) -> tuple[str, str]:
    """``NAME@DOMAIN`` or ``NAME`` alone (the one list of that name; several: say which)
    -> (name, domain) of an existing list; UnknownList if there is none."""
    if "@" in text:
        name, domain = split_list_address(text)
        query = select(MailingList.domain).where(MailingList.name == name,
                                                 MailingList.domain == domain)
    else:
        name, domain = text.strip().lower(), ""
        query = select(MailingList.domain).where(MailingList.name == name)
    query = query.order_by(MailingList.domain)
    domains = list(with_connection(site, lambda c: c.scalars(query).all()))
    if not domains:
        fallback = domain or (site.profile.site.domains[0] if site.profile.site.domains else "")
        raise UnknownList(f"{name}@{fallback}" if fallback else name)
    if len(domains) > 1:
        raise StoreValueError(f"{name!r} names {len(domains)} lists "
                              f"({', '.join(f'{name}@{d}' for d in domains)}): "
                              "write NAME@DOMAIN")
    return name, domains[0]


def list_id_of(conn: Connection, name: str, domain: str) -> int:
    list_id = conn.scalar(_LIST_ID, {"name": name, "domain": domain})
    if list_id is None:
        raise UnknownList(f"{name}@{domain}")
    return int(list_id)


def get_settings(site: Site, name: str, domain: str) -> ListSettings:
    """The settings of ``name@domain``; UnknownList if there is no such list."""
    rows = with_connection(site, lambda c: c.execute(_list_query([name], domain)).all())
    found = _settings_from_rows(rows)
    if name not in found:
        raise UnknownList(f"{name}@{domain}")
    return found[name][0]


def update_settings(site: Site, name: str, domain: str, values: Mapping[str, Any]
                    ) -> ListSettings:
    """Set the typed ``values`` (from ``parse_settings``) in one transaction."""
    def work(conn: Connection) -> None:
        with conn.begin():
            list_id = list_id_of(conn, name, domain)
            columns = {k: to_column(k, v) for k, v in values.items() if k not in ROW_FIELDS}
            if columns:
                conn.execute(update(MailingList)
                             .where(MailingList.id == list_id).values(**columns))
            for key, role in (("owners", ROLE_OWNER), ("moderators", ROLE_MODERATOR)):
                if key in values:
                    conn.execute(delete(ListRole).where(ListRole.list_id == list_id,
                                                        ListRole.role == role))
                    if values[key]:
                        conn.execute(insert(ListRole), [
                            {"list_id": list_id, "role": role, "address": a}
                            for a in values[key]])
            if "address_rules" in values:
                conn.execute(delete(ListAddressRule)
                             .where(ListAddressRule.list_id == list_id))
                if values["address_rules"]:
                    conn.execute(insert(ListAddressRule), [
                        {"list_id": list_id, "position": i, "pattern": r.pattern,
                         "action": r.action.value}
                        for i, r in enumerate(values["address_rules"])])

    with_connection(site, work)
    return get_settings(site, name, domain)


@dataclass(slots=True)
class AddResult:
    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def member_rows(list_id: int, members: Iterable[Member]) -> list[dict[str, Any]]:
    return [{"list_id": list_id, "address": m.address, "display_name": m.display_name,
             "delivery_enabled": m.delivery_enabled, "mode": m.mode.value,
             "moderated": m.moderated, "bounce_score": m.bounce_score} for m in members]


def insert_members(conn: Connection, list_id: int, members: Sequence[Member],
                   progress: Progress | None = None) -> None:
    """Bulk insert inside the caller's transaction: executemany CHUNK rows at a time, on
    PostgreSQL COPY (several times faster than multi-row INSERTs)."""
    if conn.dialect.name == "postgresql" and members:
        _copy_members(conn, list_id, members, progress)
    else:
        for start in range(0, len(members), CHUNK):
            chunk = members[start:start + CHUNK]
            conn.execute(insert(ListMember), member_rows(list_id, chunk))
            if progress is not None:
                progress(len(chunk))
    analyse_after(conn, len(members))


_COPY = ("COPY list_members (list_id, address, display_name, delivery_enabled, mode, "
         "moderated, bounce_score) FROM STDIN")


def _copy_members(conn: Connection, list_id: int, members: Sequence[Member],
                  progress: Progress | None) -> None:
    raw: Any = conn.connection.driver_connection  # psycopg 3, in conn's transaction
    with raw.cursor() as cursor, cursor.copy(_COPY) as copy:
        for start in range(0, len(members), CHUNK):
            chunk = members[start:start + CHUNK]
            for m in chunk:
                copy.write_row((list_id, m.address, m.display_name, m.delivery_enabled,
                                m.mode.value, m.moderated, m.bounce_score))
            if progress is not None:
                progress(len(chunk))


ANALYSE_FROM = 5000  # rows written


def analyse_after(conn: Connection, rows: int) -> None:
    """On PostgreSQL, refresh the planner's statistics after a big bulk write: with stale
    ones a list that grew from nothing is paged by sorting all its members, not by the
    index (20 ms instead of 0.4 ms for 100,000). ANALYZE samples; it costs ~50 ms."""
    if rows >= ANALYSE_FROM and conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ANALYZE list_members")


def delete_members(conn: Connection, list_id: int, addresses: Sequence[str],
                   progress: Progress | None = None) -> None:
    for start in range(0, len(addresses), CHUNK):
        chunk = addresses[start:start + CHUNK]
        conn.execute(delete(ListMember).where(ListMember.list_id == list_id,
                                              ListMember.address.in_(chunk)))
        if progress is not None:
            progress(len(chunk))
    analyse_after(conn, len(addresses))


def current_members(conn: Connection, list_id: int) -> dict[str, str]:
    """address -> display name of every member (one query)."""
    rows = conn.execute(select(ListMember.address, ListMember.display_name)
                        .where(ListMember.list_id == list_id)).all()
    return {r[0]: r[1] for r in rows}


def add_members(site: Site, name: str, domain: str, members: Sequence[Member],
                progress: Progress | None = None) -> AddResult:
    """Add the members that are not members yet, in one transaction; the others are left
    as they are and reported in ``existing``."""
    result = AddResult()

    def work(conn: Connection) -> None:
        with conn.begin():
            list_id = list_id_of(conn, name, domain)
            have = current_members(conn, list_id)
            new: list[Member] = []
            seen: set[str] = set()
            for m in members:
                if m.address in have or m.address in seen:
                    result.existing.append(m.address)
                else:
                    seen.add(m.address)
                    new.append(m)
            insert_members(conn, list_id, new, progress)
            result.added = [m.address for m in new]

    with_connection(site, work)
    return result


def remove_members(site: Site, name: str, domain: str, addresses: Sequence[str]
                   ) -> tuple[list[str], list[str]]:
    """Remove members in one transaction; (removed, not members)."""
    wanted = list(dict.fromkeys(a.strip().lower() for a in addresses))

    def work(conn: Connection) -> tuple[list[str], list[str]]:
        with conn.begin():
            list_id = list_id_of(conn, name, domain)
            there: set[str] = set()
            for start in range(0, len(wanted), CHUNK):
                there.update(conn.scalars(select(ListMember.address).where(
                    ListMember.list_id == list_id,
                    ListMember.address.in_(wanted[start:start + CHUNK]))))
            removed = [a for a in wanted if a in there]
            delete_members(conn, list_id, removed)
            return removed, [a for a in wanted if a not in there]

    out: tuple[list[str], list[str]] = with_connection(site, work)
    return out
