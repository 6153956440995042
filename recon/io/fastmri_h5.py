"""fastMRI HDF5 files: read k-space volumes, write raw-data and reconstruction files.

Layout (as in the public fastMRI data; https://github.com/facebookresearch/fastMRI):

==========================  ==========================================================================
``kspace``                  complex64 ``[slices, coils, H, W]`` (multi-coil) or ``[slices, H, W]``
                            (single-coil); H = readout (frequency encode), W = phase encode
``reconstruction_rss``      float32 ``[slices, h, w]``: root-sum-of-squares of the fully sampled k-space
                            (multi-coil target; in real fastMRI files cropped to the recon size, 320 x 320)
``reconstruction_esc``      float32 ``[slices, h, w]``: single-coil target (emulated single coil)
``mask``                    optional, ``[W]`` (test/challenge files): 1 for acquired columns
``ismrmrd_header``          XML string; ``fastmri.data.SliceDataset`` reads encodedSpace / reconSpace
                            ``matrixSize`` and ``encodingLimits/kspace_encoding_step_1`` from it
attrs                       ``max`` / ``norm`` (of the target volume), ``acquisition``, ``patient_id``,
                            and on test files ``acceleration``, ``num_low_frequencies``
==========================  ==========================================================================

Our reconstruction files (``write_reconstruction_h5``) hold ``reconstruction`` float32 ``[slices, H, W]``
(magnitude, on the scale of the RSS of the fully sampled k-space), an optional ``mask`` and attrs, like the
files fastMRI's ``save_reconstructions`` writes plus the mask and the method's settings. The attributes' schema
has one owner, :class:`ReconstructionAttrs` (written by ``write_reconstruction_h5``, parsed back typed by
``read_reconstruction_attrs`` / ``Reconstruction.info``). The ISMRMRD header is built and parsed in
:mod:`recon.io.ismrmrd`.

Every user mistake raises :class:`recon.errors.InputError` naming the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from recon.errors import InputError, first_line
from recon.io.output import output_file
from recon.io.ismrmrd import ismrmrd_header, parse_header as _parse_header

__all__ = [
    "KspaceVolume",
    "Reconstruction",
    "read_kspace",
    "check_kspace",
    "read_reconstruction",
    "read_reconstruction_attrs",
    "ReconstructionAttrs",
    "write_fastmri_h5",
    "write_reconstruction_h5",
    "ismrmrd_header",
    "TARGET_KEYS",
]

# Keys searched, in order, for the reference image of a raw-data file.
TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc")
# Keys searched, in order, for the image of a reconstruction (or target) file.
RECONSTRUCTION_KEYS = ("reconstruction", "reconstruction_rss", "reconstruction_esc")


@dataclass
class KspaceVolume:
    """A k-space volume read from a fastMRI h5 file (or a BART cfl, see ``recon.io.bart``).

    Attributes:
        kspace: complex64 ``[S, C, H, W]``; single-coil files get C = 1.
        mask: float32 ``[1, 1, W]`` (line mask) or ``[1, H, W]`` (2-D mask), values 0/1, or None when the
            file holds no mask (fully sampled training data).
        target: float32 ``[S, h, w]`` reference magnitude (``reconstruction_rss``, else ``reconstruction_esc``)
            or None. In real fastMRI files (h, w) is the recon size (e.g. 320 x 320), not (H, W).
        target_key: which dataset ``target`` came from, or None.
        attrs: the file's attributes as plain Python values (``max``, ``norm``, ``acquisition``, ...).
        path: the file read.
        single_coil: True when the file stored ``kspace`` as ``[S, H, W]``.
        encoding_size / recon_size: ``(x, y, z)`` matrix sizes from ``ismrmrd_header``, or None.
        header: the ``ismrmrd_header`` XML text, or None.
    """

    kspace: np.ndarray
    mask: np.ndarray | None
    target: np.ndarray | None
    target_key: str | None
    attrs: dict[str, Any]
    path: Path
    single_coil: bool = False
    encoding_size: tuple[int, int, int] | None = None
    recon_size: tuple[int, int, int] | None = None
    header: str | None = field(default=None, repr=False)

    @property
    def num_slices(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def num_coils(self) -> int:
        return int(self.kspace.shape[1])


@dataclass
class Reconstruction:
    """A magnitude volume read from a reconstruction or target file.

    Attributes:
        image: float32 ``[S, H, W]``.
        mask: float32 ``[1, 1, W]`` / ``[1, H, W]`` or None.
        attrs: the file's attributes as plain Python values.
        key: the dataset read (``reconstruction``, ``reconstruction_rss`` or ``reconstruction_esc``).
        path: the file read.
    """

    image: np.ndarray
    mask: np.ndarray | None
    attrs: dict[str, Any]
    key: str
    path: Path

    @property
    def info(self) -> "ReconstructionAttrs":
        """The typed method / acquisition attributes (:class:`ReconstructionAttrs`)."""
        return ReconstructionAttrs.from_attrs(self.attrs)


# --------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ReconstructionAttrs:
    """The attributes of a reconstruction file, typed (the one place that knows the schema).

    ``write_reconstruction_h5`` stores them (``mriqa recon``: :func:`recon.masks.describe_mask` + the method's
    settings); :meth:`from_attrs` parses them back (None is stored as ``"none"``, booleans as 0/1). Each field
    is None when the file does not have it. method: ``zf`` / ``sense`` / ``l1`` / ``modl``; acceleration:
    nominal R asked for; acceleration_effective: total lines (or points) / sampled ones; mask_type:
    ``random`` / ``equispaced`` / ``poisson`` / ``from_kspace``; center_fraction; num_low_frequencies: fully sampled centre lines; seed: mask seed (None
    when the mask came from the data); retrospective: the input was fully sampled and undersampled here;
    num_maps: ESPIRiT map sets; weights: MoDL weights used; input: the k-space file reconstructed.
    """

    method: str | None = None
    acceleration: float | None = None
    acceleration_effective: float | None = None
    mask_type: str | None = None
    center_fraction: float | None = None
    num_low_frequencies: int | None = None
    seed: int | None = None
    retrospective: bool | None = None
    num_maps: int | None = None
    weights: str | None = None
    input: str | None = None

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> "ReconstructionAttrs":
        """Parse a file's attributes (plain values, as :class:`Reconstruction.attrs` holds them)."""
        values = {}
        for name, f in cls.__dataclass_fields__.items():
            kind = {"str": str, "float": float, "int": int, "bool": bool}[str(f.type).split(" ")[0]]
            v = attrs.get(name)
            try:
                if v is None or (isinstance(v, str) and v.lower() == "none"):
                    values[name] = None
                elif kind is bool:
                    values[name] = v.lower() in ("1", "true", "yes") if isinstance(v, str) else bool(int(v))
                else:
                    values[name] = kind(v)
            except (TypeError, ValueError):
                values[name] = None  # a foreign file's attribute of that name, with another meaning
        return cls(**values)

    def to_attrs(self) -> dict[str, Any]:
        """The attributes to store (every field that is not None)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}




def _plain(value: Any) -> Any:
    """HDF5 attribute value -> plain Python (str, int, float, list)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.dtype.kind in "SO" else value.tolist()
    return value


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a folder, expected a fastMRI .h5 file")
    if not h5py.is_hdf5(path):
        raise InputError(path, "not an HDF5 file (expected a fastMRI .h5 file)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:  # truncated / corrupt
        raise InputError(path, f"cannot open as HDF5 (truncated or corrupt?): {first_line(exc)}") from None


def _mask_to_convention(mask: np.ndarray, height: int, width: int, path: Path, key: str = "mask") -> np.ndarray:
    """A stored mask ([W], [H, W] or anything squeezable to those) -> float32 [1, 1, W] or [1, H, W]."""
    squeezed = np.squeeze(np.asarray(mask))
    if squeezed.ndim == 1 and squeezed.shape[0] == width:
        out = squeezed.reshape(1, 1, width)
    elif squeezed.ndim == 2 and squeezed.shape == (height, width):
        out = squeezed.reshape(1, height, width)
    else:
        raise InputError(path, f"'{key}' has shape {tuple(np.shape(mask))}, expected [{width}] or [{height}, {width}]"
                               f" to match kspace")
    out = out.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise InputError(path, f"'{key}' contains NaN or Inf")
    out = (out != 0).astype(np.float32)
    if not out.any():
        raise InputError(path, f"'{key}' is all zero (no sampled k-space)")
    return out


def check_kspace(kspace: np.ndarray, path: str | os.PathLike | None, key: str = "kspace") -> None:
    """Raise InputError unless ``kspace`` is finite and no slice of it is all zero (``[S, ...]`` array)."""
    if not np.isfinite(kspace).all():
        raise InputError(path, f"'{key}' contains NaN or Inf values")
    if kspace.shape[0] == 0 or kspace[0].size == 0:
        raise InputError(path, f"'{key}' is empty (shape {tuple(kspace.shape)})")
    nonzero = np.any(kspace.reshape(kspace.shape[0], -1) != 0, axis=1)
    if not nonzero.any():
        raise InputError(path, f"'{key}' is all zero")
    if not nonzero.all():
        raise InputError(path, f"'{key}' slice {int(np.argmin(nonzero))} is all zero")


def read_kspace(path: str | os.PathLike, slices: slice | Sequence[int] | None = None) -> KspaceVolume:
    """Read a fastMRI single- or multi-coil raw-data file.

    Args:
        path: a fastMRI ``.h5`` file.
        slices: optional subset of slices (a ``slice`` or a sorted list of indices); default all.

    Returns:
        :class:`KspaceVolume` with ``kspace`` complex64 ``[S, C, H, W]`` (C = 1 added for single-coil files).

    Raises:
        InputError: not HDF5 / truncated, no ``kspace``, wrong rank or dtype, NaN/Inf, an all-zero slice,
            a mask of the wrong shape or all zero.
    """
    path = Path(path)
    with _open(path) as hf:
        try:
            if "kspace" not in hf:
                raise InputError(path, f"no 'kspace' dataset (found: {', '.join(sorted(hf.keys())) or 'nothing'})")
            dataset = hf["kspace"]
            if not isinstance(dataset, h5py.Dataset):
                raise InputError(path, "'kspace' is a group, expected a dataset")
            if dataset.ndim not in (3, 4):
                raise InputError(path, f"'kspace' has rank {dataset.ndim} (shape {dataset.shape}), expected "
                                       "[slices, H, W] (single-coil) or [slices, coils, H, W] (multi-coil)")
            if dataset.dtype.kind != "c":
                raise InputError(path, f"'kspace' has dtype {dataset.dtype}, expected complex64")
            index = slice(None) if slices is None else slices
            if not isinstance(index, slice):
                index = sorted({int(i) for i in index})
                if index and (index[0] < 0 or index[-1] >= dataset.shape[0]):
                    raise InputError(path, f"slice index out of range 0..{dataset.shape[0] - 1}")
            kspace = np.asarray(dataset[index], dtype=np.complex64)
            single_coil = dataset.ndim == 3
            if single_coil:
                kspace = kspace[:, None]
            check_kspace(kspace, path)
            height, width = kspace.shape[-2:]

            mask = None
            if "mask" in hf:
                mask = _mask_to_convention(np.asarray(hf["mask"]), height, width, path)

            target, target_key = None, None
            for key in TARGET_KEYS:
                if key in hf:
                    target = np.asarray(hf[key][index], dtype=np.float32)
                    target_key = key
                    break
            if target is not None:
                if target.ndim != 3 or target.shape[0] != kspace.shape[0]:
                    raise InputError(path, f"'{target_key}' has shape {target.shape}, expected "
                                           f"[{kspace.shape[0]}, h, w] to match kspace")
                if not np.all(np.isfinite(target)):
                    raise InputError(path, f"'{target_key}' contains NaN or Inf values")

            header = None
            if "ismrmrd_header" in hf:
                raw = hf["ismrmrd_header"][()]
                header = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
            encoding_size, recon_size = _parse_header(header)
            attrs = {key: _plain(value) for key, value in hf.attrs.items()}
        except OSError as exc:  # a truncated file often opens, then fails on read
            raise InputError(path, f"cannot read (truncated or corrupt?): {first_line(exc)}") from None
    return KspaceVolume(kspace=kspace, mask=mask, target=target, target_key=target_key, attrs=attrs, path=path,
                        single_coil=single_coil, encoding_size=encoding_size, recon_size=recon_size, header=header)


def read_reconstruction(path: str | os.PathLike, key: str | None = None, with_mask: bool = True) -> Reconstruction:
    """Read a magnitude volume: ``reconstruction`` (ours, fastMRI submissions), else ``reconstruction_rss``,
    else ``reconstruction_esc`` (fastMRI raw-data targets); or the dataset named by ``key``. Complex data is
    returned as its magnitude. ``with_mask=False`` skips the ``mask`` dataset (image readers do not need it;
    in raw-data files it matches the k-space width, not the cropped target's).

    Returns:
        :class:`Reconstruction` with ``image`` float32 ``[S, H, W]``.
    """
    path = Path(path)
    with _open(path) as hf:
        try:
            keys = (key,) if key else RECONSTRUCTION_KEYS
            found = next((k for k in keys if k in hf), None)
            if found is None:
                raise InputError(path, f"no {' / '.join(repr(k) for k in keys)} dataset "
                                       f"(found: {', '.join(sorted(hf.keys())) or 'nothing'})")
            if not isinstance(hf[found], h5py.Dataset):
                raise InputError(path, f"'{found}' is a group, expected a dataset")
            image = np.asarray(hf[found][()])
            if image.dtype.kind not in "biufc":
                raise InputError(path, f"'{found}' has dtype {image.dtype}, expected numbers")
            image = (np.abs(image) if np.iscomplexobj(image) else image).astype(np.float32, copy=False)
            if image.ndim == 2:
                image = image[None]
            if image.ndim != 3:
                raise InputError(path, f"'{found}' has shape {image.shape}, expected [slices, H, W]")
            if image.size == 0:
                raise InputError(path, f"'{found}' is empty")
            finite = np.isfinite(image).reshape(image.shape[0], -1).all(axis=1)
            if not finite.all():
                raise InputError(path, f"slice {int(np.argmin(finite))} contains NaN or Inf values (in '{found}')")
            mask = None
            if with_mask and "mask" in hf:
                mask = _mask_to_convention(np.asarray(hf["mask"]), image.shape[-2], image.shape[-1], path)
            attrs = {k: _plain(v) for k, v in hf.attrs.items()}
        except OSError as exc:
            raise InputError(path, f"cannot read (truncated or corrupt?): {first_line(exc)}") from None
    return Reconstruction(image=image, mask=mask, attrs=attrs, key=found, path=path)


def read_reconstruction_attrs(path: str | os.PathLike) -> "ReconstructionAttrs":
    """The typed acquisition / method attributes of a reconstruction file (no image is read)."""
    path = Path(path)
    with _open(path) as hf:
        try:
            return ReconstructionAttrs.from_attrs({k: _plain(v) for k, v in hf.attrs.items()})
        except OSError as exc:
            raise InputError(path, f"cannot read (truncated or corrupt?): {first_line(exc)}") from None


# --------------------------------------------------------------------------------------------- writing


def _as_numpy(array: Any) -> np.ndarray:
    """numpy or torch (detached, moved to the CPU) -> numpy."""
    return array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)


def _mask_for_file(mask: Any, height: int, width: int, path: Path) -> np.ndarray:
    """Any mask broadcastable to [..., H, W] -> what fastMRI stores: bool [W] (lines) or [H, W] (2-D)."""
    mask = _as_numpy(mask)
    squeezed = np.squeeze(mask)
    if squeezed.ndim == 1 and squeezed.shape[0] == width:
        return squeezed != 0
    if squeezed.ndim == 2 and squeezed.shape == (height, width):
        return squeezed != 0
    raise InputError(path, f"mask of shape {tuple(mask.shape)} does not match k-space [.., {height}, {width}]")


def _attr_value(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    return value


def write_fastmri_h5(
    path: str | os.PathLike,
    kspace: np.ndarray,
    reconstruction_rss: np.ndarray | None = None,
    reconstruction_esc: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
    acquisition: str = "SIM",
    patient_id: str | None = None,
    header: str | None = None,
) -> Path:
    """Write a raw-data file in fastMRI's layout (atomically), readable by ``fastmri.data.SliceDataset``.

    Args:
        path: destination ``.h5``.
        kspace: complex ``[S, C, H, W]`` (multi-coil layout) or ``[S, H, W]`` (single-coil layout); stored as
            complex64 exactly in that layout.
        reconstruction_rss: float ``[S, h, w]`` multi-coil target (RSS of the fully sampled k-space).
        reconstruction_esc: float ``[S, h, w]`` single-coil target.
        mask: optional sampling mask broadcastable to ``[H, W]``; stored as fastMRI does (``[W]`` for lines).
        attrs: extra attributes (numbers, strings); ``max`` and ``norm`` default to the max and the Frobenius
            norm of the target volume (``reconstruction_rss``, else ``reconstruction_esc``), as in fastMRI.
        acquisition: the ``acquisition`` attribute (fastMRI uses e.g. ``CORPD_FBK``, ``AXT1``).
        patient_id: the ``patient_id`` attribute; defaults to the file's stem.
        header: ``ismrmrd_header`` XML; default :func:`ismrmrd_header` for (H, W) with recon size = target size.

    Returns:
        The path written.
    """
    path = Path(path)
    kspace = _as_numpy(kspace)
    if kspace.ndim not in (3, 4):
        raise InputError(path, f"kspace to write has shape {kspace.shape}, expected [S, C, H, W] or [S, H, W]")
    if kspace.dtype.kind != "c":
        raise InputError(path, f"kspace to write has dtype {kspace.dtype}, expected complex")
    kspace = kspace.astype(np.complex64, copy=False)
    check_kspace(kspace, path)
    num_slices, height, width = kspace.shape[0], kspace.shape[-2], kspace.shape[-1]
    num_coils = kspace.shape[1] if kspace.ndim == 4 else 1

    targets = {}
    for key, value in (("reconstruction_rss", reconstruction_rss), ("reconstruction_esc", reconstruction_esc)):
        if value is None:
            continue
        value = _as_numpy(value).astype(np.float32, copy=False)
        if value.ndim != 3 or value.shape[0] != num_slices:
            raise InputError(path, f"{key} to write has shape {value.shape}, expected [{num_slices}, h, w]")
        if not np.all(np.isfinite(value)):
            raise InputError(path, f"{key} to write contains NaN or Inf values")
        targets[key] = value
    stored_mask = None if mask is None else _mask_for_file(mask, height, width, path)
    if stored_mask is not None and not stored_mask.any():
        raise InputError(path, "mask to write is all zero")

    main_target = targets.get("reconstruction_rss", targets.get("reconstruction_esc"))
    recon_hw = main_target.shape[-2:] if main_target is not None else (height, width)
    if header is None:
        header = ismrmrd_header((height, width, 1), (recon_hw[0], recon_hw[1], 1), num_slices, num_coils)

    all_attrs: dict[str, Any] = {"acquisition": acquisition, "patient_id": patient_id or path.stem}
    if main_target is not None:
        all_attrs["max"] = float(main_target.max())
        all_attrs["norm"] = float(np.linalg.norm(main_target))
    all_attrs.update(attrs or {})

    with output_file(path, "the k-space file") as tmp:
        with h5py.File(tmp, "w") as hf:
            hf.create_dataset("kspace", data=kspace)
            for key, value in targets.items():
                hf.create_dataset(key, data=value)
            if stored_mask is not None:
                hf.create_dataset("mask", data=stored_mask)
            hf.create_dataset("ismrmrd_header", data=header)
            for key, value in all_attrs.items():
                hf.attrs[key] = _attr_value(value)
    return path


def write_reconstruction_h5(
    path: str | os.PathLike,
    reconstruction: np.ndarray,
    mask: np.ndarray | None = None,
    attrs: "Mapping[str, Any] | ReconstructionAttrs | None" = None,
) -> Path:
    """Write a reconstruction file (atomically): ``reconstruction`` float32 ``[S, H, W]``, optional ``mask``
    (stored as ``[W]`` for line masks, ``[H, W]`` for 2-D masks), and ``attrs`` (a
    :class:`ReconstructionAttrs`, or a mapping with its fields ``method``, ``acceleration``,
    ``acceleration_effective``, ``mask_type``, ``center_fraction``, ``seed``, ... and any others; None is
    stored as the string ``"none"``). A 2-D ``[H, W]`` image is stored as one slice. A failed write (no
    space, read-only folder) is an InputError naming ``path``, and leaves no file.
    """
    if isinstance(attrs, ReconstructionAttrs):
        attrs = attrs.to_attrs()
    path = Path(path)
    image = _as_numpy(reconstruction)
    if np.iscomplexobj(image):
        raise InputError(path, "reconstruction to write is complex; store its magnitude (float32)")
    image = image.astype(np.float32, copy=False)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.size == 0:
        raise InputError(path, f"reconstruction to write has shape {image.shape}, expected [S, H, W]")
    if not np.all(np.isfinite(image)):
        raise InputError(path, "reconstruction to write contains NaN or Inf values")
    stored_mask = None if mask is None else _mask_for_file(mask, image.shape[-2], image.shape[-1], path)
    with output_file(path, "the reconstruction") as tmp:
        with h5py.File(tmp, "w") as hf:
            hf.create_dataset("reconstruction", data=image)
            if stored_mask is not None:
                hf.create_dataset("mask", data=stored_mask)
            for key, value in (attrs or {}).items():
                hf.attrs[key] = _attr_value(value)
    return path
