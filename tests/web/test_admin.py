"""Admin pages through a real server: login (lockout, a new session id at every login,
no open redirect), held posts approved and delivered, rejected, discarded, members
(pages, search, bulk add with a report per line, remove), the settings form, the site
pages, and who may see what."""

from __future__ import annotations

import json
import re

import pytest

from postroom.web.security import SESSION_COOKIE
from tests.web.conftest import LIST, MEMBERS, OTHER, PASSWORD, Web, csrf_of, ok, post, wait_for


def _login_form(web: Web, login: str, password: str, next_path: str = "/admin/"):  # type: ignore[no-untyped-def]
    s = web.http()
    page = s.get(web.url + "/admin/login", timeout=30)
    return s, s.post(web.url + "/admin/login", data={
        "login": login, "password": password, "csrf_token": csrf_of(page.text),
        "next": next_path}, allow_redirects=False, timeout=30)


def test_admin_pages_send_a_browser_without_a_session_to_login(web: Web) -> None:
    r = web.get(f"/admin/lists/{LIST}/members", allow_redirects=False)
    assert r.status_code == 303
    assert r.headers["Location"] == f"/admin/login?next=/admin/lists/{LIST}/members"


def test_wrong_password_and_lockout(web: Web) -> None:
    _, r = _login_form(web, "olive", "wrong password here")
    assert r.status_code == 401 and "Login failed" in r.text
    _, r = _login_form(web, "nobody", PASSWORD)
    assert r.status_code == 401
    for _ in range(4):
        _login_form(web, "olive", "wrong password here")
    _, r = _login_form(web, "olive", PASSWORD)  # five failures: locked, even when right
    assert r.status_code == 401
    ok("web-admin", "passwd", "olive", "--password-stdin", site=web.site,
       input=PASSWORD + "\n")  # unlocks
    _, r = _login_form(web, "olive", PASSWORD)
    assert r.status_code == 303


def test_login_makes_a_new_session_id(web: Web) -> None:
    s = web.http()
    s.cookies.set(SESSION_COOKIE, "planted-by-an-attacker", domain="127.0.0.1", path="/")
    page = s.get(web.url + "/admin/login", timeout=30)
    r = s.post(web.url + "/admin/login", data={
        "login": "olive", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        allow_redirects=False, timeout=30)
    assert r.status_code == 303
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    new = s.cookies.get(SESSION_COOKIE)
    assert new and new != "planted-by-an-attacker"
    planted = web.http()
    planted.cookies.set(SESSION_COOKIE, "planted-by-an-attacker")
    assert web.get("/admin/", planted, allow_redirects=False).status_code == 303
    assert web.get("/admin/", s).status_code == 200
    # logging in again gives yet another id, and the old one is dead
    page = s.get(web.url + "/admin/login", timeout=30)
    s.post(web.url + "/admin/login", data={
        "login": "olive", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        allow_redirects=False, timeout=30)
    assert s.cookies.get(SESSION_COOKIE) != new
    stale = web.http()
    stale.cookies.set(SESSION_COOKIE, new)
    assert web.get("/admin/", stale, allow_redirects=False).status_code == 303


@pytest.mark.parametrize("target", [
    "//evil.example/", "https://evil.example/", "/\\evil.example", "http:/evil.example",
    "javascript:alert(1)", "/admin/\r\nLocation: https://evil.example/", "evil.example"])
def test_no_open_redirect_after_login(web: Web, target: str) -> None:
    _, r = _login_form(web, "olive", PASSWORD, target)
    assert r.status_code == 303
    assert r.headers["Location"] == "/admin/"


def test_login_goes_back_to_the_page_asked_for(web: Web) -> None:
    _, r = _login_form(web, "olive", PASSWORD, f"/admin/lists/{LIST}/members?page=1")
    assert r.headers["Location"] == f"/admin/lists/{LIST}/members?page=1"


def _held_id(web: Web, s, subject: str) -> str:  # type: ignore[no-untyped-def]
    web.send("stranger@example.net", LIST, post("stranger@example.net", subject))
    wait_for(lambda: subject in web.get(f"/admin/lists/{LIST}/held", s).text)
    page = web.get(f"/admin/lists/{LIST}/held", s).text
    m = re.search(rf'/held/(\d+)">{re.escape(subject)}<', page)
    assert m, page
    return m.group(1)


def test_moderator_approves_a_held_post_and_members_get_it(web: Web) -> None:
    s = web.login("mo")
    held = _held_id(web, s, "please let me in")
    page = web.get(f"/admin/lists/{LIST}/held/{held}", s)
    assert "post by non-member" in page.text or "non-member" in page.text
    assert "Hello physics." in page.text
    r = s.post(f"{web.url}/admin/lists/{LIST}/held/{held}/approve",
               data={"csrf_token": csrf_of(page.text)}, timeout=60)
    assert r.status_code == 200 and "approved; queued as" in r.text
    wait_for(lambda: all(web.mails_to(m) for m in MEMBERS))
    assert web.mails_to(MEMBERS[1])[0]["Subject"] == "please let me in"
    assert "please let me in" not in web.get(f"/admin/lists/{LIST}/held", s).text


def test_reject_tells_the_sender_and_discard_does_not(web: Web) -> None:
    s = web.login("olive")
    first = _held_id(web, s, "reject me")
    second = _held_id(web, s, "discard me")
    token = csrf_of(web.get(f"/admin/lists/{LIST}/held", s).text)
    r = s.post(f"{web.url}/admin/lists/{LIST}/held/{first}/reject",
               data={"csrf_token": token, "reason": "off topic"}, timeout=60)
    assert "rejected, sender told" in r.text
    r = s.post(f"{web.url}/admin/lists/{LIST}/held/{second}/discard",
               data={"csrf_token": token}, timeout=60)
    assert "discarded" in r.text
    wait_for(lambda: any("rejected" in (m["Subject"] or "")
                         for m in web.mails_to("stranger@example.net")))
    told = [m for m in web.mails_to("stranger@example.net") if "rejected" in m["Subject"]]
    assert len(told) == 1 and "off topic" in told[0].get_content()
    assert not [m for m in MEMBERS if web.mails_to(m)]


def test_held_posts_of_one_list_are_not_reachable_from_another(web: Web) -> None:
    mod = web.login("mo")
    held = _held_id(web, mod, "not yours")
    cher = web.login("cher")  # owner of OTHER only
    assert web.get(f"/admin/lists/{LIST}/held", cher).status_code == 403
    assert web.get(f"/admin/lists/{OTHER}/held/{held}", cher).status_code == 404
    token = csrf_of(web.get("/admin/", cher).text)
    r = cher.post(f"{web.url}/admin/lists/{OTHER}/held/{held}/discard",
                  data={"csrf_token": token}, timeout=30)
    assert r.status_code == 404
    assert "not yours" in web.get(f"/admin/lists/{LIST}/held", mod).text


def test_members_page_search_and_pages(web: Web) -> None:
    lines = "\n".join(f"Person {i:03} <p{i:03}@example.com>" for i in range(150))
    (web.site / "many.txt").write_text(lines + "\nTom & <Jerry> <tj@example.com>\n")
    ok("members", "add", LIST, "--file", str(web.site / "many.txt"), site=web.site)
    s = web.login("olive")
    first = web.get(f"/admin/lists/{LIST}/members", s).text
    assert "153 members" in first and "page 1 of 2" in first
    assert "ann@example.net" in first and "p149@example.com" not in first
    second = web.get(f"/admin/lists/{LIST}/members" + _link(first, "next"), s).text
    shown = re.findall(r"<tr><td>([^<]+@[^<]+)</td>", second)
    assert shown == [f"p{i:03}@example.com" for i in range(98, 150)] + [
        "tj@example.com"]  # the rest, in order
    assert "<td>Tom &amp; &lt;Jerry&gt;</td>" in second  # a name is text, never markup
    assert 'rel="next"' not in second
    back = web.get(f"/admin/lists/{LIST}/members" + _link(second, "prev"), s).text
    assert re.findall(r"<tr><td>([^<]+@[^<]+)</td>", back)[:3] == [
        "ann@example.net", "bob@example.org", "p000@example.com"]
    assert web.get(f"/admin/lists/{LIST}/members", s, params={"page": 2}).text.count(
        "p149@example.com") == 1  # old ?page= links still work
    found = web.get(f"/admin/lists/{LIST}/members", s, params={"q": "person 04"}).text
    assert "10 members matching" in found and "p045@example.com" in found
    found = web.get(f"/admin/lists/{LIST}/members", s, params={"q": "9@EXAMPLE.c"}).text
    assert re.findall(r"<tr><td>([^<]+@[^<]+)</td>", found) == [
        f"p{i:02}9@example.com" for i in range(15)]  # part of an address, any case
    # a member added since: the index is behind, so the search is handed to a thread
    ok("members", "add", LIST, "p999@example.com", site=web.site)
    found = web.get(f"/admin/lists/{LIST}/members", s, params={"q": "9@EXAMPLE.c"}).text
    assert "p999@example.com" in found and "16 members matching" in found


def _link(page: str, rel: str) -> str:
    """The href of the page's link with ``rel`` (next, prev), unescaped."""
    import html

    m = re.search(rf'<a href="([^"]+)" rel="{rel}">', page)
    assert m, f"no {rel} link"
    return html.unescape(m.group(1))


def test_bulk_add_reports_each_line_and_adds_nobody_on_a_bad_line(web: Web) -> None:
    s = web.login("olive")
    token = csrf_of(web.get(f"/admin/lists/{LIST}/members", s).text)
    r = s.post(f"{web.url}/admin/lists/{LIST}/members/add", data={
        "csrf_token": token, "text": "new1@example.com\nnot an address\nCy <cy@example.com>\n"},
        timeout=30)
    assert r.status_code == 400
    assert re.search(r"line:2: .*not an address", r.text), r.text
    assert "nobody was added" in r.text
    assert "new1@example.com" not in ok("members", "list", LIST, site=web.site)
    r = s.post(f"{web.url}/admin/lists/{LIST}/members/add", data={
        "csrf_token": token, "text": "new1@example.com\nCy <cy@example.com>\nann@example.net"},
        timeout=30)
    assert r.status_code == 200
    assert "+ new1@example.com: added" in r.text and "= ann@example.net: already a member" in r.text
    r = s.post(f"{web.url}/admin/lists/{LIST}/members/remove", data={
        "csrf_token": token, "text": "new1@example.com\nnobody@example.com"}, timeout=30)
    assert "- new1@example.com: removed" in r.text
    assert "? nobody@example.com: not a member" in r.text
    listing = ok("members", "list", LIST, site=web.site)
    assert "cy@example.com" in listing and "new1@example.com" not in listing


def test_settings_form_names_the_bad_field_and_changes_nothing(web: Web) -> None:
    s = web.login("olive")
    page = web.get(f"/admin/lists/{LIST}/settings", s).text
    values = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', page))
    values["csrf_token"] = csrf_of(page)
    values["description"] = "Physics talk"
    bad = {**values, "posting_policy": "memberz", "max_recipients": "-3",
           "subject_prefix": "[phys] "}
    r = s.post(f"{web.url}/admin/lists/{LIST}/settings", data=bad, timeout=30)
    assert r.status_code == 400
    assert "posting_policy: &#39;memberz&#39; is not one of" in r.text
    assert "max_recipients" in r.text and "Nothing was changed" in r.text
    before = json.loads(ok("lists", "show", LIST, "--json", site=web.site))
    assert before["posting_policy"] == "members" and before["subject_prefix"] == ""
    good = {**values, "posting_policy": "moderated", "subject_prefix": "[phys] "}
    r = s.post(f"{web.url}/admin/lists/{LIST}/settings", data=good, timeout=30)
    assert r.status_code == 200 and "Saved." in r.text
    after = json.loads(ok("lists", "show", LIST, "--json", site=web.site))
    assert after["posting_policy"] == "moderated" and after["subject_prefix"] == "[phys] "
    assert after["description"] == "Physics talk"


def test_moderators_and_other_owners_get_403(web: Web) -> None:
    mo = web.login("mo")
    assert web.get(f"/admin/lists/{LIST}/members", mo).status_code == 403
    assert web.get(f"/admin/lists/{LIST}/settings", mo).status_code == 403
    assert web.get(f"/admin/lists/{LIST}/held", mo).status_code == 200
    assert web.get("/admin/site", mo).status_code == 403
    cher = web.login("cher")
    assert web.get(f"/admin/lists/{LIST}/members", cher).status_code == 403
    home = web.get("/admin/", cher).text
    assert OTHER in home and LIST not in home


def test_site_admin_quiesces_with_confirmation_and_the_web_stays_up(web: Web) -> None:
    s = web.login("root")
    page = web.get("/admin/site", s)
    assert page.status_code == 200 and "accepting and delivering mail" in page.text
    token = csrf_of(page.text)
    r = s.post(f"{web.url}/admin/site/quiescent", data={"csrf_token": token, "on": "1"},
               timeout=30)
    assert "tick the box" in r.text
    assert "quiescent" not in ok("status", site=web.site).lower().split("mode:")[1][:20]
    r = s.post(f"{web.url}/admin/site/quiescent", data={
        "csrf_token": token, "on": "1", "confirm": "yes", "reason": "restore check"},
        timeout=30)
    assert "QUIESCENT" in r.text and "restore check" in r.text
    assert "QUIESCENT (restore check)" in ok("status", site=web.site)
    # quiescent: the pages an operator checks after a restore still work
    assert web.get(f"/lists/{LIST}/").status_code == 200
    assert web.get(f"/admin/lists/{LIST}/members", s).status_code == 200
    r = s.post(f"{web.url}/admin/site/quiescent", data={
        "csrf_token": token, "on": "0", "confirm": "yes"}, timeout=30)
    assert "resumed" in r.text


def test_site_admin_creates_and_deletes_a_list_and_an_account(web: Web) -> None:
    s = web.login("root")
    token = csrf_of(web.get("/admin/site/lists", s).text)
    r = s.post(f"{web.url}/admin/site/lists", data={
        "csrf_token": token, "address": "bio@inf.example.ac.uk", "owner": "b@example.net",
        "description": "Biology"}, timeout=30)
    assert "bio@inf.example.ac.uk created" in r.text
    assert "bio@inf.example.ac.uk" in ok("lists", "list", site=web.site)
    r = s.post(f"{web.url}/admin/site/lists", data={
        "csrf_token": token, "address": "bio@elsewhere.example", "owner": ""}, timeout=30)
    assert r.status_code == 400 and "not a domain of this site" in r.text
    r = s.post(f"{web.url}/admin/site/lists/delete", data={
        "csrf_token": token, "address": "bio@inf.example.ac.uk", "confirm": "bio"}, timeout=30)
    assert r.status_code == 400
    r = s.post(f"{web.url}/admin/site/lists/delete", data={
        "csrf_token": token, "address": "bio@inf.example.ac.uk",
        "confirm": "bio@inf.example.ac.uk"}, timeout=30)
    assert "deleted" in r.text
    r = s.post(f"{web.url}/admin/site/accounts", data={
        "csrf_token": token, "login": "newbie", "email": "n@example.net",
        "password": "password"}, timeout=30)
    assert r.status_code == 400 and "password refused" in r.text
    r = s.post(f"{web.url}/admin/site/accounts", data={
        "csrf_token": token, "login": "newbie", "email": "n@example.net",
        "password": PASSWORD}, timeout=30)
    assert "account newbie created" in r.text
    assert "newbie" in ok("web-admin", "list", site=web.site)


def test_password_reset_by_mail(web: Web) -> None:
    s = web.http()
    page = s.get(web.url + "/admin/reset", timeout=30)
    r = s.post(web.url + "/admin/reset", data={"csrf_token": csrf_of(page.text),
                                               "who": "olive"}, timeout=30)
    assert "If an account has that login" in r.text
    wait_for(lambda: web.mails_to("owner@example.net"))
    (mail,) = web.mails_to("owner@example.net")
    m = re.search(r"/admin/reset/([A-Za-z0-9_-]+)", mail.get_content())
    assert m
    form = s.get(web.url + m.group(0), timeout=30)
    new = "a brand new long passphrase"
    r = s.post(web.url + m.group(0), data={"csrf_token": csrf_of(form.text),
                                           "password": new}, allow_redirects=False, timeout=30)
    assert r.status_code == 303
    _, r = _login_form(web, "olive", new)
    assert r.status_code == 303
    _, r = _login_form(web, "olive", PASSWORD)
    assert r.status_code == 401
    r = s.post(web.url + m.group(0), data={"csrf_token": csrf_of(form.text),
                                           "password": "another long passphrase"},
               allow_redirects=False, timeout=30)
    assert r.status_code == 404  # used once


def test_a_list_made_again_has_its_new_owners_only(web: Web) -> None:
    """The web keeps a list's settings (owners included) while its counter stays; a list
    deleted and made again under the same name may get the same id on SQLite and starts
    its counter again, and must not keep the old list's owners."""
    cher = web.login("cher")
    assert web.get(f"/admin/lists/{OTHER}/members", cher).status_code == 200
    ok("lists", "delete", OTHER, site=web.site)
    ok("lists", "create", OTHER, "--owner", "owner@example.net", site=web.site)
    assert web.get(f"/admin/lists/{OTHER}/members", cher).status_code == 403
    assert web.get(f"/admin/lists/{OTHER}/members", web.login("olive")).status_code == 200
