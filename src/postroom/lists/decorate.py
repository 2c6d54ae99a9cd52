"""The post as it goes out: what the list adds to the headers and the body.

The common part is done once per post by the handler stages below (``pipeline.POSTING``);
the per-member part (the RFC 8058 one-click link with the member's token) is added to the
common bytes at delivery time by :func:`personalise`, which never parses the message.

Headers (every one the list sets is removed from the incoming post first, so a post cannot
bring its own ``List-Unsubscribe``)::

    List-Id: "description" <name.domain>                   RFC 2919
    List-Post: <mailto:name@domain>                        RFC 2369
    List-Help: <mailto:name-request@domain?subject=help>
    List-Subscribe: <mailto:name-join@domain>
    List-Unsubscribe: <mailto:name-leave@domain>           (+ per member: the https link)
    List-Unsubscribe-Post: List-Unsubscribe=One-Click      RFC 8058, per member, with a web base
    List-Archive: <archive url>                            when the list has one
    X-BeenThere: name@domain                               loop detection (rules.LOOP)
    Precedence: list

The footer keeps MIME valid (Mailman's ``handlers/decorate.py`` cases):

    text/plain, one part        the footer appended in the part's charset (utf-8 when it
                                cannot hold the footer), encoded as before (base64, qp)
    multipart/mixed             a text/plain footer part appended
    anything else               wrapped: multipart/mixed (the original part, the footer)
    (text/html, multipart/alternative, multipart/related, multipart/signed, attachments)

A signed part is never changed: it is moved, byte for byte, into the new container.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage
from urllib.parse import quote

from postroom.lists.context import PARSE_POLICY, Handler, PostContext
from postroom.lists.model import ListSettings, ReplyTo

# Headers the list owns: any the post brings are removed before ours are added.
LIST_OWNED = ("List-Id", "List-Post", "List-Help", "List-Subscribe", "List-Unsubscribe",
                "List-Unsubscribe-Post", "List-Archive", "List-Owner", "Precedence")
# Headers that must not reach the members (Mailman's cleanse): the approval token, read
# receipts asked of every member, and rule records a sender could forge.
PRIVATE = ("Approved", "Approve", "X-Approved", "X-Approve", "Return-Receipt-To",
           "Disposition-Notification-To", "X-Confirm-Reading-To", "X-PMRQC",
           "X-Postroom-Rule-Hits", "X-Postroom-Rule-Misses")


def _remove(message: EmailMessage, names: tuple[str, ...]) -> None:
    for name in names:
        del message[name]


# -- subject prefix ----------------------------------------------------------------------------

_REPLY_MARK = re.compile(r"(re|aw|sv|antw)(\[\d+\])?\s*:\s*", re.IGNORECASE)


def prefixed_subject(subject: str, prefix: str) -> str:
    """``subject`` with the list's ``prefix``, once: the prefixes and reply marks the
    replies piled up in front are taken off, and one ``Re:`` goes back in front.

        "y"                  -> "[x] y"
        "Re: [x] Re: [x] y"  -> "Re: [x] y"
        "[x] Re: y"          -> "Re: [x] y"
    """
    tag = prefix.strip()
    if not tag:
        return subject
    rest = " ".join(subject.split())     # unfolded, one space between words
    reply = False
    while True:
        if rest.lower().startswith(tag.lower()):
            rest = rest[len(tag):].lstrip()
            continue
        mark = _REPLY_MARK.match(rest)
        if mark:
            reply = True
            rest = rest[mark.end():]
            continue
        break
    rest = rest or "(no subject)"
    return f"{'Re: ' if reply else ''}{tag} {rest}"


def _subject_prefix(ctx: PostContext) -> None:
    prefix = ctx.settings.subject_prefix
    if not prefix.strip():
        return
    old = str(ctx.message.get("Subject", ""))
    new = prefixed_subject(old, prefix)
    if "Subject" in ctx.message:
        ctx.message.replace_header("Subject", new)
    else:
        ctx.message["Subject"] = new


# -- Reply-To -------------------------------------------------------------------------------------

def _reply_to(ctx: PostContext) -> None:
    if ctx.settings.reply_to is ReplyTo.LIST:
        del ctx.message["Reply-To"]
        ctx.message["Reply-To"] = ctx.settings.address


# -- list headers ---------------------------------------------------------------------------------

def list_id_header(settings: ListSettings) -> str:
    """RFC 2919: ``"description" <name.domain>`` (just ``<name.domain>`` without one)."""
    if not settings.description:
        return f"<{settings.list_id}>"
    text = " ".join(settings.description.split())
    if text.isascii():
        phrase = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:   # an encoded word (the header parser keeps it as it is)
        phrase = Header(text, "utf-8").encode()
    return f"{phrase} <{settings.list_id}>"


@dataclass(frozen=True, slots=True)
class UnsubscribeLinks:
    """How one list's unsubscribe links are spelt; built once per post, used per member.

    The one-click URL (RFC 8058) the web endpoint answers::

        {web_base}/lists/{list_id}/unsubscribe?member={address}&token={token}
    """

    mailto: str          # mailto:NAME-leave@domain
    web_base: str        # "" = no web: mailto only, and no List-Unsubscribe-Post

    @classmethod
    def for_list(cls, settings: ListSettings, web_base: str = "") -> UnsubscribeLinks:
        base = web_base.rstrip("/")
        return cls(f"mailto:{settings.service('leave')}",
                   f"{base}/lists/{settings.list_id}/unsubscribe" if base else "")

    def url(self, member: str, token: str) -> str:
        return f"{self.web_base}?member={quote(member, safe='@')}&token={token}"

    def common(self) -> str:
        """The List-Unsubscribe value that is the same for every member."""
        return f"<{self.mailto}>"


def list_headers(settings: ListSettings, *, web_base: str = "",
                 archive_url: str = "") -> list[tuple[str, str]]:
    """The list headers every member's copy shares, in order."""
    base = web_base.rstrip("/")
    subscribe = f"<mailto:{settings.service('join')}>"
    if base and settings.web_signup:
        subscribe += f", <{base}/lists/{settings.list_id}/>"
    headers = [
        ("List-Id", list_id_header(settings)),
        ("List-Post", f"<mailto:{settings.address}>"),
        ("List-Help", f"<mailto:{settings.service('request')}?subject=help>"),
        ("List-Subscribe", subscribe),
    ]
    if not base:   # with a web base the header is per member (personalise)
        headers.append(("List-Unsubscribe", UnsubscribeLinks.for_list(settings).common()))
    if archive_url:
        headers.append(("List-Archive", f"<{archive_url}>"))
    headers += [
        ("List-Owner", f"<mailto:{settings.service('owner')}>"),
        ("X-BeenThere", settings.address),
        ("Precedence", "list"),
    ]
    return headers


def _list_headers(ctx: PostContext) -> None:
    _remove(ctx.message, LIST_OWNED)
    for name, value in list_headers(ctx.settings, web_base=ctx.web_base,
                                    archive_url=ctx.archive_url):
        ctx.message[name] = value


def _cleanse(ctx: PostContext) -> None:
    _remove(ctx.message, PRIVATE)


# -- footer ---------------------------------------------------------------------------------------

def _footer_part(footer: str) -> EmailMessage:
    part = EmailMessage(policy=PARSE_POLICY)
    charset = "us-ascii" if footer.isascii() else "utf-8"
    part.set_content(footer, charset=charset, disposition="inline")
    del part["MIME-Version"]   # a body part, not a message
    return part


def _append_text(part: EmailMessage, footer: str) -> bool:
    """Append ``footer`` to a text/plain part in place; False when it cannot be done safely
    (an undeclared or unknown charset, text that does not decode)."""
    charset = part.get_content_charset()
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return False
    if charset is None and not raw.isascii():
        return False   # 8-bit text that says nothing of its charset: leave it alone
    charset = charset or "us-ascii"
    try:
        text = raw.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return False
    cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    if text and not text.endswith("\n"):
        text += "\n"
    text += footer if footer.endswith("\n") else footer + "\n"
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"
    if cte not in ("base64", "quoted-printable"):
        # ASCII goes as 7bit; other text keeps 8bit if it came so, else quoted-printable
        cte = "7bit" if text.isascii() else "8bit" if cte == "8bit" else "quoted-printable"
    params = {k: v for k, v in (part.get_params(header="content-type", unquote=True) or [])[1:]
              if k.lower() != "charset"}
    keep = [(name, value) for name, value in part.items()
            if name.lower() in ("content-disposition", "content-language",
                                "content-description", "content-id")]
    part.set_content(text, subtype="plain", charset=charset, cte=cte, params=params)
    for name, value in keep:
        part[name] = value
    return True


def add_footer(message: EmailMessage, footer: str) -> None:
    """Add ``footer`` to ``message`` so that the MIME structure stays valid (see the
    module docstring for the cases)."""
    if not footer.strip():
        return
    ctype = message.get_content_type()
    if ctype == "text/plain" and not message.is_attachment() and _append_text(message, footer):
        return
    if ctype == "multipart/mixed":
        message.attach(_footer_part(footer))
        return
    if "Content-Type" not in message:   # make the implicit type explicit before moving it
        message["Content-Type"] = "text/plain"
    message.make_mixed()
    message.attach(_footer_part(footer))


def _footer(ctx: PostContext) -> None:
    add_footer(ctx.message, ctx.settings.footer)


CLEANSE = Handler("cleanse", "Remove the approval token, read-receipt requests and "
                          "forged rule records.", _cleanse)
SUBJECT_PREFIX = Handler("subject_prefix", "Put the list's subject_prefix in front of the "
                         "Subject, once, after a single Re:.", _subject_prefix)
REPLY_TO = Handler("reply_to", "Set Reply-To to the list when the list's reply_to is "
                   "'list'.", _reply_to)
LIST_HEADERS = Handler("list_headers", "RFC 2919 List-Id, RFC 2369 List-*, X-BeenThere, "
                       "Precedence: list.", _list_headers)
FOOTER = Handler("footer", "Add the list's footer, keeping the MIME structure valid "
                 "(signed parts untouched).", _footer)


# -- per member ----------------------------------------------------------------------------------

_ONE_CLICK = b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"


def personalise(message: bytes, member: str, token: str, links: UnsubscribeLinks) -> bytes:
    """One member's copy: the common decorated ``message`` (CRLF, as ``pipeline.run``
    renders it) with the member's ``List-Unsubscribe`` (mailto and one-click link) and
    ``List-Unsubscribe-Post`` added at the end of the header. No parsing: one search for
    the blank line and one join. Without a web base the header is common and already in
    the message; the copy is the message itself."""
    if not links.web_base:
        return message
    if "\r" in member or "\n" in member:
        raise ValueError(f"a member address with a line break: {member!r}")
    end = message.find(b"\r\n\r\n")
    cut = end + 2 if end >= 0 else len(message)
    added = (b"List-Unsubscribe: <" + links.mailto.encode() + b">,\r\n <"
             + links.url(member, token).encode() + b">" + _ONE_CLICK)
    if end < 0 and not message.endswith(b"\r\n"):
        added = b"\r\n" + added
    return b"".join((message[:cut], added, message[cut:]))
