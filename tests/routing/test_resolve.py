"""The resolver, table-driven over a small site written by each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom import runtime
from postroom.types import Route

PROFILE = """\
[site]
hostname = "mail.dept.example"
domains = ["dept.example"]
host_names = ["lists.dept.example"]
hosted_domains = ["hosted.example", "catch.example"]
{site_extra}
[maps]
aliases = ["maps/aliases"]
forwards = ["maps/forwards"]
virtusertable = ["maps/virtusertable"]
mailertable = ["maps/mailertable"]
local_users = ["maps/local-users"]
{maps_extra}
[routing]
{routing}
"""

ALIASES = """\
postmaster: root
root: \\root, alice
alice: alice@staff.example
loop1: loop2
loop2: loop1
selfish: selfish, bob@far.example
twice: alice, alice@staff.example, root
prog: "|/usr/bin/prog arg"
file: /var/spool/copy.mbox
inc: :include:maps/inc.list
deep0: deep1
"""

FORWARDS = """\
carol: carol@staff.example
alice: alice@elsewhere.example
"""

VIRTUAL = """\
known@hosted.example       carol
bounce@hosted.example      error:5.1.1:550 Gone to pastures new
sales+*@hosted.example     bob
@hosted.example            error:nouser No such user
@catch.example             %1@staff.example
"""

MAILERTABLE = """\
staff.example   esmtp:[smtp.staff.example]
.sub.example    relay:[relay.sub.example]
blocked.example error:5.7.1:550 We do not send there
"""


def make_site(tmp_path: Path, *, site_extra: str = "", maps_extra: str = "",
              routing: str = "", aliases_extra: str = "") -> runtime.Runtime:
    (tmp_path / "maps").mkdir(exist_ok=True)
    (tmp_path / "postroom.toml").write_text(PROFILE.format(
        site_extra=site_extra, maps_extra=maps_extra, routing=routing))
    (tmp_path / "maps/aliases").write_text(ALIASES + aliases_extra)
    (tmp_path / "maps/forwards").write_text(FORWARDS)
    (tmp_path / "maps/virtusertable").write_text(VIRTUAL)
    (tmp_path / "maps/mailertable").write_text(MAILERTABLE)
    (tmp_path / "maps/local-users").write_text("root\nbob\nSarah\n")
    (tmp_path / "maps/inc.list").write_text("# members\nbob, carol\nouter@far.example\n")
    return runtime.build(tmp_path)


def lines(rt: runtime.Runtime, address: str) -> list[str]:
    return [r.sendmail_line() for r in rt.resolver.resolve(address).routes]


STAFF = "host [smtp.staff.example]"

CASES = [
    ("bob", ["bob... deliverable: mailer local, user bob"]),
    ("bob@dept.example", ["bob@dept.example... deliverable: mailer local, user bob"]),
    ("BOB@DEPT.EXAMPLE", ["BOB@DEPT.EXAMPLE... deliverable: mailer local, user bob"]),
    ("bob@lists.dept.example", ["bob@lists.dept.example... deliverable: mailer local, user bob"]),
    ("carol", [f"carol@staff.example... deliverable: mailer esmtp, {STAFF}, "
               "user carol@staff.example"]),
    # aliases come before forwards (profile order)
    ("alice", [f"alice@staff.example... deliverable: mailer esmtp, {STAFF}, "
               "user alice@staff.example"]),
    ("postmaster", ["root... deliverable: mailer local, user root",
                    f"alice@staff.example... deliverable: mailer esmtp, {STAFF}, "
                    "user alice@staff.example"]),
    ("prog", ['"|/usr/bin/prog arg"... deliverable: mailer prog, user "|/usr/bin/prog arg"']),
    ("file", ["/var/spool/copy.mbox... deliverable: mailer file, user /var/spool/copy.mbox"]),
    ("inc", ["bob... deliverable: mailer local, user bob",
             f"carol@staff.example... deliverable: mailer esmtp, {STAFF}, "
             "user carol@staff.example",
             "outer@far.example... deliverable: mailer esmtp, host far.example, "
             "user outer@far.example"]),
    ("nosuch", ["nosuch... No such user"]),
    # duplicates suppressed: alice twice and root once
    ("twice", [f"alice@staff.example... deliverable: mailer esmtp, {STAFF}, "
               "user alice@staff.example",
               "root... deliverable: mailer local, user root"]),
    # self reference: delivered locally? selfish is no local user -> loop broken, bob still gets it
    ("selfish", ["selfish... Aliasing/forwarding loop broken",
                 "bob@far.example... deliverable: mailer esmtp, host far.example, "
                 "user bob@far.example"]),
    ("loop1", ["loop1... Aliasing/forwarding loop broken"]),
    # hosted domains: virtusertable only
    ("known@hosted.example", [f"carol@staff.example... deliverable: mailer esmtp, {STAFF}, "
                              "user carol@staff.example"]),
    ("other@hosted.example", ["other@hosted.example... No such user"]),
    ("bounce@hosted.example", ["bounce@hosted.example... Gone to pastures new"]),
    ("sales+eu@hosted.example", ["bob... deliverable: mailer local, user bob"]),
    ("anyone@catch.example", [f"anyone@staff.example... deliverable: mailer esmtp, {STAFF}, "
                              "user anyone@staff.example"]),
    # +detail: falls back to the base name
    ("bob+lists", ["bob+lists... deliverable: mailer local, user bob"]),
    ("carol+x@dept.example", [f"carol@staff.example... deliverable: mailer esmtp, {STAFF}, "
                              "user carol@staff.example"]),
    # mailertable: exact, subdomain (leading dot), error; MX otherwise; case of remote kept
    ("x@a.sub.example", ["x@a.sub.example... deliverable: mailer relay, "
                         "host [relay.sub.example], user x@a.sub.example"]),
    ("x@sub.example", ["x@sub.example... deliverable: mailer esmtp, host sub.example, "
                       "user x@sub.example"]),
    ("x@blocked.example", ["x@blocked.example... We do not send there"]),
    ("Mixed.Case@Far.Example", ["Mixed.Case@Far.Example... deliverable: mailer esmtp, "
                                "host far.example, user Mixed.Case@far.example"]),
]


@pytest.mark.parametrize(("address", "expected"), CASES, ids=[c[0] for c in CASES])
def test_resolve(tmp_path: Path, address: str, expected: list[str]) -> None:
    assert lines(make_site(tmp_path), address) == expected


@pytest.mark.parametrize("address", [
    "user%far.example@dept.example",        # % hack
    "far.example!user@dept.example",        # bang path
    "@dept.example:user@far.example",       # source route
    '"user@far.example"@dept.example',      # quoted @
    "user%far.example",                     # % hack without domain
])
def test_relay_tricks_never_route_anywhere(tmp_path: Path, address: str) -> None:
    res = make_site(tmp_path).resolver.resolve(address)
    assert [r.mailer for r in res.routes] == ["error"]
    assert res.routes[0].code == 553
    assert "not accepted" in res.routes[0].text


def test_case_sensitive_local_parts(tmp_path: Path) -> None:
    rt = make_site(tmp_path, routing="local_parts_case_sensitive = true")
    assert lines(rt, "Sarah") == ["Sarah... deliverable: mailer local, user Sarah"]
    assert lines(rt, "sarah") == ["sarah... No such user"]
    rt2 = make_site(tmp_path)
    assert lines(rt2, "sarah") == ["sarah... deliverable: mailer local, user sarah"]


def test_detail_handling_can_be_turned_off(tmp_path: Path) -> None:
    rt = make_site(tmp_path, routing='detail_separator = ""')
    assert lines(rt, "bob+lists") == ["bob+lists... No such user"]


def test_lookup_order_from_profile(tmp_path: Path) -> None:
    rt = make_site(tmp_path, maps_extra='order = ["forwards", "aliases", "local"]')
    assert lines(rt, "alice") == [
        "alice@elsewhere.example... deliverable: mailer esmtp, host elsewhere.example, "
        "user alice@elsewhere.example"]


def test_alias_depth_limit(tmp_path: Path) -> None:
    chain = "".join(f"deep{i}: deep{i + 1}\n" for i in range(1, 40))
    rt = make_site(tmp_path, aliases_extra=chain + "deep40: bob\n",
                   routing="max_alias_depth = 10")
    res = rt.resolver.resolve("deep0")
    assert [(r.mailer, r.code) for r in res.routes] == [("error", 554)]


def test_smart_host_and_null_client(tmp_path: Path) -> None:
    rt = make_site(tmp_path, routing='smart_host = "[hub.dept.example]"')
    assert lines(rt, "x@far.example") == [
        "x@far.example... deliverable: mailer relay, host [hub.dept.example], user x@far.example"]
    rt = make_site(tmp_path, site_extra='role = "null-client"\nhub = "[mail.dept.example]"')
    assert lines(rt, "bob") == [
        "bob... deliverable: mailer relay, host [mail.dept.example], user bob@dept.example"]


def test_explain_names_map_file_and_line(tmp_path: Path) -> None:
    rt = make_site(tmp_path)
    res = rt.resolver.resolve("postmaster", explain=True)
    text = "\n".join(s.text for s in res.steps)
    assert f"aliases {tmp_path}/maps/aliases:1: postmaster -> root" in text
    assert f"aliases {tmp_path}/maps/aliases:2: root -> \\root, alice" in text
    assert f"mailertable {tmp_path}/maps/mailertable:1: staff.example" in text


class FakeLists:
    """A ListSource with one list, as the store provides."""

    def lookup(self, local: str, domain: str) -> str | None:
        if local in ("team", "team-request"):
            return f"{local}@lists.dept.example"
        return None

    def __len__(self) -> int:
        return 1


def test_lists_are_one_more_source(tmp_path: Path) -> None:
    rt = make_site(tmp_path, aliases_extra="postie: team\n")
    from postroom.routing.resolve import Resolver
    resolver = Resolver(rt.site, rt.maps, FakeLists())
    got = resolver.resolve("postie").routes
    assert got == [Route("list", "", "team@lists.dept.example", "team")]
    assert resolver.resolve("team-request@lists.dept.example").routes[0].mailer == "list"


def test_a_remembered_target_route_is_the_route_of_the_long_way(tmp_path: Path) -> None:
    """A target outside our domains is resolved once and its route remembered: asking again,
    with --explain after, or at the depth limit gives what the first, long way gave."""
    rt = make_site(tmp_path, aliases_extra="".join(
        f"hop{i}: hop{i + 1}\n" for i in range(10)) + "hop10: far@a.sub.example\n"
        "near: far@a.sub.example\n", routing="max_alias_depth = 10")
    first = lines(rt, "near")
    assert first == ["far@a.sub.example... deliverable: mailer relay, "
                     "host [relay.sub.example], user far@a.sub.example"]
    assert lines(rt, "near") == first
    res = rt.resolver.resolve("near", explain=True)
    assert [s.text for s in res.steps][-1] == (
        f"far@a.sub.example: mailertable {tmp_path}/maps/mailertable:2: .sub.example -> "
        "relay:[relay.sub.example]")
    # the same target one hop past the limit: the depth error, not the remembered route
    assert [(r.mailer, r.code) for r in rt.resolver.resolve("hop0").routes] == [("error", 554)]
    assert [(r.mailer, r.code) for r in rt.resolver.resolve("hop1").routes] == [("relay", 0)]


def test_explain_names_the_file_whose_entry_wins(tmp_path: Path) -> None:
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps/aliases2").write_text("# second file\nalice: other@far.example\n"
                                            "zed: bob\n")
    make_site(tmp_path)  # the files; then a second aliases file in the profile
    profile = tmp_path / "postroom.toml"
    profile.write_text(profile.read_text().replace(
        'aliases = ["maps/aliases"]', 'aliases = ["maps/aliases", "maps/aliases2"]'))
    rt2 = runtime.build(tmp_path)
    steps = [s.text for s in rt2.resolver.resolve("alice", explain=True).steps]
    assert steps[0] == f"alice: aliases {tmp_path}/maps/aliases:3: alice -> alice@staff.example"
    steps = [s.text for s in rt2.resolver.resolve("zed", explain=True).steps]
    assert steps[0] == f"zed: aliases {tmp_path}/maps/aliases2:3: zed -> bob"


def test_duplicates_are_suppressed_across_includes(tmp_path: Path) -> None:
    rt = make_site(tmp_path, aliases_extra="both: bob, :include:maps/inc.list, bob\n")
    res = rt.resolver.resolve("both", explain=True)
    assert [r.user for r in res.routes] == ["bob", "carol@staff.example", "outer@far.example"]
    assert sum("duplicate suppressed" in s.text for s in res.steps) == 2
