"""A real browser (Debian's chromium, driven by Playwright) against a real ``postroom
serve``: browse the lists, subscribe and follow the confirmation link from the mail the
sink caught, log in as the owner, approve a held post and see it delivered, search the
archive, one-click unsubscribe. Screenshots of the main pages go to docs/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.web.conftest import BASE_URL, LIST, MEMBERS, PASSWORD, Web, ok, post, wait_for

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="no /usr/bin/chromium (make deps installs it)")


@pytest.fixture
def page(web: Web) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--headless", "--no-sandbox"])
        context = browser.new_context(viewport={"width": 1100, "height": 800},
                                      java_script_enabled=False)  # pages work without it
        yield context.new_page()
        context.close()
        browser.close()


def shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def in_web(web: Web, link: str) -> str:
    """A link from a mail (the site's base URL) as a URL of the test server."""
    assert link.startswith(BASE_URL), link
    parts = urlsplit(link)
    return f"{web.url}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def test_a_day_on_the_lists_in_a_browser(web: Web, page) -> None:  # type: ignore[no-untyped-def]
    ok("lists", "set", LIST, "description=Talk about physics, seminars and the lab",
       site=web.site)
    web.send("ann@example.net", LIST, post("ann@example.net", "Spectroscopy seminar",
                                           body="The quantum widget is broken again."))
    wait_for(lambda: web.mails_to(MEMBERS[1]))

    # browse
    page.goto(f"{web.url}/lists/")
    assert page.get_by_role("link", name=LIST).is_visible()
    shot(page, "index")
    page.get_by_role("link", name=LIST).click()
    assert page.get_by_role("heading", name=LIST).is_visible()
    shot(page, "list")

    # subscribe, then follow the confirmation link of the mail
    page.get_by_label("Your address").first.fill("dee@example.net")
    page.wait_for_timeout(1200)  # a person takes a moment (signup_min_seconds)
    page.get_by_role("button", name="Subscribe", exact=True).click()
    assert "A confirmation has been sent to dee@example.net" in page.inner_text("main")
    wait_for(lambda: web.mails_to("dee@example.net"))
    (ask,) = web.mails_to("dee@example.net")
    link = re.search(r"https?://\S+/confirm/[0-9a-z]+", ask.get_content())
    assert link
    page.goto(in_web(web, link.group(0)))
    shot(page, "confirm")
    page.get_by_role("button", name="Confirm").click()
    assert "dee@example.net is now subscribed" in page.inner_text("main")
    assert "dee@example.net" in ok("members", "list", LIST, site=web.site)

    # a post by a stranger is held; the owner logs in and approves it
    web.send("stranger@example.net", LIST, post("stranger@example.net", "Visiting talk"))
    page.goto(f"{web.url}/admin/lists/{LIST}/held")
    assert "/admin/login" in page.url
    page.get_by_label("Login").fill("olive")
    page.get_by_label("Password").fill(PASSWORD)
    shot(page, "login")
    page.get_by_role("button", name="Log in").click()
    held = f"{web.url}/admin/lists/{LIST}/held"
    page.wait_for_url(held)  # the login's redirect has loaded before the page is polled
    # goto, not reload: a reload racing the redirect's commit fails with "not attached"
    wait_for(lambda: page.goto(held) and "Visiting talk" in page.inner_text("main"))
    shot(page, "held")
    page.get_by_role("link", name="Visiting talk").click()
    shot(page, "held-post")
    page.get_by_role("button", name="Approve").click()
    assert "approved; queued as" in page.inner_text("main")
    wait_for(lambda: any(m["Subject"] == "Visiting talk" for m in web.mails_to("dee@example.net")))

    # members and settings pages
    page.goto(f"{web.url}/admin/lists/{LIST}/members")
    assert "3 members" in page.inner_text("main")
    shot(page, "members")
    page.goto(f"{web.url}/admin/lists/{LIST}/settings")
    shot(page, "settings")

    # the archive: a month, a post, a search
    page.goto(f"{web.url}/lists/{LIST}/archive/")
    page.get_by_label("Search the archive").fill("quantum")
    page.get_by_role("button", name="Search", exact=True).click()
    assert "1 post found" in page.inner_text("main")
    shot(page, "search")
    page.get_by_role("link", name="Spectroscopy seminar").click()
    assert "The quantum widget is broken again." in page.inner_text("main")
    shot(page, "message")

    # one-click unsubscribe from the link in dee's copy
    (copy,) = [m for m in web.mails_to("dee@example.net") if m["Subject"] == "Visiting talk"]
    url = re.search(r"<(https?://[^>]+/unsubscribe\?[^>]+)>", copy["List-Unsubscribe"])
    assert url
    page.goto(in_web(web, url.group(1)))
    shot(page, "unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    assert "dee@example.net is unsubscribed" in page.inner_text("main")
    assert "dee@example.net" not in ok("members", "list", LIST, site=web.site)


def test_site_status_page(web: Web, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{web.url}/admin/login")
    page.get_by_label("Login").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{web.url}/admin/site")
    assert "accepting and delivering mail" in page.inner_text("main")
    page.get_by_label("Reason").fill("checking after a restore")
    page.get_by_role("checkbox").check()
    page.get_by_role("button", name="Quiesce").click()
    assert "QUIESCENT" in page.inner_text("main")
    shot(page, "site-status")
