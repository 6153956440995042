"""Build the acceleration (R) estimation dataset: reconstructions at known R, with their QF scores.

For each split of the simulated multi-coil data (``data/sim128``: train = 3T MPRAGE, val = MNI152,
test = Colin27; split by volume), an evenly spaced subset of slices per volume is undersampled at every
nominal R in ``--accels`` (default 2 3 4 5 6 8 10 12) with every mask kind in ``--masks`` (fastMRI ``random``
and ``equispaced`` line masks, sigpy ``poisson`` 2-D masks; fastMRI centre fraction ``0.32 / R``; one mask per
volume, kind and R, seeded from the split, the volume name, the kind and R: ``recon.pipeline.undersample``) and
reconstructed by each method in ``--methods`` (``recon.pipeline.reconstruct``):

- ``zf``: zero-filled RSS (``recon.baselines.zero_filled``),
- ``sense``: CG-SENSE (``recon.baselines.cg_sense``, its defaults),
- ``modl``: MoDL with the weights in ``--modl-weights`` (default the shipped ``modl``),

using the same ESPIRiT maps as ``scripts/eval_recon.py`` (central 24 x 24 of the fully sampled k-space, cached;
``recon.evaluation.calibration_maps``).

``--augment SPLIT...`` (used for train and val): before masking, each (volume, mask kind, R) group of k-space
gets its own acquisition variation, so that an estimator cannot read R off the source volume's sharpness or
noise level (the first learned estimator did: trained on the noisy MPRAGE alone, it took the smoother Colin27
at R = 2 for R = 4.5):

- **k-space apodization**, a separable Gaussian window ``exp(-2 pi^2 sigma^2 f^2)`` (``f`` in cycles per pixel),
  i.e. an image blur of ``sigma`` pixels with ``sigma`` uniform in [0, 1.2] (scanner reconstruction filters and
  lower acquired resolution);
- **extra k-space noise**, i.i.d. complex Gaussian added after the window so that the noise std becomes
  ``noise_std * 40 / snr`` with ``snr`` log-uniform in [15, 40] (the simulation's own SNR is 40; the real
  8-coil example in ``../shared/data`` measures about 20: zero-filled RSS foreground mean / corner-k-space
  noise std).

Both are drawn from a seed of (``--seed``, split, volume, mask kind, R) and recorded per image (``apod_sigma``,
``snr``); ``mriqa.evaluation.r_estimation.augment_kspace``. The test split is never augmented (it is the standard simulation, comparable across runs).
Every reconstruction is scored by the grayscale QF predictor (one forward pass, three poolings);
``--rescore`` only redoes these scores in existing files (after a new gray model ships), then refit the QF-based
calibration with ``python -m mriqa.restimate.qf_based fit``.

Output: one HDF5 file per split and method, ``<out>/<split>/<method>.h5`` (written atomically), holding

==================  ==============================  ======================================================
dataset             shape / type                    meaning
==================  ==============================  ======================================================
``images``          float32 ``[N, H, W]``           reconstruction magnitude, RSS scale
``accel``           float32 ``[N]``                 nominal R asked for
``accel_effective`` float32 ``[N]``                 total lines (or points) / sampled ones
``mask_kind``       str ``[N]``                     random / equispaced / poisson
``volume``          str ``[N]``                     source file stem
``slice``           int32 ``[N]``                   slice index in the source file
``mask_seed``       int64 ``[N]``                   seed of the mask
``qf_mean``, ``qf_center``, ``qf_foreground``  float32 ``[N]``  gray QF score (QF / 100) with that pooling
``apod_sigma``      float32 ``[N]``                 apodization blur in pixels (0: none; ``--augment``)
``snr``             float32 ``[N]``                 SNR after augmentation (40: the simulation's own)
==================  ==============================  ======================================================

and attributes ``method``, ``split``, ``source``, ``accels``, ``masks``, ``slices_per_volume``, ``command``,
the QF weights file's sha256 and, for MoDL, the MoDL weights file's path, sha256 and mtime (so that
``scripts/eval_r.py`` can tell stale MoDL data). Re-runnable per method, e.g. after new MoDL weights::

    python scripts/make_r_dataset.py                         # everything (zf, sense, modl; all splits)
    python scripts/make_r_dataset.py --methods modl          # regenerate only the MoDL part
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mriqa.evaluation.r_estimation import (ACCELS, MASKS, METHODS, SIM_SNR, augment_kspace, file_sha256,
                                           pooled_qf_scores, undersample_at)

REPO = Path(__file__).resolve().parents[1]
SPLITS = {"train": "multicoil_train", "val": "multicoil_val", "test": "multicoil_test"}
# slices per volume (zf / sense); MoDL is ~10x slower on the CPU, so it gets fewer
DEFAULT_SLICES = {"train": 8, "val": 4, "test": 6}
DEFAULT_MODL_SLICES = {"train": 2, "val": 2, "test": 3}
QF_WEIGHTS = REPO / "mriqa/weights/qf-gray.safetensors"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(REPO / "data/sim128"))
    p.add_argument("--out", default=str(REPO / "data/r128"))
    p.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--accels", type=float, nargs="+", default=list(ACCELS))
    p.add_argument("--masks", nargs="+", default=list(MASKS))
    p.add_argument("--slices", type=int, nargs=3, default=None, metavar=("TRAIN", "VAL", "TEST"),
                   help=f"slices per volume for zf/sense (default {tuple(DEFAULT_SLICES.values())})")
    p.add_argument("--modl-slices", type=int, nargs=3, default=None, metavar=("TRAIN", "VAL", "TEST"),
                   help=f"slices per volume for MoDL (default {tuple(DEFAULT_MODL_SLICES.values())})")
    p.add_argument("--modl-weights", default="modl")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calib-width", type=int, default=24)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--augment", nargs="*", default=[], choices=list(SPLITS),
                   help="splits whose k-space gets a random apodization and extra noise per (volume, mask, R)")
    p.add_argument("--rescore", action="store_true",
                   help="only recompute the qf_* scores of existing files with the current gray QF model")
    return p.parse_args(argv)


def qf_scores(predictor, images: np.ndarray) -> dict[str, np.ndarray]:
    """Gray QF / 100 with the three poolings, one forward pass per batch of 32; images ``[N, H, W]`` RSS scale."""
    out = {}
    for a in range(0, len(images), 32):
        pred = predictor.evaluate(images[a:a + 32], pool="mean", kind="mri")
        for p, v in pooled_qf_scores(pred.maps, pred.images[..., 0], pred.geometry).items():
            out.setdefault(p, []).append(v)
    return {p: np.concatenate(v).astype(np.float32) for p, v in out.items()}


def build(split: str, method: str, args, predictor, log=print) -> Path:
    import h5py

    from recon.evaluation import calibration_maps, read_eval_volume
    from recon.files import atomic_path
    from recon.pipeline import reconstruct
    from recon.transforms import mask_seed

    table = dict(zip(SPLITS, args.modl_slices or DEFAULT_MODL_SLICES.values())) if method == "modl" else \
        dict(zip(SPLITS, args.slices or DEFAULT_SLICES.values()))
    k_per_vol = table[split]
    files = sorted((Path(args.data) / SPLITS[split]).glob("*.h5"))
    if not files:
        raise SystemExit(f"no h5 files in {Path(args.data) / SPLITS[split]}; run mriqa make-dataset first")
    rows = {k: [] for k in ("images", "accel", "accel_effective", "mask_kind", "volume", "slice", "mask_seed",
                            "apod_sigma", "snr")}
    augment = split in args.augment
    t0 = time.perf_counter()
    for path in files:
        vol = read_eval_volume(path, k_per_vol)
        slices, kspace = vol.slices, vol.kspace
        noise_std = np.asarray(vol.attrs["noise_std"], np.float64)[slices]  # the attribute is per slice of the file
        sim_snrs = vol.simulated_snrs(SIM_SNR)  # one per slice for a make-dataset --snr-max file
        if augment and not np.allclose(sim_snrs, SIM_SNR):
            raise SystemExit(f"{path}: simulated at SNR {sim_snrs.min():g}-{sim_snrs.max():g}; the augmentation of "
                             f"this script assumes the SNR-{SIM_SNR:g} simulation (mriqa make-dataset --snr 40)")
        maps = calibration_maps(kspace, path, slices, args.calib_width)
        for r in args.accels:
            for kind in args.masks:
                k_in, sigma, snr = kspace, 0.0, sim_snrs
                if augment:
                    rng = np.random.default_rng(mask_seed(args.seed, "r-augment", split, path.name, kind, r))
                    k_in, sigma, snr = augment_kspace(kspace, noise_std, rng)
                seed = mask_seed(args.seed, "r-estimation", split, path.name, kind, r)
                sampled = undersample_at(k_in, kind, r, seed, source=path)
                m = sampled.mask
                img = reconstruct(method, sampled.kspace, m, sens_maps=maps, weights=args.modl_weights)
                n = len(slices)
                rows["apod_sigma"] += [sigma] * n
                rows["snr"] += list(np.broadcast_to(np.asarray(snr, np.float64), (n,)))
                rows["images"].append(img.astype(np.float32))
                rows["accel"] += [r] * n
                rows["accel_effective"] += [m.acceleration_effective] * n
                rows["mask_kind"] += [kind] * n
                rows["volume"] += [path.stem] * n
                rows["slice"] += slices
                rows["mask_seed"] += [seed] * n
            log(f"  {split}/{method} {path.stem} R={r:g}: {time.perf_counter() - t0:.0f} s")
    images = np.concatenate(rows["images"])
    scores = qf_scores(predictor, images)
    out = Path(args.out) / split / f"{method}.h5"
    out.parent.mkdir(parents=True, exist_ok=True)
    str_t = h5py.string_dtype()
    with atomic_path(out, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as hf:
            hf.create_dataset("images", data=images, compression="gzip", compression_opts=1, chunks=(1,) + images.shape[1:])
            hf["accel"] = np.asarray(rows["accel"], np.float32)
            hf["accel_effective"] = np.asarray(rows["accel_effective"], np.float32)
            hf.create_dataset("mask_kind", data=np.asarray(rows["mask_kind"], dtype=object), dtype=str_t)
            hf.create_dataset("volume", data=np.asarray(rows["volume"], dtype=object), dtype=str_t)
            hf["slice"] = np.asarray(rows["slice"], np.int32)
            hf["mask_seed"] = np.asarray(rows["mask_seed"], np.int64)
            hf["apod_sigma"] = np.asarray(rows["apod_sigma"], np.float32)
            hf["snr"] = np.asarray(rows["snr"], np.float32)
            for p, v in scores.items():
                hf[f"qf_{p}"] = v
            hf.attrs.update({
                "method": method, "split": split, "source": str(Path(args.data) / SPLITS[split]),
                "accels": np.asarray(args.accels, np.float32), "masks": ",".join(args.masks),
                "slices_per_volume": k_per_vol, "command": " ".join(sys.argv), "augmented": augment,
                "qf_weights_sha256": file_sha256(QF_WEIGHTS),
                "seconds": time.perf_counter() - t0,
            })
            if method == "modl":
                from recon.modl import resolve_weights

                wpath = resolve_weights(args.modl_weights)
                hf.attrs.update({"modl_weights": str(wpath), "modl_weights_sha256": file_sha256(wpath),
                                 "modl_weights_mtime": os.path.getmtime(wpath)})
    log(f"wrote {out}: {len(images)} images, {time.perf_counter() - t0:.0f} s")
    return out


def rescore(path: Path, predictor, log=print) -> None:
    """Recompute the ``qf_*`` datasets of an existing file with ``predictor`` (after a new gray model ships)."""
    import shutil

    import h5py

    from recon.files import atomic_path

    with h5py.File(path, "r") as hf:
        images = hf["images"][:]
    scores = qf_scores(predictor, images)
    with atomic_path(path, suffix=".h5") as tmp:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+") as hf:
            for p, v in scores.items():
                del hf[f"qf_{p}"]
                hf[f"qf_{p}"] = v
            hf.attrs["qf_weights_sha256"] = file_sha256(QF_WEIGHTS)
    log(f"rescored {path}: {len(images)} images")


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import mriqa

    predictor = mriqa.load_predictor("gray", device="cpu", batch_size=32)
    if args.rescore:
        for split in args.splits:
            for method in args.methods:
                path = Path(args.out) / split / f"{method}.h5"
                if path.is_file():
                    rescore(path, predictor)
        return 0
    if "modl" in args.methods:  # a bad weights name fails here, before any work
        from recon.modl import load_modl

        load_modl(args.modl_weights)
    for method in args.methods:  # cheap methods first
        for split in args.splits:
            build(split, method, args, predictor, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
