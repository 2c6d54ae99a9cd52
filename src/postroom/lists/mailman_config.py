"""List settings from Mailman 2's ``config_list -o FILE LIST``, and its Pipermail archive.

``config_list -o`` writes Python assignments (``description = 'Staff'``, ``owner =
['a@b']``, ``msg_footer = \"\"\"...\"\"\"``). They are read with ``ast``: each right-hand
side must be a literal (``ast.literal_eval``); nothing is executed, and anything else is
reported with its line. ``settings_from_config`` maps what postroom has an equivalent for
(the table in docs/lists.md) and returns, beside the values, one note per variable that is
kept differently or not at all, so the operator sees what changed.

``import_pipermail`` appends every message of ``archives/private/LIST.mbox/LIST.mbox``
to the list's archive (``lists.archive``), in order, under the month of its Date.
"""

from __future__ import annotations

import ast
import email
import email.utils
import mailbox
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

from postroom.errors import EX_DATAERR, PostroomError
from postroom.lists import archive
from postroom.lists.model import AddressRule, ListSettings, RuleAction
from postroom.site import Site
from postroom.store.lists import check_address


class ConfigError(PostroomError):
    exit_code = EX_DATAERR


@dataclass(slots=True)
class Imported:
    values: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_config(text: str, source: str) -> dict[str, Any]:
    """The variables of a ``config_list -o`` file; ConfigError naming FILE:LINE for a
    statement that is not ``name = literal``."""
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as e:
        raise ConfigError(f"{source}:{e.lineno}: not a config_list file: {e.msg}") from None
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring-like comment block
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            raise ConfigError(f"{source}:{node.lineno}: only 'name = value' lines are read "
                              "(this file is read, never run)")
        try:
            out[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            raise ConfigError(f"{source}:{node.lineno}: {node.targets[0].id}: the value is "
                              "not a literal (string, number, list, dict)") from None
    return out


_NONMEMBER_RULES = {"accept_these_nonmembers": RuleAction.ACCEPT,
                    "hold_these_nonmembers": RuleAction.HOLD,
                    "reject_these_nonmembers": RuleAction.REJECT,
                    "discard_these_nonmembers": RuleAction.DISCARD}
_FOOTER_VARS = ("real_name", "host_name", "web_page_url", "listinfo", "cgiext",
                "_internal_name")
_IGNORED = ("password", "mod_password", "post_password", "language", "topics")


def _footer(text: str, name: str, domain: str, notes: list[str]) -> str:
    for var, value in (("real_name", name), ("host_name", domain),
                       ("_internal_name", name)):
        text = text.replace(f"%({var})s", value)
    left = [v for v in _FOOTER_VARS if f"%({v})s" in text]
    if left:
        notes.append(f"msg_footer: {', '.join(left)} left as written (no web pages "
                     "configured for them); edit with 'postroom lists set LIST footer=...'")
    return text.strip("\n")


def settings_from_config(cfg: dict[str, Any], current: ListSettings) -> Imported:
    got = Imported()
    v, notes = got.values, got.notes

    def has(key: str) -> bool:
        return key in cfg

    if has("description"):
        v["description"] = " ".join(str(cfg["description"]).split())
    for key, ours in (("owner", "owners"), ("moderator", "moderators")):
        if has(key):
            v[ours] = [check_address(str(a), key) for a in cfg[key]]
    if has("subject_prefix"):
        prefix = str(cfg["subject_prefix"])
        if "%d" in prefix:
            notes.append("subject_prefix: the %d post number is not kept")
            prefix = prefix.replace("%d", "").replace("  ", " ")
        v["subject_prefix"] = prefix
    if has("msg_footer"):
        v["footer"] = _footer(str(cfg["msg_footer"]), current.name, current.domain, notes)
    if has("max_message_size"):
        v["max_message_size"] = int(cfg["max_message_size"]) * 1024  # Mailman: KB
    if has("max_num_recipients"):
        v["max_recipients"] = int(cfg["max_num_recipients"])
    if has("archive") or has("archive_private"):
        if not cfg.get("archive", True):
            v["archive_policy"] = "none"
        else:
            v["archive_policy"] = "members" if cfg.get("archive_private") else "public"
    if has("reply_goes_to_list"):
        mode = int(cfg["reply_goes_to_list"])
        v["reply_to"] = "list" if mode == 1 else "author"
        if mode == 2:
            notes.append("reply_goes_to_list = 2 (an explicit address) is kept as 'author'")
    if has("default_member_moderation") or has("generic_nonmember_action"):
        if cfg.get("default_member_moderation"):
            v["posting_policy"] = "moderated"
        elif int(cfg.get("generic_nonmember_action", 1)) == 0:
            v["posting_policy"] = "open"
        else:
            v["posting_policy"] = "members"
            if int(cfg.get("generic_nonmember_action", 1)) in (2, 3):
                notes.append("generic_nonmember_action reject/discard: non-member posts are "
                             "held instead (add address_rules to reject or discard)")
    if has("dmarc_moderation_action"):
        action = int(cfg["dmarc_moderation_action"])
        v["dmarc_mitigation"] = {0: "none", 1: "munge_from", 2: "wrap"}.get(action,
                                                                          "munge_from")
        if action > 2:
            notes.append("dmarc_moderation_action reject/discard: From is rewritten instead")
    if has("subscribe_policy"):
        v["subscription_needs_approval"] = int(cfg["subscribe_policy"]) in (2, 3)
    if has("digest_size_threshhold"):
        v["digest_size_kb"] = max(1, int(cfg["digest_size_threshhold"]))
    if has("max_days_to_hold") and int(cfg["max_days_to_hold"]) > 0:
        v["held_expiry_days"] = int(cfg["max_days_to_hold"])
    rules = [AddressRule(str(p).lower() if not str(p).startswith("^") else str(p), action)
             for key, action in _NONMEMBER_RULES.items() for p in cfg.get(key, [])]
    if rules:
        v["address_rules"] = rules
    if has("acceptable_aliases"):
        v["acceptable_aliases"] = [line.strip() for line in
                                   str(cfg["acceptable_aliases"]).splitlines() if line.strip()]
    for key in _IGNORED:
        if has(key):
            notes.append(f"{key}: not imported (postroom has no such setting)")
    return got


@dataclass(frozen=True, slots=True)
class ArchiveImport:
    messages: int
    skipped: int


def import_pipermail(site: Site, settings: ListSettings, mbox: Path) -> ArchiveImport:
    """Every message of a Pipermail mbox into the list's archive, in file order."""
    if not mbox.is_file():
        raise ConfigError(f"{mbox}: no such file (Pipermail keeps it in "
                          "archives/private/LIST.mbox/LIST.mbox)")
    box = mailbox.mbox(str(mbox), create=False)
    count = skipped = 0
    try:
        for key in box.iterkeys():
            raw = box.get_bytes(key)
            msg = email.message_from_bytes(raw, policy=SMTP)
            assert isinstance(msg, EmailMessage)
            when = _date(msg)
            sender = email.utils.parseaddr(str(msg.get("From") or ""))[1]
            if archive.archive(site, settings, msg, raw, sender, now=when) is None:
                skipped += 1
            else:
                count += 1
    finally:
        box.close()
    return ArchiveImport(count, skipped)


def _date(msg: EmailMessage) -> datetime:
    try:
        when = email.utils.parsedate_to_datetime(str(msg["Date"]))
    except (TypeError, ValueError, IndexError):
        return datetime.now(UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)
