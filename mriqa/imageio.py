"""Image and volume readers for the QF predictors (``mriqa`` never imports ``recon``, so it reads files itself).

:func:`read_images` turns one path into a list of :class:`ImageRecord` (one per 2-D image):

==========================  =====================================================================  ========
input                       records                                                                 kind
==========================  =====================================================================  ========
PNG / TIFF / BMP / JPEG     one (Pillow; 16-bit gray kept as uint16; CMYK, YCbCr, palette -> RGB;    photo
                            palette with transparency -> RGBA; 1-bit -> uint8 0/255; 32-bit integer
                            or float modes -> ``mri`` kind, i.e. scaled by the robust maximum)
DICOM file (.dcm or any)    one per frame (multi-frame files); modality LUT (rescale) applied         mri
DICOM folder                one per slice, ordered by ImagePositionPatient along the slice normal    mri
                            (InstanceNumber otherwise); non-DICOM files in the folder are ignored
NIfTI .nii / .nii.gz        2-D: one; 3-D: one per slice along the **last** axis; 4-D: the **first**  mri
                            volume only (``[..., 0]``); trailing singleton axes are dropped first.
                            Each slice is shown as ``flipud(data[:, :, k].T)`` (rows = 2nd axis)
h5 (fastMRI layout)         one per slice of ``reconstruction`` / ``reconstruction_rss`` /          mri
                            ``reconstruction_esc`` (first present, or ``key=``), ``[S, H, W]``
.npy                        2-D: one; ``[H, W, 3|4]`` uint8/uint16: one colour photo;               mri /
                            other 3-D: one per slice ``[S, H, W]``                                  photo
==========================  =====================================================================  ========

Complex data (h5, npy) is returned as magnitude. A slice with NaN or Inf raises
:class:`~recon.errors.InputError` naming the file and the slice; so does an unknown or unreadable file.
Images are returned as read (no normalisation): :mod:`mriqa.normalize` does that.

:func:`read_volume` reads a training volume ``[S, H, W]`` float32 (DICOM series folder, NIfTI 3-D/4-D,
fastMRI h5, ``.npy``) in the file's own array order (no display flip).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.errors import InputError

PHOTO_EXT = {".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".jpe", ".jfif"}
DICOM_EXT = {".dcm", ".dicom", ".ima"}
H5_EXT = {".h5", ".hdf5"}
H5_KEYS = ("reconstruction", "reconstruction_rss", "reconstruction_esc")


@dataclass
class ImageRecord:
    """One 2-D image: ``image`` ``[H, W]`` or ``[H, W, 3|4]`` as read; ``slice`` None for single images."""

    image: np.ndarray
    source: str
    slice: int | None
    kind: str  # "photo" | "mri"


def _is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _check_finite(arr: np.ndarray, source: str, index: int | None) -> None:
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        where = f"slice {index}" if index is not None else "image"
        raise InputError(source, f"{where} contains NaN or Inf values")


def _as_mag(arr: np.ndarray) -> np.ndarray:
    return np.abs(arr).astype(np.float32) if np.iscomplexobj(arr) else arr


# ------------------------------------------------------------------------------------------------ photos
def read_photo(path: str | os.PathLike) -> list[ImageRecord]:
    """PNG/TIFF/BMP/JPEG via Pillow (first frame of multi-page files)."""
    from PIL import Image, UnidentifiedImageError

    src = os.fspath(path)
    try:
        with Image.open(src) as im:
            im.load()
            kind = "photo"
            mode = im.mode
            if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
                arr = np.asarray(im).astype(np.uint16)
            elif mode == "1":
                arr = np.asarray(im.convert("L"))
            elif mode in ("L", "RGB", "RGBA", "LA"):
                arr = np.asarray(im)
            elif mode in ("I", "F"):
                arr = np.asarray(im)
                if mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
                    arr = arr.astype(np.uint16)  # 16-bit PNG opened as mode I
                else:
                    kind = "mri"  # unscaled integer / float data: robust-max scaling
                    arr = arr.astype(np.float32)
            elif mode == "P":
                has_alpha = "transparency" in im.info
                arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
            elif mode == "PA":
                arr = np.asarray(im.convert("RGBA"))
            else:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
                arr = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise InputError(src, "file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(src, f"cannot read image ({detail})") from None
    _check_finite(arr, src, None)
    return [ImageRecord(np.ascontiguousarray(arr), src, None, kind)]


# ------------------------------------------------------------------------------------------------ DICOM
def _dcm_pixels(ds, src: str) -> np.ndarray:
    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises many types (missing handler, bad data, ...)
        raise InputError(src, f"cannot decode DICOM pixel data ({type(exc).__name__})") from None
    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pragma: no cover - pydicom < 3
        from pydicom.pixel_data_handlers.util import apply_modality_lut
    if getattr(ds, "PhotometricInterpretation", "MONOCHROME2").startswith("MONOCHROME"):
        arr = apply_modality_lut(arr, ds)
        if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
            arr = arr.max() - arr
    return np.asarray(arr)


def _dcm_read(path: str, stop_before_pixels: bool = False):
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except Exception:
        return None


def read_dicom_file(path: str | os.PathLike) -> list[ImageRecord]:
    src = os.fspath(path)
    if not os.path.isfile(src):
        raise InputError(src, "file not found")
    ds = _dcm_read(src)
    if ds is None or "PixelData" not in ds:
        raise InputError(src, "not a DICOM image file")
    arr = _dcm_pixels(ds, src)
    color = getattr(ds, "SamplesPerPixel", 1) == 3
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    kind = "photo" if color else "mri"
    if frames > 1:
        out = []
        for i in range(arr.shape[0]):
            _check_finite(arr[i], src, i)
            out.append(ImageRecord(np.ascontiguousarray(arr[i]), src, i, kind))
        return out
    _check_finite(arr, src, None)
    return [ImageRecord(np.ascontiguousarray(arr), src, None, kind)]


def _sorted_series(folder: str):
    """[(path, dataset)] of the DICOM images in ``folder``, ordered along the slice normal."""
    items = []
    for name in sorted(os.listdir(folder)):
        p = os.path.join(folder, name)
        if not os.path.isfile(p):
            continue
        ds = _dcm_read(p)
        if ds is None or "PixelData" not in ds:
            continue
        items.append((p, ds))
    if not items:
        raise InputError(folder, "folder holds no readable DICOM image")

    def key(item):
        ds = item[1]
        pos = getattr(ds, "ImagePositionPatient", None)
        ori = getattr(ds, "ImageOrientationPatient", None)
        if pos is not None and ori is not None and len(ori) == 6:
            normal = np.cross(np.asarray(ori[:3], float), np.asarray(ori[3:], float))
            return (0, float(np.dot(normal, np.asarray(pos, float))), item[0])
        return (1, float(getattr(ds, "InstanceNumber", 0) or 0), item[0])

    return sorted(items, key=key)


def read_dicom_folder(folder: str | os.PathLike) -> list[ImageRecord]:
    folder = os.fspath(folder)
    out = []
    for i, (p, ds) in enumerate(_sorted_series(folder)):
        arr = _dcm_pixels(ds, p)
        _check_finite(arr, p, i)
        kind = "photo" if getattr(ds, "SamplesPerPixel", 1) == 3 else "mri"
        out.append(ImageRecord(np.ascontiguousarray(arr), p, i, kind))
    return out


# ------------------------------------------------------------------------------------------------ NIfTI
def _nifti_data(path: str) -> np.ndarray:
    import nibabel as nib

    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except Exception as exc:
        raise InputError(path, f"cannot read NIfTI ({type(exc).__name__})") from None
    data = _as_mag(np.asarray(data))
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        data = data[..., 0]  # 4-D: first volume (documented)
    if data.ndim not in (2, 3):
        raise InputError(path, f"unsupported NIfTI shape {data.shape} (2-D, 3-D or 4-D expected)")
    return data


def read_nifti(path: str | os.PathLike) -> list[ImageRecord]:
    src = os.fspath(path)
    data = _nifti_data(src)
    if data.ndim == 2:
        _check_finite(data, src, None)
        return [ImageRecord(np.ascontiguousarray(np.flipud(data.T)), src, None, "mri")]
    out = []
    for k in range(data.shape[-1]):
        sl = data[:, :, k]
        _check_finite(sl, src, k)
        out.append(ImageRecord(np.ascontiguousarray(np.flipud(sl.T)), src, k, "mri"))
    return out


# ------------------------------------------------------------------------------------------------ h5
def _h5_dataset(path: str, key: str | None):
    import h5py

    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError:
        raise InputError(path, "not a readable HDF5 file") from None
    keys = [key] if key else [k for k in H5_KEYS if k in f]
    if not keys or keys[0] not in f:
        have = ", ".join(sorted(f.keys())) or "none"
        want = key or " / ".join(H5_KEYS)
        f.close()
        raise InputError(path, f"no '{want}' dataset in the h5 file (keys: {have})")
    return f, keys[0]


def read_h5(path: str | os.PathLike, key: str | None = None) -> list[ImageRecord]:
    """fastMRI-layout h5: one record per slice of ``reconstruction*`` ``[S, H, W]`` (or a single [H, W])."""
    src = os.fspath(path)
    f, k = _h5_dataset(src, key)
    with f:
        data = _as_mag(np.asarray(f[k][()]))
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise InputError(src, f"'{k}' must be [slices, H, W], got shape {data.shape}")
    out = []
    for i in range(data.shape[0]):
        _check_finite(data[i], src, i)
        out.append(ImageRecord(np.ascontiguousarray(data[i]), src, i, "mri"))
    return out


# ------------------------------------------------------------------------------------------------ npy
def read_npy(path: str | os.PathLike) -> list[ImageRecord]:
    src = os.fspath(path)
    try:
        arr = np.load(src, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(src, "file not found") from None
    except (ValueError, OSError) as exc:
        raise InputError(src, f"not a readable .npy array ({str(exc).splitlines()[0]})") from None
    arr = _as_mag(np.asarray(arr))
    if arr.dtype.kind not in "biuf":
        raise InputError(src, f"unsupported array type {arr.dtype}")
    if arr.ndim == 2:
        _check_finite(arr, src, None)
        return [ImageRecord(arr, src, None, "photo" if arr.dtype in (np.uint8, np.uint16) else "mri")]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.dtype in (np.uint8, np.uint16):
        return [ImageRecord(arr, src, None, "photo")]
    if arr.ndim == 3:
        out = []
        for i in range(arr.shape[0]):
            _check_finite(arr[i], src, i)
            out.append(ImageRecord(np.ascontiguousarray(arr[i]), src, i, "mri"))
        return out
    raise InputError(src, f"expected a 2-D image or a [slices, H, W] stack, got shape {arr.shape}")


# ------------------------------------------------------------------------------------------------ dispatch
def _sniff(path: Path) -> str | None:
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


def read_images(path: str | os.PathLike, h5_key: str | None = None) -> list[ImageRecord]:
    """Read any supported input (see the module doc) -> list of :class:`ImageRecord`."""
    p = Path(path)
    src = os.fspath(path)
    if not p.exists():
        raise InputError(src, "file not found")
    if p.is_dir():
        return read_dicom_folder(p)
    ext = p.suffix.lower()
    if _is_nifti(p):
        return read_nifti(p)
    if ext in H5_EXT:
        return read_h5(p, h5_key)
    if ext == ".npy":
        return read_npy(p)
    if ext in DICOM_EXT:
        return read_dicom_file(p)
    if ext in PHOTO_EXT:
        return read_photo(p)
    kind = _sniff(p)
    if kind == "h5":
        return read_h5(p, h5_key)
    if kind == "dicom":
        return read_dicom_file(p)
    if kind == "npy":
        return read_npy(p)
    try:
        return read_photo(p)
    except InputError:
        raise InputError(src, "unknown or unreadable file format") from None


def read_volume(path: str | os.PathLike, h5_key: str | None = None) -> np.ndarray:
    """A training volume -> float32 ``[S, H, W]`` (DICOM series folder, NIfTI, fastMRI h5, ``.npy``).

    NIfTI volumes are returned as ``data.transpose(2, 0, 1)`` (slices along the last axis, no flip); 4-D NIfTI
    gives its first volume. NaN/Inf anywhere is an :class:`~recon.errors.InputError`.
    """
    p = Path(path)
    src = os.fspath(path)
    if not p.exists():
        raise InputError(src, "file not found")
    if p.is_dir():
        items = _sorted_series(src)
        slices = [_dcm_pixels(ds, f) for f, ds in items]
        shapes = {s.shape for s in slices}
        if len(shapes) != 1:
            raise InputError(src, f"DICOM series has slices of different shapes {sorted(shapes)}")
        vol = np.stack(slices).astype(np.float32)
    elif _is_nifti(p):
        data = _nifti_data(src)
        vol = (data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)).astype(np.float32)
    elif p.suffix.lower() in H5_EXT or _sniff(p) == "h5":
        vol = np.stack([r.image for r in read_h5(p, h5_key)]).astype(np.float32)
    elif p.suffix.lower() == ".npy":
        vol = np.stack([r.image for r in read_npy(p)]).astype(np.float32)
        if vol.ndim != 3:
            raise InputError(src, f"expected a [slices, H, W] volume, got shape {vol.shape}")
    elif p.suffix.lower() in DICOM_EXT or _sniff(p) == "dicom":
        vol = np.stack([r.image for r in read_dicom_file(p)]).astype(np.float32)
    else:
        raise InputError(src, "not a volume (DICOM folder, NIfTI, h5 or .npy expected)")
    for i in range(vol.shape[0]):
        _check_finite(vol[i], src, i)
    return np.ascontiguousarray(vol)


def record_name(record: ImageRecord) -> str:
    """``source`` or ``source [slice N]``, as messages name one image."""
    return record.source if record.slice is None else f"{record.source} [slice {record.slice}]"


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
