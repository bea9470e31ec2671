"""The one error type for a user's mistake: the CLI prints its message on one line and exits with code 2."""

from __future__ import annotations


class AttnkitError(Exception):
    """A bad file, flag or config. The message names the file, the line or field, and the problem."""
