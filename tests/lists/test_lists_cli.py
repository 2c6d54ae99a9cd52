"""``postroom lists create|show|set|list|delete`` through the real command, and the engine's
read API (``postroom.lists.store``), on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from postroom.lists import store as lstore
from postroom.lists.model import (
    AddressRule,
    DeliveryMode,
    ListSettings,
    Member,
    PostingPolicy,
    RuleAction,
)
from postroom.lists.settings_text import SETTING_NAMES, parse_settings
from postroom.site import Site
from tests.conftest import run
from tests.lists.conftest import LIST

EX_DATAERR = 65
EX_NOUSER = 67


def _json(site: Site, address: str = "staff") -> dict[str, object]:
    done = run("lists", "show", address, "--json", site=site.home)
    assert done.returncode == 0, done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def test_create_show_set_delete(ready_site: Site) -> None:
    done = run("lists", "create", "staff", "--owner", "Boss@Inf.Example.AC.UK", "--owner",
               "deputy@inf.example.ac.uk", "--description", "All staff", site=ready_site.home)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"list {LIST} created\n"

    data = _json(ready_site)
    assert data["address"] == LIST
    assert data["owners"] == ["boss@inf.example.ac.uk", "deputy@inf.example.ac.uk"]
    assert data["description"] == "All staff"
    defaults = ListSettings("staff", "inf.example.ac.uk")
    assert data["posting_policy"] == defaults.posting_policy.value
    assert data["max_recipients"] == defaults.max_recipients
    assert data["web_signup"] is True

    table = run("lists", "show", LIST, site=ready_site.home).stdout
    for key in SETTING_NAMES:
        assert key in table

    done = run("lists", "set", "staff", "posting_policy=moderated",
               "subject_prefix=[staff] ", "max_message_size=1000000", "web_signup=no",
               "moderators=mod@inf.example.ac.uk,Other@example.org",
               r"address_rules=hold:^.*@spam\.example$,accept:Ok@Example.org",
               "acceptable_aliases=all-staff@inf.example.ac.uk,staff@example.org",
               site=ready_site.home)
    assert done.returncode == 0, done.stderr
    assert f"{LIST}: posting_policy = moderated" in done.stdout
    data = _json(ready_site)
    assert data["posting_policy"] == "moderated"
    assert data["subject_prefix"] == "[staff] "
    assert data["max_message_size"] == 1000000
    assert data["web_signup"] is False
    assert data["moderators"] == ["mod@inf.example.ac.uk", "other@example.org"]
    assert data["address_rules"] == [{"pattern": r"^.*@spam\.example$", "action": "hold"},
                                     {"pattern": "ok@example.org", "action": "accept"}]
    assert data["acceptable_aliases"] == ["all-staff@inf.example.ac.uk", "staff@example.org"]

    assert run("lists", "list", site=ready_site.home).stdout.splitlines()[0] == LIST
    assert run("lists", "delete", LIST, site=ready_site.home).returncode == 0
    done = run("lists", "show", LIST, site=ready_site.home)
    assert done.returncode == EX_NOUSER
    assert "no mailing list staff@inf.example.ac.uk" in done.stderr


def test_set_checks_every_pair_and_changes_nothing_on_a_bad_one(list_site: Site) -> None:
    before = _json(list_site)
    done = run("lists", "set", "staff", "max_recipients=20", "posting_policy=memberz",
               "subject_prefix=" + "x" * 80, "max_message_size=big", "web_signup=maybe",
               "held_expiry_days=0", "owners=not an address", "colour=blue", "name=other",
               "address_rules=keep:x@y.org", "novalue", site=list_site.home)
    assert done.returncode == EX_DATAERR
    err = done.stderr
    assert "posting_policy: 'memberz' is not one of members, moderated, open" in err
    assert "subject_prefix: must be one line of at most 64 characters" in err
    assert "max_message_size: 'big' is not a whole number" in err
    assert "web_signup: 'maybe' is not a yes/no value (fix: web_signup=true" in err
    assert "held_expiry_days: 0 is less than 1" in err
    assert "owners: owner 'not an address'" in err
    assert "colour: no such setting" in err
    assert "name: a list's name cannot be changed" in err
    assert "address_rules: 'keep:x@y.org' is not ACTION:PATTERN" in err
    assert "'novalue': write KEY=VALUE" in err
    assert _json(list_site) == before  # max_recipients=20 was good, and not set either


def test_create_refuses_bad_input(ready_site: Site) -> None:
    done = run("lists", "create", "staff", "--owner", "boss@@x", site=ready_site.home)
    assert done.returncode == EX_DATAERR
    assert "owner 'boss@@x'" in done.stderr
    assert run("lists", "list", site=ready_site.home).stdout == ""


def test_engine_reads(list_site: Site) -> None:
    name, domain = "staff", "inf.example.ac.uk"
    lstore.update_settings(list_site, name, domain, parse_settings([
        "moderators=mod@inf.example.ac.uk", "posting_policy=open",
        "address_rules=reject:^spam@,discard:x@y.org"]))
    lstore.add_members(list_site, name, domain, [
        Member("d@x.org"), Member("a@x.org", "Ann"), Member("c@x.org", delivery_enabled=False),
        Member("b@x.org", mode=DeliveryMode.MIME_DIGEST), Member("e@x.org", moderated=True)])

    target = lstore.target_for(list_site, "Staff-Bounces+bob=x.org@Inf.Example.AC.UK")
    assert target is not None
    assert (target.service, target.detail) == ("bounces", "bob=x.org")
    assert len(target.secret) == 64
    settings = target.settings
    assert settings.address == LIST
    assert settings.posting_policy is PostingPolicy.OPEN
    assert settings.owners == ["boss@inf.example.ac.uk"]
    assert settings.moderators == ["mod@inf.example.ac.uk"]
    assert settings.address_rules == [AddressRule("^spam@", RuleAction.REJECT),
                                      AddressRule("x@y.org", RuleAction.DISCARD)]
    for address, service in ((LIST, ""), (f"staff-request@{domain}", "request"),
                             (f"staff-confirm+abc@{domain}", "confirm"),
                             (f"staff-owner@{domain}", "owner")):
        got = lstore.target_for(list_site, address)
        assert got is not None and got.service == service, address
    assert lstore.settings_for(list_site, f"staff-join@{domain}") == settings
    assert lstore.settings_for(list_site, "nosuch@inf.example.ac.uk") is None
    assert lstore.settings_for(list_site, "staff@example.org") is None

    assert lstore.member(list_site, LIST, "A@X.org") == Member("a@x.org", "Ann")
    assert lstore.member(list_site, LIST, "zz@x.org") is None
    pages = list(lstore.members_for_delivery(list_site, LIST, batch=2))
    assert [[m.address for m in p] for p in pages] == [["a@x.org", "d@x.org"], ["e@x.org"]]
    roles = lstore.roles(list_site, LIST)
    assert roles is not None
    assert roles.owners == ("boss@inf.example.ac.uk",)
    assert roles.of("MOD@inf.example.ac.uk") == {"moderator"}
    assert lstore.roles(list_site, "nosuch@inf.example.ac.uk") is None
