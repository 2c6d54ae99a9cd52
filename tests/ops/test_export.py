"""``postroom export-addresses`` through the real command: the example site's contents, the
list forms, the shrink guard (old files intact) and --force."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run

EX_TEMPFAIL = 75


def _export(site: Path, *args: str) -> tuple[int, str, str]:
    done = run("export-addresses", *args, site=site)
    return done.returncode, done.stdout, done.stderr


def _plain(site: Path) -> list[str]:
    return (site / "export" / "valid-addresses.txt").read_text().splitlines()


def test_example_site_contents(example_site: Path) -> None:
    rc, out, err = _export(example_site)
    assert rc == 0, err
    assert out.startswith("exported ") and "inf.example.ac.uk" in out
    assert out.count("\n") == 1
    plain = _plain(example_site)
    assert plain == sorted(plain)
    for address in ("postmaster@inf.example.ac.uk",      # alias
                    "neilb@inf.example.ac.uk",           # forward
                    "rt@inf.example.ac.uk",              # local user
                    "mchen@cogsci.example.ac.uk",        # hosted-domain entry
                    "info@research.example.org",
                    "@research.example.org"):            # catch-all that takes mail
        assert address in plain
    # the nonexistent, and a hosted domain whose catch-all refuses
    assert "nobody-here@inf.example.ac.uk" not in plain
    assert "@cogsci.example.ac.uk" not in plain
    postfix = (example_site / "export" / "relay_recipients").read_text().splitlines()
    assert postfix == [f"{a} OK" for a in plain]
    # export and RCPT agree: every exported address verifies
    checked = [a for a in plain if not a.startswith("@")]
    assert run("verify", *checked, site=example_site).returncode == 0


def test_list_addresses(example_site: Path) -> None:
    assert run("db", "upgrade", site=example_site).returncode == 0
    done = run("lists", "create", "staff", "--owner", "boss@inf.example.ac.uk",
               site=example_site)
    assert done.returncode == 0, done.stderr
    rc, _, err = _export(example_site)
    assert rc == 0, err
    plain = _plain(example_site)
    assert "staff@inf.example.ac.uk" in plain
    for suffix in ("-request", "-owner", "-bounces", "-join", "-leave", "-confirm"):
        assert f"staff{suffix}@inf.example.ac.uk" in plain
    assert "staff-nosuch@inf.example.ac.uk" not in plain


def _drop_forwards(site: Path) -> None:
    (site / "maps" / "forwards").write_text("# half-loaded\n")


def test_shrink_guard_keeps_old_files(example_site: Path) -> None:
    assert _export(example_site)[0] == 0
    old_plain = (example_site / "export" / "valid-addresses.txt").read_bytes()
    old_postfix = (example_site / "export" / "relay_recipients").read_bytes()
    _drop_forwards(example_site)
    rc, out, err = _export(example_site)
    assert rc == EX_TEMPFAIL
    assert out == ""
    assert "shrink" in err and "kept the old files" in err and "--force" in err
    assert (example_site / "export" / "valid-addresses.txt").read_bytes() == old_plain
    assert (example_site / "export" / "relay_recipients").read_bytes() == old_postfix
    assert [p.name for p in (example_site / "export").iterdir()
            if p.name.startswith(".")] == []  # no staged file left behind
    # a higher threshold lets it through
    rc, _, err = _export(example_site, "--max-shrink", "90")
    assert rc == 0, err
    assert "neilb@inf.example.ac.uk" not in _plain(example_site)


def test_force_writes_past_the_guard(example_site: Path) -> None:
    assert _export(example_site)[0] == 0
    before = len(_plain(example_site))
    _drop_forwards(example_site)
    rc, out, err = _export(example_site, "--force")
    assert rc == 0, err
    after = _plain(example_site)
    assert len(after) < before
    assert f"(was {before})" in out
    assert "pvisitor@inf.example.ac.uk" not in after
    assert "postmaster@inf.example.ac.uk" in after


def test_fast_verdict_agrees_with_rcpt_on_every_kind_of_entry(example_site: Path) -> None:
    """The export's fast path (``routing.verdict``) gives RCPT's answer for plain forwards,
    and hands every other entry to the resolver: both agree on each of these."""
    from postroom.routing.verdict import takes
    from postroom.runtime import build

    with open(example_site / "maps" / "aliases", "a") as f:
        f.write("fw-out: someone@elsewhere.example.net\n"
                "fw-local-only: rt\n"
                "fw-nowhere: nobody-at-all\n"
                "fw-refused: x@blocked.example.net\n"
                "fw-mixed: nobody-at-all, y@blocked.example.net, z@fine.example.net\n"
                "fw-pipe: \"|/bin/true\"\n"
                "fw-literal: u@[192.0.2.1]\n")
    with open(example_site / "maps" / "mailertable", "a") as f:
        f.write("blocked.example.net error:5.7.1:550 We do not send there\n")
    rt = build(example_site)
    names = ["fw-out", "fw-local-only", "fw-nowhere", "fw-refused", "fw-mixed", "fw-pipe",
             "fw-literal", "neilb", "rt", "postmaster", "nosuch"]
    for name in names:
        rcpt = rt.resolver.resolve(f"{name}@inf.example.ac.uk").refusal is None
        assert takes(rt.resolver, name, "inf.example.ac.uk") is rcpt, name
    assert not takes(rt.resolver, "fw-refused", "inf.example.ac.uk")
    assert takes(rt.resolver, "fw-mixed", "inf.example.ac.uk")


def test_each_address_once_with_counts_that_add_up(example_site: Path) -> None:
    """A name both in the maps and in the virtusertable of a local domain, in every host
    name too (``--host-names``): once each, sorted, counted in its own domain."""
    from postroom.ops.export import collect
    from postroom.runtime import build

    with open(example_site / "maps" / "virtusertable", "a") as f:
        f.write("neilb@inf.example.ac.uk  neilb@staffmail.example.ac.uk\n"
                "help@inf.example.ac.uk  helpdesk\n")
    for host_names in (False, True):
        result = collect(build(example_site), host_names=host_names)
        found = result.addresses
        assert found == sorted(set(found))
        assert "neilb@inf.example.ac.uk" in found and "help@inf.example.ac.uk" in found
        counted: dict[str, int] = {}
        for a in found:
            counted[a.rpartition("@")[2]] = counted.get(a.rpartition("@")[2], 0) + 1
        assert result.per_domain == counted
    assert any(a.endswith("@mail.inf.example.ac.uk") for a in found)  # a host name
