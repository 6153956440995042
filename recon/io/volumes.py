"""Magnitude volumes ``[S, H, W]``: DICOM series, NIfTI, fastMRI-layout h5, ``.npy`` and images; and the
format readers that :mod:`recon.io.images` (one record per 2-D image) shares, so every file is decoded once.

Axes (``read_volume(path, axes=...)``), two conventions, because their callers were built on them:

- ``axes="ras"`` (default; :mod:`recon.simulate`, ``mriqa make-dataset``): DICOM series and NIfTI files carry
  an affine; their voxels are reordered (flips and axis permutations only, no resampling) to the closest
  canonical RAS+ orientation, so axis 0 runs patient left -> right, axis 1 posterior -> anterior and axis 2
  inferior -> superior (``volume.data[i]`` is a sagittal slice). :func:`reslice` turns such a volume into
  display-oriented stacks of sagittal, coronal or axial slices.
- ``axes="stored"`` (the QF training pools of :mod:`mriqa.qf_data` and the held-out evaluation): the file's own
  array order, no flip: a DICOM series ``[slice along the normal, row, column]``, NIfTI ``data[i, j, k]`` as
  ``[k, i, j]`` (slices along the last axis).

h5 (``reconstruction`` / ``reconstruction_rss`` / ``reconstruction_esc``), 2-D images and ``.npy`` arrays have
no orientation; they are returned as stored under both (a 2-D array becomes ``[1, H, W]``). A 4-D NIfTI gives
its first volume (``[..., 0]``) with a warning. :mod:`recon.io.images` has a third, display convention for
single slices (NIfTI slice ``k`` shown as ``flipud(data[:, :, k].T)``); its docstring says which.

Values are as stored (DICOM with the modality LUT / RescaleSlope and Intercept applied, MONOCHROME1 inverted;
images as their pixel values, e.g. 0..255, colour as BT.601 luma). NaN / Inf, an empty array or an unreadable
file is a :class:`recon.errors.InputError` naming the file.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.errors import InputError, first_line

__all__ = ["Volume", "read_volume", "read_dicom_series", "read_nifti", "read_image", "read_npy", "reslice",
           "reslice_spacing", "ORIENTATIONS", "IMAGE_SUFFIXES", "AXES", "dicom_read", "dicom_pixels",
           "dicom_series", "load_nifti", "load_npy", "load_npz", "is_nifti"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".jpe", ".jfif")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
H5_SUFFIXES = (".h5", ".hdf5")
ORIENTATIONS = ("sagittal", "coronal", "axial")
AXES = ("ras", "stored")


@dataclass
class Volume:
    """A magnitude volume.

    Attributes:
        data: float32 ``[S, H, W]``, finite.
        spacing: voxel size in mm along (S, H, W); (1, 1, 1) when the file states none.
        path: the file or folder read.
        ras: True when the axes are canonical RAS+ (DICOM, NIfTI read with ``axes="ras"``).
        affine: 4x4 voxel -> RAS mm matrix for ``data`` (None unless ``ras``).
    """

    data: np.ndarray
    spacing: tuple[float, float, float]
    path: Path
    ras: bool = False
    affine: np.ndarray | None = None


def _finish(data: np.ndarray, path: Path, what: str) -> np.ndarray:
    data = np.asarray(data)
    if np.iscomplexobj(data):
        data = np.abs(data)
    if data.dtype.kind not in "biuf":
        raise InputError(path, f"{what} has dtype {data.dtype}, expected numbers")
    data = data.astype(np.float32, copy=False)
    if data.size == 0:
        raise InputError(path, f"{what} is empty (shape {data.shape})")
    if not np.all(np.isfinite(data)):
        raise InputError(path, f"{what} contains NaN or Inf values")
    return np.ascontiguousarray(data)


def _to_canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Flip/permute ``data`` [i, j, k] (voxel -> RAS mm ``affine``) to the closest canonical RAS+ orientation.

    Returns (data, its new affine, voxel spacing in mm along the new axes).
    """
    import nibabel.orientations as nio

    ornt = nio.io_orientation(affine)
    shape_before = data.shape
    data = nio.apply_orientation(data, ornt)
    affine = affine @ nio.inv_ornt_aff(ornt, shape_before)
    spacing = tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    return np.ascontiguousarray(data), affine, spacing


def is_nifti(path: str | os.PathLike) -> bool:
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


# ------------------------------------------------------------------------------------------------ DICOM


def dicom_read(path: str | os.PathLike, stop_before_pixels: bool = False):
    """``pydicom.dcmread(path)``, or None when the file is not DICOM (or unreadable)."""
    import pydicom

    try:
        return pydicom.dcmread(os.fspath(path), stop_before_pixels=stop_before_pixels)
    except Exception:  # pydicom raises InvalidDicomError, OSError, EOFError, ValueError, KeyError, ...
        return None


def dicom_pixels(ds, source: str | os.PathLike) -> np.ndarray:
    """The pixel values of a DICOM dataset: modality LUT (RescaleSlope / Intercept) applied to monochrome
    images, MONOCHROME1 inverted (so that bright is high); colour images as stored."""
    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises many types (missing handler, bad data, ...)
        raise InputError(source, f"cannot decode DICOM pixel data ({type(exc).__name__}: "
                                 f"{first_line(exc)})") from None
    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pragma: no cover - pydicom < 3
        from pydicom.pixel_data_handlers.util import apply_modality_lut
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if photometric.startswith("MONOCHROME"):
        arr = apply_modality_lut(arr, ds)
        if photometric == "MONOCHROME1":
            arr = arr.max() - arr
    return np.asarray(arr)


def dicom_series(path: str | os.PathLike) -> list[tuple[Path, object]]:
    """``[(file, dataset)]`` of the DICOM images in a folder (or the one file ``path``), ordered along the slice
    normal (ImagePositionPatient . normal of ImageOrientationPatient of the first image) when every image has a
    position, else by InstanceNumber; ties keep the file-name order. Files that are not DICOM are skipped.

    Raises:
        InputError: no readable DICOM image, or more than one series.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    items = []
    for file in files:
        ds = dicom_read(file)
        if ds is not None and "PixelData" in ds:
            items.append((file, ds))
    if not items:
        raise InputError(path, "no readable DICOM image found")
    series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in items}
    if len(series) > 1:
        raise InputError(path, f"holds {len(series)} DICOM series; pass a folder with one series")
    orientation = items[0][1].get("ImageOrientationPatient")
    positions = [ds.get("ImagePositionPatient") for _, ds in items]
    if orientation is not None and len(orientation) == 6 and all(p is not None for p in positions):
        normal = np.cross([float(v) for v in orientation[:3]], [float(v) for v in orientation[3:]])
        keys = [float(np.dot(normal, [float(v) for v in p])) for p in positions]
    else:
        keys = [float(ds.get("InstanceNumber", i) or 0) for i, (_, ds) in enumerate(items)]
    order = np.argsort(keys, kind="stable")
    return [items[i] for i in order]


def _pixel_spacing(ds) -> tuple[float, float]:
    spacing = ds.get("PixelSpacing")
    if spacing is None or len(spacing) != 2:
        return 1.0, 1.0
    return float(spacing[0]), float(spacing[1])


def read_dicom_series(folder: str | os.PathLike, axes: str = "ras") -> Volume:
    """Read one DICOM series from a folder (or a single, possibly multi-frame, DICOM file): slices ordered by
    :func:`dicom_series`, pixels by :func:`dicom_pixels`; with ``axes="ras"`` reoriented to canonical RAS+.

    Raises:
        InputError: no readable DICOM image, more than one series, colour images, or slices of different sizes.
    """
    folder = Path(folder)
    items = dicom_series(folder)
    first = items[0][1]
    if len(items) == 1:
        data = dicom_pixels(first, items[0][0])
        data = data[None] if data.ndim == 2 else data
        if data.ndim != 3 or int(getattr(first, "SamplesPerPixel", 1) or 1) != 1:
            raise InputError(folder, f"DICOM image has shape {data.shape}; expected grayscale 2-D or multi-frame")
        spacing = _pixel_spacing(first)
        return Volume(_finish(data, folder, "DICOM image"), (float(first.get("SliceThickness", 1) or 1), *spacing),
                      folder)
    slices = [dicom_pixels(ds, file) for file, ds in items]
    if len({s.shape for s in slices}) > 1 or slices[0].ndim != 2:
        raise InputError(folder, f"DICOM slices differ in size or are not 2-D: {sorted({s.shape for s in slices})}")
    data = np.stack(slices)  # [slice, row, column]
    row_spacing, col_spacing = _pixel_spacing(first)
    orientation = first.get("ImageOrientationPatient")
    positions = [ds.get("ImagePositionPatient") for _, ds in items]
    if axes == "stored" or orientation is None or any(p is None for p in positions):
        thickness = float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 1)) or 1)
        return Volume(_finish(data, folder, "DICOM series"), (thickness, row_spacing, col_spacing), folder)

    row_dir = np.array([float(v) for v in orientation[:3]])
    col_dir = np.array([float(v) for v in orientation[3:]])
    p0 = np.array([float(v) for v in positions[0]])
    p1 = np.array([float(v) for v in positions[-1]])
    step = (p1 - p0) / (len(items) - 1)
    # voxel (k, i, j) -> LPS mm: p0 + k step + i row_spacing col_dir + j col_spacing row_dir
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = step
    affine_lps[:3, 1] = col_dir * row_spacing
    affine_lps[:3, 2] = row_dir * col_spacing
    affine_lps[:3, 3] = p0
    affine_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    data, affine, spacing = _to_canonical(data, affine_ras)
    return Volume(_finish(data, folder, "DICOM series"), spacing, folder, ras=True, affine=affine)


# ------------------------------------------------------------------------------------------------ NIfTI


def load_nifti(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(data, affine)`` of a NIfTI file as stored (complex -> magnitude, trailing singleton axes dropped)."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj)
    except Exception as exc:  # nibabel raises ImageFileError, OSError, EOFError, zlib errors, ...
        raise InputError(path, f"cannot read as NIfTI: {first_line(exc)}") from None
    if np.iscomplexobj(data):
        data = np.abs(data).astype(np.float32)
    while data.ndim > 3 and data.shape[-1] == 1:  # trailing singleton dims (e.g. [X, Y, Z, 1])
        data = data[..., 0]
    return data, np.asarray(image.affine, dtype=np.float64)


def read_nifti(path: str | os.PathLike, axes: str = "ras") -> Volume:
    """Read a NIfTI volume (``.nii`` / ``.nii.gz``): reoriented to canonical RAS+ (``axes="ras"``) or as
    ``[k, i, j]`` (``axes="stored"``). A 4-D file gives its FIRST volume (``[..., 0]``), with a warning; a 2-D
    file gives one slice."""
    path = Path(path)
    data, affine = load_nifti(path)
    if data.ndim == 4:
        warnings.warn(f"{path}: 4-D NIfTI {data.shape}; using the first volume", stacklevel=3)
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise InputError(path, f"NIfTI data has shape {data.shape}; expected 3-D (or 4-D: first volume is used)")
    if axes == "stored":
        return Volume(_finish(np.moveaxis(data, -1, 0), path, "NIfTI data"), (1.0, 1.0, 1.0), path)
    data, affine, spacing = _to_canonical(np.asarray(data), affine)
    return Volume(_finish(data, path, "NIfTI data"), spacing, path, ras=True, affine=affine)


# ------------------------------------------------------------------------------------------------ images, npy


def read_image(path: str | os.PathLike) -> Volume:
    """Read a 2-D image (PNG/TIFF/BMP/JPEG; :func:`recon.io.photos.read_photo_file`, every frame) as
    grayscale float32 ``[S, H, W]`` (S = frames, usually 1). Colour images become luma
    ``0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601, alpha dropped) in float32, so 16-bit gray keeps its range."""
    from recon.io.photos import read_photo_file

    path = Path(path)
    frames = []
    for photo in read_photo_file(path, all_frames=True):
        arr = photo.array
        if arr.ndim == 3:
            arr = arr[..., 0] if arr.shape[-1] == 2 else \
                arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        frames.append(np.asarray(arr).astype(np.float32))
    if len({f.shape for f in frames}) > 1:
        raise InputError(path, "image frames differ in size")
    return Volume(_finish(np.stack(frames), path, "image"), (1.0, 1.0, 1.0), path)


NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every .npy file (NumPy's format spec)


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """A ``.npy`` array as stored (no pickles); InputError for a missing or unreadable file, a file that is not
    ``.npy`` at all, or one holding Python objects (NumPy's own message would advise ``allow_pickle``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    with open(path, "rb") as f:
        if f.read(len(NPY_MAGIC)) != NPY_MAGIC:
            raise InputError(path, "not a .npy file (no NumPy header)")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object arrays" in str(exc).lower():
            raise InputError(path, "the .npy file holds Python objects, which are not read: save a numeric "
                                   "array") from None
        raise InputError(path, f"cannot read as .npy: {first_line(exc)}") from None
    except (OSError, EOFError) as exc:
        raise InputError(path, f"cannot read as .npy: {first_line(exc)}") from None


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` archive (``np.savez``), in stored order (no pickles); InputError for a missing,
    unreadable or empty archive."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(path, f"cannot read as .npz: {first_line(exc)}") from None
    if not arrays:
        raise InputError(path, "the .npz archive holds no array")
    return arrays


def read_npy(path: str | os.PathLike) -> Volume:
    """Read a ``.npy`` array: 2-D ``[H, W]`` -> ``[1, H, W]``, 3-D as stored; complex -> magnitude."""
    path = Path(path)
    data = load_npy(path)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise InputError(path, f"array has shape {data.shape}; expected [H, W] or [S, H, W]")
    return Volume(_finish(data, path, "array"), (1.0, 1.0, 1.0), path)


def _read_h5(path: Path, key: str | None) -> Volume:
    from recon.io.fastmri_h5 import read_reconstruction

    return Volume(_finish(read_reconstruction(path, key=key).image, path, "h5 image"), (1.0, 1.0, 1.0), path)


def sniff_format(path: Path) -> str | None:
    """``"h5"``, ``"dicom"`` or ``"npy"`` from a file's first bytes (for files without a telling suffix), or
    None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return None
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "h5"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    return None


# ------------------------------------------------------------------------------------------------ dispatch


def read_volume(path: str | os.PathLike, axes: str = "ras", h5_key: str | None = None) -> Volume:
    """Read any supported magnitude volume, chosen by what ``path`` is:

    a folder -> DICOM series; ``.nii``/``.nii.gz`` -> NIfTI; ``.h5`` (or HDF5 content) -> fastMRI layout
    (``h5_key`` or the first of reconstruction, reconstruction_rss, reconstruction_esc); ``.npy``;
    PNG/TIFF/BMP/JPEG -> image; ``.dcm`` or anything else -> a single DICOM file. ``axes``: ``"ras"`` or
    ``"stored"`` (module docstring).
    """
    if axes not in AXES:
        raise ValueError(f"axes must be one of {AXES}, got {axes!r}")
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    name = path.name.lower()
    if path.is_dir():
        return read_dicom_series(path, axes)
    if name.endswith(NIFTI_SUFFIXES):
        return read_nifti(path, axes)
    if name.endswith(H5_SUFFIXES) or sniff_format(path) == "h5":
        return _read_h5(path, h5_key)
    if name.endswith(".npy"):
        return read_npy(path)
    if name.endswith(IMAGE_SUFFIXES):
        return read_image(path)
    return read_dicom_series(path, axes)


def reslice(volume: Volume, orientation: str) -> np.ndarray:
    """Display-oriented slices ``[N, rows, cols]`` of a canonical RAS+ volume (superior / anterior up).

    - ``sagittal``: one slice per left-right position; rows run superior -> inferior, cols posterior -> anterior.
    - ``coronal``: one per posterior-anterior position; rows superior -> inferior, cols left -> right.
    - ``axial``: one per inferior-superior position; rows anterior -> posterior, cols left -> right.

    For a volume without orientation (``ras=False``) the same index arithmetic is applied to its axes.
    Physical size per pixel: use ``volume.spacing`` of the two in-plane axes.
    """
    data = volume.data  # [x (L->R), y (P->A), z (I->S)]
    if orientation == "sagittal":
        out = np.transpose(data, (0, 2, 1))[:, ::-1, :]  # [x, z, y], z flipped (superior up)
    elif orientation == "coronal":
        out = np.transpose(data, (1, 2, 0))[:, ::-1, :]  # [y, z, x]
    elif orientation == "axial":
        out = np.transpose(data, (2, 1, 0))[:, ::-1, :]  # [z, y, x], y flipped (anterior up)
    else:
        raise InputError(None, f"unknown orientation {orientation!r}; choose from {', '.join(ORIENTATIONS)}")
    return np.ascontiguousarray(out)


def reslice_spacing(volume: Volume, orientation: str) -> tuple[float, float, float]:
    """(slice, row, col) spacing in mm of :func:`reslice`'s output."""
    sx, sy, sz = volume.spacing
    return {"sagittal": (sx, sz, sy), "coronal": (sy, sz, sx), "axial": (sz, sy, sx)}[orientation]
