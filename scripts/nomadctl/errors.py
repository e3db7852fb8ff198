"""The errors nomadctl reports: each says what to fix, and none ends in a traceback."""

from __future__ import annotations


class Failure(Exception):
    """Something the user can fix; the message says what. The CLI prints it and exits 1."""


class NotFound(Failure):
    """Nomad answered 404: the caller knows what was looked for and says so."""
