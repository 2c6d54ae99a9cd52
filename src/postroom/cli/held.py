"""``postroom held list|show|approve|reject|discard``: posts the rules held for a
moderator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from postroom.runtime import Runtime

from postroom.cli.options import reports_errors, site_option


@click.group(short_help="Posts held for a moderator: list, show, approve, reject, discard.")
def held() -> None:
    """Posts held for a moderator (by the posting policy or a rule)."""


def _runtime(site_dir: str | None) -> Runtime:
    from postroom import runtime

    return runtime.build(site_dir)


@held.command("list")
@site_option
@click.argument("list_address", metavar="[LIST]", required=False)
@reports_errors
def list_(site_dir: str | None, list_address: str | None) -> None:
    """Every held post (of one list, or of all), oldest first."""
    from postroom.lists import held as held_posts

    rt = _runtime(site_dir)
    posts = held_posts.held_posts(rt.site, list_address)
    for h in posts:
        click.echo(f"{h.id}\t{h.list_address}\t{h.received:%Y-%m-%d %H:%M}\t{h.sender}\t"
                   f"{h.subject}\t{h.rule}: {h.reason}")
    if not posts:
        click.echo("no held posts")


@held.command()
@site_option
@click.argument("held_id", type=int)
@reports_errors
def show(site_dir: str | None, held_id: int) -> None:
    """The held post as it came, with why it is held."""
    from postroom.lists import held as held_posts

    h, raw = held_posts.get(_runtime(site_dir).site, held_id)
    click.echo(f"list: {h.list_address}\nfrom: {h.sender}\nheld by: {h.rule}: {h.reason}\n")
    click.echo(raw.decode("utf-8", "replace").replace("\r\n", "\n"))


@held.command()
@site_option
@click.argument("held_ids", type=int, nargs=-1, required=True)
@reports_errors
def approve(site_dir: str | None, held_ids: tuple[int, ...]) -> None:
    """Send the post to the list as if the rules had let it through."""
    from postroom.lists import approval

    rt = _runtime(site_dir)
    for held_id in held_ids:
        qid = approval.approve(rt, held_id)
        click.echo(f"{held_id}: approved; queued as {qid}" if qid
                   else f"{held_id}: approved; the list has no member to send it to")


def _decide(site_dir: str | None, held_ids: tuple[int, ...], *, tell: bool,
            reason: str) -> None:
    from postroom.lists import moderation
    from postroom.runner.inject import inject_from_command

    rt = _runtime(site_dir)
    for held_id in held_ids:
        for made in moderation.refuse(rt, held_id, reason=reason, tell=tell):
            inject_from_command(*made, site=rt.site)
        click.echo(f"{held_id}: {'rejected, sender told' if tell else 'discarded'}")


@held.command()
@site_option
@click.option("--reason", default="", help="Told to the sender.")
@click.argument("held_ids", type=int, nargs=-1, required=True)
@reports_errors
def reject(site_dir: str | None, reason: str, held_ids: tuple[int, ...]) -> None:
    """Refuse the post and tell its sender why."""
    _decide(site_dir, held_ids, tell=True, reason=reason)


@held.command()
@site_option
@click.argument("held_ids", type=int, nargs=-1, required=True)
@reports_errors
def discard(site_dir: str | None, held_ids: tuple[int, ...]) -> None:
    """Drop the post without telling anyone."""
    _decide(site_dir, held_ids, tell=False, reason="")
