"""Digests: the posts of a list gathered and sent as one message to the members who asked
for digests, MIME (RFC 2046 ``multipart/digest``) or plain text (RFC 1153).

Every accepted post is appended to ``SITE/digests/LIST/pending.mbox`` (fsync, like the
archive) when the list has a digest member. ``send_due`` is a periodic task of ``serve``:
a list whose pending posts reach ``digest_size_kb`` or whose oldest pending post is
``digest_period_days`` old gets its digest. Sending is crash-safe in this order: the
pending file is renamed to ``sending-V-N.mbox`` (so posts that arrive meanwhile start a new
digest), the digests are queued through ``inject`` (durable), and only then the file is
removed and the issue number advanced. A crash in between sends that issue again at the
next run: a digest may repeat, never vanish.
"""

from __future__ import annotations

import email.utils
import fcntl
import json
import mailbox
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.policy import SMTP
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from postroom import safeio
from postroom.envelope import Envelope
from postroom.lists import store
from postroom.lists.archive import from_line, mboxrd
from postroom.lists.model import DeliveryMode, ListSettings, Member
from postroom.queue import accept
from postroom.runtime import Runtime
from postroom.site import Site
from postroom.store.models import ListMember

PENDING = "pending.mbox"
STATE = "state.json"
DIGEST_MODES = (DeliveryMode.MIME_DIGEST, DeliveryMode.PLAIN_DIGEST)
# RFC 1153: the lines a plain digest keeps of each message, in this order
PLAIN_HEADERS = ("Date", "From", "To", "Cc", "Subject", "Message-ID", "Keywords", "Summary")
SEPARATOR_70 = "-" * 70
SEPARATOR_30 = "-" * 30


def digest_dir(site: Site, settings: ListSettings) -> Path:
    return site.home / "digests" / settings.address


def digest_members(site: Site, settings: ListSettings) -> dict[DeliveryMode, list[Member]]:
    """The members with delivery on who take digests, by kind."""
    def work(conn: Connection) -> dict[DeliveryMode, list[Member]]:
        list_id = store.list_id_of(conn, settings.name, settings.domain)
        rows = conn.execute(select(*store.MEMBER_COLUMNS).where(
            ListMember.list_id == list_id, ListMember.delivery_enabled.is_(True),
            ListMember.mode.in_([m.value for m in DIGEST_MODES]))
            .order_by(ListMember.address)).all()
        out: dict[DeliveryMode, list[Member]] = {m: [] for m in DIGEST_MODES}
        for r in rows:
            m = store.member_of(r)
            out[m.mode].append(m)
        return out

    found: dict[DeliveryMode, list[Member]] = store.with_connection(site, work)
    return found


def has_digest_members(site: Site, settings: ListSettings) -> bool:
    def work(conn: Connection) -> int:
        list_id = store.list_id_of(conn, settings.name, settings.domain)
        return int(conn.scalar(select(func.count()).select_from(ListMember).where(
            ListMember.list_id == list_id,
            ListMember.mode.in_([m.value for m in DIGEST_MODES]))) or 0)

    return bool(store.with_connection(site, work))


def collect(site: Site, settings: ListSettings, post: bytes, sender: str) -> bool:
    """Keep an accepted post (as the members got it) for the next digest; False when the
    list has no digest member, so nothing is kept."""
    if not has_digest_members(site, settings):
        return False
    directory = digest_dir(site, settings)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PENDING
    entry = from_line(sender, datetime.now(UTC)) + mboxrd(post) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        safeio.write_and_fsync(fd, entry, path)
    finally:
        os.close(fd)
    return True


@dataclass(slots=True)
class IssueState:
    volume: int = 1
    issue: int = 1
    first_pending: float | None = None  # when the oldest pending post came

    @classmethod
    def read(cls, directory: Path) -> IssueState:
        try:
            data = json.loads((directory / STATE).read_text())
            return cls(int(data["volume"]), int(data["issue"]), data.get("first_pending"))
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    def write(self, directory: Path) -> None:
        safeio.atomic_replace(directory / STATE, json.dumps(
            {"volume": self.volume, "issue": self.issue,
             "first_pending": self.first_pending}).encode(), mode=0o640)


def is_due(settings: ListSettings, directory: Path, now: float) -> bool:
    pending = directory / PENDING
    try:
        st = pending.stat()
    except FileNotFoundError:
        return False
    if st.st_size == 0:
        return False
    if st.st_size >= settings.digest_size_kb * 1024:
        return True
    state = IssueState.read(directory)
    if state.first_pending is None:
        state.first_pending = st.st_mtime
        state.write(directory)
    return now - state.first_pending >= settings.digest_period_days * 86400


def read_posts(path: Path) -> list[Message]:
    box = mailbox.mbox(str(path), create=False)
    try:
        return [email.message_from_bytes(box.get_bytes(key), policy=SMTP)
                for key in box.iterkeys()]
    finally:
        box.close()


def _toc(posts: list[Message]) -> str:
    lines = ["Today's Topics:", ""]
    for n, post in enumerate(posts, 1):
        subject = " ".join(str(post.get("Subject") or "(no subject)").split())
        author = email.utils.parseaddr(str(post.get("From") or ""))
        who = author[1] or author[0]
        lines.append(f"  {n:>3}. {subject} ({who})")
    return "\n".join(lines) + "\n"


def _title(settings: ListSettings, state: IssueState) -> str:
    return f"{settings.name} Digest, Vol {state.volume}, Issue {state.issue}"


def _head(settings: ListSettings, state: IssueState, hostname: str, count: int) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = settings.service("request")
    msg["To"] = settings.address
    msg["Subject"] = _title(settings, state)
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=hostname)
    msg["List-Id"] = f"<{settings.list_id}>"
    msg["List-Post"] = f"<mailto:{settings.address}>"
    msg["List-Unsubscribe"] = f"<mailto:{settings.service('leave')}>"
    msg["Precedence"] = "list"
    msg["X-Postroom-Digest"] = f"{count} messages"
    return msg


def _intro(settings: ListSettings) -> str:
    return (f"Send {settings.address} submissions to\n\t{settings.address}\n\n"
            f"To unsubscribe, send any message to\n\t{settings.service('leave')}\n\n"
            f"You can reach the person managing the list at\n\t{settings.service('owner')}\n\n"
            f"When replying, please edit your Subject line so it is more specific than "
            f"\"Re: Contents of {settings.name} digest...\"\n")


def _body_text(post: Message) -> str:
    part = post.get_body(preferencelist=("plain",)) if hasattr(post, "get_body") else None
    if part is None:
        return "[this message has no plain-text part; see the archive]\n"
    try:
        text = part.get_content()
    except (LookupError, ValueError):
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
    return str(text)


def build_plain(settings: ListSettings, state: IssueState, posts: list[Message],
                hostname: str) -> bytes:
    """An RFC 1153 digest: intro, table of contents, the messages with the kept headers."""
    msg = _head(settings, state, hostname, len(posts))
    parts = [_intro(settings), _toc(posts), SEPARATOR_70]
    for n, post in enumerate(posts, 1):
        head = [f"Message: {n}"]
        head += [f"{h}: {' '.join(str(post[h]).split())}" for h in PLAIN_HEADERS if post[h]]
        parts.append("\n".join(head) + "\n\n" + _body_text(post).rstrip("\n") + "\n")
        parts.append(SEPARATOR_30)
    title = _title(settings, state)
    parts.append(f"End of {title}\n{'*' * len('End of ' + title)}")
    msg.set_content("\n\n".join(parts) + "\n")
    return msg.as_bytes()


def build_mime(settings: ListSettings, state: IssueState, posts: list[Message],
               hostname: str) -> bytes:
    """A MIME digest: the intro and contents as text/plain, then multipart/digest with
    each post whole as message/rfc822 (attachments and all)."""
    msg = _head(settings, state, hostname, len(posts))
    msg.set_content(_intro(settings) + "\n" + _toc(posts))
    msg.make_mixed()
    digest = EmailMessage(policy=SMTP)
    digest.set_type("multipart/digest")
    for post in posts:
        part = EmailMessage(policy=SMTP)
        part.set_content(post)
        del part["Content-Type"]
        part["Content-Type"] = "message/rfc822"  # the default inside multipart/digest
        digest.attach(part)
    msg.attach(digest)
    return msg.as_bytes()


Inject = Callable[[Envelope, bytes], str]


def _envelope(settings: ListSettings, members: list[Member], rt: Runtime) -> Envelope | None:
    recipients = []
    for m in members:
        r = accept.make_recipient(m.address, rt.resolver.resolve(m.address).routes,
                                  notify=["NEVER"])
        if r.deliveries:
            recipients.append(r)
    if not recipients:
        return None
    env = accept.new_envelope(settings.service("bounces"), recipients, protocol="local",
                              client_addr="", helo=rt.site.profile.site.hostname)
    env.arrival = time.time()
    return env


def send_issue(rt: Runtime, settings: ListSettings, inject: Inject) -> str | None:
    """Send this list's digest now if anything is pending (or left from a crash); one line
    saying what went, or None."""
    directory = digest_dir(rt.site, settings)
    state = IssueState.read(directory)
    sending = directory / f"sending-{state.volume}-{state.issue}.mbox"
    if not sending.exists():
        try:
            os.rename(directory / PENDING, sending)
        except FileNotFoundError:
            return None
        safeio.fsync_dir(directory)
    posts = read_posts(sending)
    members = digest_members(rt.site, settings)
    hostname = rt.site.profile.site.hostname
    sent = []
    for mode, build in ((DeliveryMode.MIME_DIGEST, build_mime),
                        (DeliveryMode.PLAIN_DIGEST, build_plain)):
        env = _envelope(settings, members[mode], rt) if posts else None
        if env is not None:
            qid = inject(env, build(settings, state, posts, hostname))
            sent.append(f"{mode.value} to {len(env.recipients)} as {qid}")
    sending.unlink()
    said = (f"{settings.address}: {_title(settings, state)}, {len(posts)} posts: "
            + ("; ".join(sent) or "no digest member left"))
    state.issue += 1
    state.first_pending = None
    state.write(directory)
    return said


def send_due(rt: Runtime, inject: Inject, *, force: bool = False) -> list[str]:
    """Every list whose digest is due (or every list with pending posts, ``force``)."""
    said: list[str] = []
    now = time.time()
    root = rt.site.home / "digests"
    if not root.is_dir():
        return said
    for directory in sorted(root.iterdir()):
        settings = store.settings_for(rt.site, directory.name)
        if settings is None:
            continue
        leftover = any(directory.glob("sending-*.mbox"))
        if leftover or ((directory / PENDING).exists() and (
                force or is_due(settings, directory, now))):
            line = send_issue(rt, settings, inject)
            if line:
                said.append(line)
    return said
