"""The web interface and REST API of a site: public list pages, archives, sign-up and
one-click unsubscribe, the admin pages, ``/api/v1``, exports, metrics and health.

    app.py          create_app(): the FastAPI app, its middleware and routers
    context.py      WebContext: the runtime in force, the secret key, templates, limits
    service.py      how ``postroom serve`` runs it: in its own loop or a process of its own
    __main__.py     ``python -m postroom.web --site S --fd N`` (the process the master starts)

    public.py       list index, list info, subscribe / unsubscribe forms, one-click (RFC 8058)
    signup.py       abuse limits of web sign-up: form tokens, daily caps
    archive.py      archive pages: months, by date, by thread, message, attachment, mbox, search
    reading.py      reading an archived message safely (text, sanitised HTML, attachments)
    search.py       the archive's full-text index (SQLite FTS5, rebuilt from the mboxes)
    admin.py        admin pages of a list: login, held posts, members, settings
    admin_site.py   site admin pages: status and quiescent, lists, accounts
    api.py          REST API under /api/v1 (bearer tokens, scoped, revocable)
    ops.py          /export/valid-addresses, /healthz, /metrics

    moderation.py   deciding held posts (approve, reject, discard), for admin pages and API
    queue_ops.py    the API's queue actions, with the spool calls of ``postroom queue``
    status.py       what the site status page shows
    metrics.py      Prometheus collectors: the mail log, the spool, the store, latencies
    mailing.py      the password-reset mail

    accounts.py     admin accounts, login with lockout, sessions, API tokens, password reset
    deps.py         request dependencies: the logged-in account, API tokens, the list a URL names
    rights.py       who may do what: site admins, list owners, moderators, members
    security.py     CSRF tokens, cookies, client address, network checks, safe redirects
    middleware.py   browser cookie, security headers, request timing (one ASGI middleware)
"""

from __future__ import annotations
