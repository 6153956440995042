"""Errors for bad user input: one line that names the file and what was wrong."""
from __future__ import annotations

import os


class InputError(ValueError):
    """A user mistake (bad file, wrong shape, NaN, empty mask, ...). The CLI prints it on one line, exit 2."""

    def __init__(self, source: str | os.PathLike | None, problem: str):
        self.source = None if source is None else os.fspath(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}" if self.source else problem)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): what a one-line
    :class:`InputError` quotes of a library's error."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
