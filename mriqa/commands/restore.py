"""``mriqa restore``: JPEG-artefact removal with QAIRN, plus its three quality estimates.

::

    mriqa restore INPUT... --model qairn --out DIR [--json OUT] [--weights PATH] [--device DEV]
                  [--jpeg-quality Q] [--self-ensemble] [--max-pixels N]

The library: :func:`mriqa.restoration.restore_files`. Each INPUT (PNG, BMP, TIFF or JPEG photo) is restored by
QAIRN (:mod:`mriqa.models.qairn`) and written to ``DIR/<input file name>``: same file format, same size, same
mode (gray stays gray, RGBA keeps its alpha, 16-bit gray stays 16-bit; palette and CMYK images are written as
RGB). A JPEG output is saved at ``--jpeg-quality`` (default 100, 4:4:4 chroma) so that saving does not bring
the artefacts back. Name clashes between inputs get ``-2``, ``-3``... before the extension; an output that
would overwrite its own input is an error (inputs are never modified). Big images (up to ``--max-pixels``)
run tile by tile in bounded memory, with the same result.

Records: a table on stdout and, with ``--json OUT``, a list of ``{"input", "output", "q1", "q2", "q3"}``
(Q1..Q3: Minkowski-pooled attention maps, in [0, 1], higher = better; Q2 is the paper's quality estimate).

``--self-ensemble``: the restoration is the mean over the 8 rotations / flips of the input (each restored and
turned back; 8 times the compute; docs/qairn/README.md gives the gain); Q1..Q3 come from the single pass.

Weights: ``--weights PATH`` or the shipped ``mriqa/weights/qairn.safetensors``; without either the command
fails with a clear error before reading any input; so does an ``--out`` / ``--json`` that cannot be written.
Nothing is written unless every input was restored (outputs are staged and moved into ``DIR`` at the end;
the JSON is written atomically).
"""
from __future__ import annotations

import argparse

from mriqa.commands.shared import add_max_pixels, format_table, write_records

MODELS = ("qairn",)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "restore",
        help="remove JPEG artefacts with QAIRN and report its quality estimates Q1..Q3",
        description="Restore JPEG-compressed photos with QAIRN; writes same-format, same-size images into "
        "--out and records QAIRN's quality estimates Q1..Q3.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="PNG / BMP / TIFF / JPEG images")
    p.add_argument("--model", default="qairn", choices=MODELS, help="restoration model (default qairn)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the restored images")
    p.add_argument("--json", metavar="OUT", default=None, help="write the records as JSON to OUT")
    p.add_argument("--weights", metavar="PATH", default=None,
                   help="QAIRN .safetensors weights (default: the shipped mriqa/weights/qairn.safetensors)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--jpeg-quality", type=int, default=100, metavar="Q",
                   help="quality used when an output is JPEG (default 100, 4:4:4 chroma)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the restorations of the 8 rotated / flipped copies (x8 compute, a little more PSNR)")
    add_max_pixels(p)
    p.set_defaults(func=run)
    return p


def _format_table(rows) -> str:
    return format_table(("input", "output", "q1", "q2", "q3"),
                        [(r.input, r.output, f"{r.q1:.4f}", f"{r.q2:.4f}", f"{r.q3:.4f}") for r in rows], left=2)


def run(args) -> int:
    from recon.io.output import check_writable, check_writable_dir
    from mriqa.restoration import restore_files

    check_writable_dir(args.out, "--out")
    if args.json is not None:
        check_writable(args.json, "--json")
    rows = restore_files(args.inputs, args.out, weights=args.weights, device=args.device,
                         jpeg_quality=args.jpeg_quality, self_ensemble=args.self_ensemble,
                         max_pixels=args.max_pixels)
    write_records(rows, args.json, [])
    print(_format_table(rows))
    print(f"wrote {len(rows)} restored image(s) to {args.out}" + (f"; records in {args.json}" if args.json else ""))
    return 0
