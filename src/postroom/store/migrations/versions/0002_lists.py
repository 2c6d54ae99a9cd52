"""Mailing lists get their settings, roles, sender rules and members; the list engine's
held messages, pending confirmations and archive index (empty until the engine fills them).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (column, type, server default) in the order of ListSettings
SETTINGS: tuple[tuple[str, Any, Any], ...] = (
    ("description", sa.Text(), ""),
    ("posting_policy", sa.String(16), "members"),
    ("subject_prefix", sa.String(255), ""),
    ("footer", sa.Text(), ""),
    ("max_message_size", sa.Integer(), "0"),
    ("max_recipients", sa.Integer(), "10"),
    ("archive_policy", sa.String(16), "public"),
    ("reply_to", sa.String(16), "author"),
    ("dmarc_mitigation", sa.String(16), "munge_from"),
    ("subscription_needs_approval", sa.Boolean(), sa.false()),
    ("web_signup", sa.Boolean(), sa.true()),
    ("obfuscate_addresses", sa.Boolean(), sa.true()),
    ("digest_size_kb", sa.Integer(), "30"),
    ("digest_period_days", sa.Integer(), "1"),
    ("held_expiry_days", sa.Integer(), "14"),
    ("acceptable_aliases", sa.Text(), ""),
)


def _fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["list_id"], ["mailing_lists.id"], ondelete="CASCADE",
                                   name=f"fk_{table}_list_id_mailing_lists")


def upgrade() -> None:
    with op.batch_alter_table("mailing_lists") as batch:
        batch.add_column(sa.Column("secret", sa.String(64), nullable=True))
        for name, type_, default in SETTINGS:
            batch.add_column(sa.Column(name, type_, nullable=False, server_default=default))
    # every list made before this revision gets its own secret
    lists = sa.table("mailing_lists", sa.column("id", sa.Integer()),
                     sa.column("secret", sa.String(64)))
    connection = op.get_bind()
    for (list_id,) in connection.execute(sa.select(lists.c.id)).all():
        connection.execute(sa.update(lists).where(lists.c.id == list_id)
                           .values(secret=secrets.token_hex(32)))
    with op.batch_alter_table("mailing_lists") as batch:
        batch.alter_column("secret", existing_type=sa.String(64), nullable=False)

    op.create_table(
        "list_roles",
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.PrimaryKeyConstraint("list_id", "role", "address", name="pk_list_roles"),
        _fk("list_roles"),
    )
    op.create_table(
        "list_address_rules",
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("pattern", sa.Text(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("list_id", "position", name="pk_list_address_rules"),
        _fk("list_address_rules"),
    )
    op.create_table(
        "list_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False, server_default=""),
        sa.Column("delivery_enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("mode", sa.String(16), nullable=False, server_default="regular"),
        sa.Column("moderated", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("bounce_score", sa.Float(), nullable=False, server_default=sa.text("0")),
        sa.Column("last_bounce", sa.DateTime(timezone=True), nullable=True),
        sa.Column("joined", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_list_members"),
        _fk("list_members"),
        sa.UniqueConstraint("list_id", "address", name="uq_list_members_list_id_address"),
    )
    op.create_table(
        "held_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(998), nullable=False, server_default=""),
        sa.Column("message_id", sa.String(998), nullable=False, server_default=""),
        sa.Column("received", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("rule", sa.String(255), nullable=False, server_default=""),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_held_messages"),
        _fk("held_messages"),
    )
    op.create_index("ix_held_messages_list_id", "held_messages", ["list_id"])
    op.create_table(
        "pending_confirmations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(128), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_pending_confirmations"),
        _fk("pending_confirmations"),
        sa.UniqueConstraint("token", name="uq_pending_confirmations_token"),
    )
    op.create_index("ix_pending_confirmations_list_id", "pending_confirmations", ["list_id"])
    op.create_table(
        "archive_index",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(998), nullable=False, server_default=""),
        sa.Column("date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.Text(), nullable=False, server_default=""),
        sa.Column("subject", sa.String(998), nullable=False, server_default=""),
        sa.Column("parent_message_id", sa.String(998), nullable=True),
        sa.Column("mbox_month", sa.String(7), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_archive_index"),
        _fk("archive_index"),
    )
    op.create_index("ix_archive_index_list_id_date", "archive_index", ["list_id", "date"])


def downgrade() -> None:
    op.drop_index("ix_archive_index_list_id_date", table_name="archive_index")
    op.drop_table("archive_index")
    op.drop_index("ix_pending_confirmations_list_id", table_name="pending_confirmations")
    op.drop_table("pending_confirmations")
    op.drop_index("ix_held_messages_list_id", table_name="held_messages")
    op.drop_table("held_messages")
    op.drop_table("list_members")
    op.drop_table("list_address_rules")
    op.drop_table("list_roles")
    with op.batch_alter_table("mailing_lists") as batch:
        for name, _type, _default in reversed(SETTINGS):
            batch.drop_column(name)
        batch.drop_column("secret")
