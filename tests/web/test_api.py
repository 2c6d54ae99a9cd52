"""The REST API through a real server: bearer tokens with scopes, revocable; an owner's
token reaches the owner's lists only; members, settings, held posts, the queue, verify
(the same lines as ``postroom verify``) and quiescent mode."""

from __future__ import annotations

import os
import subprocess

import requests

from tests.conftest import SENDMAIL, run
from tests.web.conftest import LIST, MEMBERS, OTHER, Web, ok, post, wait_for


def token(web: Web, login: str, *scopes: str) -> dict[str, str]:
    args = [a for s in scopes for a in ("--scope", s)]
    value = ok("web-admin", "token", login, *args, "--name", "test", site=web.site).strip()
    assert value.startswith("pr_")
    return {"Authorization": f"Bearer {value}"}


def api(web: Web, method: str, path: str, headers: dict[str, str] | None = None,
        **kw: object) -> requests.Response:
    return requests.request(method, f"{web.url}/api/v1{path}", headers=headers or {},
                            timeout=60, **kw)  # type: ignore[arg-type]


def test_no_token_bad_token_wrong_scope(web: Web) -> None:
    r = api(web, "GET", "/lists")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert api(web, "GET", "/lists", {"Authorization": "Bearer pr_nope"}).status_code == 401
    read = token(web, "olive", "read")
    assert api(web, "GET", "/lists", read).json() == [{"address": LIST, "role": "owner"}]
    r = api(web, "POST", f"/lists/{LIST}/members", read, json={"members": ["x@example.com"]})
    assert r.status_code == 403 and "lists" in r.json()["detail"]


def test_revoked_tokens_stop_working(web: Web) -> None:
    h = token(web, "olive", "read")
    assert api(web, "GET", "/lists", h).status_code == 200
    (line,) = ok("web-admin", "tokens", "olive", site=web.site).splitlines()
    ok("web-admin", "revoke", line.split("\t")[0], site=web.site)
    assert api(web, "GET", "/lists", h).status_code == 401


def test_owner_token_reaches_only_the_owners_lists(web: Web) -> None:
    h = token(web, "cher", "read", "lists")
    assert api(web, "GET", f"/lists/{OTHER}", h).status_code == 200
    assert api(web, "GET", f"/lists/{LIST}", h).status_code == 403
    assert api(web, "GET", f"/lists/{LIST}/members", h).status_code == 403
    assert api(web, "GET", "/queue", token(web, "cher", "queue")).status_code == 403


def test_members_and_settings(web: Web) -> None:
    h = token(web, "olive", "read", "lists")
    page = api(web, "GET", f"/lists/{LIST}/members", h).json()
    assert page["total"] == 2 and [m["address"] for m in page["members"]] == MEMBERS
    r = api(web, "POST", f"/lists/{LIST}/members", h,
            json={"members": ["Cy <cy@example.com>", "ann@example.net"]})
    assert r.json() == {"added": ["cy@example.com"], "existing": ["ann@example.net"]}
    r = api(web, "POST", f"/lists/{LIST}/members", h, json={"members": ["bad address"]})
    assert r.status_code == 400 and "member:1" in r.json()["detail"]
    found = api(web, "GET", f"/lists/{LIST}/members", h, params={"search": "cy"}).json()
    assert found["members"][0]["display_name"] == "Cy"
    r = api(web, "DELETE", f"/lists/{LIST}/members/cy@example.com", h)
    assert r.json() == {"removed": ["cy@example.com"], "not_members": []}
    r = api(web, "PATCH", f"/lists/{LIST}", h, json={"settings": {"posting_policy": "nope"}})
    assert r.status_code == 400 and "posting_policy" in r.json()["detail"]
    r = api(web, "PATCH", f"/lists/{LIST}", h, json={"settings": {"max_recipients": "20"}})
    assert r.status_code == 200 and r.json()["max_recipients"] == 20


def test_held_posts_by_api(web: Web) -> None:
    h = token(web, "mo", "read", "lists")
    web.send("stranger@example.net", LIST, post("stranger@example.net", "api held"))
    wait_for(lambda: api(web, "GET", "/held", h).json())
    (held,) = api(web, "GET", "/held", h).json()
    assert held["list"] == LIST and held["subject"] == "api held"
    other = token(web, "cher", "read", "lists")
    assert api(web, "GET", "/held", other).json() == []
    r = api(web, "POST", f"/lists/{OTHER}/held/{held['id']}/approve", other, json={})
    assert r.status_code == 404
    r = api(web, "POST", f"/lists/{LIST}/held/{held['id']}/approve", h, json={})
    assert r.status_code == 200 and r.json()["said"].startswith("approved; queued as")
    wait_for(lambda: all(web.mails_to(m) for m in MEMBERS))


def test_verify_answers_as_the_command_does(web: Web) -> None:
    h = token(web, "olive", "read")
    addresses = ["postmaster", LIST, "nosuch@inf.example.ac.uk", "someone@example.org"]
    cli = run("verify", *addresses, site=web.site)
    r = api(web, "GET", "/verify", h, params=[("address", a) for a in addresses]).json()
    assert r["lines"] == cli.stdout.splitlines()
    assert r["exit_code"] == cli.returncode == 67 and r["deliverable"] is False


def test_queue_hold_release_flush_and_quiescent(web: Web) -> None:
    h = token(web, "root", "read", "queue", "site")
    r = api(web, "PUT", "/quiescent", h, json={"quiescent": True, "reason": "api test"})
    assert r.json() == {"quiescent": True, "reason": "api test"}
    assert "QUIESCENT (api test)" in ok("status", site=web.site)
    # while quiescent nothing is delivered: a message submitted now waits in the queue
    sent = subprocess.run([SENDMAIL, "-f", "ann@inf.example.ac.uk", "someone@example.org"],
                          input=b"Subject: waiting\n\nhello\n", capture_output=True,
                          env={**os.environ, "POSTROOM_SITE": str(web.site)}, timeout=60)
    assert sent.returncode == 0, sent.stderr
    (item,) = api(web, "GET", "/queue", h).json()
    qid = item["id"]
    assert item["recipients"][0]["address"] == "someone@example.org"
    assert api(web, "POST", f"/queue/{qid}/hold", h).json() == {"said": f"{qid}: held"}
    assert api(web, "GET", f"/queue/{qid}", h).json()["held"] is True
    assert f"{qid}!" in ok("queue", site=web.site)  # the command sees the same queue
    assert api(web, "POST", f"/queue/{qid}/release", h).status_code == 200
    assert api(web, "GET", f"/queue/{qid}", h).json()["held"] is False
    assert api(web, "POST", "/queue/NOSUCHID00000/hold", h).status_code == 404
    assert api(web, "GET", "/queue/..%2F..%2Fpostroom.toml", h).status_code in (404, 422)
    flushed = api(web, "POST", "/queue/flush", h, json={})
    assert flushed.status_code == 200 and flushed.json()["server_told"] is True
    r = api(web, "PUT", "/quiescent", h, json={"quiescent": False})
    assert r.json()["quiescent"] is False
    wait_for(lambda: web.mails_to("someone@example.org"))
    wait_for(lambda: api(web, "GET", "/queue", h).json() == [])


def test_openapi_schema_is_served(web: Web) -> None:
    schema = requests.get(f"{web.url}/api/v1/openapi.json", timeout=30).json()
    assert "/api/v1/verify" in schema["paths"] and "/api/v1/queue/flush" in schema["paths"]
    assert not [p for p in schema["paths"] if not p.startswith("/api/v1/")]
    assert requests.get(f"{web.url}/api/docs", timeout=30).status_code == 200
