"""Tiny fastMRI-format multi-coil h5 files for the examples and their tests (no data needed).

``make_tiny_dataset(root)`` writes ``root/train/*.h5`` and ``root/val/*.h5``: ``kspace`` complex64
``[slices, C, H, W]`` of a smooth elliptical phantom seen by ``C`` Gaussian coils with smooth phase and
complex noise, and ``reconstruction_rss`` ``[slices, H, W]`` (fastMRI's layout, read by
``fastmri.data.SliceDataset``). Deterministic by ``seed``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _volume(path: Path, seed: int, slices: int, size: int, coils: int) -> None:
    from recon.fft import fft2c_np, ifft2c_np
    from recon.io.fastmri_h5 import write_fastmri_h5

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    imgs = []
    for s in range(slices):
        body = ((yy / 0.8) ** 2 + (xx / (0.55 + 0.05 * s)) ** 2 < 1).astype(float)
        inner = ((yy - 0.2) ** 2 / 0.09 + (xx + 0.1 * s) ** 2 / 0.04 < 1).astype(float)
        phase = np.exp(1j * (0.5 * yy + 0.3 * xx + seed))
        imgs.append((body * (1 + 0.3 * np.cos(5 * yy + seed)) + 0.8 * inner) * phase)
    img = np.stack(imgs).astype(np.complex64)
    angles = np.linspace(0, 2 * np.pi, coils, endpoint=False)
    maps = np.stack([np.exp(-((yy - 1.2 * np.sin(a)) ** 2 + (xx - 1.2 * np.cos(a)) ** 2)) * np.exp(1j * a)
                     for a in angles])
    maps = maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    k = fft2c_np(img[:, None] * maps[None])
    k = (k + 0.02 * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))).astype(np.complex64)
    rss = np.sqrt((np.abs(ifft2c_np(k)) ** 2).sum(1)).astype(np.float32)
    write_fastmri_h5(path, k, reconstruction_rss=rss)


def make_tiny_dataset(root: str | os.PathLike, size: int = 32, coils: int = 4, slices: int = 2,
                      train_files: int = 2, val_files: int = 1, seed: int = 0) -> Path:
    """Write the tiny dataset (see the module docstring) and return ``root``."""
    root = Path(root)
    for split, n, offset in (("train", train_files, 0), ("val", val_files, 100)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _volume(root / split / f"{split}{i}.h5", seed + offset + i, slices, size, coils)
    return root
