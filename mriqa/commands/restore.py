"""``mriqa restore``: JPEG-artefact removal with QAIRN, plus its three quality estimates.

::

    mriqa restore INPUT... --model qairn --out DIR [--json OUT] [--weights PATH] [--device DEV]
                  [--jpeg-quality Q] [--self-ensemble]

Each INPUT (PNG, BMP, TIFF or JPEG photo) is restored by QAIRN (:mod:`mriqa.models.qairn`) and written to
``DIR/<input file name>``: same file format, same size, same mode (gray stays gray, RGBA keeps its alpha,
16-bit gray stays 16-bit; palette and CMYK images are written as RGB). A JPEG output is saved at
``--jpeg-quality`` (default 100, 4:4:4 chroma) so that saving does not bring the artefacts back. Name clashes
between inputs get ``-2``, ``-3``... before the extension; an output that would overwrite its own input is an
error (inputs are never modified).

Records: a table on stdout and, with ``--json OUT``, a list of ``{"input", "output", "q1", "q2", "q3"}``
(Q1..Q3: Minkowski-pooled attention maps, in [0, 1], higher = better; Q2 is the paper's quality estimate).

``--self-ensemble``: the restoration is the mean over the 8 rotations / flips of the input (each restored and
turned back; 8 times the compute; docs/qairn/README.md gives the gain); Q1..Q3 come from the single pass.

Weights: ``--weights PATH`` or the shipped ``mriqa/weights/qairn.safetensors``; without either the command
fails with a clear error before reading any input. Nothing is written unless every input was restored (outputs
are staged and moved into ``DIR`` at the end; the JSON is written atomically).
"""
from __future__ import annotations

import argparse
import os

MODELS = ("qairn",)
_PIL_FORMATS = {"PNG": ".png", "BMP": ".bmp", "TIFF": ".tif", "JPEG": ".jpg"}


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
    p.set_defaults(func=run)
    return p


def _read(path: str):
    """-> (float32 [H, W] or [H, W, 3] in [0, 1], alpha uint8 / None, PIL format, output mode)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from recon.errors import InputError

    try:
        with Image.open(path) as im:
            im.load()
            fmt = im.format
            mode = im.mode
            if fmt not in _PIL_FORMATS:
                raise InputError(path, f"unsupported image format {fmt} (PNG, BMP, TIFF or JPEG)")
            if mode in ("I;16", "I;16L", "I;16B", "I") and fmt in ("PNG", "TIFF"):
                arr = np.asarray(im).astype(np.float64)
                if arr.size and (arr.min() < 0 or arr.max() > 65535):
                    raise InputError(path, "integer image outside the 16-bit range")
                return (arr / 65535.0).astype(np.float32), None, fmt, "I;16"
            if mode in ("1", "L"):
                return np.asarray(im.convert("L"), dtype=np.float32) / 255.0, None, fmt, "L"
            if mode == "LA":
                arr = np.asarray(im)
                return arr[..., 0].astype(np.float32) / 255.0, arr[..., 1].copy(), fmt, "LA"
            if mode in ("RGBA", "PA") or (mode == "P" and "transparency" in im.info):
                arr = np.asarray(im.convert("RGBA"))
                out_mode = "RGBA" if fmt != "JPEG" else "RGB"
                return arr[..., :3].astype(np.float32) / 255.0, arr[..., 3].copy(), fmt, out_mode
            if mode == "F" or mode == "I":
                raise InputError(path, f"{mode}-mode (32-bit) images are not photos; restore expects 8/16-bit images")
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
            return arr, None, fmt, "RGB"
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        if isinstance(exc, InputError):
            raise
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(path, f"cannot read image ({detail})") from None


def _write(path, restored, alpha, fmt: str, mode: str, jpeg_quality: int) -> None:
    import numpy as np
    from PIL import Image

    if mode == "I;16":
        arr = np.round(np.clip(restored, 0, 1) * 65535.0).astype(np.uint16)
        im = Image.fromarray(arr)
    else:
        arr = np.round(np.clip(restored, 0, 1) * 255.0).astype(np.uint8)
        if mode in ("LA", "RGBA"):
            arr = np.dstack([arr, alpha])
        im = Image.fromarray(arr, mode=mode)
    kwargs = {}
    if fmt == "JPEG":
        kwargs = {"quality": int(jpeg_quality), "subsampling": 0}
    im.save(path, format=fmt, **kwargs)


def _format_table(rows) -> str:
    header = ("input", "output", "q1", "q2", "q3")
    cells = [header] + [(r["input"], r["output"], f"{r['q1']:.4f}", f"{r['q2']:.4f}", f"{r['q3']:.4f}") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    return "\n".join(
        "  ".join(c[i].ljust(widths[i]) if i < 2 else c[i].rjust(widths[i]) for i in range(5)).rstrip() for c in cells
    )


def run(args) -> int:
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from recon.errors import InputError
    from recon.files import atomic_path
    from mriqa.models.qairn import load_qairn, resolve_qairn_weights, run_qairn

    if not 1 <= args.jpeg_quality <= 100:
        raise InputError(None, f"--jpeg-quality must be in 1..100, got {args.jpeg_quality}")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "--out must name a folder")
    if args.json is not None and Path(args.json).is_dir():
        raise InputError(args.json, "--json must name a file, not a folder")
    weights = resolve_qairn_weights(args.weights)  # no weights: fail before reading any input
    model, _ = load_qairn(weights, device=args.device)

    # output names, decided up front: same file name, -2, -3 ... on a clash; never an input's own path
    names: list[str] = []
    used: set[str] = set()
    inputs_resolved = {os.path.realpath(p) for p in args.inputs}
    for path in args.inputs:
        base = os.path.basename(os.path.normpath(path))
        stem, ext = os.path.splitext(base)
        name, n = base, 1
        while name.lower() in used:
            n += 1
            name = f"{stem}-{n}{ext}"
        used.add(name.lower())
        if os.path.realpath(out_dir / name) in inputs_resolved:
            raise InputError(path, f"the output {out_dir / name} would overwrite an input; choose another --out")
        names.append(name)

    made_dir = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mriqa-restore.", dir=out_dir))
    rows = []
    ok = False
    try:
        for path, name in zip(args.inputs, names):
            image, alpha, fmt, mode = _read(path)
            if min(image.shape[:2]) < 1:
                raise InputError(path, "empty image")
            restored, q = run_qairn(model, image, self_ensemble=args.self_ensemble)
            _write(staging / name, restored, alpha, fmt, mode, args.jpeg_quality)
            rows.append({"input": path, "output": str(out_dir / name),
                         "q1": round(float(q[0]), 6), "q2": round(float(q[1]), 6), "q3": round(float(q[2]), 6)})
        for name in names:
            os.replace(staging / name, out_dir / name)
        if args.json is not None:
            with atomic_path(args.json, suffix=".json") as tmp:
                tmp.write_text(json.dumps(rows, indent=2) + "\n")
        ok = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not ok and made_dir:
            try:
                os.rmdir(out_dir)
            except OSError:
                pass
    print(_format_table(rows))
    print(f"wrote {len(rows)} restored image(s) to {out_dir}" + (f"; records in {args.json}" if args.json else ""))
    return 0
