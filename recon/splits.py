"""Where the simulation's source volumes are and how they are split (by subject, never by slice).

- :data:`VOLUME_SOURCES`: name -> path relative to the data root (``../shared/data``); IXI subjects are named
  ``ixi/<file stem>`` (:func:`volume_source`).
- :func:`split_preset`: ``default`` (train = the 3T MPRAGE, val = MNI152, test = Colin27) or ``ixi`` (train =
  the MPRAGE + 30 IXI subjects, val = 5, test = 5 + Colin27).
"""
from __future__ import annotations

import os
from pathlib import Path

from recon.errors import InputError

__all__ = ["VOLUME_SOURCES", "DEFAULT_SPLITS", "IXI_FOLDER", "IXI_SPLIT", "SPLIT_PRESETS", "volume_source",
           "split_preset", "default_data_root"]

# name -> path relative to the data root (../shared/data)
VOLUME_SOURCES = {
    "trio-mprage-t1": "mri/volumes/trio-mprage-t1",
    "mni152": "mri/volumes/pypi-bundled/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "colin27": "mri/volumes/colin27/ch2.nii.gz",
}
DEFAULT_SPLITS = {"train": ("trio-mprage-t1",), "val": ("mni152",), "test": ("colin27",)}
IXI_FOLDER = "mri/volumes/ixi-t1"  # 40 subjects, IXI<id>-HH-<n>_T1.nii.gz; volume names "ixi/IXI<id>-HH-<n>"
IXI_SPLIT = (30, 5, 5)  # subjects for train / val / test, in sorted file-name order
SPLIT_PRESETS = ("default", "ixi")


def volume_source(name: str) -> str | None:
    """Path of volume ``name`` relative to the data root: :data:`VOLUME_SOURCES`, or ``ixi/<stem>`` ->
    ``mri/volumes/ixi-t1/<stem>_T1.nii.gz``; None when the name is unknown."""
    if name in VOLUME_SOURCES:
        return VOLUME_SOURCES[name]
    if name.startswith("ixi/") and "/" not in name[4:] and name[4:]:
        return f"{IXI_FOLDER}/{name[4:]}_T1.nii.gz"
    return None


def split_preset(preset: str, data_root: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Volumes per split. ``default``: :data:`DEFAULT_SPLITS`. ``ixi``: train = the 3T MPRAGE + the first 30
    IXI subjects (sorted by file name), val = the next 5, test = the last 5 + Colin27: by subject, never by
    slice (each IXI file is one subject)."""
    if preset == "default":
        return {k: list(v) for k, v in DEFAULT_SPLITS.items()}
    if preset != "ixi":
        raise InputError(None, f"unknown split preset {preset!r}; choose from {', '.join(SPLIT_PRESETS)}")
    root = Path(data_root) if data_root is not None else default_data_root()
    folder = root / IXI_FOLDER
    stems = sorted(p.name[: -len("_T1.nii.gz")] for p in folder.glob("IXI*_T1.nii.gz"))
    if len(stems) < sum(IXI_SPLIT):
        raise InputError(folder, f"the ixi split needs {sum(IXI_SPLIT)} IXI subjects, found {len(stems)}")
    names = [f"ixi/{s}" for s in stems]
    a, b = IXI_SPLIT[0], IXI_SPLIT[0] + IXI_SPLIT[1]
    return {"train": ["trio-mprage-t1", *names[:a]], "val": names[a:b], "test": [*names[b:b + IXI_SPLIT[2]], "colin27"]}


def default_data_root() -> Path:
    """``../shared/data`` beside the checkout (relative to the repository root that holds ``recon/``)."""
    return Path(__file__).resolve().parent.parent / ".." / "shared" / "data"
