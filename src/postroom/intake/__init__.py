"""Intake: the SMTP listeners, and local submission (``postroom-sendmail``)."""

from postroom.intake.listeners import Intake, bind, tls_contexts

__all__ = ["Intake", "bind", "tls_contexts"]
