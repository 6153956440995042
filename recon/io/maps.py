"""Coil sensitivity maps a user already has (``mriqa recon --maps FILE``).

Formats: ``.npy`` (complex), HDF5 (dataset ``sens_maps``, ``maps`` or ``coil_maps``; fastMRI-style), or BART
``.cfl``/``.hdr`` (BART's ``ecalib`` output: dims ``[X, Y, Z, C, M]``, read as ``[M, C, X, Y]``). Shapes:
``[C, H, W]`` (one slice, or the same maps for every slice), ``[S, C, H, W]``, or ``[S, M, C, H, W]`` (M map
sets). Returned as complex64 ``[S, C, H, W]`` (``[S, M, C, H, W]`` when M > 1), matched against the k-space
``[S, C, H, W]`` it will be used with: a mismatch is one :class:`recon.errors.InputError` naming the file.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.io.volumes import load_npy

H5_KEYS = ("sens_maps", "maps", "coil_maps")


def _read_any(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix in (".cfl", ".hdr") or (not path.exists() and path.with_suffix(".cfl").exists()):
        from recon.io.bart import read_cfl

        arr = read_cfl(path)  # [X, Y, Z, C, M, ...] (BART order)
        arr = np.squeeze(arr, axis=2) if arr.ndim >= 3 and arr.shape[2] == 1 else arr
        if arr.ndim == 3:  # [X, Y, C]
            return np.moveaxis(arr, -1, 0)
        if arr.ndim == 4:  # [X, Y, C, M]
            return np.moveaxis(arr, (2, 3), (1, 0))
        raise InputError(path, f"BART coil maps have dims {arr.shape}; expected [X, Y, 1, C] or [X, Y, 1, C, M]")
    if not path.is_file():
        raise InputError(path, "coil maps file not found")
    if suffix == ".npy":
        return load_npy(path)
    if suffix in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                key = next((k for k in H5_KEYS if k in f), None)
                if key is None:
                    raise InputError(path, f"no coil maps dataset (looked for {', '.join(H5_KEYS)})")
                return f[key][()]
        except OSError as exc:
            raise InputError(path, f"not a readable HDF5 file ({str(exc).splitlines()[0]})") from None
    raise InputError(path, "coil maps must be .npy, .h5 or BART .cfl/.hdr")


def read_coil_maps(path: str | os.PathLike, kspace_shape: tuple[int, int, int, int]) -> np.ndarray:
    """Coil maps from ``path`` for k-space of shape ``[S, C, H, W]`` -> complex64 ``[S, C, H, W]`` or
    ``[S, M, C, H, W]``; wrong shape, non-complex or non-finite maps, or all-zero maps raise ``InputError``."""
    path = Path(path)
    maps = np.asarray(_read_any(path))
    slices, coils, height, width = (int(n) for n in kspace_shape)
    if not (np.iscomplexobj(maps) or np.issubdtype(maps.dtype, np.floating)):
        raise InputError(path, f"coil maps have dtype {maps.dtype}; expected complex")
    if maps.ndim == 3:
        maps = np.broadcast_to(maps[None], (slices, *maps.shape))
    if maps.ndim not in (4, 5):
        raise InputError(path, f"coil maps have shape {maps.shape}; expected [C, H, W], [S, C, H, W] or "
                               "[S, M, C, H, W]")
    if maps.ndim == 5 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.shape[0] != slices or maps.shape[-3:] != (coils, height, width):
        raise InputError(path, f"coil maps of shape {tuple(maps.shape)} do not match k-space of shape "
                               f"{tuple(kspace_shape)} ([S, C, H, W])")
    if not np.all(np.isfinite(maps)):
        raise InputError(path, "coil maps contain NaN or Inf values")
    if not np.any(maps != 0):
        raise InputError(path, "coil maps are all zero")
    return np.ascontiguousarray(maps, dtype=np.complex64)
