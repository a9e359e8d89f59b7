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


def chained_stop(exc: BaseException) -> BaseException | None:
    """The stop (Ctrl+C or SIGTERM) that `exc` is or was raised from, else None: a compiled extension's
    initialiser, importing when the signal lands, turns it into "ImportError: initialization failed". The
    chain is followed as a traceback shows it: an error raised `from None` has already dealt with its context."""
    todo, seen = [exc], set()
    while todo:
        link = todo.pop()
        if link is None or id(link) in seen:  # a chain may loop back on itself
            continue
        if isinstance(link, STOPS):
            return link
        seen.add(id(link))
        todo += [link.__cause__, None if link.__suppress_context__ else link.__context__]
    return None


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' for the closest choices, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> UserError:
    """A UserError for an unknown name, listing the valid ones and the closest matches."""
    choices = sorted(choices)
    return UserError(f"unknown {kind} '{name}'{suggest(name, choices)}; valid: {', '.join(choices)}")
