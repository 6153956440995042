"""JPEG compression (Pillow) and the quality-factor (QF) distributions used to train the QF predictors.

Compression: :func:`jpeg_compress` takes a [0, 1] image (already on the 1/255 grid, see
:mod:`mriqa.normalize`), encodes the exact 8-bit values with Pillow/libjpeg at ``quality`` 1..100
(baseline, no optimisation flags, standard IJG tables scaled by quality), decodes, and returns float32 on the
same 1/255 grid. Gray images are encoded as single-channel JPEG ("L"); RGB images with chroma subsampling
``"4:2:0"`` (libjpeg's default and the most common in the wild), ``"4:4:4"`` or ``"4:2:2"``. Deterministic:
the same input and settings give the same bytes.

QF distributions over the integers 1..100 (:func:`qf_pmf`, :func:`sample_qf`):

- ``"log"`` (default; the paper's "log-weighted" distribution, made exact here): the *distance from the top*
  ``d = 101 - QF`` is log-uniform on [1, 101): ``d = floor(exp(u))`` with ``u ~ U(0, ln 101)``, so
  ``P(QF = q) = ln((102 - q) / (101 - q)) / ln 101``. Mass: P(QF >= 80) = ln 22 / ln 101 = 0.670,
  P(QF >= 90) = 0.538, P(QF = 100) = 0.150, P(QF <= 50) = 0.148, P(QF <= 20) = 0.048.
- ``"uniform"``: every QF in 1..100 equally likely.
- ``"classes"``: the paper's 5-class mode, QF in {0, 20, 40, 60, 80} with weights {1, 1, 1, 2, 2} / 7
  ("more examples at 60 and 80"); QF 0 is encoded with Pillow quality ``max(1, q)`` = 1.
"""
from __future__ import annotations

import io
import math

import numpy as np

DISTRIBUTIONS = ("log", "uniform", "classes")
CLASS_QFS = (0, 20, 40, 60, 80)
CLASS_WEIGHTS = (1.0, 1.0, 1.0, 2.0, 2.0)
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def jpeg_bytes(image01: np.ndarray, quality: int, subsampling: str = "4:2:0") -> bytes:
    """Encode a [0, 1] image ``[H, W]`` / ``[H, W, 1]`` / ``[H, W, 3]`` (or uint8) as JPEG bytes."""
    from PIL import Image

    q = int(quality)
    if not 1 <= q <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    arr = np.asarray(image01)
    if arr.dtype != np.uint8:
        arr = np.round(np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        im = Image.fromarray(arr)
        kwargs = {}
    elif arr.ndim == 3 and arr.shape[-1] == 3:
        im = Image.fromarray(arr)
        if subsampling not in SUBSAMPLING:
            raise ValueError(f"subsampling must be one of {sorted(SUBSAMPLING)}, got {subsampling!r}")
        kwargs = {"subsampling": SUBSAMPLING[subsampling]}
    else:
        raise ValueError(f"expected [H, W] or [H, W, 3], got shape {arr.shape}")
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=q, **kwargs)
    return buf.getvalue()


def jpeg_compress(image01: np.ndarray, quality: int, subsampling: str = "4:2:0") -> np.ndarray:
    """JPEG round trip at ``quality`` (1..100) -> float32 in [0, 1], same shape as the input."""
    from PIL import Image

    arr = np.asarray(image01)
    data = jpeg_bytes(arr, quality, subsampling)
    with Image.open(io.BytesIO(data)) as im:
        out = np.asarray(im, dtype=np.uint8).astype(np.float32) / 255.0
    return out.reshape(arr.shape)


def qf_pmf(distribution: str = "log") -> tuple[np.ndarray, np.ndarray]:
    """``(qfs, probabilities)`` of a training QF distribution (see the module doc)."""
    if distribution == "log":
        q = np.arange(1, 101)
        d = 101 - q
        p = np.log((d + 1) / d) / math.log(101)
    elif distribution == "uniform":
        q = np.arange(1, 101)
        p = np.full(100, 1 / 100)
    elif distribution == "classes":
        q = np.asarray(CLASS_QFS)
        p = np.asarray(CLASS_WEIGHTS) / sum(CLASS_WEIGHTS)
    else:
        raise ValueError(f"QF distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    return q.astype(np.int64), p / p.sum()


def sample_qf(rng: np.random.Generator, n: int | None = None, distribution: str = "log"):
    """Draw QF values (ints) from ``distribution`` with the numpy generator ``rng``."""
    q, p = qf_pmf(distribution)
    out = rng.choice(q, size=n, p=p)
    return int(out) if n is None else out.astype(np.int64)


def class_index(qf: int) -> int:
    """Class of a QF in the 5-class mode (0 -> 0, 20 -> 1, ..., 80 -> 4)."""
    return CLASS_QFS.index(int(qf))
