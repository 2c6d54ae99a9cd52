"""Reading archived posts for the web: the bytes from the mbox (by the index row's offset
and length, never by a name from the URL), the parts a page shows, and the attachments.

Safety: text is shown as text (the templates escape it); an HTML part is shown only when
the post has no plain-text part, and then only after ``nh3`` has kept a small set of
formatting tags, with links ``rel="nofollow noopener noreferrer"`` and no images, styles
or scripts. Attachments are listed by a cleaned name and served as
``application/octet-stream`` with ``Content-Disposition: attachment``. Addresses are shown
as ``user (AT) example.org`` when the list says so (``obfuscate_addresses``).
"""

from __future__ import annotations

import email
import email.policy
import functools
import re
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.utils import getaddresses
from pathlib import Path
from urllib.parse import quote

import nh3

_ADDRESS = re.compile(r"([A-Za-z0-9._%+'=-]+)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
HTML_TAGS = {"a", "b", "i", "em", "strong", "p", "br", "ul", "ol", "li", "blockquote",
             "pre", "code", "h1", "h2", "h3", "h4", "table", "thead", "tbody", "tr", "td",
             "th", "div", "span", "hr", "u", "s", "sub", "sup", "dl", "dt", "dd"}
MAX_SHOWN = 2 * 1024 * 1024  # bytes of text shown on a page


def obfuscate(text: object, on: bool = True) -> str:
    """``ann@example.org`` -> ``ann (AT) example.org`` (when ``on``)."""
    s = "" if text is None else str(text)
    return _ADDRESS.sub(r"\1 (AT) \2", s) if on and "@" in s else s


def from_mbox(path: Path, offset: int, length: int) -> bytes:
    """The message stored at ``offset`` (its ``From `` line and mboxrd quoting undone)."""
    with open(path, "rb") as f:
        f.seek(offset)
        entry = f.read(length)
    first, _, rest = entry.partition(b"\n")
    if not first.startswith(b"From "):
        rest = entry
    lines = rest.split(b"\n")
    out = [line[1:] if re.match(rb"^>+From ", line) else line for line in lines]
    return b"\n".join(out).rstrip(b"\n") + b"\n"


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except (ValueError, IndexError, TypeError):  # a header the policy cannot parse
        value = msg.get_all(name, failobj=[""])[0] if hasattr(msg, "get_all") else ""
    return re.sub(r"[\r\n\t]+", " ", str(value or "")).strip()


@functools.lru_cache(maxsize=65536)
def author_name(author: str) -> str:
    """The display name of a From value, else the address (cached: a month page shows
    50 and the parser is the most of the page's work)."""
    pairs = getaddresses([author])
    if pairs and (pairs[0][0] or pairs[0][1]):
        return pairs[0][0] or pairs[0][1]
    return author


def clean_filename(name: str | None, index: int) -> str:
    text = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = re.sub(r"[\x00-\x1f\x7f\"<>:|?*]", "_", text).strip(" .")
    return text[:200] or f"attachment-{index}"


@dataclass
class Attachment:
    index: int
    name: str
    content_type: str
    size: int


@dataclass
class Shown:
    """What a message page shows: headers, text blocks, sanitised HTML, attachments."""

    subject: str
    author: str
    date: str
    message_id: str
    texts: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)


def _parts(msg: EmailMessage) -> list[EmailMessage]:
    return [p for p in msg.walk() if not p.is_multipart()]


def _is_attachment(part: EmailMessage) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    return disposition == "attachment" or part.get_filename() is not None or \
        part.get_content_maintype() not in ("text",)


def _text_of(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return str(content)[:MAX_SHOWN]


def sanitise_html(html: str) -> str:
    return nh3.clean(html, tags=HTML_TAGS, attributes={"a": {"href", "title"}},
                     url_schemes={"http", "https", "mailto"}, link_rel="nofollow noopener "
                     "noreferrer", strip_comments=True)


def show(raw: bytes, obfuscated: bool) -> Shown:
    msg = parse(raw)

    def ob(text: str) -> str:
        return obfuscate(text, obfuscated)

    shown = Shown(subject=header(msg, "Subject"), author=ob(header(msg, "From")),
                  date=header(msg, "Date"), message_id=ob(header(msg, "Message-ID")))
    html_parts: list[str] = []
    for i, part in enumerate(_parts(msg)):
        if _is_attachment(part):
            payload = part.get_payload(decode=True)
            shown.attachments.append(Attachment(
                i, clean_filename(part.get_filename(), i), part.get_content_type(),
                len(payload) if isinstance(payload, bytes) else 0))
        elif part.get_content_subtype() == "html":
            html_parts.append(_text_of(part))
        else:
            shown.texts.append(ob(_text_of(part)))
    if html_parts and not any(t.strip() for t in shown.texts):
        shown.texts = []
        shown.html = [ob(sanitise_html(h)) for h in html_parts]
    return shown


def attachment(raw: bytes, index: int) -> tuple[str, bytes] | None:
    """(clean file name, bytes) of part ``index`` when it is an attachment."""
    parts = _parts(parse(raw))
    if not 0 <= index < len(parts) or not _is_attachment(parts[index]):
        return None
    part = parts[index]
    payload = part.get_payload(decode=True)
    return clean_filename(part.get_filename(), index), \
        payload if isinstance(payload, bytes) else b""


def disposition(name: str) -> str:
    """``attachment`` with an ASCII fallback and the RFC 6266 UTF-8 name."""
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_") or "attachment"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def plain_body(raw: bytes, limit: int = 65536) -> str:
    """The text a search indexes: the plain parts (else the HTML's text)."""
    try:
        msg = parse(raw)
        texts: list[str] = []
        htmls: list[str] = []
        for part in _parts(msg):
            if _is_attachment(part):
                continue
            (htmls if part.get_content_subtype() == "html" else texts).append(_text_of(part))
        if not texts:
            texts = [nh3.clean(h, tags=set()) for h in htmls]
        return "\n".join(texts)[:limit]
    except Exception:  # a message the parser chokes on is still found by its subject
        return ""
