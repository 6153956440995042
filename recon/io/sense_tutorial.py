"""The real fully sampled 16-coil brain k-space of ``../shared/data/mri/kspace/sense-tutorial-brain16ch`` (the
SENSE-tutorial ``raw_data.mat``, MATLAB v7.3 = HDF5; see its PROVENANCE.md): the project's real-data check."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recon.errors import InputError

if TYPE_CHECKING:
    from recon.io.fastmri_h5 import KspaceVolume

__all__ = ["SENSE_TUTORIAL", "read_sense_tutorial", "read_sense_tutorial_kspace", "sense_tutorial_orientations"]

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
        raise InputError(path, "not SENSE-tutorial k-space (a MATLAB v7.3 file whose dataset 'raw' is [C, 1, H, W] "
                               f"real / imag; convert other .mat files to fastMRI h5): {exc}") from None


def read_sense_tutorial_kspace(path: str | os.PathLike) -> "KspaceVolume":
    """The file as ``mriqa recon`` / ``demo`` read k-space: a :class:`~recon.io.fastmri_h5.KspaceVolume` of one
    fully sampled slice, complex64 ``[1, C, H, W]`` as stored (retrospective masks run along W, the file's last
    axis: the table's ``as-stored`` orientation), no mask, no target."""
    from recon.io.fastmri_h5 import KspaceVolume, check_kspace

    kspace = read_sense_tutorial(path)[None]
    check_kspace(kspace, path)
    return KspaceVolume(kspace=kspace, mask=None, target=None, target_key=None,
                        attrs={"source_format": "sense-tutorial-mat"}, path=Path(path),
                        single_coil=kspace.shape[1] == 1)


def sense_tutorial_orientations(kspace: np.ndarray) -> dict[str, np.ndarray]:
    """``{"as-stored": [C, H, W], "transposed": [C, W, H]}``: which in-plane axis is the phase encode is not
    documented, so retrospective line masks are applied along each in turn."""
    return {"as-stored": kspace, "transposed": np.ascontiguousarray(kspace.transpose(0, 2, 1))}
