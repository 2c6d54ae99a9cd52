"""Members page by page (``postroom members list``, next the web's members page): one
indexed query for the page and one count, fast at 100,000 members."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection

from postroom.lists.model import Member
from postroom.lists.store import MEMBER_COLUMNS, list_id_of, member_of, with_connection
from postroom.store.models import ListMember

if TYPE_CHECKING:
    from postroom.site import Site


@dataclass(frozen=True, slots=True)
class MemberPage:
    total: int          # members matching (all pages)
    page: int
    per_page: int
    members: list[Member]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def page_members(site: Site, name: str, domain: str, page: int = 1, per_page: int = 100,
                 search: str = "") -> MemberPage:
    """Page ``page`` (from 1) of the members in address order, optionally those whose
    address or name contains ``search`` (case-insensitive)."""
    def work(conn: Connection) -> MemberPage:
        list_id = list_id_of(conn, name, domain)
        where = [ListMember.list_id == list_id]
        if search:
            pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%") \
                .replace("_", "\\_") + "%"
            where.append(or_(ListMember.address.like(pattern, escape="\\"),
                             func.lower(ListMember.display_name).like(pattern, escape="\\")))
        total = conn.scalar(select(func.count()).select_from(ListMember).where(*where)) or 0
        rows = conn.execute(select(*MEMBER_COLUMNS).where(*where)
                            .order_by(ListMember.address)
                            .limit(per_page).offset((page - 1) * per_page)).all()
        return MemberPage(int(total), page, per_page, [member_of(r) for r in rows])

    out: MemberPage = with_connection(site, work)
    return out

