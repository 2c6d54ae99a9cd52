"""The web interface's tables (``postroom.web``): admin accounts, their sessions, API
tokens and password-reset tokens, and the counters behind sign-up and login limits.

Made by migration 0003; the counts and PostgreSQL's archive search by 0004. Secrets
(session ids, API tokens, reset tokens) are stored as their SHA-256, so a copy of the
database does not log anyone in.

An account administers the lists whose owners or moderators include its ``email``
(``list_roles``), all of them when ``site_admin``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from postroom.store.models import ADDRESS_MAX, HASH_MAX, LOGIN_MAX, ArchiveEntry, Base

DIGEST_MAX = 64   # hex SHA-256
KEY_MAX = 400     # a counter's key: kind + address


def _now() -> datetime:
    return datetime.now(UTC)


class WebAdmin(Base):
    """A person who logs in to the web interface (argon2 password)."""

    __tablename__ = "web_admins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(LOGIN_MAX), unique=True)
    email: Mapped[str] = mapped_column(String(ADDRESS_MAX), default="", server_default="")
    password_hash: Mapped[str] = mapped_column(String(HASH_MAX))
    site_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now,
                                              server_default=func.now())


class WebSession(Base):
    """A logged-in browser: ``id`` is the SHA-256 of the cookie's value."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(DIGEST_MAX), primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("web_admins.id", ondelete="CASCADE"),
                                          index=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now,
                                              server_default=func.now())
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebApiToken(Base):
    """A REST API token of an admin: ``scopes`` space separated; revoked ones stay listed."""

    __tablename__ = "web_api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("web_admins.id", ondelete="CASCADE"),
                                          index=True)
    name: Mapped[str] = mapped_column(String(LOGIN_MAX), default="", server_default="")
    token_hash: Mapped[str] = mapped_column(String(DIGEST_MAX), unique=True)
    scopes: Mapped[str] = mapped_column(Text, default="", server_default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now,
                                              server_default=func.now())
    last_used: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class WebPasswordReset(Base):
    """A password-reset link sent by mail: ``id`` the SHA-256 of its token; used once."""

    __tablename__ = "web_password_resets"

    id: Mapped[str] = mapped_column(String(DIGEST_MAX), primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("web_admins.id", ondelete="CASCADE"),
                                          index=True)
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebCounter(Base):
    """How often ``key`` (``signup-to:ADDR``, ``signup-from:IP``, ``login-from:IP``)
    happened on ``day`` (YYYY-MM-DD, UTC)."""

    __tablename__ = "web_counters"

    key: Mapped[str] = mapped_column(String(KEY_MAX), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


# The archive's month pages and month list read a list's posts of one archive month in
# date order: one index serves both (a month of 100,000 posts pages without sorting).
ARCHIVE_MONTH_INDEX = Index("ix_archive_index_list_id_mbox_month_date", ArchiveEntry.list_id,
                            ArchiveEntry.mbox_month, ArchiveEntry.date)


class ListCounter(Base):
    """How many members a list has; ``changes``, bumped by every member added, removed
    or renamed; ``settings``, bumped by every change of the list's settings, roles or
    sender rules. Kept by triggers (migration 0004), so the members page reads one row
    instead of counting 100,000, and the web knows when its copy of a list's settings is
    stale; a list that never changed has no row (all 0)."""

    __tablename__ = "list_counters"

    list_id: Mapped[int] = mapped_column(
        ForeignKey("mailing_lists.id", ondelete="CASCADE"), primary_key=True,
        autoincrement=False)
    members: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    changes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    settings: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class ArchiveMonthCount(Base):
    """How many posts a list's archive has in ``month`` (YYYY-MM); kept by triggers on
    ``archive_index`` (migration 0004)."""

    __tablename__ = "archive_month_counts"

    list_id: Mapped[int] = mapped_column(
        ForeignKey("mailing_lists.id", ondelete="CASCADE"), primary_key=True,
        autoincrement=False)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    posts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ArchiveSearch(Base):
    """PostgreSQL's full-text index of the archive: a post's plain body (for the
    snippets) and its ``tsvector`` (GIN index), filled by ``postroom.web.search`` from
    the mbox files. Empty on SQLite, whose index is the FTS5 file in ``state/``."""

    __tablename__ = "archive_search"
    __table_args__ = (Index("ix_archive_search_document", "document",
                            postgresql_using="gin"),)

    id: Mapped[int] = mapped_column(ForeignKey("archive_index.id", ondelete="CASCADE"),
                                    primary_key=True, autoincrement=False)
    list_id: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text, default="", server_default="")
    document: Mapped[str | None] = mapped_column(
        Text().with_variant(TSVECTOR(), "postgresql"))
