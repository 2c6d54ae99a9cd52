"""postroom: a department's mail service in one program."""

__version__ = "0.1.0"
