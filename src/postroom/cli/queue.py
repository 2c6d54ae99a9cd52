"""``postroom queue``: list the spool like ``mailq``; show, hold, release, delete, bounce
and flush messages; import a dead machine's queue.

The listing is Postfix's ``mailq`` format, so scripts written for it keep working::

    -Queue ID----- --Size-- ----Arrival Time---  -Sender/Recipient-------
    8DtEjreMK02JV!     4218 Tue Nov 24 14:02:31  alice@example.org
                                                 bob@example.net  deferred, 3 tries
                                                   (451 4.4.1 Connection refused)

    -- 5 Kbytes in 1 Request.

``!`` after the ID marks a held message. Every recipient is listed with the state of its
delivery; an address that expanded to several routes lists them as ``-> route  state``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from postroom.cli.options import open_home, reports_errors, site_option
from postroom.envelope import Delivery, Envelope, RcptState, Recipient
from postroom.errors import PostroomError
from postroom.queue.schedule import due_now
from postroom.queue.spool import CorruptEnvelope, Spool, UnknownMessage

if TYPE_CHECKING:
    from postroom.site import SiteHome

ID_WIDTH = 14  # 13-character ID + the held mark
INDENT = " " * (ID_WIDTH + 1 + 8 + 1 + 19 + 2)
HEADER = f"{'-Queue ID':-<{ID_WIDTH}} --Size-- {'----Arrival Time':-<19}  -Sender/Recipient-------"


def _home(ctx: click.Context, site_dir: str | None) -> SiteHome:
    """The site home (``--site`` after the subcommand, or after ``queue``). No command here
    needs the profile: with a broken one they warn and go on."""
    return open_home(site_dir or (ctx.obj if isinstance(ctx.obj, str) else None))


def _open_spool(ctx: click.Context, site_dir: str | None) -> Spool:
    return Spool(_home(ctx, site_dir).queue_dir)


@click.group(invoke_without_command=True)
@site_option
@click.pass_context
@reports_errors
def queue(ctx: click.Context, site_dir: str | None) -> None:
    """List the queue (like mailq), or act on queued messages."""
    ctx.obj = site_dir
    if ctx.invoked_subcommand is not None:
        return
    with _open_spool(ctx, site_dir) as spool:
        for line in listing(spool):
            click.echo(line)


@queue.command()
@site_option
@click.argument("qid", metavar="ID")
@click.pass_context
@reports_errors
def show(ctx: click.Context, site_dir: str | None, qid: str) -> None:
    """Show a message's envelope and headers."""
    with _open_spool(ctx, site_dir) as spool:
        envelope = spool.load(qid)
        for line in describe(envelope, spool.message_path(qid), spool.envelope_path(qid)):
            click.echo(line)
        click.echo("")
        click.echo("Headers:")
        click.echo(headers(spool.read_message(qid)))


@queue.command(short_help="Hold messages: queued, but not delivered until released.")
@site_option
@click.argument("qids", metavar="ID...", nargs=-1, required=True)
@click.pass_context
@reports_errors
def hold(ctx: click.Context, site_dir: str | None, qids: tuple[str, ...]) -> None:
    """Hold messages: they stay queued but are not delivered until released."""
    with _open_spool(ctx, site_dir) as spool:
        _each(qids, spool.hold, "held")


@queue.command()
@site_option
@click.argument("qids", metavar="ID...", nargs=-1, required=True)
@click.pass_context
@reports_errors
def release(ctx: click.Context, site_dir: str | None, qids: tuple[str, ...]) -> None:
    """Release held messages for delivery."""
    with _open_spool(ctx, site_dir) as spool:
        _each(qids, spool.release, "released")


@queue.command()
@site_option
@click.argument("qids", metavar="ID...", nargs=-1, required=True)
@click.pass_context
@reports_errors
def delete(ctx: click.Context, site_dir: str | None, qids: tuple[str, ...]) -> None:
    """Delete messages from the queue for good (no bounce is sent)."""
    with _open_spool(ctx, site_dir) as spool:
        _each(qids, spool.delete, "deleted")


BOUNCE_REASON = "returned to the sender by the postmaster"


@queue.command(short_help="Return messages to their senders now (status 5.0.0).")
@site_option
@click.argument("qids", metavar="ID...", nargs=-1, required=True)
@click.pass_context
@reports_errors
def bounce(ctx: click.Context, site_dir: str | None, qids: tuple[str, ...]) -> None:
    """Return messages to their senders now: every delivery not yet made fails with status
    5.0.0, and the server sends the bounce (a held message is released for that)."""
    site = _home(ctx, site_dir)
    with Spool(site.queue_dir) as spool:

        def return_it(qid: str) -> None:
            failed = 0

            def fail_the_rest(envelope: Envelope) -> bool:
                nonlocal failed
                failed = envelope.return_to_sender(BOUNCE_REASON)
                return failed > 0  # store it only if something changed

            spool.modify(qid, fail_the_rest)
            if failed:
                spool.release(qid)
                click.echo(f"{qid}: returned to sender")
            else:
                click.echo(f"{qid}: nothing left to return (every delivery is done)")

        failed = _each(qids, return_it, None, exit_on_error=False)
    click.echo(_tell_server(site, "no server running (the bounces go out when it starts)",
                            qids))
    if failed:
        sys.exit(failed)


@queue.command(name="import", short_help="Queue here the messages of another machine's queue.")
@site_option
@click.option("--keep", is_flag=True,
              help="Leave SOURCE untouched (for a read-only disk): imported envelopes are "
                   "not moved to SOURCE/imported/. A later import skips what is still "
                   "queued here but queues again what was delivered since.")
@click.argument("sources", metavar="SOURCE...", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_context
@reports_errors
def import_(ctx: click.Context, site_dir: str | None, keep: bool,
            sources: tuple[Path, ...]) -> None:
    """Queue here every message of another machine's queue (SOURCE: its SITE/queue, or its
    site home). Delivery states are kept; this server's maps route them again."""
    from postroom import control
    from postroom.errors import EX_DATAERR
    from postroom.ops.salvage import import_queue

    site = _home(ctx, site_dir)
    status = 0
    with Spool(site.queue_dir) as spool:
        for source in sources:
            report = import_queue(source, spool, site, keep=keep)
            for old, new in report.imported:
                click.echo(f"{old}: imported as {new}")
            for old in report.already:
                click.echo(f"{old}: already imported by an earlier run")
            for old in report.merged:
                click.echo(f"{old}: restored here too: taken once, with the old disk's state")
            for old in report.finished:
                click.echo(f"{old}: restored here, finished on the old machine after the "
                           "backup: removed here")
            for old, why in report.skipped:
                click.echo(f"postroom: {old}: not imported: {why}", err=True)
                status = EX_DATAERR
            for warning in report.warnings:
                click.echo(f"postroom: {warning}", err=True)
            after_restore = (f"{len(report.merged)} merged, {len(report.finished)} "
                             "finished there, ") if report.merged or report.finished else ""
            click.echo(f"{source}: {len(report.imported)} imported, {after_restore}"
                       f"{len(report.skipped)} skipped")
    if control.request(site.state_dir, "status") is None:
        click.echo("no server running (they are delivered when it starts)")
    else:
        click.echo("server told of each message: delivered from now on")
    if status:
        sys.exit(status)


@queue.command(short_help="Retry deferred deliveries now (all, or the IDs given).")
@site_option
@click.argument("qids", metavar="[ID]...", nargs=-1)
@click.pass_context
@reports_errors
def flush(ctx: click.Context, site_dir: str | None, qids: tuple[str, ...]) -> None:
    """Retry deferred deliveries now (all active messages, or the IDs given)."""
    site = _home(ctx, site_dir)
    changed = 0
    with Spool(site.queue_dir) as spool:

        def now(envelope: Envelope) -> bool:
            nonlocal changed
            moved = due_now(envelope)
            changed += moved
            return moved

        def reschedule(qid: str) -> None:
            spool.modify(qid, now)

        if qids:
            failed = _each(qids, reschedule, None, exit_on_error=False)
        else:
            failed = _each(spool.ids(include_held=False), reschedule, None,
                           exit_on_error=False, skip_gone=True)
    what = f"{changed} message{'' if changed == 1 else 's'} with deferred deliveries rescheduled"
    click.echo(f"{what}; "
               f"{_tell_server(site, 'no server running (the queue runs when it starts)', qids)}")
    if failed:
        sys.exit(failed)


def _tell_server(site: object, idle: str, qids: Iterable[str] = ()) -> str:
    """Tell the running server (control channel) to run these messages now, or the whole
    queue when none is named; says what happened (``idle`` when no server runs)."""
    from postroom import control

    state_dir = site.state_dir  # type: ignore[attr-defined]
    wanted = list(qids)
    replies = [control.request(state_dir, "flush", q) for q in wanted] if wanted \
        else [control.request(state_dir, "flush")]
    if any(r is None for r in replies):
        return idle
    which = f"{len(wanted)} message{'' if len(wanted) == 1 else 's'}" if wanted \
        else "the queue"
    return f"server told to run {which} now"


# ------------------------------------------------------------------------ helpers


def _each(qids: Iterable[str], action: Callable[[str], None], done: str | None, *,
          exit_on_error: bool = True, skip_gone: bool = False) -> int:
    """Run ``action`` on every ID; report failures per ID and keep going. Returns (or, by
    default, exits with) the exit code of the first failure, 0 if none."""
    status = 0
    for qid in qids:
        try:
            action(qid)
        except PostroomError as e:
            if skip_gone and isinstance(e, UnknownMessage):  # delivered since we listed it
                continue
            click.echo(f"postroom: {e}", err=True)
            status = status or e.exit_code
            continue
        if done:
            click.echo(f"{qid}: {done}")
    if status and exit_on_error:
        sys.exit(status)
    return status


def listing(spool: Spool) -> list[str]:
    """The mailq-style listing of every queued message, in arrival order."""
    lines: list[str] = []
    total = count = 0
    for qid in spool.ids():
        try:
            envelope = spool.load(qid)
        except UnknownMessage:  # delivered or deleted since ids()
            continue
        except CorruptEnvelope as e:
            lines += [f"{qid:<{ID_WIDTH}} (envelope unreadable, moved to {e.moved_to})", ""]
            continue
        count += 1
        total += envelope.size
        lines += _entry(envelope)
        lines.append("")
    if not count and not lines:
        return ["Mail queue is empty"]
    return [HEADER, *lines,
            f"-- {math.ceil(total / 1024)} Kbytes in {count} Request{'' if count == 1 else 's'}."]


def _entry(envelope: Envelope) -> list[str]:
    mark = "!" if envelope.held else ""
    arrival = time.strftime("%a %b %d %H:%M:%S", time.localtime(envelope.arrival))
    sender = envelope.sender or "MAILER-DAEMON"
    lines = [f"{envelope.id + mark:<{ID_WIDTH}} {envelope.size:>8} {arrival}  {sender}"]
    for rcpt in envelope.recipients:
        lines += _recipient_lines(rcpt)
    return lines


def _recipient_lines(rcpt: Recipient) -> list[str]:
    ds = rcpt.deliveries
    if not ds:
        return [f"{INDENT}{rcpt.address}  {RcptState.PENDING}"]
    if len(ds) == 1 and ds[0].address == rcpt.address:
        return _delivery_lines(INDENT, rcpt.address, ds[0])
    lines = [f"{INDENT}{rcpt.address}"]
    for d in ds:
        lines += _delivery_lines(INDENT + "  ", f"-> {d.address}", d)
    return lines


def _delivery_lines(indent: str, label: str, d: Delivery) -> list[str]:
    state = str(d.state)
    if d.tries:
        state += f", {d.tries} tr{'y' if d.tries == 1 else 'ies'}"
    lines = [f"{indent}{label}  {state}"]
    if d.last_error:
        lines.append(f"{indent}  ({d.last_error})")
    return lines


def describe(envelope: Envelope, message: Path, envelope_file: Path) -> list[str]:
    """The envelope as readable text, one field a line."""

    def when(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(t))

    e = envelope
    client = " ".join(p for p in (e.client_name, f"[{e.client_addr}]" if e.client_addr else "")
                      if p) or "(local)"
    via = [e.protocol, f"from {client}"]
    if e.helo:
        via.append(f"(HELO {e.helo})")
    extras = [x for x in (e.tls, f"auth {e.auth_user}" if e.auth_user else "",
                          f"listener {e.listener}" if e.listener else "") if x]
    dsn = " ".join(f"{k}={v}" for k, v in (("RET", e.ret), ("ENVID", e.envid)) if v)
    body = ", ".join(x for x in (e.body, "SMTPUTF8" if e.smtputf8 else "") if x)
    lines = [
        f"Queue ID:     {e.id}{'  (held)' if e.held else ''}",
        f"Message file: {message}",
        f"Envelope:     {envelope_file}",
        f"Arrival:      {when(e.arrival)}",
        f"Size:         {e.size} bytes",
        f"Sender:       <{e.sender}>",
        f"Received via: {' '.join(via)}{', ' + ', '.join(extras) if extras else ''}",
    ]
    if dsn:
        lines.append(f"DSN:          {dsn}")
    if body:
        lines.append(f"Body:         {body}")
    if e.delay_warned:
        lines.append("Delay warned: yes")
    lines.append("Recipients:")
    for r in e.recipients:
        params = ", ".join(x for x in (f"ORCPT {r.orcpt}" if r.orcpt else "",
                                       f"NOTIFY {','.join(r.notify)}" if r.notify else "") if x)
        lines.append(f"  {r.address}{f'  ({params})' if params else ''}")
        if not r.deliveries:
            lines.append("    (not routed yet)")
        for d in r.deliveries:
            route = f"mailer {d.mailer}"
            if d.host:
                route += f", host {d.host}"
            lines.append(f"    -> {d.address}: {route}, user {d.user}")
            state = [f"state {d.state}", f"{d.tries} tr{'y' if d.tries == 1 else 'ies'}"]
            if d.state == RcptState.DEFERRED:
                state.append(f"next attempt {when(d.next_attempt) if d.next_attempt else 'now'}")
            if d.status:
                state.append(f"status {d.status}")
            if d.remote_mta:
                state.append(f"remote {d.remote_mta}")
            if d.dsn_sent:
                state.append("DSN sent")
            lines.append(f"       {', '.join(state)}")
            if d.last_error:
                lines.append(f"       last reply: {d.last_error}")
    return lines


def headers(message: bytes) -> str:
    """The header section of a raw message as text (bytes that are not UTF-8 shown as \\x)."""
    end = len(message)
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = message.find(sep)
        if i != -1:
            end = min(end, i)
    text = message[:end].decode("utf-8", "backslashreplace")
    return text.replace("\r\n", "\n")
