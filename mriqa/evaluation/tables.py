"""Markdown tables for the evaluation reports, and printing a report while writing it to a file."""
from __future__ import annotations

import os
from typing import Iterable, Sequence

__all__ = ["md_table", "publish"]


def md_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A GitHub markdown table: ``header`` cells, then one line per row (cells formatted with ``str``)."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def publish(text: str, path: str | os.PathLike | None = None, command: str | None = None) -> str:
    """Print ``text`` and, with ``path``, write it there (with a final newline; atomically), headed by
    ``Printed by `command`.`` when ``command`` is given (the file says which command made it). Returns ``text``."""
    print(text)
    if path:
        from pathlib import Path

        from recon.files import atomic_path

        head = f"Printed by `{command}`.\n\n" if command else ""
        with atomic_path(path) as tmp:
            Path(tmp).write_text(head + text + "\n")
    return text
