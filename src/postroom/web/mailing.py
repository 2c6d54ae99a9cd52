"""Mail the web sends on its own account: the password-reset link. Queued with
``inject_from_command`` like every notice a command writes (the running server is told)."""

from __future__ import annotations

import email.utils
from email.message import EmailMessage
from email.policy import SMTP

from postroom import maillog
from postroom.queue import accept
from postroom.runner.inject import inject_from_command
from postroom.runtime import Runtime
from postroom.web.accounts import RESET_MINUTES, Admin


def send_reset(rt: Runtime, admin: Admin, token: str) -> None:
    site = rt.site
    hostname = site.profile.site.hostname
    postmaster = site.profile.site.postmaster
    if "@" not in postmaster:
        postmaster = f"{postmaster}@{site.profile.site.domains[0]}"
    base = site.profile.web.base_url or f"http://{site.profile.web.address}:" \
                                        f"{site.profile.web.port}"
    msg = EmailMessage(policy=SMTP)
    msg["From"] = postmaster
    msg["To"] = admin.email
    msg["Subject"] = f"Password reset for {admin.login} on {hostname}"
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=hostname)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(f"Someone (perhaps you) asked to reset the web password of "
                    f"{admin.login}.\n\nTo choose a new one, open\n  {base}/admin/reset/"
                    f"{token}\nwithin {RESET_MINUTES} minutes. If you did not ask, ignore "
                    "this message; your password stays as it is.\n")
    rcpt = accept.make_recipient(admin.email, rt.resolver.resolve(admin.email).routes)
    if not rcpt.deliveries:
        return
    env = accept.new_envelope("", [rcpt], protocol="local", client_addr="", helo=hostname)
    inject_from_command(env, msg.as_bytes(), site=site)
    maillog.line(f"web: password reset link for {admin.login} sent to <{admin.email}>")
