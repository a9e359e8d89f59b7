"""The error type for bad input: the CLI prints its message on one line and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Something the user gave us is wrong; the message says what and how to fix it."""


class Terminated(BaseException):
    """SIGTERM arrived while the CLI turns it into an exception (a BaseException, like KeyboardInterrupt, so
    that cleanup code runs and nothing swallows it)."""

    exit_code = 143  # 128 + SIGTERM


STOPS = (KeyboardInterrupt, Terminated)  # a stop by Ctrl+C or SIGTERM, as cleanup code catches it


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' for the closest choices, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> UserError:
    """A UserError for an unknown name, listing the valid ones and the closest matches."""
    choices = sorted(choices)
    return UserError(f"unknown {kind} '{name}'{suggest(name, choices)}; valid: {', '.join(choices)}")
