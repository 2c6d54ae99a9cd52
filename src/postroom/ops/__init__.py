"""Operations: what an operator does to a site as a whole. ``salvage`` (``queue import``
from a dead machine's disk), ``status``; next address export, backup, restore, ``check``,
alerts. The control channel the commands use to reach a running server is
``postroom.control`` (on the ground floor, so that every layer can announce mail)."""
