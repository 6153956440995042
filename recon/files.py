"""Atomic file writing: a temp file in the destination folder, renamed into place only on success.

Temp files are named ``.<destination name>.<8 random characters>.partial<suffix>`` (:data:`TEMP_PATTERN`), so that
one left behind by a process killed mid-write (SIGKILL, power loss: no ``finally`` runs) is recognisable;
:func:`remove_stale_temps` deletes those that are older than the running process.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

TEMP_MARK = ".partial"
#: ``.<name>.<random>.partial<suffix>``: group ``name`` is the destination's file name
TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.partial(\.[^.]+)?$")
_IMPORTED_AT = time.time()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on normal exit it is renamed to ``path``, on error removed.

    ``suffix`` defaults to the destination's own suffix, so writers that look at the extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_MARK + (suffix or path.suffix or ".tmp"),
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # after the writer: some (safetensors) replace the file and leave mkstemp's 0600
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def process_start_time() -> float:
    """When this process started (seconds since the epoch): from ``/proc`` on Linux, else when this module was
    imported (which is early in any process that writes files through it)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of proc(5), counted after the "(comm)" field
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return min(boot + ticks / os.sysconf("SC_CLK_TCK"), _IMPORTED_AT)
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


def remove_stale_temps(folder: str | os.PathLike, names: Iterable[str] | None = None) -> list[Path]:
    """Delete the :func:`atomic_path` temp files in ``folder`` (not below it) that were last modified before this
    process started, i.e. that no running write of ours can own; ``names`` limits it to the temp files of those
    destination file names. Returns the removed paths. A missing folder is no error."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    wanted = None if names is None else set(names)
    started = process_start_time()
    removed = []
    for entry in folder.iterdir():
        match = TEMP_PATTERN.match(entry.name)
        if match is None or (wanted is not None and match["name"] not in wanted) or not entry.is_file():
            continue
        try:
            if entry.stat().st_mtime < started:
                entry.unlink()
                removed.append(entry)
        except FileNotFoundError:  # removed meanwhile
            continue
    return sorted(removed)


def user_cache_dir(name: str) -> Path | None:
    """The cache folder ``name`` (e.g. ``espirit``, ``qf-denoise``): ``$MRIQA_CACHE/<name>`` when MRIQA_CACHE is
    set (``off``, ``none``, ``0`` or empty: no cache, None), else the user cache directory,
    ``$XDG_CACHE_HOME/mriqa/<name>`` (``~/.cache/mriqa/<name>``). Never the current directory."""
    root = os.environ.get("MRIQA_CACHE")
    if root is not None and root.strip().lower() in ("off", "none", "0", ""):
        return None
    if root:
        return Path(root) / name
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mriqa" / name
