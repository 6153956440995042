"""The one intensity normalisation of the QF predictors, used identically at training and at inference.

Every image a QF model sees goes through :func:`to_unit_range` (and :func:`as_model_input` for the channel
layout). The rules:

1. **Range to [0, 1]**, by ``kind``:

   - ``kind="photo"`` (PNG/TIFF/BMP/JPEG files, RGB photographs): ``uint8`` -> ``/ 255``;
     ``uint16`` -> ``/ 65535`` (16-bit PNG/TIFF); ``bool`` -> 0/1; other integer types -> ``/`` their dtype
     maximum; float -> taken as already in [0, 1] (values outside [-0.002, 1.002] are an
     :class:`~recon.errors.InputError`: an unscaled float image is MRI-like data and wants ``kind="mri"``).
   - ``kind="mri"`` (magnitude images: DICOM, NIfTI, fastMRI h5, float arrays of any scale): complex ->
     magnitude ``abs``; negative values -> 0; then divide by the **99.5th percentile** of the image (a robust
     maximum, computed over the whole 2-D image *including* background: a few hot voxels do not set the
     scale, and the brightest 0.5 % of pixels saturate to 1). If that percentile is 0 (very sparse image) the
     maximum is used; an all-zero image is an :class:`~recon.errors.InputError`.
     Volumes are normalised **slice by slice** (every 2-D image on its own), at training and inference.

   NaN or Inf anywhere is an :class:`~recon.errors.InputError`. The result is clipped to [0, 1].

2. **8-bit quantisation** (:func:`quantize_8bit`): the [0, 1] image is rounded to the nearest multiple of
   1/255. During training the clean patch is quantised this way and the JPEG encoder receives exactly these
   8-bit values, so clean and JPEG-compressed inputs are on the same 1/255 grid; the network therefore cannot
   tell "compressed" from "clean" by the presence of the 8-bit step (a float MRI image that skipped the
   quantisation would look "cleaner than any JPEG" for a trivial reason). Quantisation is idempotent.

3. **Channels** (:func:`as_model_input`): the grayscale model takes RGB images as ITU-R BT.601 luma
   ``0.299 R + 0.587 G + 0.114 B`` (then re-quantised to 8 bits, like Pillow's ``convert("L")``); the RGB
   model takes gray images repeated to three channels; an alpha channel (LA, RGBA) is dropped. CMYK and
   palette images are converted to RGB by Pillow when read (:mod:`recon.io.images`).

QAIRN and the tiled restorers take photos without the 8-bit rounding: :func:`unit_range` (a torch tensor, integers
divided by their maximum, floats as they are).
"""
from __future__ import annotations

import numpy as np
import torch

from recon.errors import InputError

KINDS = ("photo", "mri")
ROBUST_PERCENTILE = 99.5
LUMA_601 = (0.299, 0.587, 0.114)
_FLOAT_TOL = 0.002

NORMALIZATION = {
    "name": "mriqa-unit-range-v1",
    "photo": "uint8/255, uint16/65535, float taken as [0,1]",
    "mri": f"abs, clip<0, divide by the {ROBUST_PERCENTILE}th percentile per 2-D slice, clip to [0,1]",
    "quantize": "round to 1/255 steps",
    "gray_from_rgb": "ITU-R BT.601 luma 0.299R+0.587G+0.114B, re-quantised",
    "rgb_from_gray": "repeat",
}
"""Description stored in the weights' metadata (``normalization``)."""


def _as_numpy(image) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.is_complex():
            image = image.abs()
        return image.numpy()
    return np.asarray(image)


def quantize_8bit(x):
    """Round values in [0, 1] to the nearest multiple of 1/255 (numpy or torch; float32 result for numpy)."""
    if isinstance(x, torch.Tensor):
        return torch.round(x.clamp(0, 1) * 255.0) / 255.0
    return (np.round(np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def to_uint8(x) -> np.ndarray:
    """[0, 1] float image -> uint8 (the values the JPEG encoder receives)."""
    return np.round(np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def robust_max(image: np.ndarray) -> float:
    """The MRI scale: the 99.5th percentile of the image, or its maximum if that percentile is 0."""
    scale = float(np.percentile(image, ROBUST_PERCENTILE))
    if scale <= 0:
        scale = float(np.max(image))
    return scale


def to_unit_range(image, kind: str = "photo", source: str | None = None, quantize: bool = True) -> np.ndarray:
    """Map an image (numpy or torch, ``[H, W]`` or ``[H, W, C]``) to float32 in [0, 1]; see the module doc.

    ``kind``: ``"photo"`` or ``"mri"``. ``source`` names the input in error messages. ``quantize=False``
    skips the 8-bit rounding (only for diagnostics; models always see quantised inputs).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    arr = _as_numpy(image)
    if arr.size == 0:
        raise InputError(source, "empty image")
    if np.iscomplexobj(arr):
        if kind != "mri":
            raise InputError(source, "complex image: use kind='mri' (its magnitude is scored)")
        arr = np.abs(arr)
    if arr.dtype.kind not in "biuf":
        raise InputError(source, f"unsupported pixel type {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise InputError(source, "image contains NaN or Inf values")

    if kind == "photo":
        if arr.dtype == np.bool_:
            out = arr.astype(np.float32)
        elif arr.dtype in (np.uint8, np.uint16):
            out = arr.astype(np.float32)
            out /= 255.0 if arr.dtype == np.uint8 else 65535.0  # in place: big photos stay in bounded memory
        elif arr.dtype.kind in "iu":
            info = np.iinfo(arr.dtype)
            out = np.clip(arr.astype(np.float64), 0, None) / float(info.max)
        else:
            lo, hi = float(arr.min()), float(arr.max())
            if lo < -_FLOAT_TOL or hi > 1 + _FLOAT_TOL:
                raise InputError(
                    source,
                    f"float photo values must lie in [0, 1] (got {lo:.4g}..{hi:.4g}); "
                    "pass uint8/uint16 or use kind='mri' for unscaled magnitude images",
                )
            out = arr
    else:  # mri
        mag = arr.astype(np.float64)
        if arr.dtype != np.bool_:
            np.clip(mag, 0, None, out=mag)
        if mag.ndim == 3 and mag.shape[-1] in (3, 4):
            raise InputError(source, "kind='mri' expects a 2-D magnitude image, got a colour image")
        scale = robust_max(mag)
        if not scale > 0:
            raise InputError(source, "image is all zero (nothing to score)")
        mag /= scale
        out = mag
    if out is arr or out.dtype != np.float32:  # never modify the caller's array
        out = np.asarray(out, dtype=np.float32)
        out = out.copy() if out is arr else out
    np.clip(out, 0.0, 1.0, out=out)
    return _quantize_in_place(out) if quantize else out


def _quantize_in_place(x: np.ndarray) -> np.ndarray:
    """:func:`quantize_8bit` of a float32 array we own, without temporaries (the same numbers)."""
    np.clip(x, 0.0, 1.0, out=x)
    x *= 255.0
    np.round(x, out=x)
    x /= 255.0
    return x


def _channels_last(arr: np.ndarray, source) -> np.ndarray:
    if arr.ndim == 2:
        return arr[:, :, None]
    if arr.ndim == 3 and arr.shape[-1] in (1, 2, 3, 4):
        return arr
    raise InputError(source, f"expected an image [H, W] or [H, W, C] with C in 1..4, got shape {arr.shape}")


def convert_channels(image01: np.ndarray, channels: int, source: str | None = None) -> np.ndarray:
    """[H, W(, C)] float in [0, 1] -> [H, W, channels]: alpha dropped, BT.601 luma or repetition."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    arr = _channels_last(np.asarray(image01, dtype=np.float32), source)
    c = arr.shape[-1]
    if c in (2, 4):  # LA / RGBA: drop alpha
        arr = arr[..., : c - 1]
        c -= 1
    if channels == 1:
        if c == 3:
            r, g, b = LUMA_601
            arr = quantize_8bit(r * arr[..., 0] + g * arr[..., 1] + b * arr[..., 2])[..., None]
        return arr
    if c == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


def as_model_input(image, channels: int, kind: str = "photo", source: str | None = None) -> torch.Tensor:
    """A raw image (numpy/torch, ``[H, W]`` or ``[H, W, C]``) -> model input ``torch.float32 [1, C, H, W]``.

    Applies :func:`to_unit_range` (with ``kind``), then the channel rules of the module doc for a model with
    ``channels`` input channels (1 = gray, 3 = RGB). Pass the raw image (uint8, uint16 or MRI magnitude).
    """
    arr = _as_numpy(image)
    if arr.ndim not in (2, 3):
        raise InputError(source, f"expected an image [H, W] or [H, W, C], got shape {arr.shape}")
    if kind == "mri" and arr.ndim == 3:
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
        else:
            raise InputError(source, f"kind='mri' expects a 2-D magnitude image, got shape {arr.shape}")
    _channels_last(arr, source)  # shape check before the (costlier) normalisation
    unit = to_unit_range(arr, kind=kind, source=source)
    out = convert_channels(unit, channels, source)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))[None].float()


def unit_range(x: torch.Tensor) -> torch.Tensor:
    """An image tensor in [0, 1] as float32: floats as they are, uint8 / 255 (in float32), uint16 / 65535 (in
    float64, then float32), the same numbers as :mod:`mriqa.restoration` reading a photo file."""
    if x.is_floating_point():
        return x.float()
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    return (x.to(torch.float64) / 65535.0).float()
