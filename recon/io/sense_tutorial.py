"""The real fully sampled 16-coil brain k-space of ``../shared/data/mri/kspace/sense-tutorial-brain16ch`` (the
SENSE-tutorial ``raw_data.mat``, MATLAB v7.3 = HDF5; see its PROVENANCE.md): the project's real-data check."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from recon.errors import InputError

__all__ = ["SENSE_TUTORIAL", "read_sense_tutorial", "sense_tutorial_orientations"]

#: the file, relative to the shared data root
SENSE_TUTORIAL = Path("mri") / "kspace" / "sense-tutorial-brain16ch" / "raw_data.mat"


def read_sense_tutorial(path: str | os.PathLike) -> np.ndarray:
    """Dataset ``raw`` ``(16, 1, 96, 96)`` (compound real / imag) -> complex64 ``[C, H, W]`` as stored (H = the
    file's first in-plane axis). A missing or malformed file is an :class:`InputError`."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f["raw"][()]
        return (raw["real"] + 1j * raw["imag"])[:, 0].astype(np.complex64)
    except (OSError, KeyError, ValueError, IndexError) as exc:
        raise InputError(path, f"cannot read dataset 'raw' as SENSE-tutorial k-space ({exc})") from None


def sense_tutorial_orientations(kspace: np.ndarray) -> dict[str, np.ndarray]:
    """``{"as-stored": [C, H, W], "transposed": [C, W, H]}``: which in-plane axis is the phase encode is not
    documented, so retrospective line masks are applied along each in turn."""
    return {"as-stored": kspace, "transposed": np.ascontiguousarray(kspace.transpose(0, 2, 1))}
