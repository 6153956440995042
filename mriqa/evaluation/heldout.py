"""The held-out images of the quality evaluations (never used in training) and how they are cropped.

- RGB: Kodak24 ``KODAK_TEST`` (kodim04, 08, 12, 16, 20, 24) from ``../shared/data/rgb/Kodak24``
  (``KODAK_VAL`` is the QF predictor's validation set, ``SKIMAGE_TRAIN`` the scikit-image photos it trained on).
- Gray: slices of a held-out MRI volume (Colin27 ch2), ``per_axis`` evenly spaced slices in the central 60 % of
  each orientation, each cropped to the head's bounding box (+8 px) so that a whole-image score is a score of
  the head, not of empty air.

Images are float in [0, 1] after :func:`mriqa.normalize.to_unit_range` (``photo``: / 255; ``mri``: the robust
maximum), ``[H, W]`` gray or ``[H, W, 3]`` RGB.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["DATA", "KODAK_TEST", "KODAK_VAL", "SKIMAGE_TRAIN", "COLIN27", "kodak", "bbox_crop", "mri_slices",
           "grid_crop"]

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
KODAK_TEST = ["kodim04", "kodim08", "kodim12", "kodim16", "kodim20", "kodim24"]
KODAK_VAL = ["kodim02", "kodim14", "kodim21"]
SKIMAGE_TRAIN = ["coffee", "chelsea", "motorcycle_left", "motorcycle_right", "astronaut"]
COLIN27 = DATA / "mri/volumes/colin27/ch2.nii.gz"


def kodak(names) -> list[tuple[str, np.ndarray]]:
    """``[(name, [H, W, 3] float in [0, 1])]`` for Kodak24 image names."""
    from mriqa.normalize import to_unit_range
    from recon.io.images import read_images

    return [(n, to_unit_range(read_images(DATA / "rgb" / "Kodak24" / f"{n}.png")[0].image, "photo"))
            for n in names]


def bbox_crop(unit: np.ndarray, margin: int = 8) -> np.ndarray:
    """The bounding box of the foreground (``mriqa.qf_data``'s mask) of a gray ``[H, W]`` image, + ``margin``."""
    from mriqa.qf_data import sampling_foreground

    ys, xs = np.nonzero(sampling_foreground(unit))
    y0, y1 = max(0, ys.min() - margin), min(unit.shape[0], ys.max() + margin + 1)
    x0, x1 = max(0, xs.min() - margin), min(unit.shape[1], xs.max() + margin + 1)
    return unit[y0:y1, x0:x1]


def mri_slices(path: Path, per_axis: int = 4, crop: bool = True, name: str | None = None):
    """``[(label, [h, w] in [0, 1])]``: ``per_axis`` evenly spaced slices in the central 60 % of each of the
    three orientations of a volume (head crop with ``crop``); label ``name[axis:index]``."""
    from mriqa.normalize import to_unit_range
    from recon.io.volumes import read_volume

    vol = read_volume(path, axes="stored").data  # the file's own array order
    out = []
    for ax in range(3):
        v = np.moveaxis(vol, ax, 0)
        n = v.shape[0]
        for i in np.linspace(0.3 * n, 0.7 * n, per_axis).astype(int):
            u = to_unit_range(v[i], "mri")
            out.append((f"{name or path.name}[{ax}:{i}]", bbox_crop(u) if crop else u))
    return out


def grid_crop(img: np.ndarray, size: int | None) -> np.ndarray:
    """Central ``size`` x ``size`` crop whose corner and side are multiples of 8 (``None``: the whole image).
    Unlike :func:`recon.select.center_crop`, the window is moved onto the uncropped image's 8 x 8 grid, so the
    crop of a JPEG keeps whole JPEG blocks (and a JPEG of the crop has its blocks where the original's were)."""
    if not size:
        return img
    h, w = img.shape[:2]
    s = min(size, h, w) // 8 * 8
    r0, c0 = ((h - s) // 2) // 8 * 8, ((w - s) // 2) // 8 * 8
    return img[r0:r0 + s, c0:c0 + s]
