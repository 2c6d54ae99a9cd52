"""Decoration: the subject prefix table, the list headers, the footer in every MIME shape
(golden files in tests/lists/golden/, compared after normalising boundaries), and the
per-member one-click header added by ``personalise`` without parsing."""

from __future__ import annotations

import os
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from postroom.lists import pipeline
from postroom.lists.decorate import UnsubscribeLinks, add_footer, personalise, prefixed_subject
from postroom.lists.model import ReplyTo
from postroom.lists.tokens import check_unsubscribe_token, unsubscribe_token
from tests.lists.test_pipeline import SECRET, make_ctx, message, post, settings

GOLDEN = Path(__file__).parent / "golden"
UPDATE = bool(os.environ.get("POSTROOM_UPDATE_GOLDEN"))
FOOTER = "_______________________________________________\nstaff mailing list\n"


@pytest.mark.parametrize(("subject", "expected"), [
    ("hello", "[staff] hello"),
    ("[staff] hello", "[staff] hello"),
    ("Re: hello", "Re: [staff] hello"),
    ("Re: [staff] hello", "Re: [staff] hello"),
    ("Re: [staff] Re: [staff] hello", "Re: [staff] hello"),
    ("RE: Re: re: [staff] hello", "Re: [staff] hello"),
    ("[staff] Re: hello", "Re: [staff] hello"),
    ("Aw: [staff] hello", "Re: [staff] hello"),
    ("Re[2]: [staff] hello", "Re: [staff] hello"),
    ("[STAFF] hello", "[staff] hello"),
    ("Fwd: [staff] hello", "[staff] Fwd: [staff] hello"),   # a forward is no reply
    ("Re:   [staff]   spaced\n   out", "Re: [staff] spaced out"),
    ("", "[staff] (no subject)"),
    ("Re: [staff]", "Re: [staff] (no subject)"),
    ("Are you coming?", "[staff] Are you coming?"),
])
def test_subject_prefix(subject: str, expected: str) -> None:
    assert prefixed_subject(subject, "[staff] ") == expected


@pytest.mark.parametrize(("raw_subject", "expected"), [
    ("=?utf-8?q?Re=3A_=5Bstaff=5D_Re=3A_=5Bstaff=5D_Caf=C3=A9?=", "Re: [staff] Café"),
    ("Re: =?utf-8?q?=5Bstaff=5D?= =?iso-8859-1?q?Caf=E9?=", "Re: [staff] Café"),
    ("=?utf-8?b?W3N0YWZmXSDQn9GA0LjQstC10YI=?=", "[staff] Привет"),
])
def test_subject_prefix_with_encoded_words(raw_subject: str, expected: str) -> None:
    raw = message("From: ann@example.org", "To: staff@lists.example.ac.uk",
                  f"Subject: {raw_subject}")
    ctx = make_ctx(raw, settings(subject_prefix="[staff] "))
    pipeline.run(ctx)
    assert ctx.outgoing is not None
    out = message_from_bytes(ctx.outgoing, policy=policy.default)
    assert str(out["Subject"]) == expected
    if not expected.isascii():
        assert b"=?utf-8?" in ctx.outgoing.split(b"\r\n\r\n")[0]   # encoded again


def _out(ctx_outgoing: bytes | None) -> EmailMessage:
    assert ctx_outgoing is not None
    out = message_from_bytes(ctx_outgoing, policy=policy.default)
    assert isinstance(out, EmailMessage)
    return out


def test_list_headers_replace_the_posts_own() -> None:
    raw = post("List-Unsubscribe: <mailto:evil@example.org>", "Precedence: bulk",
               "X-BeenThere: other@lists.example.org")
    ctx = make_ctx(raw, web_base="https://lists.example.ac.uk/",
                   archive_url="https://lists.example.ac.uk/archives/staff/")
    pipeline.run(ctx)
    out = _out(ctx.outgoing)
    assert out["List-Id"] == '"Staff list" <staff.lists.example.ac.uk>'
    assert out["List-Post"] == "<mailto:staff@lists.example.ac.uk>"
    assert out["List-Help"] == "<mailto:staff-request@lists.example.ac.uk?subject=help>"
    assert out["List-Subscribe"] == ("<mailto:staff-join@lists.example.ac.uk>, "
                                     "<https://lists.example.ac.uk/lists/"
                                     "staff.lists.example.ac.uk/>")
    assert out["List-Archive"] == "<https://lists.example.ac.uk/archives/staff/>"
    assert out["List-Unsubscribe"] is None      # per member, with a web base
    assert out.get_all("Precedence") == ["list"]
    assert out.get_all("X-BeenThere") == ["other@lists.example.org",
                                          "staff@lists.example.ac.uk"]


def test_without_a_web_base_unsubscribe_is_mailto_and_common() -> None:
    ctx = make_ctx(post())
    pipeline.run(ctx)
    out = _out(ctx.outgoing)
    assert out["List-Unsubscribe"] == "<mailto:staff-leave@lists.example.ac.uk>"
    assert out["List-Unsubscribe-Post"] is None
    assert out["List-Archive"] is None
    assert ctx.outgoing is not None
    links = UnsubscribeLinks.for_list(ctx.settings)
    assert personalise(ctx.outgoing, "ann@example.org", "t", links) is ctx.outgoing


def test_non_ascii_description_is_an_encoded_phrase() -> None:
    ctx = make_ctx(post(), settings(description="Équipe"))
    pipeline.run(ctx)
    assert ctx.outgoing is not None
    assert b"List-Id: =?utf-8?q?=C3=89quipe?= <staff.lists.example.ac.uk>" in ctx.outgoing


@pytest.mark.parametrize(("policy_", "reply_to"), [
    (ReplyTo.AUTHOR, "Other <other@example.org>"),
    (ReplyTo.LIST, "staff@lists.example.ac.uk"),
])
def test_reply_to(policy_: ReplyTo, reply_to: str) -> None:
    ctx = make_ctx(post("Reply-To: Other <other@example.org>"), settings(reply_to=policy_))
    pipeline.run(ctx)
    assert _out(ctx.outgoing).get_all("Reply-To") == [reply_to]


def test_personalise_adds_the_one_click_headers_only() -> None:
    ctx = make_ctx(post(), web_base="https://lists.example.ac.uk")
    pipeline.run(ctx)
    assert ctx.outgoing is not None
    links = UnsubscribeLinks.for_list(ctx.settings, "https://lists.example.ac.uk")
    member = "bob+x=y@example.org"
    token = unsubscribe_token(SECRET, ctx.settings.list_id, member)
    copy = personalise(ctx.outgoing, member, token, links)
    head, _, body = copy.partition(b"\r\n\r\n")
    common_head, _, common_body = ctx.outgoing.partition(b"\r\n\r\n")
    assert body == common_body
    added = head[len(common_head):]
    out = _out(copy)
    assert out["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    mailto, url = [u.strip(" <>") for u in str(out["List-Unsubscribe"]).split(",")]
    assert mailto == "mailto:staff-leave@lists.example.ac.uk"
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https", "lists.example.ac.uk", "/lists/staff.lists.example.ac.uk/unsubscribe")
    query = parse_qs(parts.query)
    assert query["member"] == [member]
    assert check_unsubscribe_token(SECRET, ctx.settings.list_id, member, query["token"][0])
    assert added.startswith(b"\r\nList-Unsubscribe: <mailto:")
    assert all(len(line) <= 998 for line in copy.split(b"\r\n"))
    with pytest.raises(ValueError):
        personalise(ctx.outgoing, "x@y\r\nBcc: z@w", token, links)


# -- the footer in every MIME shape: golden files --------------------------------------------------

def _normalise(data: bytes) -> str:
    """The boundaries the email package made up named in order of appearance; LF line ends."""
    text = data.decode("utf-8", "surrogateescape").replace("\r\n", "\n")
    names: dict[str, str] = {}
    for found in re.findall(r"={15}\d+==", text):
        names.setdefault(found, f"==BOUNDARY-{len(names) + 1}==")
    for old, new in names.items():
        text = text.replace(old, new)
    return text


TEXT_ASCII = message("From: Ann <ann@example.org>", "To: staff@lists.example.ac.uk",
                     "Subject: plain", "Content-Type: text/plain; charset=us-ascii;"
                     " format=flowed", body="Plain text.\r\n")
TEXT_LATIN1_QP = message("From: Ann <ann@example.org>", "To: staff@lists.example.ac.uk",
                         "Subject: latin-1", "MIME-Version: 1.0",
                         "Content-Type: text/plain; charset=iso-8859-1",
                         "Content-Transfer-Encoding: quoted-printable",
                         body="Caf=E9 cr=E8me.\r\n")
TEXT_UTF8_B64 = message("From: Ann <ann@example.org>", "To: staff@lists.example.ac.uk",
                        "Subject: utf-8", "MIME-Version: 1.0",
                        "Content-Type: text/plain; charset=utf-8",
                        "Content-Transfer-Encoding: base64",
                        body="0J/RgNC40LLQtdGCLCDQvNC40YAuCg==\r\n")
HTML = message("From: Ann <ann@example.org>", "To: staff@lists.example.ac.uk",
               "Subject: html", "MIME-Version: 1.0", "Content-Type: text/html; charset=utf-8",
               body="<html><body><p>Hello</p></body></html>\r\n")
MIXED = message("From: Ann <ann@example.org>", "To: staff@lists.example.ac.uk",
                "Subject: mixed", "MIME-Version: 1.0",
                'Content-Type: multipart/mixed; boundary="outer"',
                body="--outer\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                     "See attached.\r\n--outer\r\nContent-Type: application/pdf\r\n"
                     "Content-Disposition: attachment; filename=a.pdf\r\n"
                     "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
                     "--outer--\r\n")
ALTERNATIVE = message("From: Ann <ann@example.org>", "To: staff@lists.example.ac.uk",
                      "Subject: alternative", "MIME-Version: 1.0",
                      'Content-Type: multipart/alternative; boundary="alt"',
                      body="--alt\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                           "Hello\r\n--alt\r\nContent-Type: text/html; charset=us-ascii"
                           "\r\n\r\n<p>Hello</p>\r\n--alt--\r\n")
SIGNED_PART = (b"Content-Type: text/plain; charset=us-ascii\r\n"
               b"Content-Transfer-Encoding: 7bit\r\n\r\nSigned words.\r\n"
               b"Trailing  spaces  \r\n")
SIGNED = message("From: Ann <ann@example.org>", "To: staff@lists.example.ac.uk",
                 "Subject: signed", "MIME-Version: 1.0",
                 'Content-Type: multipart/signed; micalg=pgp-sha256;',
                 ' protocol="application/pgp-signature"; boundary="sig"',
                 body="--sig\r\n" + SIGNED_PART.decode() + "--sig\r\n"
                      "Content-Type: application/pgp-signature; name=signature.asc\r\n\r\n"
                      "-----BEGIN PGP SIGNATURE-----\r\nAAAA\r\n"
                      "-----END PGP SIGNATURE-----\r\n--sig--\r\n")

CASES = {"text_ascii": TEXT_ASCII, "text_latin1_qp": TEXT_LATIN1_QP,
         "text_utf8_base64": TEXT_UTF8_B64, "html": HTML, "mixed": MIXED,
         "alternative": ALTERNATIVE, "signed": SIGNED}


def _decorated(raw: bytes, footer: str = FOOTER) -> bytes:
    ctx = make_ctx(raw, settings(subject_prefix="[staff] ", footer=footer))
    assert pipeline.run(ctx).value == "accept"
    assert ctx.outgoing is not None
    return ctx.outgoing


@pytest.mark.parametrize("case", sorted(CASES))
def test_footer_golden(case: str) -> None:
    got = _normalise(_decorated(CASES[case]))
    path = GOLDEN / f"decorate_{case}.eml"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(got)
    assert got == path.read_text()


def _lf(part: EmailMessage) -> str:
    """A text part's content with LF line ends (parsed CRLF text keeps its CRs)."""
    return str(part.get_content()).replace("\r\n", "\n")


@pytest.mark.parametrize(("case", "shape", "body_text"), [
    ("text_ascii", "text/plain", "Plain text.\n" + FOOTER),
    ("text_latin1_qp", "text/plain", "Café crème.\n" + FOOTER),
    ("text_utf8_base64", "text/plain", "Привет, мир.\n" + FOOTER),
])
def test_footer_in_a_text_part_keeps_its_encoding(case: str, shape: str,
                                                  body_text: str) -> None:
    source = message_from_bytes(CASES[case], policy=policy.default)
    out = _out(_decorated(CASES[case]))
    assert out.get_content_type() == shape
    assert _lf(out) == body_text
    assert out["Content-Transfer-Encoding"] == source.get("Content-Transfer-Encoding", "7bit")
    assert out.get_content_charset() == (source.get_content_charset() or "us-ascii")
    if case == "text_ascii":
        assert out.get_param("format") == "flowed"


def test_non_ascii_footer_in_a_latin1_part_goes_utf8() -> None:
    out = _out(_decorated(TEXT_LATIN1_QP, footer="Liste du personnel — désinscription\n"))
    assert out.get_content_charset() == "utf-8"
    assert out["Content-Transfer-Encoding"] == "quoted-printable"
    assert _lf(out) == "Café crème.\nListe du personnel — désinscription\n"


@pytest.mark.parametrize(("case", "outer", "first"), [
    ("html", "multipart/mixed", "text/html"),
    ("alternative", "multipart/mixed", "multipart/alternative"),
    ("signed", "multipart/mixed", "multipart/signed"),
    ("mixed", "multipart/mixed", "text/plain"),
])
def test_footer_wraps_or_appends_a_part(case: str, outer: str, first: str) -> None:
    out = _out(_decorated(CASES[case]))
    assert out.get_content_type() == outer
    parts = list(out.iter_parts())
    assert parts[0].get_content_type() == first
    assert parts[-1].get_content_type() == "text/plain"
    assert parts[-1].get_content_disposition() == "inline"
    assert _lf(parts[-1]) == FOOTER
    assert out["MIME-Version"] == "1.0"
    assert out["Subject"].startswith("[staff] ")
    assert len(parts) == (3 if case == "mixed" else 2)


def test_signed_part_goes_out_byte_for_byte() -> None:
    data = _decorated(SIGNED)
    assert b"--sig\r\n" + SIGNED_PART + b"--sig\r\n" in data
    sig = next(iter(_out(data).iter_parts()))
    assert sig.get_param("protocol") == "application/pgp-signature"


def test_message_without_content_type_gets_the_footer_appended() -> None:
    msg = message_from_bytes(b"Subject: x\r\n\r\nbody\r\n", policy=policy.default)
    assert isinstance(msg, EmailMessage)
    add_footer(msg, "foot\n")
    assert msg.get_content_type() == "text/plain"
    assert _lf(msg) == "body\nfoot\n"


def test_undeclared_8bit_text_is_wrapped_not_mangled() -> None:
    raw = b"Subject: x\r\n\r\nCaf\xe9\r\n"
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    add_footer(msg, "foot\n")
    assert msg.get_content_type() == "multipart/mixed"
    assert b"Caf\xe9" in msg.as_bytes(policy=policy.SMTP)


def test_a_text_attachment_is_wrapped_not_appended_to() -> None:
    raw = message("From: ann@example.org", "To: staff@lists.example.ac.uk", "Subject: x",
                  "Content-Type: text/plain; charset=us-ascii",
                  "Content-Disposition: attachment; filename=notes.txt", body="notes\r\n")
    out = _out(_decorated(raw))
    attached, foot = list(out.iter_parts())
    assert (attached.get_filename(), _lf(attached)) == ("notes.txt", "notes\n")
    assert _lf(foot) == FOOTER


def test_lf_only_input_goes_out_crlf_and_personalises() -> None:
    raw = b"From: ann@example.org\nTo: staff@lists.example.ac.uk\nSubject: lf\n\nline1\n"
    ctx = make_ctx(raw, settings(footer="foot\n"), web_base="https://lists.example.ac.uk")
    pipeline.run(ctx)
    assert ctx.outgoing is not None
    assert b"\n" not in ctx.outgoing.replace(b"\r\n", b"")
    assert ctx.outgoing.endswith(b"\r\n\r\nline1\r\nfoot\r\n")
    links = UnsubscribeLinks.for_list(ctx.settings, ctx.web_base)
    copy = personalise(ctx.outgoing, "bob@example.org", "tok", links)
    assert _out(copy)["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert copy.endswith(b"\r\n\r\nline1\r\nfoot\r\n")
