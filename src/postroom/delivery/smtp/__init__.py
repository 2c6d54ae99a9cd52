"""postroom's own SMTP client, on asyncio streams, split along Postfix's src/smtp seams:

    chat.py         reply reader, enhanced status codes, the data block  (smtp_chat.c)
    session.py      one session: streams, EHLO features, command writer  (smtp_session.c)
    policy.py       destination policy and TLS contexts                  (smtp_tls_policy.c)
    connect.py      addresses in order, connect and greeting timeouts    (smtp_connect.c)
    proto.py        EHLO/HELO, STARTTLS, AUTH PLAIN/LOGIN                 (smtp_proto.c)
    transaction.py  MAIL/RCPT/DATA, pipelined (RFC 2920) or lock-step    (smtp_proto.c)
    reuse.py        idle sessions per destination                        (smtp_reuse.c)
    trouble.py      which replies and errors are temporary or permanent  (smtp_trouble.c)

``postroom.delivery.smtp_client.SmtpClient`` runs a Job with them.
"""
