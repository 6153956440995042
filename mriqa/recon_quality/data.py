"""The reconstruction-quality data set: reconstructions of known quality, built from fully sampled data only.

For every file of a simulated multi-coil split (``mriqa make-dataset --splits ixi``: split by subject) and each
of its chosen slices, groups of (nominal R, mask kind) are drawn; each group gets its own acquisition variation
(k-space apodization, i.e. a blur, and extra noise: :func:`mriqa.evaluation.r_estimation.augment_kspace`), is
undersampled (:func:`mriqa.evaluation.r_estimation.undersample_at`: fastMRI random / equispaced line masks or
sigpy Poisson-disk 2-D masks, the default centre of ``mriqa recon``) and reconstructed by every method of
``recon.pipeline`` (zero-filled, CG-SENSE, L1-wavelet, MoDL) with the ESPIRiT maps of the fully sampled centre
(``recon.evaluation.calibration_maps``). The reference of a group is the RSS of its fully sampled (augmented)
k-space: what a fully sampled scan of that acquisition would show. Full-reference figures are stored per image
(``recon.metrics``: SSIM with skimage's 7 x 7 window, PSNR and NMSE, data range the reference slice's max).

File layout (one HDF5 file per split and shard, written atomically; :func:`read_quality_set` joins shards):

==================  ============================  ========================================================
dataset             shape / type                  meaning
==================  ============================  ========================================================
``images``          float32 ``[N, H, W]``         reconstruction magnitude (RSS scale)
``references``      float32 ``[G, H, W]``         RSS of the group's fully sampled k-space
``ref_index``       int32 ``[N]``                 row of ``references`` for each image
``method``          str ``[N]``                   zf / sense / l1 / modl
``accel``           float32 ``[N]``               nominal R
``accel_effective`` float32 ``[N]``               total lines (points) / sampled ones
``mask_kind``       str ``[N]``                   random / equispaced / poisson
``volume``          str ``[N]``                   source file stem (subject + orientation)
``slice``           int32 ``[N]``                 slice index in the source file
``snr``             float32 ``[N]``               SNR after augmentation
``apod_sigma``      float32 ``[N]``               apodization blur (pixels)
``ssim``, ``psnr``, ``nmse``  float32 ``[N]``     against the group's reference
``kspace_nmse``     float32 ``[N]``, optional     the k-space check's NMSE estimate
                                                  (:mod:`mriqa.recon_quality.kspace`; ``kspace_check=True``)
``kspace_rel``      float32 ``[N]``, optional     its held-out relative error
``kspace_bands``    float32 ``[N, K]``, optional  the estimate with each of ``recon.crossval.NMSE_BAND_CHOICES``
                                                  radial bands (``kspace_nmse``: with ``NMSE_BANDS``)
==================  ============================  ========================================================
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from recon.masks import POISSON_MIN_ACCEL

__all__ = ["QUALITY_METHODS", "QUALITY_ACCELS", "QUALITY_MASKS", "build_quality_split", "read_quality_set",
           "write_quality_set", "real_kspace_set", "other_anatomy_files", "mask_groups"]

QUALITY_METHODS = ("zf", "sense", "l1", "modl")
QUALITY_ACCELS = (2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0)
QUALITY_MASKS = ("random", "equispaced", "poisson")
SPLIT_FOLDERS = {"train": "multicoil_train", "val": "multicoil_val", "test": "multicoil_test"}


def mask_groups(rng: np.random.Generator | None, accels: Sequence[float], masks: Sequence[str],
                groups: int | None) -> list[tuple[float, str]]:
    """The (R, mask kind) groups of one slice: all of them (``groups=None``), or ``groups`` drawn without
    replacement from the grid by ``rng``; Poisson-disk masks only from ``recon.masks.POISSON_MIN_ACCEL``."""
    grid = [(float(r), k) for r in accels for k in masks if k != "poisson" or float(r) >= POISSON_MIN_ACCEL]
    if groups is None or groups >= len(grid):
        return grid
    pick = rng.choice(len(grid), size=groups, replace=False)
    return [grid[i] for i in sorted(pick)]


class _TimeLimit(Exception):
    pass


def _time_limited(seconds: float, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, or :class:`_TimeLimit` after ``seconds`` (SIGALRM; main thread, Unix): sigpy's
    Poisson-disk sampler can bisect for minutes when a seed cannot reach the asked R."""
    import signal

    def stop(signum, frame):
        raise _TimeLimit()

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn(*args, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _figures(reference: np.ndarray, image: np.ndarray) -> tuple[float, float, float]:
    from recon.metrics import nmse, psnr, ssim

    peak = float(reference.max())
    return ssim(reference, image, peak), psnr(reference, image, peak), nmse(reference, image)


def build_quality_split(data: str | os.PathLike, split: str, out: str | os.PathLike, *,
                        methods: Sequence[str] = QUALITY_METHODS, accels: Sequence[float] = QUALITY_ACCELS,
                        masks: Sequence[str] = QUALITY_MASKS, groups: int | None = None, slices: int = 1,
                        augment: bool = False, snr_range: tuple[float, float] = (15.0, 100.0),
                        shard: tuple[int, int] = (0, 1), seed: int = 0, modl_weights: str = "modl",
                        log: Callable[[str], None] = print, progress: bool = False,
                        kspace_check: bool = False) -> Path:
    """Build one split (module docstring) from ``<data>/multicoil_<split>/*.h5`` into ``out`` (an .h5 file).

    Args:
        groups: (R, mask) groups per slice drawn from the grid ``accels`` x ``masks``; None: the whole grid.
        slices: evenly spaced slices per file.
        augment: an acquisition variation per group (blur + noise down to ``snr_range``); else the file as is.
        shard: ``(i, n)``: only every n-th file from the i-th (run n processes, then read them together).
        kspace_check: also store the k-space check of every reconstruction (``kspace_nmse``, ``kspace_rel``;
            :func:`mriqa.recon_quality.kspace.kspace_check` with the same maps: 4 more reconstructions each).
    Returns the path written.
    """
    from recon.errors import InputError
    from recon.evaluation import calibration_maps, read_eval_volume
    from recon.pipeline import reconstruct
    from recon.transforms import mask_seed
    from mriqa.evaluation.r_estimation import augment_kspace, undersample_at

    folder = Path(data) / SPLIT_FOLDERS[split]
    files = sorted(folder.glob("*.h5"))[shard[0]::shard[1]]
    if not files:
        raise InputError(folder, "no .h5 files (run mriqa make-dataset first)")
    rows: dict[str, list] = {k: [] for k in ("images", "ref_index", "method", "accel", "accel_effective",
                                             "mask_kind", "volume", "slice", "snr", "apod_sigma", "ssim",
                                             "psnr", "nmse")}
    references: list[np.ndarray] = []
    failures: list[str] = []
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(files), desc=f"{split} {shard[0]}/{shard[1]}", unit="file")
    for path in files:
        vol = read_eval_volume(path, slices)
        sim_snrs = vol.simulated_snrs()  # one per slice for a make-dataset --snr-max file
        if "noise_std" in vol.attrs:
            noise_std = np.asarray(vol.attrs["noise_std"], np.float64)[vol.slices]
        elif augment:
            raise InputError(path, "--augment needs the attribute 'noise_std' (the per-slice noise level "
                                   "mriqa make-dataset records)")
        else:
            noise_std = np.zeros(len(vol.slices))
        maps = calibration_maps(vol.kspace, path, vol.slices)
        for j, s in enumerate(vol.slices):
            k_full, std = vol.kspace[j:j + 1], noise_std[j:j + 1]
            rng = np.random.default_rng(mask_seed(seed, "quality-groups", split, path.name, s))
            for accel, kind in mask_groups(rng, accels, masks, groups):
                k_in, sigma, snr = k_full, 0.0, float(sim_snrs[j])
                if augment:
                    arng = np.random.default_rng(mask_seed(seed, "quality-augment", split, path.name, s, kind, accel))
                    k_in, sigma, snr = augment_kspace(k_full, std, arng, sim_snr=snr, snr_range=snr_range)
                try:
                    sampled = _time_limited(20.0, undersample_at, k_in, kind, accel,
                                            mask_seed(seed, "quality-mask", split, path.name, s, kind, accel),
                                            source=path)
                except InputError as exc:  # e.g. sigpy cannot make a Poisson mask at this R and size
                    failures.append(f"{path.stem}[{s}] {kind} R={accel:g}: {exc.problem}")
                    continue
                except _TimeLimit:
                    failures.append(f"{path.stem}[{s}] {kind} R={accel:g}: no mask within 20 s")
                    continue
                from recon.fft import ifft2c_np

                reference = np.sqrt(np.sum(np.abs(ifft2c_np(k_in)) ** 2, axis=1))[0].astype(np.float32)
                group_index = len(references)
                added = False
                for method in methods:
                    try:
                        image = reconstruct(method, sampled.kspace, sampled.mask.mask, sens_maps=maps[j:j + 1],
                                            weights=modl_weights)[0]
                    except InputError as exc:  # the collapse guard refused: not a training image
                        failures.append(f"{path.stem}[{s}] {kind} R={accel:g} {method}: {exc.problem}")
                        continue
                    q_ssim, q_psnr, q_nmse = _figures(reference, image)
                    if kspace_check:
                        _add_kspace_check(rows, method, sampled.kspace, sampled.mask, maps[j], modl_weights)
                    for key, value in (("images", image.astype(np.float32)), ("ref_index", group_index),
                                       ("method", method), ("accel", accel),
                                       ("accel_effective", sampled.mask.acceleration_effective),
                                       ("mask_kind", kind), ("volume", path.stem), ("slice", s), ("snr", snr),
                                       ("apod_sigma", sigma), ("ssim", q_ssim), ("psnr", q_psnr),
                                       ("nmse", q_nmse)):
                        rows[key].append(value)
                    added = True
                if added:
                    references.append(reference)
        if bar is not None:
            bar.update(1)
        log(f"  {split} {path.stem}: {len(rows['images'])} images, {time.perf_counter() - t0:.0f} s")
    if bar is not None:
        bar.close()
    if not rows["images"]:
        raise InputError(folder, "no reconstruction passed (see the failures above)")
    data = {k: np.asarray(v) for k, v in rows.items()}
    data["images"], data["references"] = np.stack(rows["images"]), np.stack(references)
    images, refs = data["images"], data["references"]
    out = write_quality_set(out, data, {
        "split": split, "source": str(folder), "methods": ",".join(methods),
        "accels": np.asarray(accels, np.float32), "masks": ",".join(masks),
        "groups": -1 if groups is None else int(groups), "slices_per_file": int(slices),
        "augment": bool(augment), "snr_range": np.asarray(snr_range, np.float32),
        "shard": f"{shard[0]}/{shard[1]}", "seed": int(seed), "modl_weights": modl_weights,
        "failures": "\n".join(failures), "seconds": time.perf_counter() - t0})
    log(f"wrote {out}: {len(images)} images of {len(refs)} groups, {len(failures)} refused, "
        f"{time.perf_counter() - t0:.0f} s")
    return out


KSPACE_FIELDS = ("kspace_nmse", "kspace_rel", "kspace_bands")


def _add_kspace_check(rows: dict, method: str, kspace: np.ndarray, mask, maps: np.ndarray, weights: str) -> None:
    """Append the k-space check (:func:`mriqa.recon_quality.kspace.kspace_check`) of one slice to ``rows``."""
    from mriqa.recon_quality.kspace import kspace_check

    check = kspace_check(method, kspace, mask, np.asarray(maps).reshape((1,) + np.asarray(maps).shape[-3:]),
                         weights=weights)[0]
    rows.setdefault("kspace_nmse", []).append(check.nmse_estimate)
    rows.setdefault("kspace_rel", []).append(check.heldout_error)
    rows.setdefault("kspace_bands", []).append(check.nmse_per_bands)


def write_quality_set(out: str | os.PathLike, data: dict[str, np.ndarray], attrs: dict) -> Path:
    """Write a reconstruction-quality set (the layout :func:`read_quality_set` reads) atomically to ``out``."""
    import h5py

    from recon.files import atomic_path

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    str_t = h5py.string_dtype()
    images = np.asarray(data["images"], np.float32)
    refs = np.asarray(data["references"], np.float32)
    with atomic_path(out, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as hf:
            chunks = (1,) + images.shape[1:]
            hf.create_dataset("images", data=images, compression="gzip", compression_opts=1, chunks=chunks)
            hf.create_dataset("references", data=refs, compression="gzip", compression_opts=1,
                              chunks=(1,) + refs.shape[1:])
            for key in ("method", "mask_kind", "volume"):
                hf.create_dataset(key, data=np.asarray([str(v) for v in data[key]], dtype=object), dtype=str_t)
            hf["ref_index"] = np.asarray(data["ref_index"], np.int32)
            hf["slice"] = np.asarray(data["slice"], np.int32)
            for key in ("accel", "accel_effective", "snr", "apod_sigma", "ssim", "psnr", "nmse", *KSPACE_FIELDS):
                if key in data:
                    hf[key] = np.asarray(data[key], np.float32)
            hf.attrs.update(attrs)
    return out


def read_quality_set(paths: Sequence[str | os.PathLike]) -> dict[str, np.ndarray]:
    """Every dataset of the files ``paths`` (shards of one split), joined; ``ref_index`` is shifted so that it
    indexes the joined ``references``. Strings come back as numpy ``str`` arrays."""
    import h5py

    from recon.errors import InputError

    parts: list[dict[str, np.ndarray]] = []
    offset = 0
    for p in paths:
        if not Path(p).is_file():
            raise InputError(p, "reconstruction-quality data not found (made by scripts/make_quality_dataset.py)")
        try:
            with h5py.File(p, "r") as hf:
                d = {k: hf[k][()] for k in hf.keys()}
        except (OSError, KeyError) as exc:
            raise InputError(p, f"not a reconstruction-quality data file ({exc})") from None
        for k in ("method", "mask_kind", "volume"):
            d[k] = np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in d[k]])
        d["ref_index"] = d["ref_index"].astype(np.int64) + offset
        offset += len(d["references"])
        parts.append(d)
    if not parts:
        raise InputError(None, "no reconstruction-quality data files given")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def real_kspace_set(data_root: str | os.PathLike, *, methods: Sequence[str] = QUALITY_METHODS,
                    accels: Sequence[float] = (2, 3, 4, 6, 8, 10, 12), masks: Sequence[str] = QUALITY_MASKS,
                    seed: int = 0, modl_weights: str = "modl", log: Callable[[str], None] = print,
                    kspace_check: bool = False) -> dict:
    """The real 16-coil k-space (:mod:`recon.io.sense_tutorial`) undersampled at ``accels`` with ``masks`` in both
    orientations (default centre of ``mriqa recon``) and reconstructed by ``methods`` as ``mriqa recon`` does
    (``recon.pipeline.run_method``: calibrated maps, the collapse guard), in :func:`read_quality_set`'s layout
    (``volume`` = ``sense-tutorial_<orientation>``; reference = RSS of the full data; no augmentation).
    Masks sigpy cannot make and reconstructions the guard refuses are left out (logged). ``kspace_check``: also
    the k-space check of each (``kspace_nmse``, ``kspace_rel``; maps of ``recon.calibration.calibrate_maps``)."""
    from recon.errors import InputError
    from recon.fft import ifft2c_np
    from recon.io.sense_tutorial import SENSE_TUTORIAL, read_sense_tutorial, sense_tutorial_orientations
    from recon.masks import center_fraction_for, make_mask
    from recon.calibration import calibrate_maps
    from recon.pipeline import run_method

    stored = read_sense_tutorial(Path(data_root) / SENSE_TUTORIAL)
    rows: dict[str, list] = {}
    references: list[np.ndarray] = []
    for orientation, k in sense_tutorial_orientations(stored).items():
        full = k[None]
        reference = np.sqrt(np.sum(np.abs(ifft2c_np(full)) ** 2, axis=1))[0].astype(np.float32)
        references.append(reference)
        for kind in masks:
            for accel in accels:
                try:
                    mask = make_mask(kind, full.shape[-2:], accel,
                                     center_fraction=center_fraction_for(accel, full.shape[-1]), seed=seed)
                except InputError as exc:
                    log(f"  {orientation} {kind} R={accel:g}: no mask ({exc.problem})")
                    continue
                kspace = full * mask.mask.numpy()
                maps = calibrate_maps(kspace, mask, cache_dir=False)[0] if kspace_check else None
                for method in methods:
                    try:
                        image = run_method(method, kspace, mask, weights=modl_weights).image[0]
                    except InputError as exc:
                        log(f"  {orientation} {kind} R={accel:g} {method}: refused ({exc.problem})")
                        continue
                    q_ssim, q_psnr, q_nmse = _figures(reference, image)
                    if kspace_check:
                        _add_kspace_check(rows, method, kspace, mask, maps[0], modl_weights)
                    for key, value in (("images", image), ("ref_index", len(references) - 1), ("method", method),
                                       ("accel", float(accel)), ("accel_effective", mask.acceleration_effective),
                                       ("mask_kind", kind), ("volume", f"sense-tutorial_{orientation}"),
                                       ("slice", 0), ("snr", float("nan")), ("apod_sigma", 0.0),
                                       ("ssim", q_ssim), ("psnr", q_psnr), ("nmse", q_nmse)):
                        rows.setdefault(key, []).append(value)
            log(f"  {orientation} {kind}: {len(rows.get('images', []))} reconstructions")
    out = {k: np.asarray(v) for k, v in rows.items()}
    out["images"] = np.stack(rows["images"]).astype(np.float32)
    out["references"] = np.stack(references)
    for k in ("accel", "accel_effective", "snr", "apod_sigma", "ssim", "psnr", "nmse", *KSPACE_FIELDS):
        if k in out:
            out[k] = out[k].astype(np.float32)
    return out


SMALLFOV = "mri/kspace/smallfov-brain8ch/smallfov.cfl"


def acquired_kspace_set(data_root: str | os.PathLike, *, factors: Sequence[int] = (1, 2, 3, 4, 6, 8),
                        methods: Sequence[str] = QUALITY_METHODS, modl_weights: str = "modl",
                        log: Callable[[str], None] = print) -> dict:
    """A second real scan, already undersampled when acquired: the ESPIRiT example 8-coil brain (``SMALLFOV``: 96 of
    168 phase-encode lines, its field of view smaller than the head), with every ``factor``-th of its acquired
    lines outside the central run kept (factor 1: as acquired), reconstructed by ``methods`` as ``mriqa recon``
    does (two map sets, which this scan's fold-over needs), in
    :func:`read_quality_set`'s layout. There is no fully sampled reference: ``accel`` is the effective R (the
    168 lines over those kept), ``mask_kind`` ``"equispaced"`` (every factor-th acquired line), the quality
    figures NaN and ``references`` the CG-SENSE image of the lines as acquired."""
    import torch

    from recon.errors import InputError
    from recon.pipeline import load_kspace, run_method, undersample

    acquired = undersample(load_kspace(Path(data_root) / SMALLFOV))
    sampled = np.asarray(acquired.mask.mask, dtype=bool).reshape(-1)
    width = sampled.size
    lo = hi = width // 2
    while lo > 0 and sampled[lo - 1]:
        lo -= 1
    while hi + 1 < width and sampled[hi + 1]:
        hi += 1
    centre = set(range(lo, hi + 1))
    outer = [i for i in np.flatnonzero(sampled) if i not in centre]
    reference = run_method("sense", acquired.kspace, acquired.mask.mask, num_maps=2).image[0].astype(np.float32)
    rows: dict[str, list] = {}
    for factor in factors:
        keep = np.zeros(width, np.float32)
        keep[sorted(centre | set(outer[::factor]))] = 1.0
        mask = torch.from_numpy(keep.reshape(1, 1, width))
        kspace = acquired.kspace * keep
        for method in methods:
            try:
                image = run_method(method, kspace, mask, num_maps=2, weights=modl_weights).image[0]
            except InputError as exc:
                log(f"  smallfov 1/{factor} of the outer lines, {method}: refused ({exc.problem})")
                continue
            for key, value in (("images", image), ("ref_index", 0), ("method", method),
                               ("accel", width / keep.sum()), ("accel_effective", width / keep.sum()),
                               ("mask_kind", "equispaced"), ("volume", "smallfov"), ("slice", 0),
                               ("snr", float("nan")), ("apod_sigma", 0.0), ("ssim", float("nan")),
                               ("psnr", float("nan")), ("nmse", float("nan"))):
                rows.setdefault(key, []).append(value)
        log(f"  smallfov: 1 in {factor} of the outer lines, effective R {width / keep.sum():.2f}")
    out = {k: np.asarray(v) for k, v in rows.items()}
    out["images"] = np.stack(rows["images"]).astype(np.float32)
    out["references"] = reference[None]
    for k in ("accel", "accel_effective", "snr", "apod_sigma", "ssim", "psnr", "nmse"):
        out[k] = out[k].astype(np.float32)
    return out


MSD_SLICES = "mri/slices/msd-decathlon"


def other_anatomy_files(data_root: str | os.PathLike, out: str | os.PathLike, *, size: int = 128, coils: int = 8,
                        snr: float = 100.0, seed: int = 0) -> Path:
    """Simulated fully sampled multi-coil k-space of the MSD slices (5 brain-tumour FLAIR subjects, 2 prostate T2
    slices; anatomy and contrast the recon model never saw) in fastMRI layout under ``<out>/multicoil_test``, as
    ``mriqa make-dataset`` simulates its volumes (:func:`recon.simulate.simulate_slice`: smooth random phase,
    birdcage maps, noise at ``snr``; magnitude / its 99.5th percentile, resized to ``size``). Returns ``out``."""
    from recon.coils import birdcage_maps
    from recon.io.fastmri_h5 import write_fastmri_h5
    from recon.io.volumes import load_npy, load_npz
    from recon.simulate import resize_slice, simulate_slice

    root = Path(data_root) / MSD_SLICES
    slices: dict[str, np.ndarray] = {}
    archive = load_npz(root / "brain_tumour_5subjects.npz")
    for i, key in enumerate(sorted(archive)):
        slices[f"msd-brain-tumour-{i}"] = archive[key]
    for name in ("prostate_t2_a", "prostate_t2_b"):
        slices[f"msd-{name.replace('_', '-')}"] = load_npy(root / f"{name}.npy")
    folder = Path(out) / SPLIT_FOLDERS["test"]
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, image) in enumerate(slices.items()):
        image = np.clip(np.asarray(image, np.float32), 0, None)
        image = resize_slice(image / max(float(np.percentile(image, 99.5)), 1e-12), size)
        rng = np.random.default_rng([seed, i])
        kspace, rss, info = simulate_slice(image, birdcage_maps(coils, size, size, rng), snr, rng)
        write_fastmri_h5(folder / f"{name}.h5", kspace[None], reconstruction_rss=rss[None],
                         attrs={"noise_std": np.asarray([info["noise_std"]]), "snr": snr}, acquisition="SIM")
    return Path(out)
