"""Mail transactions on an open session (Postfix's smtp_proto.c, second half).

    MAIL FROM    SIZE=, BODY=8BITMIME (8-bit message, offered), SMTPUTF8, RET=/ENVID=
    RCPT TO      NOTIFY=/ORCPT= when DSN is offered; 4xx DEFERRED, 5xx FAILED, per recipient
    DATA         its reply applies to every accepted recipient of the transaction

With PIPELINING offered (RFC 2920) a transaction is two writes: RSET if needed, MAIL,
every RCPT and DATA together; then the message. Transactions in a row on one connection
(a list post's personalised copies) write each message's end together with the next
transaction's MAIL, RCPT and DATA: one write and one wait a copy. Without PIPELINING, one
command at a time. Either way each reply counts for the recipient it answers, also when
the connection is lost after some of them; RSET only after a transaction that was left
open (RFC 5321 4.1.4).

A message that needs SMTPUTF8 is FAILED ``5.6.7`` by a server without it; one larger than
the server's SIZE is FAILED ``5.3.4``. An 8-bit message goes to a server without 8BITMIME
unchanged (as Postfix does).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

from postroom.delivery.smtp.chat import Disconnected, Reply, data_block
from postroom.delivery.smtp.session import Session
from postroom.delivery.smtp.trouble import Interrupted, attempt, lost, lost_in_message, reason
from postroom.envelope import Delivery
from postroom.errors import PermanentFailure, TemporaryFailure
from postroom.types import Attempt, Job, Outcome

_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")  # never in a command we send (RFC 5321 4.1.1)


async def transactions(session: Session, job: Job, pending: list[Delivery],
                       done: dict[int, Attempt], batch: int) -> list[Delivery]:
    """Run transactions of ``batch`` recipients for ``pending``; return those left when the
    connection died."""
    check_message(session, job)
    mail_args = _mail_args(session, job)
    run = pipelined if session.supports("pipelining") else lock_step
    remaining = list(pending)
    while remaining:
        chunk, remaining = remaining[:batch], remaining[batch:]
        try:
            await run(session, job, chunk, mail_args, done)
        finally:
            session.transactions += 1
        if not session.alive:
            return remaining
    return []


def check_message(session: Session, job: Job) -> None:
    """PermanentFailure for what the server cannot take of the whole message."""
    remote = session.remote
    if job.envelope.smtputf8 and not session.supports("smtputf8"):
        raise PermanentFailure(550, "5.6.7", f"{remote} does not support SMTPUTF8, which "
                               "this message needs", remote=remote)
    limit = session.features.get("size", "")
    if limit.isdigit() and 0 < int(limit) < len(job.message):
        raise PermanentFailure(552, "5.3.4", f"message size {len(job.message)} exceeds "
                               f"the limit {limit} of {remote}", remote=remote)


class Group(NamedTuple):
    """One transaction's commands, to be written at once: RSET first when the last
    transaction was left open, MAIL, every RCPT, DATA."""

    job: Job
    rcpts: list[tuple[Delivery, bytes]]
    commands: list[bytes]
    reset: int

    def with_reset(self, reset: bool) -> Group:
        """This transaction (made without RSET) with an RSET first when ``reset``."""
        assert self.reset == 0
        return self._replace(commands=[b"RSET", *self.commands], reset=1) if reset else self


def group(session: Session, job: Job, chunk: list[Delivery], done: dict[int, Attempt], *,
          reset: bool, mail_args: list[bytes] | None = None) -> Group | None:
    """The transaction of ``chunk``; None when none of them can be sent (each refused one
    is in ``done``)."""
    mail, rcpts = _commands(session, job, chunk,
                            mail_args if mail_args is not None else _mail_args(session, job),
                            done)
    if not rcpts:
        return None
    return Group(job, rcpts, [mail] + [c for _, c in rcpts] + [b"DATA"], 0).with_reset(reset)


async def pipelined(session: Session, job: Job, chunk: list[Delivery],
                    mail_args: list[bytes], done: dict[int, Attempt]) -> None:
    """One transaction in two writes, for servers that offer PIPELINING."""
    g = group(session, job, chunk, done, reset=session.open_transaction, mail_args=mail_args)
    if g is not None:
        await send_group(session, g, done)


async def send_group(session: Session, g: Group, done: dict[int, Attempt], *,
                     written: bool = False, then: Group | None = None,
                     blocks: Callable[[bytes], bytes] = data_block) -> bool:
    """Run transaction ``g`` on a PIPELINING server. ``written``: its commands went out
    already, with the last message's end. ``then``: the next transaction (no RSET: a
    message's end closes the transaction), written with this message's end when there is
    one to send (RFC 2920 3.1: message content may begin a group), so that a run of
    transactions costs one write and one wait each; returns True if it was. ``blocks``
    makes the message's data block (``chat.DataBlocks`` for copies that end alike)."""
    remote = session.remote
    replies: list[Reply] = []
    accepted: list[Delivery] = []
    reset = g.reset
    stage = "MAIL FROM"
    try:
        if not written:
            session.write(b"\r\n".join(g.commands) + b"\r\n")
            await session.drain()
        # RFC 5321 4.5.3.2: a timeout per reply
        await session.replies_into(replies, len(g.commands))
        if reset:
            if replies[0].code != 250:
                session.close()
                raise Interrupted(TemporaryFailure(
                    451, "4.4.2", f"{remote} refused RSET: {replies[0].code} "
                    f"{replies[0].message}", remote=remote))
            session.open_transaction = False
        accepted = _judge(session, replies[reset:], g.rcpts, done)
        data = replies[-1]
        if data.code == 354 and not accepted:
            # a server out of step with us (it should have said 503): sending the
            # ending could make it deliver an empty message
            session.close()
            return False
        if not accepted:
            return False
        if data.code != 354:
            for d in accepted:
                done[id(d)] = attempt(d, data, session)
            return False
        stage = "message"
        block = blocks(g.job.message)
        if then is not None:
            assert then.reset == 0
            block += b"\r\n".join(then.commands) + b"\r\n"
        session.write(block)
        _record_on_arrival(session, g.job, accepted)
        await session.drain()
        final = await session.reply()
        session.open_transaction = False
    except OSError as e:  # lost, reset, timed out, or not SMTP
        session.close()
        why = "no reply in time" if isinstance(e, TimeoutError) else reason(e)
        if stage == "message":
            lost_in_message(accepted, session, why, done)
            return False
        if replies[reset:]:  # what was answered before the loss stands
            _judge(session, replies[reset:], g.rcpts, done)
        if len(replies) > reset:
            stage = "RCPT TO"
        raise lost(session, stage, why) from None
    for d in accepted:
        done[id(d)] = attempt(d, final, session)
    return then is not None


def _record_on_arrival(session: Session, job: Job, accepted: list[Delivery]) -> None:
    """Report the message's acceptance (``job.progress``) the moment its reply arrives
    (``chat.ReplyReader.on_next``); the same report after the reply is read is then a
    repeat the runner ignores."""
    progress = job.progress
    if progress is None:
        return

    def arrived(reply: Reply) -> None:
        for d in accepted:
            result = attempt(d, reply, session)  # what the task will record
            if result.outcome is Outcome.SENT:
                progress(d, result.reply)

    session.replies.on_next(arrived)


def _commands(session: Session, job: Job, chunk: list[Delivery], mail_args: list[bytes],
              done: dict[int, Attempt]) -> tuple[bytes, list[tuple[Delivery, bytes]]]:
    """The MAIL command and each recipient's RCPT command; a recipient whose address
    would break the command line FAILS here, a sender's fails the message."""
    remote = session.remote
    dsn = session.supports("dsn")
    mail = b" ".join(mail_args)
    if _CONTROL.search(mail):
        raise PermanentFailure(553, "5.1.7", "the sender address contains control "
                               "characters", remote=remote)
    rcpts: list[tuple[Delivery, bytes]] = []
    for d in chunk:
        command = b" ".join(_rcpt_args(job, d, dsn))
        if _CONTROL.search(command):
            done[id(d)] = Attempt(d, Outcome.FAILED, 553, "5.1.3", "the recipient "
                                  "address contains control characters", remote)
        else:
            rcpts.append((d, command))
    return mail, rcpts


def _judge(session: Session, replies: list[Reply], rcpts: list[tuple[Delivery, bytes]],
           done: dict[int, Attempt]) -> list[Delivery]:
    """Record the MAIL and RCPT replies received so far (``replies`` starts with MAIL's);
    returns the recipients the server accepted."""
    mail, answers = replies[0], replies[1:1 + len(rcpts)]
    if mail.code != 250:  # the RCPTs after a refused MAIL mean nothing
        for d, _ in rcpts:
            done[id(d)] = attempt(d, mail, session)
        return []
    session.open_transaction = True
    accepted = []
    for (d, _), reply in zip(rcpts, answers, strict=False):
        if reply.code in (250, 251):
            accepted.append(d)
        else:
            done[id(d)] = attempt(d, reply, session)
    return accepted


async def lock_step(session: Session, job: Job, chunk: list[Delivery],
                    mail_args: list[bytes], done: dict[int, Attempt]) -> None:
    """One transaction one command at a time, for servers without PIPELINING."""
    mail, rcpts = _commands(session, job, chunk, mail_args, done)
    if not rcpts:
        return
    stage = "RSET"
    accepted: list[Delivery] = []
    try:
        if session.open_transaction:
            reply = await session.command(b"RSET")
            if reply.code != 250:
                session.close()
                raise Interrupted(TemporaryFailure(
                    451, "4.4.2", f"{session.remote} refused RSET: {reply.code} "
                    f"{reply.message}", remote=session.remote))
        session.open_transaction = False
        stage = "MAIL FROM"
        reply = await session.command(mail)
        if reply.code != 250:
            for d, _ in rcpts:
                done[id(d)] = attempt(d, reply, session)
            return
        session.open_transaction = True
        stage = "RCPT TO"
        for d, command in rcpts:
            reply = await session.command(command)
            if reply.code in (250, 251):
                accepted.append(d)
            else:
                done[id(d)] = attempt(d, reply, session)
            if not session.alive:  # 421: the server is closing
                raise Disconnected(f"{reply.code} {reply.message}")
    except OSError as e:
        session.close()
        raise lost(session, stage, reason(e)) from None
    if not accepted:
        return
    try:
        reply = await session.command(b"DATA")
        if reply.code == 354:
            session.write(data_block(job.message))
            _record_on_arrival(session, job, accepted)
            await session.drain()
            reply = await session.reply()
            session.open_transaction = False  # a refused DATA command leaves it open
    except OSError as e:
        session.close()
        lost_in_message(accepted, session, reason(e), done)
        return
    for d in accepted:
        done[id(d)] = attempt(d, reply, session)


def _address(text: str) -> bytes:
    return f"<{text}>".encode()


def _mail_args(session: Session, job: Job) -> list[bytes]:
    env = job.envelope
    args = [b"MAIL", b"FROM:" + _address(job.return_path)]
    if session.supports("size"):
        args.append(f"SIZE={len(job.message)}".encode())
    if (env.body == "8BITMIME" or not job.message.isascii()) and session.supports("8bitmime"):
        args.append(b"BODY=8BITMIME")
    if env.smtputf8:
        args.append(b"SMTPUTF8")
    if session.supports("dsn"):
        if env.ret:
            args.append(f"RET={env.ret}".encode())
        if env.envid:
            args.append(f"ENVID={env.envid}".encode())
    return args


def _rcpt_args(job: Job, delivery: Delivery, dsn: bool) -> list[bytes]:
    args = [b"RCPT", b"TO:" + _address(delivery.user)]
    recipient = job.recipient(delivery)
    if dsn and recipient is not None:
        if recipient.notify:
            args.append(f"NOTIFY={','.join(recipient.notify)}".encode())
        if recipient.orcpt:
            args.append(f"ORCPT={recipient.orcpt}".encode())
    return args
