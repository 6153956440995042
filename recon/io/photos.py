"""Decoding image files with Pillow: one :class:`Photo` per frame, the array in the layout of
:mod:`recon.io.images`' table (16-bit gray kept as uint16; CMYK, YCbCr, palette -> RGB (a gray palette -> gray);
palette with transparency -> RGBA; 1-bit -> uint8 0/255; 32-bit integer or float modes -> the ``mri`` kind).

The bottom of the image readers: :mod:`recon.io.volumes` (2-D images as volumes) and :mod:`recon.io.images`
(records for the quality models) both decode through :func:`read_photo_file`.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from recon.errors import InputError, first_line

__all__ = ["Photo", "read_photo_file", "check_pixels", "check_finite"]


@dataclass
class Photo:
    """One decoded frame of an image file: ``array`` as in the module table, ``kind``, the file's Pillow
    ``format`` (``PNG``, ``JPEG``, ``TIFF``, ``BMP``, ...), ``mode`` (before any conversion) and ``frames``, how
    many frames (pages) the file holds."""

    array: np.ndarray
    kind: str
    format: str | None
    mode: str
    frames: int = 1


def check_pixels(source, height: int, width: int, max_pixels: int | None) -> None:
    """InputError when an image of ``height`` x ``width`` has more than ``max_pixels`` pixels (None: no limit)."""
    if max_pixels is not None and int(height) * int(width) > int(max_pixels):
        raise InputError(source, f"image is {width}x{height} = {height * width / 1e6:.1f} megapixels, more than "
                                 f"the limit of {max_pixels / 1e6:g} megapixels (--max-pixels)")


def check_finite(arr: np.ndarray, source, index: int | None) -> None:
    """InputError naming ``slice index`` (or the image) when a float / complex ``arr`` holds NaN or Inf."""
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        where = f"slice {index}" if index is not None else "image"
        raise InputError(source, f"{where} contains NaN or Inf values")


def _gray_palette(im) -> bool:
    """True when every colour of a palette image's palette is a gray (R = G = B)."""
    palette = im.getpalette(rawmode="RGB")
    if not palette:
        return False
    rgb = np.asarray(palette, dtype=np.int32).reshape(-1, 3)
    return bool((rgb[:, 0] == rgb[:, 1]).all() and (rgb[:, 1] == rgb[:, 2]).all())


def _frame_array(im) -> tuple[np.ndarray, str]:
    """One Pillow frame -> (array, kind) following the module table."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im).astype(np.uint16), "photo"
    if mode == "1":
        return np.asarray(im.convert("L")), "photo"
    if mode in ("L", "RGB", "RGBA", "LA"):
        return np.asarray(im), "photo"
    if mode in ("I", "F"):
        arr = np.asarray(im)
        if mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
            return arr.astype(np.uint16), "photo"  # 16-bit PNG opened as mode I
        return arr.astype(np.float32), "mri"  # unscaled integer / float data: robust-max scaling
    if mode == "P":
        if "transparency" not in im.info and _gray_palette(im):  # a gray image saved with a palette stays gray
            return np.asarray(im.convert("L")), "photo"
        return np.asarray(im.convert("RGBA" if "transparency" in im.info else "RGB")), "photo"
    if mode == "PA":
        return np.asarray(im.convert("RGBA")), "photo"
    return np.asarray(im.convert("RGB")), "photo"  # CMYK, YCbCr, LAB, HSV, RGBX, ...


def read_photo_file(path: str | os.PathLike, max_pixels: int | None = None, all_frames: bool = False
                    ) -> list[Photo]:
    """Decode an image file with Pillow: the first frame (or every frame of a multi-page file)."""
    from PIL import Image, UnidentifiedImageError

    src = os.fspath(path)
    out = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is max_pixels
            with Image.open(src) as im:
                check_pixels(src, im.height, im.width, max_pixels)
                frames = getattr(im, "n_frames", 1)
                for index in range(frames if all_frames else 1):
                    im.seek(index)
                    im.load()
                    arr, kind = _frame_array(im)
                    check_finite(arr, src, None)
                    out.append(Photo(np.ascontiguousarray(arr), kind, im.format, im.mode, frames))
    except FileNotFoundError:
        raise InputError(src, "file not found") from None
    except Image.DecompressionBombError as exc:
        raise InputError(src, f"image too large to decode ({first_line(exc)})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(src, f"cannot read as an image: {first_line(exc)}") from None
    return out
