"""Coil sensitivity maps: ESPIRiT (sigpy) with a disk cache, birdcage (sigpy), and realistic simulated maps.

ESPIRiT takes square or rectangular calibration regions and kernels (readout x phase encode, as BART's
``ecalib``); anything but sigpy's square single-map case runs our exact per-pixel eigendecomposition
(:func:`_espirit_eigh`), whose Gram matrices are built from the kernels' cross-correlations. Which region and
kernel fit a given mask is :func:`recon.calibration.calibrate_maps`' business.

All maps are complex64 ``[C, H, W]`` (``[M, C, H, W]`` for M ESPIRiT map sets) with the ESPIRiT normalisation
``sum_c |S_c|^2 = 1`` inside their support (ESPIRiT: where the eigenvalue exceeds ``crop``; birdcage and
realistic maps: everywhere).

Numpy in, numpy out; the SENSE operator (``recon.physics``) takes them as torch ``[B, C, H, W]``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.files import atomic_path

__all__ = [
    "espirit_maps",
    "espirit_maps_cached",
    "espirit_kernels",
    "default_cache_dir",
    "cache_limit_bytes",
    "prune_cache",
    "birdcage_maps",
    "realistic_maps",
    "normalize_maps",
    "SMALLFOV_RELATIVE",
]

# The real 8-channel k-space realistic maps are estimated from, relative to the data root (../shared/data).
SMALLFOV_RELATIVE = Path("mri") / "kspace" / "smallfov-brain8ch" / "smallfov"
CACHE_VERSION = "espirit-v1"
SMALLFOV_MAP_GRID = (160, 84)  # half the smallfov matrix: realistic maps are estimated on this grid


def _check_kspace(kspace: np.ndarray, source=None) -> np.ndarray:
    kspace = np.asarray(kspace)
    if kspace.ndim != 3:
        raise InputError(source, f"k-space for coil maps has shape {kspace.shape}, expected [C, H, W]")
    if not np.iscomplexobj(kspace):
        raise InputError(source, f"k-space for coil maps has dtype {kspace.dtype}, expected complex")
    if not np.all(np.isfinite(kspace)):
        raise InputError(source, "k-space for coil maps contains NaN or Inf values")
    if not np.any(kspace != 0):
        raise InputError(source, "k-space for coil maps is all zero")
    return kspace.astype(np.complex64, copy=False)


def normalize_maps(maps: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Scale ``maps`` ``[..., C, H, W]`` so that ``sum_c |S_c|^2 = 1`` wherever the sum is > ``eps``
    (pixels where all coils are 0 stay 0). Returns complex64."""
    maps = np.asarray(maps)
    rss = np.sqrt(np.sum(np.abs(maps) ** 2, axis=-3, keepdims=True))
    out = np.where(rss > eps, maps / np.maximum(rss, eps), 0)
    return out.astype(np.complex64)


# ------------------------------------------------------------------------------------------------ ESPIRiT


def _pair(value, what: str, source) -> tuple[int, int]:
    """``n`` -> ``(n, n)``; ``(rows, cols)`` -> itself, as ints."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    try:
        rows, cols = value
        return int(rows), int(cols)
    except (TypeError, ValueError):
        raise InputError(source, f"ESPIRiT {what} must be an int or (rows, cols), got {value!r}") from None


def espirit_maps(
    kspace: np.ndarray,
    calib_width: int | tuple[int, int] = 24,
    thresh: float = 0.02,
    crop: float = 0.95,
    num_maps: int = 1,
    kernel_width: int | tuple[int, int] = 6,
    source: str | os.PathLike | None = None,
    image_shape: tuple[int, int] | None = None,
    phase_coil: int = 0,
) -> np.ndarray:
    """ESPIRiT coil maps (Uecker et al., MRM 2014) from one slice of k-space.

    Args:
        kspace: complex ``[C, H, W]`` (zero-filled if undersampled; the central calibration region must be
            fully sampled).
        calib_width: the central calibration region in k-space samples: ``n`` (an ``n x n`` square) or
            ``(rows, cols)`` (readout x phase encode, as BART's ``ecalib -r``; centred as ``sigpy.resize``
            crops: rows ``H // 2 - rows // 2`` on).
        thresh: singular values of the calibration matrix above ``thresh * max`` span the signal space.
        crop: maps are set to 0 where the eigenvalue is <= ``crop`` (0 keeps them everywhere).
        num_maps: M leading eigenvectors per pixel (M > 1 for a field of view smaller than the object, where
            two map sets describe the fold-over).
        kernel_width: ESPIRiT kernel size, ``k`` or ``(rows, cols)``; at most the calibration region along
            each axis and smaller than it along one.
        source: file name for error messages.
        image_shape: evaluate the maps on a coarser (or finer) ``(h, w)`` grid over the same field of view.
            Default (H, W).
        phase_coil: the coil whose phase the maps are relative to (its map is real >= 0).

    Square region and kernel, one map, no ``image_shape``, ``phase_coil = 0``: ``sigpy.mri.app.EspiritCalib``;
    anything else: :func:`_espirit_eigh` (the same operator, exact per-pixel eigendecomposition).

    Returns:
        complex64 ``[C, H, W]`` (num_maps = 1) or ``[M, C, H, W]`` (``image_shape`` replaces H, W when
        given); each map set has ``sum_c |S_c|^2 = 1`` where its eigenvalue > crop.
    """
    kspace = _check_kspace(kspace, source)
    num_coils, height, width = kspace.shape
    calib = _pair(calib_width, "calibration width", source)
    kernel = _pair(kernel_width, "kernel width", source)
    if not (2 <= calib[0] <= height and 2 <= calib[1] <= width) or min(calib) < 1:
        raise InputError(source, f"ESPIRiT calibration width {calib_width} does not fit k-space {height}x{width}")
    if min(kernel) < 1 or kernel[0] > calib[0] or kernel[1] > calib[1] or kernel == calib:
        raise InputError(source, f"ESPIRiT kernel width {kernel_width} must be smaller than calib width {calib_width}")
    if not 1 <= num_maps <= num_coils:
        raise InputError(source, f"num_maps = {num_maps} must be between 1 and the number of coils ({num_coils})")
    if not 0 <= int(phase_coil) < num_coils:
        raise InputError(source, f"phase_coil = {phase_coil} is not one of the {num_coils} coils")
    if image_shape is not None:
        image_shape = (int(image_shape[0]), int(image_shape[1]))
        if image_shape[0] < calib[0] or image_shape[1] < calib[1]:
            raise InputError(source, f"ESPIRiT image_shape {image_shape} is smaller than the calibration width")
    square = calib[0] == calib[1] and kernel[0] == kernel[1]
    if num_maps == 1 and image_shape is None and square and phase_coil == 0:
        import sigpy.mri

        maps = sigpy.mri.app.EspiritCalib(kspace, calib_width=calib[0], thresh=thresh, kernel_width=kernel[0],
                                          crop=crop, show_pbar=False).run()
        maps = np.ascontiguousarray(maps, dtype=np.complex64)  # sigpy returns coil-last strides
    else:
        maps = _espirit_eigh(kspace, calib, thresh, crop, num_maps, kernel, image_shape, int(phase_coil))
        maps = maps[0] if num_maps == 1 else maps
    if not np.any(maps):  # the crop kept no pixel: every later step would work on an all-zero operator
        raise InputError(source, f"ESPIRiT maps from the {calib[0]} x {calib[1]} calibration region with a "
                                 f"{kernel[0]} x {kernel[1]} kernel are all zero (no eigenvalue above crop {crop:g}): "
                                 f"the region is too small for the kernel; calibrate on a larger centre")
    return maps


def espirit_kernels(kspace: np.ndarray, calib: tuple[int, int], kernel: tuple[int, int],
                    thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """The signal-space kernels of ESPIRiT's calibration matrix (sigpy's layout: sliding ``kernel`` blocks of the
    centred ``calib`` region, all coils per row). Returns ``(kernels [n, C, kr, kc] complex128, singular values
    of the calibration matrix, descending)``; ``n`` = the singular values above ``thresh * max``."""
    num_coils, height, width = kspace.shape
    r0, c0 = height // 2 - calib[0] // 2, width // 2 - calib[1] // 2
    region = kspace[:, r0:r0 + calib[0], c0:c0 + calib[1]].astype(np.complex128)
    blocks = np.lib.stride_tricks.sliding_window_view(region, kernel, axis=(1, 2))  # [C, nr, nc, kr, kc]
    mat = blocks.transpose(1, 2, 0, 3, 4).reshape(-1, num_coils * kernel[0] * kernel[1])
    # eigh of the (small) normal matrix: its eigenvectors are the right singular vectors
    power, vectors = np.linalg.eigh(mat.conj().T @ mat)
    singular = np.sqrt(np.maximum(power[::-1], 0))
    vectors = vectors[:, ::-1]
    keep = singular > thresh * singular[0]
    return vectors[:, keep].conj().T.reshape(-1, num_coils, *kernel), singular


def _espirit_eigh(kspace: np.ndarray, calib: tuple[int, int], thresh: float, crop: float, num_maps: int,
                  kernel: tuple[int, int], image_shape: tuple[int, int] | None = None,
                  phase_coil: int = 0) -> np.ndarray:
    """ESPIRiT with an exact per-pixel eigendecomposition; ``[M, C, h, w]`` on the ``image_shape`` grid.

    Same operator as sigpy's EspiritCalib: ``G(x) = sum_n v_n(x) v_n(x)^H / (kr kc)`` with ``v_n`` the image of
    kernel ``n`` (zero-padded to the grid, centred inverse FFT). ``G`` is a trigonometric polynomial of degree
    < kernel, so it is built from the kernels' cross-correlations (``[C, C, 2kr-1, 2kc-1]``) and evaluated with
    two small DFT matrices, row chunk by row chunk: memory ``O(chunk x C^2)``, not ``O(kernels x C x H x W)``.
    """
    num_coils = kspace.shape[0]
    height, width = image_shape or kspace.shape[1:]
    kernels, _ = espirit_kernels(kspace, calib, kernel, thresh)
    size = (2 * kernel[0] - 1, 2 * kernel[1] - 1)
    spectra = np.fft.fft2(kernels, s=size)  # [n, C, La, Lb]
    corr = np.fft.ifft2(np.einsum("niab,njab->ijab", spectra, spectra.conj()))
    corr = np.fft.fftshift(corr, axes=(-2, -1)) / (kernel[0] * kernel[1])  # lags -(k-1)..(k-1)
    lags_r = np.arange(-(kernel[0] - 1), kernel[0])
    lags_c = np.arange(-(kernel[1] - 1), kernel[1])
    dft_r = np.exp(2j * np.pi * np.outer(np.arange(height) - height // 2, lags_r) / height)  # [h, La]
    dft_c = np.exp(2j * np.pi * np.outer(np.arange(width) - width // 2, lags_c) / width)  # [w, Lb]
    corr_rows = corr.transpose(2, 0, 1, 3).reshape(size[0], -1)  # [La, C*C*Lb]
    out = np.zeros((num_maps, num_coils, height, width), dtype=np.complex64)
    chunk = max(1, int(2**22 // (width * num_coils * num_coils)))
    for r0 in range(0, height, chunk):
        rows = slice(r0, min(r0 + chunk, height))
        partial = (dft_r[rows] @ corr_rows).reshape(-1, size[1])  # [r*C*C, Lb]
        gram = (partial @ dft_c.T).reshape(-1, num_coils, num_coils, width).transpose(0, 3, 1, 2)
        gram = 0.5 * (gram + gram.conj().swapaxes(-1, -2))  # exactly Hermitian for eigh
        eigenvalues, eigenvectors = np.linalg.eigh(gram)  # ascending, [r, w, C], [r, w, C, C]
        eigenvalues = eigenvalues[..., ::-1][..., :num_maps]  # [r, w, M]
        vectors = eigenvectors[..., ::-1][..., :num_maps]  # [r, w, C, M]
        reference = vectors[..., phase_coil:phase_coil + 1, :]
        phase = np.where(np.abs(reference) > 0, reference.conj() / np.maximum(np.abs(reference), 1e-30), 1)
        vectors = vectors * phase * (eigenvalues[..., None, :] > crop)
        out[:, :, rows, :] = vectors.transpose(3, 2, 0, 1)
    return out


CACHE_MAX_MB_DEFAULT = 2048


def default_cache_dir() -> Path | None:
    """Where ESPIRiT maps are cached: :func:`recon.files.user_cache_dir` ``("espirit")``: ``$MRIQA_CACHE/espirit``
    when MRIQA_CACHE is set (``off`` disables the cache: None), else ``~/.cache/mriqa/espirit``
    (``$XDG_CACHE_HOME/mriqa/espirit``). Never the current directory."""
    from recon.files import user_cache_dir

    return user_cache_dir("espirit")


def cache_limit_bytes() -> int:
    """The cache's size limit: ``$MRIQA_CACHE_MAX_MB`` (MiB; default 2048)."""
    text = os.environ.get("MRIQA_CACHE_MAX_MB", "")
    try:
        mib = float(text) if text.strip() else CACHE_MAX_MB_DEFAULT
    except ValueError:
        raise InputError("MRIQA_CACHE_MAX_MB", f"must be a number of MiB, got {text!r}") from None
    return int(max(mib, 0) * 2**20)


def prune_cache(cache_dir: str | os.PathLike, limit_bytes: int | None = None) -> int:
    """Delete the least recently used entries (``*.npy``, by modification time: a cache hit touches its entry)
    until the folder holds at most ``limit_bytes`` (default :func:`cache_limit_bytes`). Returns bytes freed."""
    limit = cache_limit_bytes() if limit_bytes is None else int(limit_bytes)
    entries = []
    for path in Path(cache_dir).glob("*.npy"):
        try:
            st = path.stat()
        except OSError:
            continue
        entries.append((st.st_mtime_ns, st.st_size, path))
    total = sum(size for _, size, _ in entries)
    freed = 0
    for _, size, path in sorted(entries):
        if total <= limit:
            break
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        freed += size
    return freed


def _file_identity(source: str | os.PathLike) -> dict:
    path = Path(source)
    try:
        stat = path.stat()
        return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    except OSError:
        return {"path": str(source)}


def espirit_maps_cached(
    kspace: np.ndarray,
    source: str | os.PathLike | None,
    slice_index: int,
    cache_dir: str | os.PathLike | None | bool = None,
    **params,
) -> np.ndarray:
    """:func:`espirit_maps` with a disk cache.

    The key is the source file's identity (resolved path, size, modification time), ``slice_index``, the
    ESPIRiT parameters and a digest of the k-space passed (so an undersampled and a fully sampled copy of the
    same slice never share an entry). Entries are ``<cache_dir>/<key>.npy`` written atomically; an unreadable
    entry is recomputed; after each write the folder is pruned to :func:`cache_limit_bytes` (least recently
    used first). ``source=None``, ``cache_dir=False`` or ``MRIQA_CACHE=off`` compute without caching. A cache
    folder that cannot be written is skipped (the maps are still returned).

    Args:
        kspace: complex ``[C, H, W]``.
        source: the file the k-space came from.
        slice_index: its slice in that file.
        cache_dir: default :func:`default_cache_dir`; ``False``: no cache.
        **params: passed to :func:`espirit_maps` (``calib_width``, ``thresh``, ``crop``, ``num_maps``, ...).
    """
    kspace = _check_kspace(kspace, source)
    folder = default_cache_dir() if cache_dir is None or cache_dir is True else cache_dir
    if source is None or folder is False or folder is None:
        return espirit_maps(kspace, source=source, **params)
    digest = hashlib.blake2b(np.ascontiguousarray(kspace).tobytes(), digest_size=16).hexdigest()
    key = json.dumps({"version": CACHE_VERSION, "file": _file_identity(source), "slice": int(slice_index),
                      "params": {k: params[k] for k in sorted(params)}, "kspace": digest,
                      "shape": list(kspace.shape)}, sort_keys=True, default=str)
    name = hashlib.sha256(key.encode()).hexdigest()[:32] + ".npy"
    entry = Path(folder) / name
    if entry.is_file():
        try:
            maps = np.load(entry, allow_pickle=False)
            os.utime(entry)  # least recently used goes first when the cache is pruned
            if np.any(maps):  # all-zero maps cached before espirit_maps refused them: recompute (and refuse)
                return maps
        except (OSError, ValueError, EOFError):
            pass  # recompute below
    maps = espirit_maps(kspace, source=source, **params)
    try:
        with atomic_path(entry) as tmp:
            np.save(tmp, maps)
        prune_cache(folder)
    except OSError:
        pass  # a read-only or full cache folder costs only the recomputation next time
    return maps


# ------------------------------------------------------------------------------------------------ birdcage


def birdcage_maps(num_coils: int, height: int, width: int, rng: np.random.Generator | None = None,
                  radius: float | None = None) -> np.ndarray:
    """Birdcage coil maps (``sigpy.mri.birdcage_maps``), complex64 ``[C, H, W]``, ``sum_c |S_c|^2 = 1``.

    Without ``rng``: sigpy's defaults (coils on a ring of relative radius 1.5). With ``rng``: the ring radius
    is drawn from U(1.2, 2.0) (smaller = stronger falloff) and the maps are rotated by a random multiple of
    90 degrees (on a square grid) and randomly flipped left-right. ``radius`` fixes the ring radius instead
    (the draw is still taken from ``rng``, so the rest of its sequence is unchanged).
    """
    import sigpy.mri

    if num_coils < 1 or height < 1 or width < 1:
        raise InputError(None, f"birdcage maps need num_coils, H, W >= 1, got {num_coils}, {height}, {width}")
    drawn = 1.5 if rng is None else float(rng.uniform(1.2, 2.0))
    radius = drawn if radius is None else float(radius)
    turns = 0 if rng is None or height != width else int(rng.integers(4))
    flip = False if rng is None else bool(rng.integers(2))
    maps = sigpy.mri.birdcage_maps((num_coils, height, width), r=radius, dtype=np.complex64)
    maps = np.rot90(maps, turns, axes=(-2, -1))
    if flip:
        maps = maps[..., ::-1]
    return normalize_maps(np.ascontiguousarray(maps))


# ------------------------------------------------------------------------------------------------ realistic


@functools.lru_cache(maxsize=4)
def _smallfov_maps(base: str, cache_dir: str | None) -> np.ndarray:
    """ESPIRiT maps of the real smallfov k-space (320 x 168), computed once (disk + memory cache) on a
    half-resolution 160 x 84 grid over the same field of view (the maps are smooth and resampled anyway).

    crop = 0 keeps the maps over the whole field of view (the object fills it); the ragged 5 % of the readout
    rows at each end and of the columns at each fold-over edge are cut off (-> 144 x 80), and a light Gaussian
    blur (sigma 1 px, on real and imaginary parts) smooths what remains of the seams before renormalising.
    """
    from scipy.ndimage import gaussian_filter

    from recon.io.bart import read_cfl_kspace

    volume = read_cfl_kspace(base)
    # num_maps=2 runs the exact per-pixel eigendecomposition (faster than sigpy's power iterations here);
    # the first set is sigpy's map where the leading eigenvalue is distinct.
    maps = espirit_maps_cached(volume.kspace[0], volume.path, 0, cache_dir=cache_dir, crop=0.0,
                               image_shape=SMALLFOV_MAP_GRID)
    maps = maps[:, 8:-8, 2:-2]
    smooth = gaussian_filter(maps.real, sigma=(0, 1, 1)) + 1j * gaussian_filter(maps.imag, sigma=(0, 1, 1))
    return normalize_maps(smooth)


def realistic_maps(
    num_coils: int,
    height: int,
    width: int,
    rng: np.random.Generator,
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """Coil maps resampled from ESPIRiT maps of real 8-channel brain k-space, complex64 ``[C, H, W]``.

    The source is ``<data_root>/mri/kspace/smallfov-brain8ch/smallfov`` (BART; ``data_root`` defaults to
    ``../shared/data`` beside the checkout); its maps are estimated once
    (see ``_smallfov_maps``; 144 x 80 after trimming). Each call: a random subset of ``num_coils`` of the 8
    coils; a random window along the long side, its length uniform between the short and the long side, at a
    random offset (random shift and aspect); a random rotation by a multiple of 90 degrees and a random
    left-right flip; linear zoom of the real and imaginary parts to ``height x width``; renormalisation to
    ``sum_c |S_c|^2 = 1``. (The source field of view is smaller than the head along its short side, so maps
    vary less along that side than a full head coil's would.)

    Raises:
        InputError: the smallfov file is missing, or ``num_coils`` > 8.
    """
    from scipy.ndimage import zoom

    if data_root is None:
        from recon.splits import default_data_root

        data_root = default_data_root()
    base = Path(data_root) / SMALLFOV_RELATIVE
    if not base.with_name(base.name + ".cfl").is_file():
        raise InputError(base.with_name(base.name + ".cfl"),
                         "not found: realistic (espirit) coil maps need the smallfov k-space; "
                         "use birdcage maps or pass the data root that holds it")
    source = _smallfov_maps(str(base.resolve()), None if cache_dir is None else str(cache_dir))
    available = source.shape[0]
    if not 1 <= num_coils <= available:
        raise InputError(base, f"realistic coil maps come from {available}-channel data; asked for {num_coils} coils")
    coils = np.sort(rng.choice(available, size=num_coils, replace=False))
    maps = source[coils]
    long_axis = 1 if maps.shape[1] >= maps.shape[2] else 2
    short, long = min(maps.shape[1:]), max(maps.shape[1:])
    length = int(rng.integers(short, long + 1))
    offset = int(rng.integers(0, long - length + 1))
    maps = maps[:, offset:offset + length, :] if long_axis == 1 else maps[:, :, offset:offset + length]
    maps = np.rot90(maps, int(rng.integers(4)), axes=(1, 2))
    if rng.integers(2):
        maps = maps[..., ::-1]
    factors = (1, height / maps.shape[1], width / maps.shape[2])
    resized = zoom(np.ascontiguousarray(maps.real), factors, order=1, grid_mode=True, mode="nearest") \
        + 1j * zoom(np.ascontiguousarray(maps.imag), factors, order=1, grid_mode=True, mode="nearest")
    return normalize_maps(resized[:, :height, :width])
