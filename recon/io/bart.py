"""BART ``.cfl`` / ``.hdr`` files (https://mrirecon.github.io/bart/).

A BART array ``name`` is two files: ``name.hdr``, text whose line after ``# Dimensions`` lists the sizes
(trailing singleton dims may be absent), and ``name.cfl``, the raw complex64 samples in Fortran
(column-major) order. BART's dims are 0 READ, 1 PHS1, 2 PHS2, 3 COIL, 4 MAPS, ..., 13 SLICE.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.files import atomic_path
from recon.io.fastmri_h5 import KspaceVolume, check_kspace

__all__ = ["cfl_base", "read_cfl_dims", "read_cfl", "write_cfl", "cfl_to_kspace", "read_cfl_kspace"]

COIL_DIM = 3
SLICE_DIM = 13
SPATIAL_DIMS = (0, 1, 2)


def cfl_base(path: str | os.PathLike) -> Path:
    """``x``, ``x.cfl`` or ``x.hdr`` -> ``x`` (the base name BART uses)."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".cfl", ".hdr") else path


def read_cfl_dims(base_or_path: str | os.PathLike) -> tuple[int, ...]:
    """The sizes listed in the ``.hdr`` (as written, trailing singletons included if present)."""
    base = cfl_base(base_or_path)
    hdr = base.with_name(base.name + ".hdr")
    if not hdr.is_file():
        raise InputError(hdr, "BART header not found (expected NAME.hdr beside NAME.cfl)")
    try:
        lines = hdr.read_text(encoding="ascii", errors="strict").splitlines()
    except (UnicodeDecodeError, OSError) as exc:
        raise InputError(hdr, f"not a BART text header ({type(exc).__name__})") from None
    for i, line in enumerate(lines):
        if line.strip().lower().startswith("# dimensions"):
            if i + 1 >= len(lines):
                break
            try:
                dims = tuple(int(v) for v in lines[i + 1].split())
            except ValueError:
                raise InputError(hdr, f"dimensions line is not integers: {lines[i + 1].strip()!r}") from None
            if not dims or any(d < 1 for d in dims):
                raise InputError(hdr, f"invalid dimensions {dims}")
            return dims
    raise InputError(hdr, "no '# Dimensions' line followed by sizes")


def read_cfl(base_or_path: str | os.PathLike) -> np.ndarray:
    """Read a BART array as complex64, Fortran order, with trailing singleton dims removed (as BART's
    ``cfl.readcfl`` does): ``smallfov`` (header ``1 320 168 8 1``) gives shape ``(1, 320, 168, 8)``.

    Raises:
        InputError: missing/invalid header, missing ``.cfl``, or a ``.cfl`` whose size does not match.
    """
    base = cfl_base(base_or_path)
    dims = read_cfl_dims(base)
    cfl = base.with_name(base.name + ".cfl")
    if not cfl.is_file():
        raise InputError(cfl, "BART data file not found (expected NAME.cfl beside NAME.hdr)")
    count = int(np.prod(dims))
    expected = count * np.dtype(np.complex64).itemsize
    actual = cfl.stat().st_size
    if actual != expected:
        raise InputError(cfl, f"has {actual} bytes, the header's dims {' '.join(map(str, dims))} need {expected} "
                              "(truncated or wrong header?)")
    data = np.fromfile(cfl, dtype=np.complex64, count=count)
    keep = len(dims)
    while keep > 1 and dims[keep - 1] == 1:
        keep -= 1
    return data.reshape(dims[:keep], order="F")


def write_cfl(base_or_path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` (any complex or real numeric array, stored as complex64) as ``base.cfl`` + ``base.hdr``.

    Both files are written atomically; the header lists ``array.shape``. Returns the base path.
    """
    base = cfl_base(base_or_path)
    array = np.asarray(array)
    if array.dtype.kind not in "biufc":
        raise InputError(base, f"cannot write dtype {array.dtype} as BART complex64")
    dims = array.shape or (1,)
    header = "# Dimensions\n" + " ".join(str(d) for d in dims) + " \n"
    data = np.asarray(array, dtype=np.complex64).reshape(-1, order="F")
    with atomic_path(base.with_name(base.name + ".cfl")) as cfl_tmp, \
            atomic_path(base.with_name(base.name + ".hdr")) as hdr_tmp:
        data.tofile(cfl_tmp)
        hdr_tmp.write_text(header, encoding="ascii")
    return base


def cfl_to_kspace(array: np.ndarray, source: str | os.PathLike | None = None) -> np.ndarray:
    """BART k-space -> our layout, complex64 ``[S, C, H, W]``.

    H and W are the first and second non-singleton spatial dims (0 READ, 1 PHS1, 2 PHS2): for a 2-D
    acquisition ``[READ, PHS1, 1, COIL]`` H = readout, W = phase encode; for ``smallfov`` (``1 320 168 8``,
    one readout position of a 3-D scan) H = PHS1 (320) and W = PHS2 (168), the dimension that was undersampled.
    C comes from dim 3 (COIL), S from dim 13 (SLICE). Any other non-singleton dim is an InputError.
    """
    array = np.asarray(array)
    dims = list(array.shape) + [1] * (16 - array.ndim)
    if len(dims) > 16:
        raise InputError(source, f"has {array.ndim} dims; BART arrays have at most 16")
    spatial = [d for d in SPATIAL_DIMS if dims[d] > 1]
    if len(spatial) != 2:
        raise InputError(source, f"has dims {tuple(array.shape)}: expected exactly two non-singleton spatial dims "
                                 "(READ/PHS1/PHS2) for 2-D k-space")
    other = [d for d in range(16) if dims[d] > 1 and d not in spatial and d not in (COIL_DIM, SLICE_DIM)]
    if other:
        raise InputError(source, f"has non-singleton BART dims {other} (shape {tuple(array.shape)}); only "
                                 "READ/PHS1/PHS2, COIL (3) and SLICE (13) are supported")
    full = np.asarray(array, dtype=np.complex64).reshape(dims)
    unused = [d for d in SPATIAL_DIMS if d not in spatial]
    # -> [SLICE, COIL, H, W]
    kspace = np.transpose(full, [SLICE_DIM, COIL_DIM, spatial[0], spatial[1]] + unused
                          + [d for d in range(16) if d not in (SLICE_DIM, COIL_DIM, *SPATIAL_DIMS)])
    return np.ascontiguousarray(kspace.reshape(kspace.shape[:4]))


def read_cfl_kspace(base_or_path: str | os.PathLike) -> KspaceVolume:
    """Read a BART k-space file into a :class:`~recon.io.fastmri_h5.KspaceVolume`.

    ``kspace`` is complex64 ``[S, C, H, W]`` (see :func:`cfl_to_kspace`); ``mask`` is float32 ``[1, 1, W]``,
    1 for the phase-encode columns that hold any non-zero sample (for ``smallfov``: 96 of 168); ``target``
    is None (BART files carry no reference image).
    """
    base = cfl_base(base_or_path)
    cfl = base.with_name(base.name + ".cfl")
    kspace = cfl_to_kspace(read_cfl(base), cfl)
    check_kspace(kspace, cfl)
    columns = np.any(kspace != 0, axis=(0, 1, 2))
    mask = columns.astype(np.float32).reshape(1, 1, -1)
    return KspaceVolume(kspace=kspace, mask=mask, target=None, target_key=None,
                        attrs={"source_format": "bart", "dims": list(read_cfl_dims(base))}, path=cfl,
                        single_coil=kspace.shape[1] == 1)
