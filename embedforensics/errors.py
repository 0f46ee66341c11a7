"""User-facing errors.

Every mistake a user can make (a malformed recipe, a missing file, an unknown column, a
model that is not available offline) is raised as :class:`UserError`. The CLI prints its
one-sentence message and exits non-zero; only ``--debug`` shows a traceback. Bugs in
embedforensics itself stay ordinary exceptions so they are never disguised as user errors.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem with the user's input, reported as one clear sentence.

    ``file`` and ``key`` locate the problem (``recipe.yaml``, ``probes[1].n_components``)
    and are prefixed to the message when given.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.message = message
        self.file = file
        self.key = key
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.file, self.key) if part)
        return f"{where}: {self.message}" if where else self.message


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def first_line(exc: BaseException) -> str:
    """An exception's first line (for one-sentence errors), or its type's name when it
    says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
