"""What the commands that read images and print records (``score``, ``estimate-r``, ``restore``) share: the
``--max-pixels`` option, the table on stdout, the JSON file and the report of failed inputs; and the ``--seed``
type of every command that takes one."""
from __future__ import annotations

import argparse
import sys

#: ``--max-pixels`` default, = ``recon.io.images.DEFAULT_MAX_PIXELS`` (not imported here: ``--help`` stays light)
DEFAULT_MAX_PIXELS = 64_000_000


def pixel_count(text: str) -> int:
    """``--max-pixels``: a positive count: ``12000000``, ``12e6`` or ``12M``."""
    value = text.strip().upper()
    scale = 1_000_000 if value.endswith("M") else 1
    try:
        n = int(float(value.rstrip("M")) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a pixel count: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return n


#: the largest ``--seed``: every seed the commands hand on (masks, NumPy generators, splits) fits in 31 bits
MAX_SEED = 2 ** 31 - 1


def seed_value(text: str) -> int:
    """``--seed``: an integer from 0 to :data:`MAX_SEED` (NumPy refused a negative one with a traceback)."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {MAX_SEED}, got {text!r}")
    return n


def add_max_pixels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-pixels", type=pixel_count, default=DEFAULT_MAX_PIXELS, metavar="N",
                        help="largest image (height x width) accepted; a larger one fails before it is decoded "
                        f"(default {DEFAULT_MAX_PIXELS // 1_000_000}M; big images run tile by tile)")


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]], left: int) -> str:
    """Columns padded to their widest cell; the first ``left`` columns left-aligned, the rest right-aligned."""
    cells = [header, *rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) if i < left else c[i].rjust(widths[i])
                               for i in range(len(header))).rstrip() for c in cells)


def all_failed(rows, failed: list) -> bool:
    """True when no input gave a result: then nothing is written and no table is printed, only the errors."""
    return len(failed) == len(rows)


def write_records(rows, json_path, notes: list[str]) -> list:
    """Write ``[r.to_json() for r in rows]`` to ``json_path`` (atomically; an OSError is one InputError line),
    print the notes and one ``mriqa: error: FILE: problem`` line per failed record on stderr; return those.

    A failed input is a record beside the others (``error`` instead of values); when every input failed there is
    nothing to report and no file is written."""
    import json

    from recon.io.output import output_file

    failed = [r for r in rows if getattr(r, "error", None)]
    if json_path is not None and not all_failed(rows, failed):
        with output_file(json_path, "--json", suffix=".json") as tmp:
            tmp.write_text(json.dumps([r.to_json() for r in rows], indent=2) + "\n")
    for note in notes:
        print(f"mriqa: note: {note}", file=sys.stderr)
    for r in failed:
        print(f"mriqa: error: {r.error_message()}", file=sys.stderr)
    return failed


def exit_code(rows, failed: list, json_path) -> int:
    """Print where the JSON went and how many inputs failed; 2 when any did, else 0 (the caller returns 2 without
    it when every input failed: :func:`all_failed`)."""
    if json_path is not None:
        print(f"wrote {json_path}")
    if failed:
        print(f"{len(failed)} of {len({r.input for r in rows})} inputs failed (errors on stderr)")
        return 2
    return 0
