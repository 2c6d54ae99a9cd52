"""SMTP intake on aiosmtpd: ``server`` (the protocol subclass), ``handler`` (hooks calling
policy, routing and the spool), ``policy`` (pure decisions), ``tls``, ``auth``."""
