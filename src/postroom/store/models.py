"""The store's tables as SQLAlchemy typed declarative models.

The schema itself is made by the Alembic migrations in ``migrations/versions``; these
models must describe the same tables (a test compares them with the migrated database).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    false,
    func,
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
    """A mailing list, ``name@domain`` (both lower case). Later versions add its settings."""

    __tablename__ = "mailing_lists"
    __table_args__ = (UniqueConstraint("name", "domain"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(LIST_NAME_MAX))
    domain: Mapped[str] = mapped_column(String(DOMAIN_MAX))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now,
                                              server_default=func.now())

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}"

    def __repr__(self) -> str:
        return f"MailingList({self.address!r})"
