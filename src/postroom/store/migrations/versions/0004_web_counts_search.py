"""Counts kept by the database, not counted per request, and PostgreSQL's archive search.

* ``list_counters``: a list's members; ``changes``, bumped by every insert, delete and
  change of a member's address or name (the member search index in ``state/`` is
  rebuilt when it differs); ``settings``, bumped by every change of the list's row, its
  owners and moderators or its sender rules (the web keeps a list's settings in memory
  while it stays).
* ``archive_month_counts``: a list's archived posts per month.
* ``archive_search``: PostgreSQL's full-text index of the archive (a ``tsvector`` with a
  GIN index); on SQLite the table stays empty (the FTS5 file in ``state/`` serves).

Both counts are kept by triggers, so every writer (the CLI, the list engine, a sync, the
web) keeps them right without knowing: on SQLite one row trigger per statement kind, on
PostgreSQL statement triggers over the transition tables (one update per ``COPY`` of
100,000 members, not 100,000).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_TRIGGERS = (
    """CREATE TRIGGER list_members_count_insert AFTER INSERT ON list_members BEGIN
         INSERT OR IGNORE INTO list_counters (list_id, members, changes)
           VALUES (NEW.list_id, 0, 0);
         UPDATE list_counters SET members = members + 1, changes = changes + 1
           WHERE list_id = NEW.list_id;
       END""",
    """CREATE TRIGGER list_members_count_delete AFTER DELETE ON list_members BEGIN
         UPDATE list_counters SET members = members - 1, changes = changes + 1
           WHERE list_id = OLD.list_id;
       END""",
    """CREATE TRIGGER list_members_count_update AFTER UPDATE OF list_id, address,
         display_name ON list_members
       WHEN OLD.list_id IS NOT NEW.list_id OR OLD.address IS NOT NEW.address
         OR OLD.display_name IS NOT NEW.display_name BEGIN
         INSERT OR IGNORE INTO list_counters (list_id, members, changes)
           VALUES (NEW.list_id, 0, 0);
         UPDATE list_counters SET changes = changes + 1,
             members = members - (OLD.list_id IS NOT NEW.list_id)
           WHERE list_id = OLD.list_id;
         UPDATE list_counters SET members = members + 1, changes = changes + 1
           WHERE list_id = NEW.list_id AND OLD.list_id IS NOT NEW.list_id;
       END""",
    """CREATE TRIGGER archive_index_count_insert AFTER INSERT ON archive_index BEGIN
         INSERT OR IGNORE INTO archive_month_counts (list_id, month, posts)
           VALUES (NEW.list_id, NEW.mbox_month, 0);
         UPDATE archive_month_counts SET posts = posts + 1
           WHERE list_id = NEW.list_id AND month = NEW.mbox_month;
       END""",
    """CREATE TRIGGER archive_index_count_delete AFTER DELETE ON archive_index BEGIN
         UPDATE archive_month_counts SET posts = posts - 1
           WHERE list_id = OLD.list_id AND month = OLD.mbox_month;
       END""",
)
# settings: the list's row, its roles and its sender rules; a delete (also the cascade of a
# list being deleted) only updates, since a new row would point at a list going away
SETTING_TRIGGERS = (("mailing_lists", "id", "UPDATE"),
                    *((table, "list_id", event) for table in ("list_roles", "list_address_rules")
                      for event in ("INSERT", "UPDATE", "DELETE")))


def _sqlite_setting_trigger(table: str, key: str, event: str) -> str:
    row = "OLD" if event == "DELETE" else "NEW"
    ensure = "" if event == "DELETE" else \
        f"INSERT OR IGNORE INTO list_counters (list_id) VALUES ({row}.{key}); "
    return (f"CREATE TRIGGER {table}_settings_{event.lower()} AFTER {event} ON {table} "
            f"BEGIN {ensure}UPDATE list_counters SET settings = settings + 1 "
            f"WHERE list_id = {row}.{key}; END")


SQLITE_ALL: tuple[str, ...] = (*SQLITE_TRIGGERS,
                               *(_sqlite_setting_trigger(*t) for t in SETTING_TRIGGERS))
SQLITE_DROP: tuple[str, ...] = (
    "list_members_count_insert", "list_members_count_delete", "list_members_count_update",
    "archive_index_count_insert", "archive_index_count_delete",
    *(f"{table}_settings_{event.lower()}" for table, _, event in SETTING_TRIGGERS))

# PostgreSQL: statement triggers with transition tables. An UPDATE's column list and
# transition tables do not go together, so an update compares old and new rows by id.
PG_FUNCTIONS = (
    """CREATE FUNCTION postroom_members_counted() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP = 'INSERT' THEN
           INSERT INTO list_counters AS c (list_id, members, changes)
             SELECT list_id, count(*), count(*) FROM new_rows GROUP BY list_id
             ON CONFLICT (list_id) DO UPDATE
               SET members = c.members + EXCLUDED.members,
                   changes = c.changes + EXCLUDED.changes;
         ELSIF TG_OP = 'DELETE' THEN
           UPDATE list_counters AS c SET members = c.members - d.n,
               changes = c.changes + d.n
             FROM (SELECT list_id, count(*) AS n FROM old_rows GROUP BY list_id) AS d
             WHERE c.list_id = d.list_id;
         ELSE
           INSERT INTO list_counters AS c (list_id, members, changes)
             SELECT n.list_id, 0, 0 FROM new_rows n JOIN old_rows o ON o.id = n.id
               WHERE o.list_id <> n.list_id
             ON CONFLICT (list_id) DO NOTHING;
           UPDATE list_counters AS c
             SET members = c.members + d.moved, changes = c.changes + d.n
             FROM (SELECT x.list_id, sum(x.moved) AS moved, count(*) AS n FROM (
                     SELECT o.list_id, -1 AS moved FROM new_rows n JOIN old_rows o
                       ON o.id = n.id WHERE o.list_id <> n.list_id
                     UNION ALL
                     SELECT n.list_id, 1 FROM new_rows n JOIN old_rows o ON o.id = n.id
                       WHERE o.list_id <> n.list_id
                     UNION ALL
                     SELECT n.list_id, 0 FROM new_rows n JOIN old_rows o ON o.id = n.id
                       WHERE o.list_id = n.list_id AND (o.address <> n.address
                         OR o.display_name <> n.display_name)) AS x
                   GROUP BY x.list_id) AS d
             WHERE c.list_id = d.list_id;
         END IF;
         RETURN NULL;
       END $$""",
    """CREATE FUNCTION postroom_posts_counted() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP = 'INSERT' THEN
           INSERT INTO archive_month_counts AS c (list_id, month, posts)
             SELECT list_id, mbox_month, count(*) FROM new_rows GROUP BY list_id, mbox_month
             ON CONFLICT (list_id, month) DO UPDATE SET posts = c.posts + EXCLUDED.posts;
         ELSE
           UPDATE archive_month_counts AS c SET posts = c.posts - d.n
             FROM (SELECT list_id, mbox_month, count(*) AS n FROM old_rows
                   GROUP BY list_id, mbox_month) AS d
             WHERE c.list_id = d.list_id AND c.month = d.mbox_month;
         END IF;
         RETURN NULL;
       END $$""",
)
PG_SETTINGS_FUNCTION = (
    """CREATE FUNCTION postroom_settings_changed() RETURNS trigger LANGUAGE plpgsql AS $$
       DECLARE
         list integer;
       BEGIN
         IF TG_TABLE_NAME = 'mailing_lists' THEN
           list := NEW.id;
         ELSIF TG_OP = 'DELETE' THEN
           list := OLD.list_id;
         ELSE
           list := NEW.list_id;
         END IF;
         IF TG_OP <> 'DELETE' THEN
           INSERT INTO list_counters (list_id) VALUES (list) ON CONFLICT (list_id) DO NOTHING;
         END IF;
         UPDATE list_counters SET settings = settings + 1 WHERE list_id = list;
         IF TG_OP = 'UPDATE' AND TG_TABLE_NAME <> 'mailing_lists' THEN
           IF OLD.list_id <> NEW.list_id THEN  -- (plpgsql does not short-circuit AND)
             UPDATE list_counters SET settings = settings + 1 WHERE list_id = OLD.list_id;
           END IF;
         END IF;
         RETURN NULL;
       END $$""")
PG_SETTING_TRIGGERS = (
    ("mailing_lists_settings", "mailing_lists", "UPDATE"),
    ("list_roles_settings", "list_roles", "INSERT OR UPDATE OR DELETE"),
    ("list_address_rules_settings", "list_address_rules", "INSERT OR UPDATE OR DELETE"),
)
PG_TRIGGERS = (
    ("list_members_count_insert", "list_members", "INSERT", "NEW TABLE AS new_rows",
     "postroom_members_counted"),
    ("list_members_count_delete", "list_members", "DELETE", "OLD TABLE AS old_rows",
     "postroom_members_counted"),
    ("list_members_count_update", "list_members", "UPDATE",
     "OLD TABLE AS old_rows NEW TABLE AS new_rows", "postroom_members_counted"),
    ("archive_index_count_insert", "archive_index", "INSERT", "NEW TABLE AS new_rows",
     "postroom_posts_counted"),
    ("archive_index_count_delete", "archive_index", "DELETE", "OLD TABLE AS old_rows",
     "postroom_posts_counted"),
)


def upgrade() -> None:
    op.create_table(
        "list_counters",
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("changes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("settings", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("list_id", name=op.f("pk_list_counters")),
        sa.ForeignKeyConstraint(["list_id"], ["mailing_lists.id"], ondelete="CASCADE",
                                name=op.f("fk_list_counters_list_id_mailing_lists")),
    )
    op.create_table(
        "archive_month_counts",
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("posts", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("list_id", "month", name=op.f("pk_archive_month_counts")),
        sa.ForeignKeyConstraint(["list_id"], ["mailing_lists.id"], ondelete="CASCADE",
                                name=op.f("fk_archive_month_counts_list_id_mailing_lists")),
    )
    op.create_table(
        "archive_search",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False, server_default=""),
        sa.Column("document", sa.Text().with_variant(postgresql.TSVECTOR(), "postgresql"),
                  nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_search")),
        sa.ForeignKeyConstraint(["id"], ["archive_index.id"], ondelete="CASCADE",
                                name=op.f("fk_archive_search_id_archive_index")),
    )
    op.create_index("ix_archive_search_document", "archive_search", ["document"],
                    postgresql_using="gin")
    op.execute("INSERT INTO list_counters (list_id, members, changes) "
               "SELECT list_id, count(*), 0 FROM list_members GROUP BY list_id")
    op.execute("INSERT INTO archive_month_counts (list_id, month, posts) "
               "SELECT list_id, mbox_month, count(*) FROM archive_index "
               "GROUP BY list_id, mbox_month")
    if op.get_bind().dialect.name == "postgresql":
        for function in (*PG_FUNCTIONS, PG_SETTINGS_FUNCTION):
            op.execute(function)
        for name, table, event, referencing, function in PG_TRIGGERS:
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} "
                       f"REFERENCING {referencing} FOR EACH STATEMENT "
                       f"EXECUTE FUNCTION {function}()")
        for name, table, events in PG_SETTING_TRIGGERS:  # rare and small: per row
            op.execute(f"CREATE TRIGGER {name} AFTER {events} ON {table} FOR EACH ROW "
                       "EXECUTE FUNCTION postroom_settings_changed()")
    else:
        for trigger in SQLITE_ALL:
            op.execute(trigger)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, table, *_ in (*PG_TRIGGERS, *PG_SETTING_TRIGGERS):
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS postroom_settings_changed()")
        op.execute("DROP FUNCTION IF EXISTS postroom_members_counted()")
        op.execute("DROP FUNCTION IF EXISTS postroom_posts_counted()")
    else:
        for name in SQLITE_DROP:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_index("ix_archive_search_document", table_name="archive_search")
    for table in ("archive_search", "archive_month_counts", "list_counters"):
        op.drop_table(table)
