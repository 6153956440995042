"""Output paths checked before the work, and final writes that end as one clear line instead of a traceback.

A command that writes ``--json OUT`` / ``--out DIR`` calls :func:`check_writable` / :func:`check_writable_dir`
while parsing, so a read-only folder, a folder given where a file is wanted (or the reverse) or a parent path
that is a file fails at once with a :class:`recon.errors.InputError` (CLI: one line, exit 2), before minutes
of work. Writability is tested by creating (and removing) a temporary file in the folder that will receive
the output, the only test that also holds for root, read-only mounts and network file systems.

What cannot be known in advance (the disk filling up, the folder removed meanwhile) is caught at the end:
:func:`output_file` is :func:`recon.files.atomic_path` with every ``OSError`` turned into an InputError that
names the output and the reason (e.g. ``No space left on device``); the temp file is removed, nothing partial
is left.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from recon.errors import InputError
from recon.files import atomic_path

__all__ = ["check_writable", "check_writable_dir", "output_file", "write_error"]


def _existing_ancestor(path: Path, what: str) -> Path:
    """The nearest existing folder at or above ``path`` (what ``mkdir(parents=True)`` would start from)."""
    here = path
    while not here.exists():
        if here.parent == here:
            break
        here = here.parent
    if not here.is_dir():
        raise InputError(path, f"cannot create {what}: {here} is a file, not a folder")
    return here


def _probe(folder: Path, path: Path, what: str) -> None:
    """Create and remove a temporary file in ``folder``; InputError naming ``path`` if that fails."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".mriqa-write-test."):
            pass
    except OSError as exc:
        raise InputError(path, f"cannot write {what} here: {folder} is not writable "
                               f"({exc.strerror or type(exc).__name__})") from None


def check_writable(path: str | os.PathLike, what: str = "--json") -> Path:
    """Check that a file can be written at ``path`` (missing parent folders will be created): not a folder,
    its folder (or the nearest existing ancestor) writable. Returns ``Path(path)``."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, f"{what} must name a file, not a folder")
    _probe(_existing_ancestor(path.parent if str(path.parent) else Path("."), what), path, what)
    return path


def check_writable_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Check that files can be written into the folder ``path`` (created if missing): not a file, writable.
    Returns ``Path(path)``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(path, f"{what} must name a folder, not a file")
    _probe(_existing_ancestor(path, what), path, what)
    return path


def write_error(path: str | os.PathLike, what: str, exc: OSError) -> InputError:
    """The InputError for an ``OSError`` raised while writing ``what`` to ``path``."""
    reason = exc.strerror or (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return InputError(path, f"cannot write {what} ({reason})")


@contextlib.contextmanager
def output_file(path: str | os.PathLike, what: str = "output", suffix: str | None = None) -> Iterator[Path]:
    """:func:`recon.files.atomic_path` whose ``OSError`` (no space, folder gone, permission) becomes one
    :class:`InputError` naming ``path``; the temporary file is removed either way."""
    try:
        with atomic_path(path, suffix=suffix) as tmp:
            yield tmp
    except OSError as exc:
        raise write_error(path, what, exc) from None
