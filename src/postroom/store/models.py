"""The store's tables as SQLAlchemy typed declarative models.

The schema itself is made by the Alembic migrations in ``migrations/versions``; these
models must describe the same tables (a test compares them with the migrated database).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Constraint names fixed by convention, so migrations can name them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

LOGIN_MAX = 64
ADDRESS_MAX = 320  # RFC 5321: 64 + 1 + 255
HASH_MAX = 255
LIST_NAME_MAX = 64
DOMAIN_MAX = 255
ENUM_MAX = 16        # a policy enum's value (postroom.lists.model), stored as its string
NAME_MAX = 255       # a display name
SUBJECT_MAX = 998    # RFC 5322 line limit
MESSAGE_ID_MAX = 998
SECRET_MAX = 64      # hex of 32 random bytes
TOKEN_MAX = 128


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    """A submission (SMTP AUTH) user."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(LOGIN_MAX), unique=True)
    password_hash: Mapped[str] = mapped_column(String(HASH_MAX))  # argon2 (PHC string)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now,
                                              server_default=func.now())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    addresses: Mapped[list[UserAddress]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True,
        order_by="UserAddress.address")

    def __repr__(self) -> str:
        return f"User(login={self.login!r}, disabled={self.disabled})"


class UserAddress(Base):
    """An envelope-sender address a submission user may use (lower case, unique)."""

    __tablename__ = "user_addresses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True)
    address: Mapped[str] = mapped_column(String(ADDRESS_MAX), unique=True)

    user: Mapped[User] = relationship(back_populates="addresses")

    def __repr__(self) -> str:
        return f"UserAddress({self.address!r})"


class MailingList(Base):
    """A mailing list, ``name@domain`` (both lower case), with one column per setting of
    ``postroom.lists.model.ListSettings`` (enums as their strings, ``acceptable_aliases``
    newline separated); owners and moderators are ``ListRole`` rows, the sender rules
    ``ListAddressRule`` rows. ``secret`` (random, made at create) keys the list's HMAC
    tokens (one-click unsubscribe, confirmations)."""

    __tablename__ = "mailing_lists"
    __table_args__ = (UniqueConstraint("name", "domain"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(LIST_NAME_MAX))
    domain: Mapped[str] = mapped_column(String(DOMAIN_MAX))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now,
                                              server_default=func.now())
    secret: Mapped[str] = mapped_column(String(SECRET_MAX))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    posting_policy: Mapped[str] = mapped_column(String(ENUM_MAX), default="members",
                                                server_default="members")
    subject_prefix: Mapped[str] = mapped_column(String(NAME_MAX), default="",
                                                server_default="")
    footer: Mapped[str] = mapped_column(Text, default="", server_default="")
    max_message_size: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_recipients: Mapped[int] = mapped_column(Integer, default=10, server_default="10")
    archive_policy: Mapped[str] = mapped_column(String(ENUM_MAX), default="public",
                                                server_default="public")
    reply_to: Mapped[str] = mapped_column(String(ENUM_MAX), default="author",
                                          server_default="author")
    dmarc_mitigation: Mapped[str] = mapped_column(String(ENUM_MAX), default="munge_from",
                                                  server_default="munge_from")
    subscription_needs_approval: Mapped[bool] = mapped_column(Boolean, default=False,
                                                              server_default=false())
    web_signup: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    obfuscate_addresses: Mapped[bool] = mapped_column(Boolean, default=True,
                                                      server_default=true())
    digest_size_kb: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    digest_period_days: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    held_expiry_days: Mapped[int] = mapped_column(Integer, default=14, server_default="14")
    acceptable_aliases: Mapped[str] = mapped_column(Text, default="", server_default="")

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}"

    def __repr__(self) -> str:
        return f"MailingList({self.address!r})"


class ListRole(Base):
    """An owner or moderator of a list (``role`` is ``owner`` or ``moderator``)."""

    __tablename__ = "list_roles"

    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"),
                                         primary_key=True)
    role: Mapped[str] = mapped_column(String(ENUM_MAX), primary_key=True)
    address: Mapped[str] = mapped_column(String(ADDRESS_MAX), primary_key=True)


class ListAddressRule(Base):
    """A per-list sender rule, in order: ``pattern`` an address or ``^regex``."""

    __tablename__ = "list_address_rules"

    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"),
                                         primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    pattern: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(ENUM_MAX))


class ListMember(Base):
    """A member of a list; ``address`` lower case, unique per list (the unique index also
    serves paging in address order)."""

    __tablename__ = "list_members"
    __table_args__ = (UniqueConstraint("list_id", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(ADDRESS_MAX))
    display_name: Mapped[str] = mapped_column(String(NAME_MAX), default="", server_default="")
    delivery_enabled: Mapped[bool] = mapped_column(Boolean, default=True,
                                                   server_default=true())
    mode: Mapped[str] = mapped_column(String(ENUM_MAX), default="regular",
                                      server_default="regular")
    moderated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    bounce_score: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    last_bounce: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    joined: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now,
                                             server_default=func.now())


class HeldMessage(Base):
    """A post held for the moderators: the message itself is ``file_name`` (under the
    site's held-message directory); ``rule`` decided, ``reason`` says why."""

    __tablename__ = "held_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"),
                                         index=True)
    sender: Mapped[str] = mapped_column(String(ADDRESS_MAX))
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX), default="", server_default="")
    message_id: Mapped[str] = mapped_column(String(MESSAGE_ID_MAX), default="",
                                            server_default="")
    received: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now,
                                               server_default=func.now())
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    rule: Mapped[str] = mapped_column(String(NAME_MAX), default="", server_default="")
    file_name: Mapped[str] = mapped_column(String(NAME_MAX))


class PendingConfirmation(Base):
    """A request waiting for its confirmation (subscribe, unsubscribe, approval...):
    ``token`` is what the confirm address or link carries; ``data`` JSON for the kind."""

    __tablename__ = "pending_confirmations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(TOKEN_MAX), unique=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"),
                                         index=True)
    kind: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(ADDRESS_MAX))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now,
                                              server_default=func.now())
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[str] = mapped_column(Text, default="", server_default="")


class ArchiveEntry(Base):
    """One archived post: where it is in ``SITE/archives/LIST/YYYY-MM.mbox`` (``offset``,
    ``length`` in bytes) and what a thread view needs."""

    __tablename__ = "archive_index"
    __table_args__ = (Index("ix_archive_index_list_id_date", "list_id", "date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(MESSAGE_ID_MAX), default="",
                                            server_default="")
    date: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    author: Mapped[str] = mapped_column(Text, default="", server_default="")
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX), default="", server_default="")
    parent_message_id: Mapped[str | None] = mapped_column(String(MESSAGE_ID_MAX))
    mbox_month: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    offset: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(Integer)
