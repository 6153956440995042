"""Quality metrics by name, for ``mriqa iqa-bench`` and scripts.

A metric is called ``metric(image)`` (no reference, ``kind="NR"``) or ``metric(image, reference)`` (full
reference, ``kind="FR"``) and returns one finite float. Images are numpy ``float32`` in [0, 1], channels last:
``[H, W, 3]`` for colour, ``[H, W]`` for gray (:func:`read_image01` reads files that way; alpha dropped).

Built-in names (models are loaded on first use, so listing them costs nothing):

==============  ====  =======  ==================================================================================
name            kind  better   what
==============  ====  =======  ==================================================================================
``qf-gray``     NR    higher   shipped gray QF predictor (:func:`mriqa.load_predictor`), mean-pooled QF / 100
``qf-rgb``      NR    higher   shipped RGB QF predictor, mean-pooled
``qf:PATH``     NR    higher   a QF predictor from a weights file
``recon``       NR    higher   shipped reconstruction-quality model (:mod:`mriqa.models.reconq`): predicted SSIM
                               against the unseen reference, the mean of its map, in [0, 1]; on BT.601 luma of
                               a colour image (it scores gray magnitudes); ``recon:PATH`` for a weights file
``qairn``       NR    higher   QAIRN's Q2 (:mod:`mriqa.models.qairn`, shipped weights); ``qairn-q1``,
                               ``qairn-q3`` for Q1 / Q3; ``qairn:PATH`` (Q2) for a weights file
``psnr``        FR    higher   PSNR over all channels, data range 1, ``10 log10(1 / max(MSE, 1e-10))`` (capped at
                               100 dB so that identical pairs stay finite)
``ssim``        FR    higher   SSIM (Wang et al. 2004, scikit-image) on BT.601 luma, Gaussian window sigma 1.5,
                               K1 = 0.01, K2 = 0.03, data range 1, no down-sampling (pyiqa's ``ssim`` settings)
==============  ====  =======  ==================================================================================

:func:`register_metric` adds any callable under a name (it then takes precedence over a built-in of the same
name). A missing weights file, an unknown name, or a metric that fails or returns a non-finite value on an
image is an :class:`recon.errors.InputError`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from recon.errors import InputError

KINDS = ("NR", "FR")


@dataclass
class Metric:
    """A named metric: ``fn(image)`` (NR) or ``fn(image, reference)`` (FR) -> float."""

    name: str
    fn: Callable
    kind: str = "NR"
    higher_better: bool = True
    description: str = ""
    builtin: bool = False

    def __call__(self, image, reference=None, source: str | None = None) -> float:
        if self.kind == "FR":
            if reference is None:
                raise InputError(source, f"metric {self.name!r} is full-reference but the image has no reference")
            if np.shape(image) != np.shape(reference):
                raise InputError(source, f"image {np.shape(image)} and reference {np.shape(reference)} differ in size")
        try:
            value = self.fn(image, reference) if self.kind == "FR" else self.fn(image)
        except InputError as exc:
            if exc.source is None and source:
                raise InputError(source, exc.problem) from None
            raise
        except Exception as exc:
            if self.builtin:
                raise
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(source, f"metric {self.name!r} failed: {detail}") from None
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InputError(source, f"metric {self.name!r} returned {type(value).__name__}, not a number") from None
        if not math.isfinite(value):
            raise InputError(source, f"metric {self.name!r} returned a non-finite value ({value})")
        return value


_USER: dict[str, Metric] = {}
_CACHE: dict[tuple, Metric] = {}


def register_metric(name: str, fn: Callable, kind: str = "NR", higher_better: bool = True,
                    description: str = "") -> Metric:
    """Register ``fn`` under ``name``: ``fn(image)`` for ``kind="NR"``, ``fn(image, reference)`` for ``"FR"``;
    images as described in the module docstring. Returns the :class:`Metric`."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"metric name must be a non-empty string without ':', got {name!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be 'NR' or 'FR', got {kind!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    m = Metric(name, fn, kind, bool(higher_better), description or getattr(fn, "__doc__", "") or "")
    _USER[name] = m
    return m


def unregister_metric(name: str) -> None:
    """Remove a user-registered metric (no error if absent)."""
    _USER.pop(name, None)


# ----------------------------------------------------------------------------------------------- builtins
def psnr(image, reference) -> float:
    """PSNR in dB, data range 1, over all channels; capped at 100 dB (MSE floor 1e-10): :func:`recon.metrics.psnr`."""
    from recon.metrics import psnr as _psnr

    return _psnr(reference, image, maxval=1.0, channel_axis=-1, max_db=100.0)


def luma(image) -> np.ndarray:
    """BT.601 luma of an RGB image ``[H, W, 3]`` (gray images returned as they are), float64."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3 and a.shape[-1] == 3:
        return a @ np.array([0.299, 0.587, 0.114])
    if a.ndim == 3 and a.shape[-1] == 1:
        return a[..., 0]
    return a


def ssim(image, reference) -> float:
    """SSIM (Wang et al. 2004) on BT.601 luma, Gaussian sigma 1.5, data range 1: :func:`recon.metrics.ssim`."""
    from recon.metrics import ssim as _ssim

    return _ssim(luma(reference), luma(image), maxval=1.0, window="gaussian")


def _qf_metric(model: str, name: str, device=None) -> Metric:
    from mriqa.predictor import load_predictor

    predictor = load_predictor(model, device=device)
    if predictor.uses_magnitude:
        raise InputError(model, f"metric {name!r} needs a QF model; use 'recon:PATH' for reconstruction-quality "
                                "(rqnet) weights")

    def fn(image):
        return predictor.score(np.asarray(image, dtype=np.float32), pool="mean", kind="photo")

    return Metric(name, fn, "NR", True, f"QF predictor {model} (mean-pooled QF / 100)", builtin=True)


def _recon_metric(model: str, name: str, device=None) -> Metric:
    from mriqa.predictor import load_predictor

    predictor = load_predictor(model, device=device)
    if not predictor.uses_magnitude:
        raise InputError(None if model == "recon" else model,
                         f"metric {name!r} needs a reconstruction-quality (rqnet) model, not a QF model")

    def fn(image):
        return predictor.score(luma(image).astype(np.float32), pool="mean")

    return Metric(name, fn, "NR", True, f"reconstruction-quality model {model} (predicted SSIM, mean of the map)",
                  builtin=True)


def _qairn_metric(weights, index: int, name: str, device=None) -> Metric:
    from mriqa.models.qairn import load_qairn, run_qairn, resolve_qairn_weights

    model, _ = load_qairn(resolve_qairn_weights(weights), device=device)

    def fn(image):
        _, q = run_qairn(model, image, restore=False)
        return float(q[index])

    return Metric(name, fn, "NR", True, f"QAIRN Q{index + 1} (Minkowski-pooled attention map gamma_{index + 1})",
                  builtin=True)


BUILTINS: dict[str, tuple[str, str]] = {
    "qf-gray": ("NR", "shipped gray QF predictor, mean-pooled QF / 100"),
    "qf-rgb": ("NR", "shipped RGB QF predictor, mean-pooled QF / 100"),
    "recon": ("NR", "shipped reconstruction-quality model, predicted SSIM (mean of its map)"),
    "qairn": ("NR", "QAIRN Q2 (shipped weights)"),
    "qairn-q1": ("NR", "QAIRN Q1 (shipped weights)"),
    "qairn-q3": ("NR", "QAIRN Q3 (shipped weights)"),
    "psnr": ("FR", "PSNR, data range 1, all channels"),
    "ssim": ("FR", "SSIM on BT.601 luma (Wang et al. 2004 settings)"),
}


def list_metrics() -> dict[str, str]:
    """``{name: "KIND: description"}`` of the built-in and registered metrics (plus the ``qf:PATH``,
    ``recon:PATH`` and ``qairn:PATH`` forms)."""
    out = {k: f"{kind}: {d}" for k, (kind, d) in BUILTINS.items()}
    out["qf:PATH"] = "NR: a QF predictor weights file"
    out["recon:PATH"] = "NR: a reconstruction-quality (rqnet) weights file"
    out["qairn:PATH"] = "NR: QAIRN Q2 from a weights file"
    for k, m in _USER.items():
        desc = m.description.strip().splitlines()[0] if m.description.strip() else "registered callable"
        out[k] = f"{m.kind}: {desc}"
    return out


def get_metric(name: str, device=None) -> Metric:
    """The metric called ``name`` (registered first, then built-in, then ``qf:PATH`` / ``recon:PATH`` /
    ``qairn:PATH``)."""
    if name in _USER:
        return _USER[name]
    key = (name, None if device is None else str(device))
    if key in _CACHE:
        return _CACHE[key]
    if name == "psnr":
        m = Metric("psnr", psnr, "FR", True, BUILTINS["psnr"][1], builtin=True)
    elif name == "ssim":
        m = Metric("ssim", ssim, "FR", True, BUILTINS["ssim"][1], builtin=True)
    elif name in ("qf-gray", "qf-rgb"):
        m = _qf_metric(name.split("-", 1)[1], name, device)
    elif name == "recon":
        m = _recon_metric("recon", name, device)
    elif name in ("qairn", "qairn-q1", "qairn-q2", "qairn-q3"):
        index = {"qairn": 1, "qairn-q1": 0, "qairn-q2": 1, "qairn-q3": 2}[name]
        m = _qairn_metric(None, index, name, device)
    elif name.startswith("qf:"):
        path = Path(os.path.expanduser(name[3:]))
        if not path.is_file():
            raise InputError(path, "QF weights file not found")
        m = _qf_metric(str(path), name, device)
    elif name.startswith("recon:"):
        path = Path(os.path.expanduser(name[6:]))
        if not path.is_file():
            raise InputError(path, "reconstruction-quality weights file not found")
        m = _recon_metric(str(path), name, device)
    elif name.startswith("qairn:"):
        path = Path(os.path.expanduser(name[6:]))
        if not path.is_file():
            raise InputError(path, "QAIRN weights file not found")
        m = _qairn_metric(path, 1, name, device)
    else:
        known = ", ".join(list_metrics())
        raise InputError(None, f"unknown metric {name!r}; known: {known}")
    _CACHE[key] = m
    return m


def read_image01(path) -> np.ndarray:
    """An image file -> float32 in [0, 1]: ``[H, W, 3]`` colour (alpha dropped) or ``[H, W]`` gray
    (uint8 / 255, uint16 / 65535; read by :func:`recon.io.images.read_photo`, InputError for unreadable files)."""
    from recon.io.images import read_photo
    from mriqa.normalize import to_unit_range

    rec = read_photo(path)[0]
    img = rec.image
    if img.ndim == 3 and img.shape[-1] in (2, 4):
        img = img[..., :-1]
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    return to_unit_range(img, rec.kind, source=str(path), quantize=False)
