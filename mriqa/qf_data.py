"""Training data for the QF predictors: image pools, patch sampling, JPEG targets.

Image pools (:func:`load_pool`) hold every training image once, normalised with :mod:`mriqa.normalize` and
stored as uint8 (the 1/255 grid the models see):

- ``type: volume`` — an MRI volume (DICOM series folder or NIfTI), sliced in the orientations listed in
  ``axes`` (default all three: ``[0, 1, 2]``); every 2-D slice is normalised on its own (``kind="mri"``, robust
  maximum = 99.5th percentile of the slice). Slices whose foreground (pixels above 10 % of the *volume's*
  99.5th percentile) covers less than ``min_foreground`` (default 0.15) of the slice are skipped: they are
  near-empty end slices whose per-slice normalisation would blow up the background noise.
- ``denoise: {h: 1.0, patch_size: 5, patch_distance: 6}`` (volumes and h5): the *pristine* (QF 100) version
  of each slice is an edge-preserving non-local-means denoised copy (scikit-image ``denoise_nl_means``,
  ``h = h * sigma`` with sigma estimated per slice by ``estimate_sigma``), computed slice by slice along the
  first axis and cached in the user cache (:func:`recon.files.user_cache_dir` ``("qf-denoise")``:
  ``~/.cache/mriqa/qf-denoise``, ``$MRIQA_CACHE/qf-denoise``, ``MRIQA_CACHE=off`` for none). The acquired (noisy) slice is kept
  beside it as a *degraded* version of the same content (``noise.p_native``), scored with the PSNR-matched QF
  like synthetic noise. Why: a single acquisition carries native noise; if that noise defined "pristine",
  cleaner images (averaged templates, denoised reconstructions) would look "JPEG-smoothed" and extra noise
  would *raise* the QF (the noise-sign problem). Both images of a pair use the pristine slice's scale.
- ``type: h5`` — a fastMRI folder (or one file): every ``*.h5`` with ``key`` (``reconstruction_rss`` or
  ``reconstruction_esc``; first present of reconstruction / reconstruction_rss / reconstruction_esc if
  ``key`` is not given), one 2-D image per slice, same normalisation and slice filter as volumes;
  ``max_files`` / ``max_slices`` (central slices of each file) bound the memory.
- ``type: images`` — a folder (or list of files) of photos (``kind="photo"``); ``exclude``/``include`` file
  names; ``downscale: k`` = k x k area averaging (destroys an 8 x 8 JPEG block grid); ``channels`` 1 or 3.
- ``type: skimage`` — named images shipped inside scikit-image's wheel (``names: [coffee, chelsea, ...]``).

Patches (:class:`PatchSampler`): a clean crop of ``patch + 8`` pixels (randomly flipped / rotated by 90
degrees) is JPEG-compressed as a whole at a QF drawn from the configured distribution, then a ``patch``-sized
window is cut at a random offset 0..7, so the 8 x 8 block grid takes every phase relative to the patch (and
to the network's output grid). With probability ``p_clean`` the crop is left uncompressed with target 1.0
(lossless = QF 100). For MRI, patch centres fall on the foreground (pixels >= 0.1 after normalisation,
dilated) with probability ``p_foreground``.

Optional noise augmentation (``noise: {p, sigma_min, sigma_max, p_native}``): with probability ``p``
Gaussian noise of standard deviation sigma (log-uniform in [sigma_min, sigma_max], [0, 1] units) is added to
the clean crop before quantisation and compression, and the target becomes the **PSNR-matched QF**: the JPEG quality
that gives the same mean squared error on that very (clean) crop as the degraded input has,
``target = QF_eq(MSE(degraded, clean))``, interpolated on the crop's own rate-distortion curve
(QF 100 -> its JPEG MSE; lossless -> 0). For a pure JPEG input this is the QF itself; for added noise it is
the JPEG quality of equal distortion. With probability ``p_native`` (pools built with ``denoise``) the
acquired noisy slice is used instead of synthetic noise, with the same PSNR-matched target against its
denoised pristine version. Optional blur augmentation (``blur: {p, sigma_min, sigma_max}``): with probability
``p`` a Gaussian blur (sigma log-uniform in [sigma_min, sigma_max] pixels) is applied after the noise step,
again with the PSNR-matched target (then blur is a trained degradation, no longer a zero-shot test). With
``target: schedule`` the blur's target is instead :func:`blur_schedule_qf` of its sigma (QF 100 up to
``tolerance`` px, then falling linearly in log sigma to ``qf_at_max`` at ``sigma_max``), and any noise/JPEG
target is PSNR-matched against the blurred pristine: MRI sources differ in native sharpness (Colin27, an
average of 27 scans, is softer than one acquisition), and an MSE-matched blur target calls them all blurred.
See ``docs/qf/README.md`` for why (noise sign, blur).

Everything is driven by a ``numpy.random.Generator`` passed in, so a step's batch depends only on
``(seed, step)``: runs are deterministic and resume exactly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from recon.errors import InputError
from recon.io.images import read_images
from recon.io.volumes import read_volume
from mriqa.jpeg import class_index, jpeg_compress, sample_qf
from mriqa.normalize import convert_channels, robust_max, to_uint8, to_unit_range

REPO_ROOT = Path(__file__).resolve().parents[1]
FG_THRESHOLD = 0.1
RD_QUALITIES = np.array([1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 93, 95, 97, 98, 99, 100])


def resolve_path(path: str) -> Path:
    """Expand ``$VARS`` and ``~``; a relative path is taken from the current folder if it exists there,
    otherwise from the repository root (so ``../shared/data`` works from anywhere inside the checkout)."""
    p = Path(os.path.expanduser(os.path.expandvars(str(path))))
    if p.is_absolute() or p.exists():
        return p
    return REPO_ROOT / p


@dataclass
class Pool:
    """Training images as uint8 ``[H, W, C]`` plus, for MRI, a foreground mask per image."""

    images: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray | None] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    noisy: list[np.ndarray | None] = field(default_factory=list)  # acquired version of a denoised image

    def extend(self, other: "Pool") -> None:
        self.images += other.images
        self.masks += other.masks
        self.names += other.names
        self.noisy += other.noisy

    def __len__(self) -> int:
        return len(self.images)

    @property
    def pixels(self) -> int:
        return int(sum(im.shape[0] * im.shape[1] for im in self.images))


def sampling_foreground(unit: np.ndarray) -> np.ndarray:
    """Where the QF training sampler may centre an MRI patch: bool ``[H, W]`` of a [0, 1] slice whose 5 x 5 mean
    is >= :data:`FG_THRESHOLD`, dilated by 4 pixels (the recipe of the shipped gray weights; scoring's pooling
    mask is :func:`mriqa.pooling.foreground_mask`)."""
    m = ndimage.uniform_filter(unit.astype(np.float32), 5) >= FG_THRESHOLD
    return ndimage.binary_dilation(m, iterations=4)


def _cache_dir() -> Path | None:
    from recon.files import user_cache_dir

    return user_cache_dir("qf-denoise")


def denoise_volume(vol: np.ndarray, h: float = 1.0, patch_size: int = 5, patch_distance: int = 6,
                   cache_key: str | None = None) -> np.ndarray:
    """Non-local-means denoising slice by slice along axis 0 (see the module doc); cached by ``cache_key``."""
    import hashlib

    path = None
    folder = _cache_dir()
    if cache_key is not None and folder is not None:
        digest = hashlib.sha1(f"{cache_key}|{vol.shape}|{h}|{patch_size}|{patch_distance}|v1".encode()).hexdigest()
        path = folder / f"{digest[:20]}.npy"
        if path.is_file():
            cached = np.load(path, allow_pickle=False)
            if cached.shape == vol.shape:
                return cached
    from skimage.restoration import denoise_nl_means, estimate_sigma

    scale = robust_max(vol)
    out = np.empty_like(vol, dtype=np.float32)
    for i in range(vol.shape[0]):
        sl = vol[i].astype(np.float64) / scale
        if not np.any(sl):
            out[i] = 0
            continue
        sigma = float(estimate_sigma(sl))
        if sigma <= 0:
            out[i] = vol[i]
            continue
        out[i] = denoise_nl_means(sl, h=h * sigma, sigma=sigma, patch_size=patch_size,
                                  patch_distance=patch_distance, fast_mode=True) * scale
    if path is not None:
        from recon.files import atomic_path

        with atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, out)
    return out


def _mri_slices(vol: np.ndarray, axes, min_foreground: float, name: str, channels: int,
                noisy_vol: np.ndarray | None = None) -> Pool:
    pool = Pool()
    vmax = robust_max(vol)
    for ax in axes:
        v = np.moveaxis(vol, ax, 0)
        nv = None if noisy_vol is None else np.moveaxis(noisy_vol, ax, 0)
        for i in range(v.shape[0]):
            sl = v[i]
            if min(sl.shape) < 16 or np.mean(sl > FG_THRESHOLD * vmax) < min_foreground:
                continue
            try:
                unit = to_unit_range(sl, "mri", source=name)
            except InputError:
                continue  # all-zero slice
            img = to_uint8(convert_channels(unit, channels))
            pool.images.append(img)
            pool.masks.append(sampling_foreground(unit))
            pool.names.append(f"{name}[axis{ax}:{i}]")
            if nv is not None:
                scaled = np.clip(nv[i].astype(np.float64), 0, None) / robust_max(np.clip(sl, 0, None))
                pool.noisy.append(to_uint8(convert_channels(np.clip(scaled, 0, 1).astype(np.float32), channels)))
            else:
                pool.noisy.append(None)
    return pool


def _volume_pool(vol: np.ndarray, spec: dict, name: str, channels: int, axes, key: str) -> Pool:
    den = spec.get("denoise")
    mf = float(spec.get("min_foreground", 0.15))
    if not den:
        return _mri_slices(vol, axes, mf, name, channels)
    den = {} if den is True else dict(den)
    clean = denoise_volume(vol, cache_key=key, **den)
    return _mri_slices(clean, axes, mf, name, channels, noisy_vol=vol)


def _file_key(path: Path) -> str:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        return f"{path.resolve()}|{len(files)}|{sum(p.stat().st_size for p in files)}"
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}"


def _area_downscale(img: np.ndarray, k: int) -> np.ndarray:
    if k <= 1:
        return img
    h, w = (img.shape[0] // k) * k, (img.shape[1] // k) * k
    x = img[:h, :w].astype(np.float64).reshape(h // k, k, w // k, k, -1).mean(axis=(1, 3))
    return np.round(x).astype(np.uint8)


def _photo(path: str, channels: int, downscale: int) -> np.ndarray:
    rec = read_images(path)[0]
    unit = to_unit_range(rec.image, rec.kind, source=path)
    img = to_uint8(convert_channels(unit, channels, path))
    return _area_downscale(img, int(downscale))


def skimage_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).resolve().parent / "data"


def load_pool(spec: dict, channels: int) -> Pool:
    """Build a :class:`Pool` from one data ``spec`` (see the module doc)."""
    if not isinstance(spec, dict):
        raise InputError(None, f"a data entry must be a mapping such as {{type: images, path: DIR}}, got {spec!r}")
    typ = spec.get("type", "images")
    pool = Pool()
    if typ == "volume":
        path = resolve_path(spec["path"])
        vol = read_volume(path, axes="stored").data
        return _volume_pool(vol, spec, path.name, channels, spec.get("axes", [0, 1, 2]), _file_key(path))
    if typ == "h5":
        path = resolve_path(spec["path"])
        files = sorted(path.glob("*.h5")) if path.is_dir() else [path]
        if not files:
            raise InputError(path, "no .h5 files found")
        files = files[: int(spec["max_files"])] if spec.get("max_files") else files
        for f in files:
            vol = read_volume(f, axes="stored", h5_key=spec.get("key")).data
            ms = spec.get("max_slices")
            if ms and vol.shape[0] > int(ms):
                c, h = vol.shape[0] // 2, int(ms) // 2
                vol = vol[max(0, c - h): max(0, c - h) + int(ms)]
            pool.extend(_volume_pool(vol, spec, f.name, channels, [0], _file_key(f) + f"|{spec.get('key')}|{ms}"))
        return pool
    if typ in ("images", "skimage"):
        if typ == "skimage":
            root = skimage_data_dir()
            files = [str(root / (n if Path(n).suffix else n + ".png")) for n in spec["names"]]
        else:
            path = resolve_path(spec["path"])
            files = sorted(
                str(p) for p in path.iterdir() if p.suffix.lower() in (".png", ".tif", ".tiff", ".bmp")
            ) if path.is_dir() else [str(path)]
            if spec.get("include"):
                inc = set(spec["include"])
                files = [f for f in files if Path(f).name in inc or Path(f).stem in inc]
            if spec.get("exclude"):
                exc = set(spec["exclude"])
                files = [f for f in files if Path(f).name not in exc and Path(f).stem not in exc]
        for f in files:
            pool.images.append(_photo(f, channels, int(spec.get("downscale", 1))))
            pool.masks.append(None)
            pool.names.append(Path(f).name)
            pool.noisy.append(None)
        return pool
    raise ValueError(f"unknown data type {typ!r} (volume, h5, images, skimage)")


def load_pools(specs, channels: int) -> Pool:
    pool = Pool()
    for spec in specs if isinstance(specs, list) else [specs]:
        pool.extend(load_pool(spec, channels))
    if not len(pool):
        raise InputError(None, f"no training images found in {specs}")
    return pool


# ----------------------------------------------------------------------------------------------- distortion
def psnr_matched_qf(clean_u8: np.ndarray, mse: float) -> float:
    """The JPEG QF (1..100, interpolated; 101 = lossless) whose MSE on ``clean_u8`` equals ``mse``."""
    x = clean_u8.astype(np.float32) / 255.0
    ms = []
    for q in RD_QUALITIES:
        ms.append(float(np.mean((jpeg_compress(clean_u8, int(q)) - x) ** 2)))
    ms = np.minimum.accumulate(np.asarray(ms))  # monotone non-increasing in q
    qs = np.concatenate([RD_QUALITIES, [101]]).astype(np.float64)
    ms = np.concatenate([ms, [0.0]])
    if mse >= ms[0]:
        return 1.0
    # interpolate on the decreasing curve: find q with m(q) == mse
    return float(np.interp(-mse, -ms, qs))


def _gaussian_blur_u8(img_u8: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``sigma`` px (spatial axes only) of an 8-bit image, back on the 8-bit grid."""
    sig = (sigma, sigma) if img_u8.ndim == 2 else (sigma, sigma, 0)
    return to_uint8(ndimage.gaussian_filter(img_u8.astype(np.float32) / 255.0, sig, mode="reflect"))


def blur_schedule_qf(sigma: float, blur: dict) -> float:
    """QF (1..100) assigned to a Gaussian blur of ``sigma`` px by the ``target: schedule`` rule.

    100 up to ``tolerance`` px, then linear in log(sigma) down to ``qf_at_max`` at ``sigma_max``. MSE is a poor
    yardstick for blur on MRI (edges carry the error: a 0.7 px blur already matches the MSE of JPEG QF ~15);
    the schedule keeps the target monotone in sigma without calling the softness of every source a defect.
    """
    tol = float(blur.get("tolerance", 0.5))
    top = float(blur.get("sigma_max", 2.5))
    qf_min = float(blur.get("qf_at_max", 20.0))
    if sigma <= tol:
        return 100.0
    frac = min(1.0, np.log(sigma / tol) / np.log(top / tol))
    return float(100.0 - (100.0 - qf_min) * frac)


@dataclass
class Batch:
    x: np.ndarray  # [B, C, P, P] float32 in [0, 1]
    target: np.ndarray  # [B] float32 QF/100 (regression) ...
    label: np.ndarray  # [B] int64 class index (classification mode; -1 otherwise)
    qf: np.ndarray  # [B] nominal JPEG QF (101 = clean)


class PatchSampler:
    """Draws JPEG-compressed training patches from a :class:`Pool` (see the module doc)."""

    def __init__(
        self,
        pool: Pool,
        patch: int = 64,
        distribution: str = "log",
        p_clean: float = 0.05,
        p_foreground: float = 0.9,
        subsampling: str = "4:2:0",
        noise: dict | None = None,
        mode: str = "regression",
        blur: dict | None = None,
    ):
        if mode not in ("regression", "classification"):
            raise ValueError(f"mode must be regression or classification, got {mode!r}")
        self.pool = pool
        self.patch = int(patch)
        self.distribution = "classes" if mode == "classification" else distribution
        self.p_clean = 0.0 if mode == "classification" else float(p_clean)
        self.p_foreground = float(p_foreground)
        self.subsampling = subsampling
        self.noise = noise or {}
        self.blur = blur or {}
        self.mode = mode
        crop = self.patch + 8
        self._usable = [i for i, im in enumerate(pool.images) if min(im.shape[:2]) >= crop]
        if not self._usable:
            raise InputError(None, f"no training image is at least {crop} px (patch {self.patch} + 8)")
        areas = np.array([pool.images[i].shape[0] * pool.images[i].shape[1] for i in self._usable], float)
        self._weights = areas / areas.sum()  # images drawn in proportion to their area
        self._fg = {}
        for i in self._usable:
            m = pool.masks[i]
            if m is not None:
                h, w = m.shape
                inner = np.zeros_like(m)
                r = crop // 2
                inner[r: h - (crop - r) + 1, r: w - (crop - r) + 1] = True
                idx = np.flatnonzero(m & inner)
                if idx.size:
                    self._fg[i] = idx

    def _crop(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        crop = self.patch + 8
        i = self._usable[int(rng.choice(len(self._usable), p=self._weights))]
        img = self.pool.images[i]
        h, w = img.shape[:2]
        if i in self._fg and rng.random() < self.p_foreground:
            flat = int(self._fg[i][int(rng.integers(self._fg[i].size))])
            cy, cx = divmod(flat, w)
            y0, x0 = cy - crop // 2, cx - crop // 2
        else:
            y0, x0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        k = int(rng.integers(4))
        flip = rng.random() < 0.5

        def cut(a):
            c = a[y0: y0 + crop, x0: x0 + crop]
            c = np.rot90(c, k) if k else c
            return np.ascontiguousarray(c[:, ::-1] if flip else c)

        noisy = self.pool.noisy[i] if i < len(self.pool.noisy) else None
        return cut(img), (None if noisy is None else cut(noisy))

    def sample_one(self, rng: np.random.Generator):
        clean, acquired = self._crop(rng)  # uint8 [crop, crop, C]
        gray = clean.shape[-1] == 1
        src = clean[..., 0] if gray else clean
        degraded = src
        native = acquired is not None and self.noise and rng.random() < float(self.noise.get("p_native", 0.0))
        noisy = native or (self.noise and rng.random() < float(self.noise.get("p", 0.0)))
        if native:
            degraded = acquired[..., 0] if gray else acquired
        elif noisy:
            lo, hi = float(self.noise.get("sigma_min", 0.002)), float(self.noise.get("sigma_max", 0.08))
            sigma = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            noise = rng.standard_normal(src.shape).astype(np.float32) * sigma
            degraded = to_uint8(src.astype(np.float32) / 255.0 + noise)
        blurred = bool(self.blur) and rng.random() < float(self.blur.get("p", 0.0))
        scheduled = blurred and self.blur.get("target", "psnr") == "schedule"
        ref = src  # what the PSNR-matched target compares against
        if blurred:
            lo, hi = float(self.blur.get("sigma_min", 0.3)), float(self.blur.get("sigma_max", 2.5))
            sb = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            degraded = _gaussian_blur_u8(degraded, sb)
            if scheduled:  # blur is scored by its sigma; noise and JPEG against the blurred pristine
                ref = _gaussian_blur_u8(src, sb)
        if rng.random() < self.p_clean:
            qf = 101
            out = degraded.astype(np.float32) / 255.0
        else:
            qf = int(sample_qf(rng, None, self.distribution))
            out = jpeg_compress(degraded, max(1, qf), self.subsampling)
        target = min(qf, 100) / 100.0
        if noisy or (blurred and not scheduled):
            mse = float(np.mean((out - ref.astype(np.float32) / 255.0) ** 2))
            target = min(target, min(psnr_matched_qf(ref, mse), 100.0) / 100.0)
        if scheduled:
            target = min(target, blur_schedule_qf(sb, self.blur) / 100.0)
        oy, ox = int(rng.integers(8)), int(rng.integers(8))
        out = out.reshape(clean.shape)[oy: oy + self.patch, ox: ox + self.patch]
        label = class_index(qf) if self.mode == "classification" else -1
        return out.transpose(2, 0, 1), target, label, qf

    def sample(self, rng: np.random.Generator, batch: int) -> Batch:
        xs, ts, ls, qs = zip(*(self.sample_one(rng) for _ in range(batch)))
        return Batch(
            np.ascontiguousarray(np.stack(xs), dtype=np.float32),
            np.asarray(ts, np.float32),
            np.asarray(ls, np.int64),
            np.asarray(qs, np.int64),
        )
