"""Moving a list from Mailman 2: ``postroom lists import-config`` reads ``config_list -o``
output (never runs it), and ``lists import-archive`` takes a Pipermail mbox whole; on
SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

from postroom.lists.store import get_settings
from postroom.site import Site
from tests.conftest import run
from tests.lists.conftest import LIST, write

EX_DATAERR = 65

# what Mailman 2.1's config_list -o writes (comments shortened)
CONFIG_LIST = '''# -*- python -*-
# -*- coding: utf-8 -*-
## "staff" mailing list configuration settings
## captured on Tue Nov 24 10:00:00 2026

# The public name of this list (make case-changes only).
real_name = 'Staff'

owner = ['Boss@inf.example.ac.uk', 'deputy@inf.example.ac.uk']
moderator = ['mod@inf.example.ac.uk']
description = 'All   staff of the school'
subject_prefix = '[staff %d] '
reply_goes_to_list = 1
max_message_size = 40
max_num_recipients = 25
default_member_moderation = 0
generic_nonmember_action = 1
accept_these_nonmembers = ['hr@ed.ac.uk', '^.*@payroll\\\\.example\\\\.org$']
discard_these_nonmembers = ['spam@example.com']
dmarc_moderation_action = 2
subscribe_policy = 3
digest_size_threshhold = 50
max_days_to_hold = 30
archive = True
archive_private = 1
acceptable_aliases = """
staff-all@inf.example.ac.uk
"""
msg_footer = """_______________________________________________
%(real_name)s mailing list
%(real_name)s@%(host_name)s
%(web_page_url)slistinfo%(cgiext)s/%(_internal_name)s"""
password = '2ab6b0d5b1f7c0f8'
'''

PIPERMAIL = """From ann at example.net  Mon Mar  2 10:00:00 2026
From: ann at example.net (Ann)
Date: Mon, 02 Mar 2026 10:00:00 +0000
Subject: [staff] first
Message-ID: <1@example.net>

Hello.
>From the archive.

From bob at example.org  Wed Apr  1 09:00:00 2026
From: bob at example.org (Bob)
Date: Wed, 01 Apr 2026 09:00:00 +0000
Subject: [staff] second
Message-ID: <2@example.org>
In-Reply-To: <1@example.net>

Re hello.

From cy at example.com  Thu Apr  2 09:00:00 2026
From: cy at example.com (Cy)
Date: not a date at all
Subject: [staff] third

A date nobody can read.
"""


def test_import_config_sets_what_maps_and_notes_the_rest(list_site: Site,
                                                         tmp_path: Path) -> None:
    f = write(tmp_path / "staff.cfg", CONFIG_LIST)
    done = run("lists", "import-config", LIST, f, site=list_site.home)
    assert done.returncode == 0, done.stderr
    s = get_settings(list_site, "staff", "inf.example.ac.uk")
    assert s.owners == ["boss@inf.example.ac.uk", "deputy@inf.example.ac.uk"]
    assert s.moderators == ["mod@inf.example.ac.uk"]
    assert s.description == "All staff of the school"
    assert s.subject_prefix == "[staff ] "
    assert s.reply_to == "list"
    assert s.max_message_size == 40 * 1024 and s.max_recipients == 25
    assert s.posting_policy == "members"
    assert [(r.action.value, r.pattern) for r in s.address_rules] == [
        ("accept", "hr@ed.ac.uk"), ("accept", "^.*@payroll\\.example\\.org$"),
        ("discard", "spam@example.com")]
    assert s.dmarc_mitigation == "wrap"
    assert s.subscription_needs_approval is True
    assert s.digest_size_kb == 50 and s.held_expiry_days == 30
    assert s.archive_policy == "members"
    assert s.acceptable_aliases == ["staff-all@inf.example.ac.uk"]
    assert s.footer.splitlines()[1:3] == ["staff mailing list",
                                          "staff@inf.example.ac.uk"]
    assert "note: subject_prefix: the %d post number is not kept" in done.stdout
    assert "note: msg_footer: web_page_url, cgiext left as written" in done.stdout
    assert "note: password: not imported" in done.stdout
    assert f"{LIST}: posting_policy = members" in done.stdout


def test_import_config_never_runs_code_and_names_the_line(list_site: Site,
                                                          tmp_path: Path) -> None:
    before = get_settings(list_site, "staff", "inf.example.ac.uk")
    marker = tmp_path / "ran"
    f = write(tmp_path / "evil.cfg", f"description = 'x'\n"
                                     f"owner = __import__('os').system('touch {marker}')\n")
    done = run("lists", "import-config", LIST, f, site=list_site.home)
    assert done.returncode == EX_DATAERR
    assert f"{f}:2: owner: the value is not a literal" in done.stderr
    assert not marker.exists()
    assert get_settings(list_site, "staff", "inf.example.ac.uk") == before  # nothing set
    f = write(tmp_path / "bad.cfg", "import os\n")
    done = run("lists", "import-config", LIST, f, site=list_site.home)
    assert done.returncode == EX_DATAERR and f"{f}:1: only 'name = value'" in done.stderr


def test_import_pipermail_archive_keeps_every_message(list_site: Site,
                                                      tmp_path: Path) -> None:
    mbox = tmp_path / "staff.mbox"
    mbox.write_text(PIPERMAIL)
    done = run("lists", "import-archive", LIST, str(mbox), site=list_site.home)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{LIST}: 3 messages archived\n"
    archives = list_site.home / "archives" / LIST
    march = (archives / "2026-03.mbox").read_text()
    april = (archives / "2026-04.mbox").read_text()
    assert "Subject: [staff] first" in march and ">From the archive." in march
    assert "Subject: [staff] second" in april
    # the message whose Date nobody can read goes under the month it was imported
    now = (archives / f"{time.strftime('%Y-%m')}.mbox").read_text()
    assert "Subject: [staff] third" in now
    assert sum(p.read_text().count("Subject: [staff] ") for p in archives.iterdir()) == 3
    missing = run("lists", "import-archive", LIST, str(tmp_path / "none.mbox"),
                  site=list_site.home)
    assert missing.returncode == EX_DATAERR
    assert "no such file (Pipermail keeps it in archives/private/" in missing.stderr
