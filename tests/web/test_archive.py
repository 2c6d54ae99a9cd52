"""Archive pages: months, by date and thread, a message shown safely (XSS in subject,
body, display name, attachment name), attachments as downloads, address obfuscation,
the mbox, search, the archive policy, and URLs that try to leave the archive."""

from __future__ import annotations

import email.policy
import html
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests

from postroom import site as site_mod
from postroom.lists import archive, store
from tests.web.conftest import LIST, OTHER, Web, ok

XSS = '<script>alert("x")</script>'
WHEN = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)


def archived(site: Path, subject: str, *, author: str = "Ann <ann@example.net>",
             body: str = "Plain words.", html: str | None = None, reply_to: str = "",
             attachment: tuple[str, bytes] | None = None, list_address: str = LIST,
             msgid: str = "", when: datetime = WHEN) -> int:
    s = site_mod.load(site)
    settings = store.get_settings(s, *list_address.split("@"))
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = author
    msg["To"] = list_address
    msg["Subject"] = subject
    msg["Date"] = "Thu, 05 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = msgid or f"<{abs(hash(subject))}@example.net>"
    if reply_to:
        msg["In-Reply-To"] = reply_to
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    if attachment is not None:
        msg.add_attachment(attachment[1], maintype="application", subtype="x-evil",
                           filename=attachment[0])
    entry = archive.archive(s, settings, msg, msg.as_bytes(), "ann@example.net", now=when)
    assert entry is not None
    return entry


def test_month_and_thread_views(web: Web) -> None:
    first = archived(web.site, "Lab meeting", msgid="<a@example.net>")
    archived(web.site, "Re: Lab meeting", msgid="<b@example.net>", reply_to="<a@example.net>",
             author="Bob <bob@example.org>")
    archived(web.site, "Other topic", msgid="<c@example.net>")
    months = web.get(f"/lists/{LIST}/archive/")
    assert months.status_code == 200 and "2026-11" in months.text
    by_date = web.get(f"/lists/{LIST}/archive/2026-11/")
    assert by_date.text.index("Lab meeting") < by_date.text.index("Other topic")
    assert f'href="../msg/{first}"' in by_date.text
    thread = web.get(f"/lists/{LIST}/archive/2026-11/thread").text
    assert '<li class="d1"><a href="../msg/' in thread  # the reply sits under its parent
    assert thread.index("Lab meeting") < thread.index("Re: Lab meeting")


def test_a_month_of_many_posts_pages_by_its_links(web: Web) -> None:
    from datetime import timedelta

    for i in range(55):
        archived(web.site, f"Post {i:02}", msgid=f"<m{i}@example.net>",
                 when=WHEN + timedelta(minutes=i))
    first = web.get(f"/lists/{LIST}/archive/2026-11/").text
    assert "55 posts" in first and "Post 49" in first and "Post 50" not in first
    m = re.search(r'<a href="([^"]+)" rel="next">', first)
    assert m, first
    later = web.get(f"/lists/{LIST}/archive/2026-11/" + html.unescape(m.group(1))).text
    assert re.findall(r">(Post \d\d)</a>", later) == [f"Post {i}" for i in range(50, 55)]
    assert 'rel="next"' not in later
    m = re.search(r'<a href="([^"]+)" rel="prev">', later)
    assert m, later
    back = web.get(f"/lists/{LIST}/archive/2026-11/" + html.unescape(m.group(1))).text
    assert re.findall(r">(Post \d\d)</a>", back) == [f"Post {i:02}" for i in range(50)]
    assert "Post 52" in web.get(f"/lists/{LIST}/archive/2026-11/",
                                params={"page": 2}).text  # old ?page= links still work
    assert '<td>2026-11</td><td class="num">55</td>' in web.get(f"/lists/{LIST}/archive/").text


def test_a_message_is_shown_safely(web: Web) -> None:
    msg_id = archived(web.site, f"Hi {XSS}", author=f'"{XSS}" <ann@example.net>',
                      body=f"Body with {XSS} and mail to carol@example.com",
                      attachment=(f'{XSS}.html', b"<html><script>bad()</script></html>"))
    r = web.get(f"/lists/{LIST}/archive/msg/{msg_id}")
    assert r.status_code == 200
    assert "<script>" not in r.text
    assert "&lt;script&gt;alert(" in r.text
    assert "carol (AT) example.com" in r.text and "carol@example.com" not in r.text
    assert "ann@example.net" not in r.text
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]


def test_html_mail_is_sanitised(web: Web) -> None:
    msg_id = archived(web.site, "html only", body="", html=(
        '<p onclick="x()">Hello <b>there</b><img src="http://tracker.example/x.png">'
        '<a href="javascript:alert(1)">j</a><a href="https://ok.example/">ok</a>'
        f"{XSS}<style>body{{display:none}}</style></p>"))
    # the plain part is empty: the sanitised HTML is shown
    text = web.get(f"/lists/{LIST}/archive/msg/{msg_id}").text
    assert "onclick" not in text and "javascript:" not in text and "<img" not in text
    assert "<script>" not in text and "<style>" not in text
    assert "Hello <b>there</b>" in text
    assert '<a href="https://ok.example/" rel="nofollow noopener noreferrer">ok</a>' in text


def test_attachments_are_downloads_with_a_clean_name(web: Web) -> None:
    msg_id = archived(web.site, "with file", attachment=('../../"evil".html',
                                                          b"<script>x()</script>"))
    page = web.get(f"/lists/{LIST}/archive/msg/{msg_id}").text
    assert "_evil_.html" in page
    import re

    (href,) = re.findall(r'href="(\d+/part/\d+)"', page)
    r = web.get(f"/lists/{LIST}/archive/msg/{href}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Disposition"].startswith('attachment; filename="_evil_.html"')
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.content == b"<script>x()</script>"


def test_obfuscation_follows_the_list_switch(web: Web) -> None:
    msg_id = archived(web.site, "addresses", body="write to carol@example.com")
    ok("lists", "set", LIST, "obfuscate_addresses=false", site=web.site)
    assert "carol@example.com" in web.get(f"/lists/{LIST}/archive/msg/{msg_id}").text


def test_mbox_of_a_month(web: Web) -> None:
    archived(web.site, "From the start")
    r = web.get(f"/lists/{LIST}/archive/2026-11/mbox")
    assert r.status_code == 200
    assert r.content.startswith(b"From ann@example.net ")
    assert b"Subject: From the start" in r.content
    assert "attachment" in r.headers["Content-Disposition"]


@pytest.mark.parametrize("path", [
    "/archive/..%2F..%2Fpostroom.toml/mbox", "/archive/2026-13/", "/archive/../../x/mbox",
    "/archive/%2e%2e/mbox", "/archive/2026-11%2F..%2F..%2F/mbox", "/archive/msg/0",
    "/archive/msg/-1", "/archive/msg/1/part/99"])
def test_urls_that_try_to_leave_the_archive(web: Web, path: str) -> None:
    archived(web.site, "something")
    r = web.get(f"/lists/{LIST}{path}")
    assert r.status_code in (404, 422), (path, r.status_code)
    assert b"[site]" not in r.content


def test_a_post_of_another_list_is_not_found_under_this_one(web: Web) -> None:
    other = archived(web.site, "chemistry", list_address=OTHER)
    assert web.get(f"/lists/{OTHER}/archive/msg/{other}").status_code == 200
    assert web.get(f"/lists/{LIST}/archive/msg/{other}").status_code == 404


def test_search_finds_words_of_the_body_and_the_subject(web: Web) -> None:
    archived(web.site, "Spectroscopy seminar", body="The quantum widget is broken.")
    archived(web.site, "Unrelated", body="Nothing to see.")
    archived(web.site, "quantum in chem", body="quantum", list_address=OTHER)
    r = web.get(f"/lists/{LIST}/archive/search", params={"q": "quantum"})
    assert r.status_code == 200
    assert "1 post found" in r.text and "Spectroscopy seminar" in r.text
    assert "<mark>quantum</mark>" in r.text
    assert "Unrelated" not in r.text and "quantum in chem" not in r.text
    # FTS syntax in a query is text, not an error
    for q in ['"', "NEAR(", "a OR", "-x", "subject:foo", "*"]:
        assert web.get(f"/lists/{LIST}/archive/search", params={"q": q}).status_code == 200
    assert "1 post found" in web.get(f"/lists/{LIST}/archive/search",
                                     params={"q": "spectro*"}).text


def test_archive_policy_members_and_none(web: Web) -> None:
    msg_id = archived(web.site, "private")
    ok("lists", "set", LIST, "archive_policy=members", site=web.site)
    assert web.get(f"/lists/{LIST}/archive/msg/{msg_id}").status_code == 403
    assert web.get(f"/lists/{LIST}/archive/2026-11/mbox").status_code == 403
    assert "/archive/" not in web.get(f"/lists/{LIST}/").text
    owner = web.login("olive")
    assert web.get(f"/lists/{LIST}/archive/msg/{msg_id}", owner).status_code == 200
    other_owner = web.login("cher")
    assert web.get(f"/lists/{LIST}/archive/msg/{msg_id}", other_owner).status_code == 403
    ok("lists", "set", LIST, "archive_policy=none", site=web.site)
    assert requests.get(f"{web.url}/lists/{LIST}/archive/", timeout=30).status_code == 403


def test_a_post_sent_through_the_server_is_archived_and_shown(web: Web) -> None:
    from tests.web.conftest import post, wait_for

    web.send("ann@example.net", LIST, post("ann@example.net", "via smtp", body="sent live"))
    wait_for(lambda: "via smtp" in web.get(f"/lists/{LIST}/archive/").text or
             web.get(f"/lists/{LIST}/archive/search", params={"q": "live"}).text.count(
                 "via smtp"))
    r = web.get(f"/lists/{LIST}/archive/search", params={"q": "live"})
    assert "via smtp" in r.text
