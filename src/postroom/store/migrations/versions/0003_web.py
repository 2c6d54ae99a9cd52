"""The web interface: admin accounts, sessions, API tokens, password resets, counters,
and an index for the archive's month pages.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = False, now: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable,
                     server_default=sa.func.now() if now else None)


def upgrade() -> None:
    op.create_table(
        "web_admins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("email", sa.String(320), nullable=False, server_default=""),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("site_admin", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        _when("locked_until", nullable=True),
        _when("created", now=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_admins")),
        sa.UniqueConstraint("login", name=op.f("uq_web_admins_login")),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("admin_id", sa.Integer(), nullable=False),
        _when("created", now=True),
        _when("expires"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.ForeignKeyConstraint(["admin_id"], ["web_admins.id"], ondelete="CASCADE",
                                name=op.f("fk_web_sessions_admin_id_web_admins")),
    )
    op.create_index(op.f("ix_web_sessions_admin_id"), "web_sessions", ["admin_id"])
    op.create_table(
        "web_api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("admin_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False, server_default=""),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False, server_default=""),
        _when("created", now=True),
        _when("last_used", nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_api_tokens_token_hash")),
        sa.ForeignKeyConstraint(["admin_id"], ["web_admins.id"], ondelete="CASCADE",
                                name=op.f("fk_web_api_tokens_admin_id_web_admins")),
    )
    op.create_index(op.f("ix_web_api_tokens_admin_id"), "web_api_tokens", ["admin_id"])
    op.create_table(
        "web_password_resets",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("admin_id", sa.Integer(), nullable=False),
        _when("expires"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_password_resets")),
        sa.ForeignKeyConstraint(["admin_id"], ["web_admins.id"], ondelete="CASCADE",
                                name=op.f("fk_web_password_resets_admin_id_web_admins")),
    )
    op.create_index(op.f("ix_web_password_resets_admin_id"), "web_password_resets",
                    ["admin_id"])
    op.create_table(
        "web_counters",
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("key", "day", name=op.f("pk_web_counters")),
    )
    op.create_index("ix_archive_index_list_id_mbox_month_date", "archive_index",
                    ["list_id", "mbox_month", "date"])


def downgrade() -> None:
    op.drop_index("ix_archive_index_list_id_mbox_month_date", table_name="archive_index")
    for table in ("web_counters", "web_password_resets", "web_api_tokens", "web_sessions",
                  "web_admins"):
        op.drop_table(table)
