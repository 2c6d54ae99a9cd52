"""Web sign-up, and what keeps robots from using it to mail-bomb someone.

A sign-up (or unsubscribe) request by web starts the same confirmation as mail to
``LIST-join@``: a pending row and a mail to the address itself, with ``Reply-To:
LIST-confirm+TOKEN@`` (the token of ``postroom.lists.tokens``) and, here, a link to the
confirmation page too. Nothing changes until the address's owner confirms.

Limits (``[web]``): the form carries a signed token with the time it was shown; sent back
sooner than ``signup_min_seconds``, or after a day, it is refused. Each target address gets
at most ``signup_per_address_per_day`` confirmation mails a day, each client address may
ask for ``signup_per_client_per_day``. A list with ``web_signup = false`` has no form.
"""

from __future__ import annotations

import hmac
import time

from sqlalchemy import select

from postroom import maillog
from postroom.lists import store, subscribe
from postroom.lists.notices import notice
from postroom.runner.inject import inject_from_command
from postroom.runtime import Runtime
from postroom.store.models import PendingConfirmation
from postroom.web.accounts import bump
from postroom.web.security import mac

FORM_MAX_AGE = 86400


class SignupRefused(Exception):
    """Why a web sign-up is not done; the text is shown to the person."""


def form_token(key: bytes, list_address: str, now: float | None = None) -> str:
    issued = str(int(now if now is not None else time.time()))
    return f"{issued}.{mac(key, 'signup', list_address, issued)}"


def check_form_token(key: bytes, list_address: str, token: str, min_seconds: float,
                     now: float | None = None) -> None:
    issued, _, signature = token.partition(".")
    if not issued.isdigit() or not hmac.compare_digest(
            signature, mac(key, "signup", list_address, issued)):
        raise SignupRefused("the form is not valid: reload the page and try again")
    age = (now if now is not None else time.time()) - int(issued)
    if age < min_seconds:
        raise SignupRefused("that was quicker than a person fills in a form: wait a "
                            "moment and send it again")
    if age > FORM_MAX_AGE:
        raise SignupRefused("the form has expired: reload the page and try again")


def within_limits(rt: Runtime, address: str, client: str) -> None:
    web = rt.site.profile.web
    if not bump(rt.site, f"signup-from:{client}", web.signup_per_client_per_day):
        raise SignupRefused("too many requests from your address today; try again tomorrow")
    if not bump(rt.site, f"signup-to:{address}", web.signup_per_address_per_day):
        raise SignupRefused(f"{address} has been sent enough confirmation mails today; "
                            "look for them, or try again tomorrow")


def request(rt: Runtime, target: store.ListTarget, kind: str, address: str) -> None:
    """A pending ``kind`` (subscribe / unsubscribe) and its confirmation mail, queued
    (the engine's ``pending_request``, and its own daily cap per address and list)."""
    s = target.settings
    if subscribe.requests_today(rt, s, address) >= subscribe.MAX_REQUESTS_A_DAY:
        raise SignupRefused(f"{address} has been sent enough confirmation mails today; "
                            "look for them, or try again tomorrow")
    token = subscribe.pending_request(rt, target, kind, address)
    if token is None:
        return  # the same request a moment ago: its confirmation is on its way
    confirm_at = f"{s.name}-confirm+{token}@{s.domain}"
    base = rt.site.profile.web.base_url
    link = f"\nor open this page:\n  {base}/lists/{s.address}/confirm/{token}\n" if base else ""
    maillog.line(f"list {s.address}: {kind} request for <{address}> by web, "
                 "confirmation sent")
    made = notice(s, rt, to=address, reply_to=confirm_at, subject=f"confirm {token}",
                  text=(f"Someone (perhaps you) asked on the web to {kind} {address} "
                        f"{'to' if kind == subscribe.SUBSCRIBE else 'from'} {s.address}.\n\n"
                        f"To confirm, reply to this message, or send any message to\n"
                        f"  {confirm_at}\n{link}\nIf you did not ask, ignore this message; "
                        f"the request expires in {subscribe.CONFIRM_DAYS} days.\n"))
    if made is not None:
        inject_from_command(*made, site=rt.site)


def pending(rt: Runtime, token: str) -> tuple[str, str] | None:
    """(kind, address) of a pending confirmation, or None."""
    query = select(PendingConfirmation.kind, PendingConfirmation.address).where(
        PendingConfirmation.token == token.strip().lower())
    row = store.with_connection(rt.site, lambda c: c.execute(query).first())
    return (str(row[0]), str(row[1])) if row is not None else None


WEB_KINDS = (subscribe.SUBSCRIBE, subscribe.UNSUBSCRIBE, subscribe.REENABLE)


def confirm(rt: Runtime, target: store.ListTarget, token: str) -> tuple[str, str] | None:
    """Carry out a pending request with the engine's own ``subscribe.confirm`` (which
    sends the welcome or goodbye, or asks the owners); (kind, address) when the token
    was good, None if not. An owner's approval is given by mail only."""
    found = pending(rt, token)
    if found is None or found[0] not in WEB_KINDS:
        return None
    mails = subscribe.confirm(rt, target, token)
    if pending(rt, token) is not None:  # refused (forged, expired): still there
        return None
    for env, body in mails:
        inject_from_command(env, body, site=rt.site)
    return found
