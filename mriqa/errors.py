"""Errors for bad user input: one line that names the file and what was wrong."""
from __future__ import annotations

import os


class InputError(ValueError):
    """A user mistake (bad file, wrong shape, NaN, empty mask, ...). The CLI prints it on one line, exit 2."""

    def __init__(self, source: str | os.PathLike | None, problem: str):
        self.source = None if source is None else os.fspath(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}" if self.source else problem)
