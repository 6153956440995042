"""Magnitude volumes: DICOM series, NIfTI, 2-D images and ``.npy``, as float32 ``[S, H, W]`` with spacing.

Orientation: DICOM series and NIfTI files carry an affine; their voxels are reordered (flips and axis
permutations only, no resampling) to the closest canonical RAS+ orientation, so axis 0 runs patient
left -> right, axis 1 posterior -> anterior and axis 2 inferior -> superior (``volume.data[i]`` is a sagittal
slice). :func:`reslice` turns such a volume into display-oriented stacks of sagittal, coronal or axial slices.
2-D images and ``.npy`` arrays have no orientation; they are returned as stored (a 2-D array becomes
``[1, H, W]``).

Values are as stored (DICOM with RescaleSlope/Intercept applied; images as their pixel values, e.g. 0..255).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.errors import InputError

__all__ = ["Volume", "read_volume", "read_dicom_series", "read_nifti", "read_image", "read_npy", "reslice",
           "ORIENTATIONS", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ORIENTATIONS = ("sagittal", "coronal", "axial")


@dataclass
class Volume:
    """A magnitude volume.

    Attributes:
        data: float32 ``[S, H, W]``, finite.
        spacing: voxel size in mm along (S, H, W); (1, 1, 1) when the file states none.
        path: the file or folder read.
        ras: True when the axes are canonical RAS+ (DICOM, NIfTI), see the module docstring.
        affine: 4x4 voxel -> RAS mm matrix for ``data`` (None for images and ``.npy``).
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


# ------------------------------------------------------------------------------------------------ DICOM


def read_dicom_series(folder: str | os.PathLike) -> Volume:
    """Read one DICOM series from a folder (or a single, possibly multi-frame, DICOM file).

    Files that are not DICOM (notes, ``.nfo``, ...) are skipped. Slices are ordered by their position along
    the slice normal (ImagePositionPatient . normal of ImageOrientationPatient), falling back to
    InstanceNumber; RescaleSlope/Intercept are applied; the volume is reoriented to canonical RAS+.

    Raises:
        InputError: no readable DICOM image, more than one series, or slices of different sizes.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    if not folder.exists():
        raise InputError(folder, "not found")
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else [folder]
    datasets = []
    for file in files:
        try:
            ds = pydicom.dcmread(file)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if "PixelData" in ds:
            datasets.append(ds)
    if not datasets:
        raise InputError(folder, "no readable DICOM image found")
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets}
    if len(series) > 1:
        raise InputError(folder, f"holds {len(series)} DICOM series; pass a folder with one series")

    def pixels(ds) -> np.ndarray:
        try:
            array = ds.pixel_array.astype(np.float32)
        except Exception as exc:  # pydicom raises many types for unsupported transfer syntaxes
            raise InputError(folder, f"cannot decode pixel data of a DICOM file: {exc}".splitlines()[0]) from None
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        return array * slope + intercept

    first = datasets[0]
    if len(datasets) == 1:
        data = pixels(first)
        data = data[None] if data.ndim == 2 else data
        if data.ndim != 3:
            raise InputError(folder, f"DICOM image has shape {data.shape}; expected grayscale 2-D or multi-frame")
        spacing = _pixel_spacing(first)
        return Volume(_finish(data, folder, "DICOM image"), (float(first.get("SliceThickness", 1) or 1), *spacing),
                      folder)

    orientation = first.get("ImageOrientationPatient")
    positions = [ds.get("ImagePositionPatient") for ds in datasets]
    if orientation is not None and all(p is not None for p in positions):
        row_dir = np.array([float(v) for v in orientation[:3]])
        col_dir = np.array([float(v) for v in orientation[3:]])
        normal = np.cross(row_dir, col_dir)
        along = np.array([np.dot(normal, [float(v) for v in p]) for p in positions])
        order = np.argsort(along, kind="stable")
    else:
        row_dir = col_dir = normal = None
        order = np.argsort([int(ds.get("InstanceNumber", i)) for i, ds in enumerate(datasets)], kind="stable")
    datasets = [datasets[i] for i in order]
    slices = [pixels(ds) for ds in datasets]
    if len({s.shape for s in slices}) > 1 or slices[0].ndim != 2:
        raise InputError(folder, f"DICOM slices differ in size or are not 2-D: {sorted({s.shape for s in slices})}")
    data = np.stack(slices)  # [slice, row, column]
    row_spacing, col_spacing = _pixel_spacing(first)

    if normal is None:
        thickness = float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 1)) or 1)
        return Volume(_finish(data, folder, "DICOM series"), (thickness, row_spacing, col_spacing), folder)

    p0 = np.array([float(v) for v in datasets[0].ImagePositionPatient])
    p1 = np.array([float(v) for v in datasets[-1].ImagePositionPatient])
    step = (p1 - p0) / (len(datasets) - 1)
    # voxel (k, i, j) -> LPS mm: p0 + k step + i row_spacing col_dir + j col_spacing row_dir
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = step
    affine_lps[:3, 1] = col_dir * row_spacing
    affine_lps[:3, 2] = row_dir * col_spacing
    affine_lps[:3, 3] = p0
    affine_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    data, affine, spacing = _to_canonical(data, affine_ras)
    return Volume(_finish(data, folder, "DICOM series"), spacing, folder, ras=True, affine=affine)


def _pixel_spacing(ds) -> tuple[float, float]:
    spacing = ds.get("PixelSpacing")
    if spacing is None or len(spacing) != 2:
        return 1.0, 1.0
    return float(spacing[0]), float(spacing[1])


# ------------------------------------------------------------------------------------------------ NIfTI


def read_nifti(path: str | os.PathLike) -> Volume:
    """Read a NIfTI volume (``.nii`` / ``.nii.gz``), reoriented to canonical RAS+.

    A 4-D file gives its FIRST volume (``[..., 0]``), with a warning; a 2-D file gives one slice.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj)
    except Exception as exc:  # nibabel raises ImageFileError, OSError, EOFError, zlib errors, ...
        raise InputError(path, f"cannot read as NIfTI: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                         ) from None
    while data.ndim > 3 and data.shape[-1] == 1:  # trailing singleton dims (e.g. [X, Y, Z, 1])
        data = data[..., 0]
    if data.ndim == 4:
        warnings.warn(f"{path}: 4-D NIfTI {data.shape}; using the first volume", stacklevel=2)
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise InputError(path, f"NIfTI data has shape {data.shape}; expected 3-D (or 4-D: first volume is used)")
    data, affine, spacing = _to_canonical(np.asarray(data), np.asarray(image.affine, dtype=np.float64))
    return Volume(_finish(data, path, "NIfTI data"), spacing, path, ras=True, affine=affine)


# ------------------------------------------------------------------------------------------------ images


def read_image(path: str | os.PathLike) -> Volume:
    """Read a 2-D image (PNG/TIFF/BMP/JPEG) as grayscale float32 ``[S, H, W]`` (S = frames, usually 1).

    Colour images become luma ``0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601, alpha dropped) in float32, so
    16-bit grayscale keeps its full range.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    frames = []
    try:
        with Image.open(path) as image:
            for index in range(getattr(image, "n_frames", 1)):
                image.seek(index)
                frames.append(_grayscale(image))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"cannot read as an image: {str(exc).splitlines()[0] if str(exc) else 'unreadable'}"
                         ) from None
    if len({f.shape for f in frames}) > 1:
        raise InputError(path, "image frames differ in size")
    return Volume(_finish(np.stack(frames), path, "image"), (1.0, 1.0, 1.0), path)


def _grayscale(image) -> np.ndarray:
    """One PIL frame -> float32 [H, W]: grayscale modes as stored, colour modes as BT.601 luma."""
    if image.mode == "LA":
        image = image.convert("L")
    if image.mode in ("1", "L", "I", "F") or image.mode.startswith("I;"):
        return np.asarray(image).astype(np.float32)
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


# ------------------------------------------------------------------------------------------------ numpy


def read_npy(path: str | os.PathLike) -> Volume:
    """Read a ``.npy`` array: 2-D ``[H, W]`` -> ``[1, H, W]``, 3-D as stored; complex -> magnitude."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(path, f"cannot read as .npy: {str(exc).splitlines()[0] if str(exc) else 'unreadable'}"
                         ) from None
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise InputError(path, f"array has shape {data.shape}; expected [H, W] or [S, H, W]")
    return Volume(_finish(data, path, "array"), (1.0, 1.0, 1.0), path)


# ------------------------------------------------------------------------------------------------ dispatch


def read_volume(path: str | os.PathLike) -> Volume:
    """Read any supported magnitude volume, chosen by what ``path`` is:

    a folder -> DICOM series; ``.nii``/``.nii.gz`` -> NIfTI; ``.npy``; PNG/TIFF/BMP/JPEG -> image;
    ``.dcm`` or anything else -> a single DICOM file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "not found")
    name = path.name.lower()
    if path.is_dir():
        return read_dicom_series(path)
    if name.endswith(NIFTI_SUFFIXES):
        return read_nifti(path)
    if name.endswith(".npy"):
        return read_npy(path)
    if name.endswith(IMAGE_SUFFIXES):
        return read_image(path)
    return read_dicom_series(path)


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
