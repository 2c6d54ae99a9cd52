"""The web service inside ``postroom serve``: in a process of its own when the server
runs intake processes (restarted when it dies, told of reloads), a port in use is one
CannotStart line, /healthz and /metrics for machines, the address export for relays."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

from tests.conftest import POSTROOM
from tests.web.conftest import LIST, ThreadedSink, Web, ok, post, start, wait_for


def test_in_a_process_of_its_own_restarted_when_it_dies(web_site: Path,
                                                        sink: ThreadedSink) -> None:
    web = start(web_site, sink, workers=2)
    try:
        assert requests.get(f"{web.url}/lists/", timeout=30).status_code == 200
        out = subprocess.run(["pgrep", "-f", f"postroom.web --site {web_site}"],
                             capture_output=True, text=True).stdout.split()
        assert len(out) == 2  # [web] processes, sharing the listener
        os.kill(int(out[0]), signal.SIGKILL)
        time.sleep(1)
        wait_for(lambda: _get(f"{web.url}/healthz") == 200, timeout=60)
        assert "web process" in web.server.log() and "starting another" in web.server.log()
        # a reload reaches it: a list created meanwhile and a changed description show
        ok("lists", "set", LIST, "description=Reloaded physics", site=web_site)
        wait_for(lambda: "Reloaded physics" in requests.get(f"{web.url}/lists/",
                                                            timeout=30).text)  # cached 2 s
        ok("reload", site=web_site)
        assert requests.get(f"{web.url}/healthz", timeout=30).status_code == 200
    finally:
        assert web.server.stop() == 0
    assert not subprocess.run(["pgrep", "-f", f"postroom.web --site {web_site}"],
                              capture_output=True).stdout


def _get(url: str) -> int:
    try:
        return requests.get(url, timeout=5).status_code
    except requests.RequestException:
        return 0


def test_a_web_port_in_use_is_one_line(web_site: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        profile = web_site / "postroom.toml"
        profile.write_text(profile.read_text().replace(
            'enabled = true\naddress = "127.0.0.1"\nport = 0',
            f'enabled = true\naddress = "127.0.0.1"\nport = {port}'))
        done = subprocess.run([POSTROOM, "serve", "--site", str(web_site), "--workers", "1"],
                              capture_output=True, text=True, timeout=60)
    finally:
        busy.close()
    assert done.returncode == 69
    assert done.stderr.strip().splitlines() == [
        f"postroom: web: cannot listen on 127.0.0.1:{port}: address already in use "
        f"(change [web] port in {profile})"]
    assert not (web_site / "state/serve.pid").exists()


def test_healthz_and_metrics(web: Web) -> None:
    r = requests.get(f"{web.url}/healthz", timeout=30)
    assert r.json() == {"ok": True, "quiescent": False}
    requests.get(f"{web.url}/lists/", timeout=30)
    web.send("ann@example.net", LIST, post("ann@example.net", "counted"))
    wait_for(lambda: web.mails_to("bob@example.org"))
    text = requests.get(f"{web.url}/metrics", timeout=30).text
    assert 'postroom_web_request_seconds_count{method="GET",route="/lists/"}' in text
    assert 'postroom_messages_accepted_total{proto="ESMTP"}' in text
    assert 'postroom_deliveries_total{mailer="esmtp",result="sent"}' in text
    assert "postroom_queue_messages " in text and "postroom_queue_oldest_age_seconds" in text
    assert "postroom_list_posts_archived_total 1.0" in text


def test_export_is_for_the_relays_or_a_token(web: Web) -> None:
    ok("export-addresses", site=web.site)
    # loopback is not in export_networks here: a token is needed
    r = requests.get(f"{web.url}/export/valid-addresses", timeout=30)
    assert r.status_code == 403
    value = ok("web-admin", "token", "root", "--scope", "export", site=web.site).strip()
    r = requests.get(f"{web.url}/export/valid-addresses",
                     headers={"Authorization": f"Bearer {value}"}, timeout=30)
    assert r.status_code == 200
    assert r.text == (web.site / "export/valid-addresses.txt").read_text()
    assert LIST in r.text.splitlines()
    read_only = ok("web-admin", "token", "root", "--scope", "read", site=web.site).strip()
    r = requests.get(f"{web.url}/export/valid-addresses",
                     headers={"Authorization": f"Bearer {read_only}"}, timeout=30)
    assert r.status_code == 403


def test_page_threads_few_with_sqlite_unless_the_profile_says(example_site: Path) -> None:
    """[web] threads: 0 is 2 threads for the pages with SQLite (see limit_page_threads);
    a number in the profile is taken as it is."""
    import asyncio

    import anyio.to_thread

    from postroom import site as site_mod
    from postroom.web.service import limit_page_threads

    async def tokens(s: site_mod.Site) -> float:
        limit_page_threads(s)
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    assert asyncio.run(tokens(site_mod.load(example_site))) == 2
    profile = example_site / "postroom.toml"
    profile.write_text(profile.read_text().replace("[web]\n", "[web]\nthreads = 7\n", 1))
    assert asyncio.run(tokens(site_mod.load(example_site))) == 7
