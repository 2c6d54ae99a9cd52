"""The public pages through a real ``postroom serve``: the index, a list's page, web
sign-up with the mail confirmation (and its limits), leaving, and RFC 8058 one-click
unsubscribe with the link each member's copy of a post carries."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

from tests.web.conftest import (
    BASE_URL,
    LIST,
    MEMBERS,
    Web,
    csrf_of,
    form_token_of,
    ok,
    post,
    wait_for,
)


def test_index_lists_the_lists_with_their_descriptions_escaped(web: Web) -> None:
    r = web.get("/lists/")
    assert r.status_code == 200
    assert f'href="/lists/{LIST}/"' in r.text
    assert "Physics &lt;b&gt;talk&lt;/b&gt;" in r.text and "<b>talk" not in r.text
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]


def test_unknown_list_is_404(web: Web) -> None:
    assert web.get("/lists/nosuch@inf.example.ac.uk/").status_code == 404


def _subscribe(web: Web, address: str, wait: float = 1.1) -> str:
    s = web.http()
    page = s.get(f"{web.url}/lists/{LIST}/", timeout=30)
    time.sleep(wait)
    r = s.post(f"{web.url}/lists/{LIST}/join", data={
        "email": address, "csrf_token": csrf_of(page.text),
        "form_token": form_token_of(page.text)}, timeout=30)
    return f"{r.status_code} {r.text}"


def _confirmation_link(web: Web, address: str) -> str:
    wait_for(lambda: web.mails_to(address))
    (ask,) = web.mails_to(address)
    text = ask.get_content()
    assert re.fullmatch(r"physics-confirm\+[0-9a-z]+@inf\.example\.ac\.uk", ask["Reply-To"])
    m = re.search(re.escape(BASE_URL) + r"(/lists/\S+/confirm/[0-9a-z]+)", text)
    assert m, text
    return m.group(1)


def test_subscribe_on_the_web_and_follow_the_link_in_the_mail(web: Web) -> None:
    said = _subscribe(web, "dee@example.net")
    assert said.startswith("200") and "A confirmation has been sent to dee@example.net" in said
    assert "dee@example.net" not in ok("members", "list", LIST, site=web.site)
    path = _confirmation_link(web, "dee@example.net")
    s = web.http()
    page = s.get(web.url + path, timeout=30)
    assert page.status_code == 200 and "dee@example.net" in page.text
    assert "dee@example.net" not in ok("members", "list", LIST, site=web.site)  # GET: nothing
    done = s.post(web.url + path, data={"csrf_token": csrf_of(page.text)}, timeout=30)
    assert done.status_code == 200
    assert "dee@example.net is now subscribed" in done.text
    assert "dee@example.net" in ok("members", "list", LIST, site=web.site)
    wait_for(lambda: any(m["Subject"] == f"Welcome to {LIST}"
                         for m in web.mails_to("dee@example.net")))
    again = s.post(web.url + path, data={"csrf_token": csrf_of(page.text)}, timeout=30)
    assert again.status_code == 404  # used up


def test_a_form_sent_back_at_once_is_refused(web: Web) -> None:
    said = _subscribe(web, "robot@example.net", wait=0)
    assert said.startswith("400") and "quicker than a person" in said
    time.sleep(0.5)
    assert not web.mails_to("robot@example.net")


def test_a_forged_form_token_and_a_missing_csrf_token_are_refused(web: Web) -> None:
    s = web.http()
    page = s.get(f"{web.url}/lists/{LIST}/", timeout=30)
    r = s.post(f"{web.url}/lists/{LIST}/join", data={
        "email": "eve@example.net", "csrf_token": csrf_of(page.text),
        "form_token": "1.deadbeef"}, timeout=30)
    assert r.status_code == 400 and "not valid" in r.text
    r = s.post(f"{web.url}/lists/{LIST}/join", data={
        "email": "eve@example.net", "form_token": form_token_of(page.text)}, timeout=30)
    assert r.status_code == 403
    other = web.http()  # another browser's token does not fit this one
    r = other.post(f"{web.url}/lists/{LIST}/join", data={
        "email": "eve@example.net", "csrf_token": csrf_of(page.text),
        "form_token": form_token_of(page.text)}, timeout=30)
    assert r.status_code == 403


def test_confirmation_mails_to_one_address_are_capped_per_day(web: Web) -> None:
    said = [_subscribe(web, "flood@example.net", wait=1.1) for _ in range(4)]
    assert all(x.startswith("200") for x in said[:3]), said
    assert said[3].startswith("400") and "enough confirmation mails" in said[3]
    time.sleep(1)
    assert len(web.mails_to("flood@example.net")) == 3


def test_web_signup_off_shows_no_form_and_refuses_a_post(web: Web) -> None:
    ok("lists", "set", LIST, "web_signup=false", site=web.site)
    page = web.get(f"/lists/{LIST}/")
    assert "takes no sign-ups on the web" in page.text
    assert f'action="/lists/{LIST}/join"' not in page.text
    said = _subscribe(web, "dee@example.net", wait=0)
    assert said.startswith("403")


def test_leaving_by_the_form_mails_only_members(web: Web) -> None:
    s = web.http()
    page = s.get(f"{web.url}/lists/{LIST}/", timeout=30)
    time.sleep(1.1)
    for who in ("ann@example.net", "stranger@example.net"):
        r = s.post(f"{web.url}/lists/{LIST}/leave", data={
            "email": who, "csrf_token": csrf_of(page.text),
            "form_token": form_token_of(page.text)}, timeout=30)
        assert r.status_code == 200 and f"If {who} is subscribed" in r.text
    wait_for(lambda: web.mails_to("ann@example.net"))
    time.sleep(0.5)
    assert not web.mails_to("stranger@example.net")


def test_one_click_unsubscribe_with_the_link_of_a_members_copy(web: Web) -> None:
    web.send("ann@example.net", LIST, post("ann@example.net", "one click please"))
    wait_for(lambda: web.mails_to("bob@example.org"))
    (copy,) = web.mails_to("bob@example.org")
    assert copy["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    m = re.search(r"<(https?://[^>]+)>", copy["List-Unsubscribe"])
    assert m, copy["List-Unsubscribe"]
    link = urlsplit(m.group(1))
    assert link.geturl().startswith(BASE_URL)
    path = f"{link.path}?{link.query}"
    page = web.get(path)  # a person, or a link scanner: nothing changes
    assert page.status_code == 200 and "Unsubscribe <strong>bob@example.org</strong>" in page.text
    assert "bob@example.org" in ok("members", "list", LIST, site=web.site)
    # a mail client's one-click POST: no cookie, no CSRF token, just the body of RFC 8058
    import requests

    forged = requests.post(web.url + path.replace("token=", "token=x"),
                           data={"List-Unsubscribe": "One-Click"}, timeout=30)
    assert forged.status_code == 403
    assert requests.post(web.url + path, data={}, timeout=30).status_code == 400
    r = requests.post(web.url + path, data={"List-Unsubscribe": "One-Click"}, timeout=30)
    assert r.status_code == 200
    listing = ok("members", "list", LIST, site=web.site)
    assert "bob@example.org" not in listing and MEMBERS[0] in listing
    assert "unsubscribed (one-click)" in web.server.log()
