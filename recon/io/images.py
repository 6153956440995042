"""2-D images for the quality models: one :class:`ImageRecord` per image, in display orientation.

:func:`read_images` turns one path into a list of records (``mriqa score`` / ``estimate-r`` / ``restore``, the
IQA readers); the file formats are decoded by the same readers as :func:`recon.io.volumes.read_volume`:

==========================  =====================================================================  ========
input                       records                                                                 kind
==========================  =====================================================================  ========
PNG / TIFF / BMP / JPEG     one (Pillow; a multi-page file: one per page, numbered as slices;      photo
                            16-bit gray kept as uint16; CMYK, YCbCr, palette -> RGB (a gray
                            palette -> gray); palette with transparency -> RGBA; 1-bit -> uint8
                            0/255; 32-bit integer or float modes -> ``mri`` kind, i.e. scaled by
                            the robust maximum)
folder of images            one per PNG / TIFF / BMP / JPEG file, in name order (a folder holding   photo
                            no DICOM file; :func:`image_folder_files` lists them)
DICOM file (.dcm or any)    one per frame (multi-frame files); modality LUT (rescale) applied         mri
DICOM folder                one per slice, ordered along the slice normal                            mri
                            (:func:`recon.io.volumes.dicom_series`); non-DICOM files are ignored
NIfTI .nii / .nii.gz        2-D: one; 3-D: one per slice along the **last** axis; 4-D: one per      mri
                            slice of every volume (``volume`` = the 4th index); trailing singleton
                            axes are dropped first. **Display convention**: slice ``k`` is shown as
                            ``flipud(data[:, :, k].T)`` (rows = 2nd axis, flipped), unlike
                            ``read_volume``'s ``"ras"`` / ``"stored"`` axes
h5 (fastMRI layout)         one per slice of ``reconstruction`` / ``reconstruction_rss`` /          mri
                            ``reconstruction_esc`` (first present, or ``h5_key``), ``[S, H, W]``
                            (:func:`recon.io.fastmri_h5.read_reconstruction`)
.npy                        2-D: one; ``[H, W, 3|4]`` uint8/uint16: one colour photo;               mri /
                            other 3-D: one per slice ``[S, H, W]``                                  photo
.npz (``np.savez``)         each array (or only ``h5_key``) as a ``.npy`` file, in stored order;   mri /
                            the records numbered as slices across the archive                       photo
==========================  =====================================================================  ========

Complex data is returned as magnitude. NaN or Inf raises :class:`~recon.errors.InputError` naming the file and
the slice; so does an unknown or unreadable file, and (with ``max_pixels``) an image of more pixels than that,
which for photos is checked from the header, before the pixels are decoded. Images are returned as read (no
normalisation): :mod:`mriqa.normalize` does that.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.io import volumes as _vol
from recon.io.photos import Photo, check_finite, check_pixels, read_photo_file  # noqa: F401 - re-exported

__all__ = ["ImageRecord", "Photo", "read_images", "read_photo", "read_photo_file", "image_folder_files",
           "record_name", "records_with_signal", "check_pixels", "PHOTO_SUFFIXES", "DEFAULT_MAX_PIXELS"]

PHOTO_SUFFIXES = _vol.IMAGE_SUFFIXES
#: the commands' default ``--max-pixels``: larger 2-D images are refused before they are decoded
DEFAULT_MAX_PIXELS = 64_000_000


@dataclass
class ImageRecord:
    """One 2-D image: ``image`` ``[H, W]`` or ``[H, W, 3|4]`` as read; ``slice`` None for single images;
    ``volume`` the 4th index of a 4-D NIfTI, else None."""

    image: np.ndarray
    source: str
    slice: int | None
    kind: str  # "photo" | "mri"
    volume: int | None = None


def _as_mag(arr: np.ndarray) -> np.ndarray:
    return np.abs(arr).astype(np.float32) if np.iscomplexobj(arr) else arr


def read_photo(path: str | os.PathLike, max_pixels: int | None = None) -> list[ImageRecord]:
    """PNG/TIFF/BMP/JPEG -> one record; a multi-page file (a TIFF stack) -> one record per page, numbered as
    slices (as :func:`recon.io.volumes.read_volume` reads it)."""
    photos = read_photo_file(path, max_pixels, all_frames=True)
    if len(photos) == 1:
        return [ImageRecord(photos[0].array, os.fspath(path), None, photos[0].kind)]
    return [ImageRecord(p.array, os.fspath(path), i, p.kind) for i, p in enumerate(photos)]


def image_folder_files(folder: str | os.PathLike) -> list[Path] | None:
    """The PNG/TIFF/BMP/JPEG files of a folder that holds images and no DICOM file (by extension or the
    ``DICM`` marker), in name order; None for any other folder (a DICOM series, or an empty folder)."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    photos = [p for p in files if p.name.lower().endswith(PHOTO_SUFFIXES)]
    if not photos:
        return None
    others = [p for p in files if p not in photos]
    if any(p.name.lower().endswith(_vol.DICOM_SUFFIXES) or _vol.sniff_format(p) == "dicom" for p in others):
        return None
    return photos


# ------------------------------------------------------------------------------------------------ volumes
def _read_dicom_file(path: Path) -> list[ImageRecord]:
    src = os.fspath(path)
    ds = _vol.dicom_read(src)
    if ds is None or "PixelData" not in ds:
        raise InputError(src, "not a DICOM image file")
    arr = _vol.dicom_pixels(ds, src)
    kind = "photo" if getattr(ds, "SamplesPerPixel", 1) == 3 else "mri"
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        for i in range(arr.shape[0]):
            check_finite(arr[i], src, i)
        return [ImageRecord(np.ascontiguousarray(arr[i]), src, i, kind) for i in range(arr.shape[0])]
    check_finite(arr, src, None)
    return [ImageRecord(np.ascontiguousarray(arr), src, None, kind)]


def _read_dicom_folder(folder: Path) -> list[ImageRecord]:
    out = []
    for i, (file, ds) in enumerate(_vol.dicom_series(folder)):
        arr = _vol.dicom_pixels(ds, file)
        check_finite(arr, file, i)
        kind = "photo" if getattr(ds, "SamplesPerPixel", 1) == 3 else "mri"
        out.append(ImageRecord(np.ascontiguousarray(arr), os.fspath(file), i, kind))
    return out


def _read_nifti(path: Path) -> list[ImageRecord]:
    src = os.fspath(path)
    data, _ = _vol.load_nifti(path)
    if data.ndim == 2:
        check_finite(data, src, None)
        return [ImageRecord(np.ascontiguousarray(np.flipud(data.T)), src, None, "mri")]
    if data.ndim not in (3, 4):
        raise InputError(src, f"unsupported NIfTI shape {data.shape} (2-D, 3-D or 4-D expected)")
    out = []
    for t in range(data.shape[3] if data.ndim == 4 else 1):
        vol = data[..., t] if data.ndim == 4 else data
        for k in range(vol.shape[-1]):
            sl = vol[:, :, k]
            check_finite(sl, src, k)
            out.append(ImageRecord(np.ascontiguousarray(np.flipud(sl.T)), src, k, "mri",
                                   t if data.ndim == 4 else None))
    return out


def _read_h5(path: Path, key: str | None) -> list[ImageRecord]:
    from recon.io.fastmri_h5 import read_reconstruction

    src = os.fspath(path)
    image = read_reconstruction(path, key=key).image
    return [ImageRecord(np.ascontiguousarray(image[i]), src, i, "mri") for i in range(image.shape[0])]


def _array_records(arr: np.ndarray, src: str, what: str = "") -> list[ImageRecord]:
    """The records of one array as a ``.npy`` file holds it (see the module docstring); ``what`` names the
    array in messages (an archive's key)."""
    arr = _as_mag(np.asarray(arr))
    if arr.dtype.kind not in "biuf":
        raise InputError(src, f"{what}unsupported array type {arr.dtype}")
    if arr.ndim == 2:
        check_finite(arr, src, None)
        return [ImageRecord(arr, src, None, "photo" if arr.dtype in (np.uint8, np.uint16) else "mri")]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.dtype in (np.uint8, np.uint16):
        return [ImageRecord(arr, src, None, "photo")]
    if arr.ndim == 3:
        for i in range(arr.shape[0]):
            check_finite(arr[i], src, i)
        return [ImageRecord(np.ascontiguousarray(arr[i]), src, i, "mri") for i in range(arr.shape[0])]
    raise InputError(src, f"{what}expected a 2-D image or a [slices, H, W] stack, got shape {arr.shape}")


def _read_npy(path: Path) -> list[ImageRecord]:
    return _array_records(_vol.load_npy(path), os.fspath(path))


def _read_npz(path: Path, key: str | None) -> list[ImageRecord]:
    """Every array of the archive (or only ``key``), each as a ``.npy`` file would be read, the records
    numbered as slices in stored order; one array that is not a stack keeps ``slice`` None."""
    src = os.fspath(path)
    arrays = _vol.load_npz(path)
    if key is not None:
        if key not in arrays:
            raise InputError(src, f"no array {key!r} in the archive (found: {', '.join(arrays)})")
        arrays = {key: arrays[key]}
    records = [r for name, arr in arrays.items() for r in _array_records(arr, src, f"array {name!r}: ")]
    if len(records) > 1:
        for i, r in enumerate(records):
            r.slice = i
    return records


# ------------------------------------------------------------------------------------------------ dispatch
def _read_any(p: Path, h5_key: str | None, max_pixels: int | None) -> list[ImageRecord]:
    if p.is_dir():
        photos = image_folder_files(p)
        if photos is not None:
            return [r for f in photos for r in read_photo(f, max_pixels)]
        return _read_dicom_folder(p)
    name = p.name.lower()
    if _vol.is_nifti(p):
        return _read_nifti(p)
    if name.endswith(_vol.H5_SUFFIXES):
        return _read_h5(p, h5_key)
    if name.endswith(".npy"):
        return _read_npy(p)
    if name.endswith(".npz"):
        return _read_npz(p, h5_key)
    if name.endswith(_vol.DICOM_SUFFIXES):
        return _read_dicom_file(p)
    if name.endswith(PHOTO_SUFFIXES):
        return read_photo(p, max_pixels)
    kind = _vol.sniff_format(p)
    if kind == "h5":
        return _read_h5(p, h5_key)
    if kind == "dicom":
        return _read_dicom_file(p)
    if kind == "npy":
        return _read_npy(p)
    try:
        return read_photo(p, max_pixels)
    except InputError as exc:
        if not exc.problem.startswith("cannot read as an image"):
            raise
        raise InputError(p, "unknown or unreadable file format") from None


def read_images(path: str | os.PathLike, h5_key: str | None = None, max_pixels: int | None = None
                ) -> list[ImageRecord]:
    """Read any supported input (see the module docstring) -> list of :class:`ImageRecord`.

    ``max_pixels``: the largest ``H * W`` accepted per image (None: no limit)."""
    p = Path(path)
    if not p.exists():
        raise InputError(path, "file not found")
    records = _read_any(p, h5_key, max_pixels)
    for r in records:
        check_pixels(record_name(r), r.image.shape[0], r.image.shape[1], max_pixels)
    return records


def record_name(record: ImageRecord) -> str:
    """``source``, ``source [slice N]`` or ``source [volume T, slice N]``, as messages name one image."""
    if record.slice is None:
        return record.source
    if record.volume is None:
        return f"{record.source} [slice {record.slice}]"
    return f"{record.source} [volume {record.volume}, slice {record.slice}]"


def records_with_signal(path: str | os.PathLike, records: list[ImageRecord], notes: list[str]) -> list[ImageRecord]:
    """``records`` without all-zero MRI slices (each skipped one is named in ``notes``); an
    :class:`InputError` when none is left."""
    kept = []
    for r in records:
        if r.kind == "mri" and not np.any(r.image):
            notes.append(f"{record_name(r)}: all-zero slice skipped")
        else:
            kept.append(r)
    if not kept:
        raise InputError(path, "no image with any signal (all slices are zero)")
    return kept
