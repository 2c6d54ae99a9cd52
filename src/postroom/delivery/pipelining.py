"""RFC 2920 PIPELINING for the SMTP client: the reply reader and the data block.

The pipelined transaction itself is ``smtp.transaction.pipelined``; the names here stay
for their callers.
"""

from __future__ import annotations

from postroom.delivery.smtp.chat import MAX_REPLY, Disconnected, Reply, ReplyReader, data_block

__all__ = ["MAX_REPLY", "Disconnected", "Reply", "ReplyReader", "data_block"]
