"""Who may do what on the web.

    site admin   everything: every list, the site status, quiescent, accounts, the queue
    owner        a list whose owners include the account's email: members, settings, held
    moderator    a list whose moderators include it: held posts
    member       an account whose email is a member: the list's members-only archive

Every check is a function of (account, list) reading the store, so a role changed with
``postroom lists set`` counts at the next request.
"""

from __future__ import annotations

from enum import IntEnum

from sqlalchemy import select

from postroom.lists import store
from postroom.lists.model import ArchivePolicy, ListSettings
from postroom.site import Site
from postroom.store.models import ListRole, MailingList
from postroom.web.accounts import Admin


class Role(IntEnum):
    NONE = 0
    MEMBER = 1
    MODERATOR = 2
    OWNER = 3
    SITE = 4


def role_on(site: Site, admin: Admin | None, settings: ListSettings) -> Role:
    """The account's role on the list of ``settings``, read fresh at this request (the
    owners and moderators are part of the settings, read again whenever a role changes:
    ``deps.list_of``)."""
    if admin is None:
        return Role.NONE
    if admin.site_admin:
        return Role.SITE
    if not admin.email:
        return Role.NONE
    if admin.email in settings.owners:
        return Role.OWNER
    if admin.email in settings.moderators:
        return Role.MODERATOR
    if store.member(site, settings.address, admin.email) is not None:
        return Role.MEMBER
    return Role.NONE


def lists_of(site: Site, admin: Admin) -> dict[str, Role]:
    """The lists the account looks after (owner or moderator; every list for a site
    admin), address -> role."""
    if admin.site_admin:
        query = select(MailingList.name, MailingList.domain)
        rows = store.with_connection(site, lambda c: c.execute(query).all())
        return {f"{n}@{d}": Role.SITE for n, d in sorted(rows, key=lambda r: (r[1], r[0]))}
    if not admin.email:
        return {}
    q = (select(MailingList.name, MailingList.domain, ListRole.role)
         .join(ListRole, ListRole.list_id == MailingList.id)
         .where(ListRole.address == admin.email))
    out: dict[str, Role] = {}
    for n, d, role in store.with_connection(site, lambda c: c.execute(q).all()):
        r = Role.OWNER if role == "owner" else Role.MODERATOR
        out[f"{n}@{d}"] = max(out.get(f"{n}@{d}", Role.NONE), r)
    return dict(sorted(out.items()))


def may_read_archive(site: Site, admin: Admin | None, settings: ListSettings) -> bool:
    if settings.archive_policy is ArchivePolicy.PUBLIC:
        return True
    if settings.archive_policy is ArchivePolicy.NONE:
        return False
    return role_on(site, admin, settings) >= Role.MEMBER
