"""Full-reference metrics for restored photos, with the JPEG-restoration literature's conventions.

Restoration papers (QAIRN's Table I, FBCNN, AR-CNN) score RGB images in [0, 1], so their numbers are comparable
only with these conventions, not with fastMRI's (data range = the reference volume's max, SSIM with a 7 x 7
uniform window on gray slices). PSNR and SSIM are :mod:`recon.metrics`' (the one implementation), called with
the photo options:

- :func:`psnr`: over all channels, data range 1, capped at 100 dB (the IQA registry's ``psnr`` too).
- :func:`ssim_rgb`: SSIM with the Gaussian window (sigma 1.5, no sample-covariance correction), data range 1,
  the mean over the channels (FBCNN's colour evaluation; the IQA registry's ``ssim`` uses luma instead).
- :func:`blocking_effect_factor` / :func:`psnr_b`: PSNR-B (Yim & Bovik 2011), per channel
  ``10 log10(1 / (MSE + BEF))`` averaged over the channels, with BEF the blocking effect factor of the image
  under test on the 8 x 8 grid (``eta = log2(8) / log2(min(H, W))``; 0 when the differences across block
  boundaries do not exceed the others). The grid starts at the top-left pixel. Only here.
- :func:`quantize8`: the 8-bit value grid in float64 (what a saved 8-bit restoration would contain).

Images: float ``[H, W, C]`` in [0, 1] (``C = 1`` for gray), reference first.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["psnr", "ssim_rgb", "blocking_effect_factor", "psnr_b", "quantize8"]


def psnr(ref: np.ndarray, img: np.ndarray) -> float:
    """PSNR in dB of ``img`` against ``ref`` ``[H, W, C]``: data range 1, all channels, at most 100 dB."""
    from recon.metrics import psnr as _psnr

    return _psnr(ref, img, maxval=1.0, channel_axis=-1, max_db=100.0)


def ssim_rgb(ref: np.ndarray, img: np.ndarray) -> float:
    """Mean over channels of SSIM (Gaussian sigma 1.5, data range 1) of ``img`` against ``ref`` ``[H, W, C]``."""
    from recon.metrics import ssim

    return ssim(ref, img, maxval=1.0, channel_axis=-1, window="gaussian")


def blocking_effect_factor(ch: np.ndarray, block: int = 8) -> float:
    """BEF of one channel ``[H, W]`` (Yim & Bovik 2011), in squared intensity units (>= 0)."""
    h, w = ch.shape
    ch = ch.astype(np.float64)
    dh = (ch[:, :-1] - ch[:, 1:]) ** 2  # horizontal neighbour pairs (p, p + 1)
    dv = (ch[:-1, :] - ch[1:, :]) ** 2
    bh = np.zeros(w - 1, bool)
    bh[block - 1:: block] = True
    bv = np.zeros(h - 1, bool)
    bv[block - 1:: block] = True
    n_b = dh[:, bh].size + dv[bv, :].size
    n_c = dh[:, ~bh].size + dv[~bv, :].size
    if n_b == 0 or n_c == 0:
        return 0.0
    d_b = (dh[:, bh].sum() + dv[bv, :].sum()) / n_b
    d_c = (dh[:, ~bh].sum() + dv[~bv, :].sum()) / n_c
    if d_b <= d_c:
        return 0.0
    eta = math.log2(block) / math.log2(min(h, w))
    return float(eta * (d_b - d_c))


def psnr_b(ref: np.ndarray, img: np.ndarray) -> float:
    """PSNR-B in dB of ``img`` against ``ref`` ``[H, W, C]``: per channel, averaged (data range 1)."""
    vals = []
    for c in range(img.shape[-1]):
        mse = float(np.mean((ref[..., c].astype(np.float64) - img[..., c]) ** 2))
        vals.append(10 * math.log10(1.0 / max(mse + blocking_effect_factor(img[..., c]), 1e-10)))
    return float(np.mean(vals))


def quantize8(x: np.ndarray) -> np.ndarray:
    """``x`` clipped to [0, 1] and rounded to the nearest multiple of 1/255, float64 (unlike
    :func:`mriqa.normalize.quantize_8bit`, which returns float32: the metrics here are computed in float64)."""
    return np.round(np.clip(x, 0, 1) * 255) / 255
