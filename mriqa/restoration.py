"""Restore photo files with QAIRN: the library under ``mriqa restore``.

>>> from mriqa.restoration import restore_files
>>> records = restore_files(["a.jpg", "b.png"], "restored/")   # writes restored/a.jpg, restored/b.png
>>> [r.to_json() for r in records]                             # {"input", "output", "q1", "q2", "q3"}

Each input (PNG, BMP, TIFF or JPEG photo, read by :func:`recon.io.photos.read_photo_file`) is restored by QAIRN
(:func:`mriqa.models.qairn.run_qairn`; an image larger than the tile runs tile by tile, same result) and written
to ``out_dir/<input file name>``: same file format, same size, same mode (gray stays gray, RGBA keeps its
alpha, 16-bit gray stays 16-bit; palette and CMYK images are written as RGB). A file of several pages (multi-page
TIFF, animated PNG) is refused: its output would hold the first page only. A JPEG output is saved at
``jpeg_quality`` (default 100, 4:4:4 chroma) so that saving does not bring the artefacts back. Name clashes
between inputs get ``-2``, ``-3``... before the extension; an output that would overwrite its own input is an
error (inputs are never modified).

All or nothing: outputs are staged in ``out_dir`` and moved into place only when every input was restored;
a bad input raises :class:`recon.errors.InputError` and leaves nothing behind (a folder we created is removed).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from recon.errors import InputError
from recon.io.images import DEFAULT_MAX_PIXELS

PIL_FORMATS = {"PNG": ".png", "BMP": ".bmp", "TIFF": ".tif", "JPEG": ".jpg"}
MIN_SIDE = 8  # one JPEG block: a smaller image has no block artefacts to remove and no quality to estimate


@dataclass
class RestoreRecord:
    """One restored image: the input, the output written, QAIRN's quality estimates Q1..Q3 (Minkowski-pooled
    attention maps in [0, 1], higher = better; Q2 is the paper's estimate)."""

    input: str
    output: str
    q1: float
    q2: float
    q3: float

    def to_json(self) -> dict:
        return {"input": self.input, "output": self.output, "q1": self.q1, "q2": self.q2, "q3": self.q3}


def read_photo_for_restore(path: str, max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """-> (uint8 / uint16 ``[H, W]`` or ``[H, W, 3]``, alpha uint8 or None, Pillow format, output mode). The
    pixels stay integers (a quarter of float32's memory); QAIRN takes them to [0, 1] tile by tile
    (:func:`mriqa.normalize.unit_range`)."""
    from recon.io.photos import read_photo_file

    (photo,) = read_photo_file(path, max_pixels)
    if photo.format not in PIL_FORMATS:
        raise InputError(path, f"unsupported image format {photo.format} (PNG, BMP, TIFF or JPEG)")
    if photo.frames > 1:  # the output would keep only the first page
        raise InputError(path, f"holds {photo.frames} pages (frames); restore takes one image a file: save the "
                               "pages as separate files")
    arr = photo.array
    if photo.kind != "photo":
        raise InputError(path, f"{photo.mode}-mode (32-bit) images are not photos; restore expects 8/16-bit images")
    if min(arr.shape[:2]) < MIN_SIDE:
        raise InputError(path, f"image is {arr.shape[0]}x{arr.shape[1]} pixels, smaller than one {MIN_SIDE}x{MIN_SIDE} "
                               "JPEG block: nothing to restore")
    if arr.dtype == np.uint16:
        return arr, None, photo.format, "I;16"
    if arr.ndim == 2:
        return arr, None, photo.format, "L"
    if arr.shape[-1] == 2:  # LA
        return np.ascontiguousarray(arr[..., 0]), arr[..., 1].copy(), photo.format, "LA"
    if arr.shape[-1] == 4:  # RGBA, or a palette with transparency
        return np.ascontiguousarray(arr[..., :3]), arr[..., 3].copy(), photo.format, \
            "RGBA" if photo.format != "JPEG" else "RGB"
    return arr, None, photo.format, "RGB"


def write_restored(path, restored: np.ndarray, alpha, fmt: str, mode: str, jpeg_quality: int) -> None:
    """Write a restoration in [0, 1] (float32; scaled in place, so it is used up) as ``fmt`` / ``mode`` (8-bit,
    or 16-bit for ``I;16``) at ``path``."""
    from PIL import Image

    arr = np.clip(restored, 0, 1, out=restored)
    arr *= 65535.0 if mode == "I;16" else 255.0
    np.round(arr, out=arr)
    if mode == "I;16":
        im = Image.fromarray(arr.astype(np.uint16))
    else:
        arr = arr.astype(np.uint8)
        if mode in ("LA", "RGBA"):
            arr = np.dstack([arr, alpha])
        im = Image.fromarray(arr, mode=mode)
    kwargs = {"quality": int(jpeg_quality), "subsampling": 0} if fmt == "JPEG" else {}
    im.save(path, format=fmt, **kwargs)


def output_names(paths: Sequence[str], out_dir: Path) -> list[str]:
    """Output file names, decided up front: the input's name, ``-2``, ``-3`` ... on a clash; InputError when
    one would overwrite an input."""
    names: list[str] = []
    used: set[str] = set()
    inputs_resolved = {os.path.realpath(p) for p in paths}
    for path in paths:
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
    return names


def restore_files(paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike, weights=None, device=None,
                  jpeg_quality: int = 100, self_ensemble: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                  tile: int | None = None) -> list[RestoreRecord]:
    """Restore every input into ``out_dir`` (module docstring); one :class:`RestoreRecord` per input.

    ``weights``: a QAIRN ``.safetensors`` file (default: the shipped one; missing -> InputError before any input
    is read). ``tile``: QAIRN's tile side (:data:`mriqa.tiling.QAIRN_TILE`)."""
    from recon.io.output import write_error
    from mriqa.models.qairn import load_qairn, resolve_qairn_weights, run_qairn

    if not 1 <= int(jpeg_quality) <= 100:
        raise InputError(None, f"--jpeg-quality must be in 1..100, got {jpeg_quality}")
    paths = [os.fspath(p) for p in paths]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "--out must name a folder")
    model, _ = load_qairn(resolve_qairn_weights(weights), device=device)
    names = output_names(paths, out_dir)
    made_dir = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mriqa-restore.", dir=out_dir))
    records, ok = [], False
    try:
        for path, name in zip(paths, names):
            image, alpha, fmt, mode = read_photo_for_restore(path, max_pixels)
            restored, q = run_qairn(model, image, self_ensemble=self_ensemble, tile=tile)
            del image
            try:
                write_restored(staging / name, restored, alpha, fmt, mode, jpeg_quality)
            except OSError as exc:
                raise write_error(out_dir / name, "the restored image", exc) from None
            del restored
            records.append(RestoreRecord(path, str(out_dir / name), round(float(q[0]), 6), round(float(q[1]), 6),
                                         round(float(q[2]), 6)))
        try:
            for name in names:
                os.replace(staging / name, out_dir / name)
        except OSError as exc:
            raise write_error(out_dir, "the restored images", exc) from None
        ok = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not ok and made_dir:
            try:
                os.rmdir(out_dir)
            except OSError:
                pass
    return records
