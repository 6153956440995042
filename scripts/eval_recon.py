"""Evaluate MoDL against the classical baselines on held-out simulated volumes (never seen in training).

For every test volume (default: ``data/sim128/multicoil_test``, the Colin27 brain in three orientations;
MoDL trained on the 3T MPRAGE and was validated on MNI152), every R in ``--accels`` and every mask kind in
``--masks`` (one fixed mask per volume, fastMRI's centre fractions ``0.32 / R``):

- zero-filled RSS, CG-SENSE (``recon.baselines.cg_sense``, its defaults), L1-wavelet (sigpy,
  ``recon.baselines.l1_wavelet``, its defaults) and MoDL (``recon.modl``, shipped weights by default);
- the same coil maps for every method: ESPIRiT from the central 24 x 24 of the fully sampled k-space (a
  calibration scan; at 128 columns fastMRI's centre fractions leave only 5-10 ACS lines at R = 4-8);
- NMSE, PSNR, SSIM with fastMRI's conventions (``recon.metrics``: per volume, data range = the volume max,
  the file's ``max`` attribute), averaged over the volumes.

Prints a markdown table (and writes it to ``docs/recon/modl_eval.md``), draws the four reconstructions of one
slice and their error maps (``docs/recon/modl_eval.png``), and reconstructs the real smallfov k-space
(``../shared/data/mri/kspace/smallfov-brain8ch/smallfov``: already undersampled, no reference) with
zero-filled, CG-SENSE and MoDL (``docs/recon/modl_smallfov.png``).

Volumes and maps: :mod:`recon.evaluation`. Regenerates ``docs/recon/modl_eval.md`` / ``.json`` / ``.png`` and
``docs/recon/modl_smallfov.png``::

    python scripts/eval_recon.py                      # all slices of the test split
    python scripts/eval_recon.py --max-slices 12      # an evenly spaced subset per volume (faster)
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # tiny ESPIRiT SVDs: BLAS threads only add contention

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recon.evaluation import calibration_maps, coil_support, per_subject_mean, read_eval_volume

REPO = Path(__file__).resolve().parents[1]

METHODS = ("zf", "sense", "l1", "modl")
ENSEMBLE = "modl-x8"  # --self-ensemble: MoDL with its denoiser averaged over the 8 flips and transposes
ADAPTED = "modl-zs"  # --adapt: MoDL fine-tuned on each slice's own measurements first (ZS-SSL)
LABELS = {"zf": "zero-filled", "sense": "CG-SENSE", "l1": "L1-wavelet", "modl": "MoDL", ENSEMBLE: "MoDL self-ensemble",
          ADAPTED: "MoDL adapted (ZS-SSL)"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(REPO / "data/sim128"), help="dataset folder (mriqa make-dataset --out)")
    p.add_argument("--split", default="multicoil_test")
    p.add_argument("--weights", default="modl", help="MoDL weights: shipped name or file")
    p.add_argument("--accels", type=float, nargs="+", default=[4.0, 6.0, 8.0])
    p.add_argument("--masks", nargs="+", default=["random", "equispaced"])
    p.add_argument("--max-slices", type=int, default=None, help="evenly spaced slices per volume (default all)")
    p.add_argument("--seed", type=int, default=0, help="mask seed base (masks: one per volume)")
    p.add_argument("--calib-width", type=int, default=24)
    p.add_argument("--figure-accel", type=float, default=6.0)
    p.add_argument("--figure-mask", default="random")
    p.add_argument("--out-dir", default=str(REPO / "docs/recon"))
    p.add_argument("--smallfov", default=str(REPO.parent / "shared/data/mri/kspace/smallfov-brain8ch/smallfov"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--maps", choices=["calibration", "pipeline"], default="calibration",
                   help="calibration: one set of maps from the central 24 x 24 of the fully sampled k-space for "
                   "every method, fastMRI's centre 0.32 / R; pipeline: every method as mriqa recon runs it "
                   "(recon.pipeline.run_method: calibrate_maps on the undersampled data + the collapse guard), "
                   "centre recon.masks.center_fraction_for(R, W)")
    p.add_argument("--self-ensemble", action="store_true",
                   help=f"add {ENSEMBLE}: MoDL with its denoiser averaged over the 8 flips and transposes")
    p.add_argument("--adapt", type=int, nargs="?", const=300, default=0, metavar="STEPS",
                   help=f"add {ADAPTED}: MoDL fine-tuned on each slice's own measurements first (mriqa recon --adapt; "
                        "about 2 minutes a slice)")
    p.add_argument("--adapt-lr", type=float, default=None, metavar="LR",
                   help="the adaptation's learning rate (mriqa recon --adapt-lr; default 5e-4)")
    return p.parse_args(argv)


def run_methods(model, kspace, mask, maps, weights: str | None = None, methods=METHODS, adapt_steps: int = 300,
                adapt_lr: float | None = None):
    """``({method: magnitude [S, H, W]}, {method: seconds per slice})`` for fully sampled ``kspace`` under
    ``mask``, every method of ``methods`` (:data:`METHODS`, optionally :data:`ENSEMBLE`, :data:`ADAPTED` with
    ``adapt_steps`` at ``adapt_lr``) with the same coil
    ``maps``; ``maps=None``: every method through ``recon.pipeline.run_method`` (its own calibration and the
    collapse guard; MoDL weights ``weights``)."""
    from recon import baselines
    from recon.modl import modl_reconstruct
    from recon.pipeline import run_method

    masked = kspace * mask.numpy()
    out, secs = {}, {}
    calibrated = None
    if maps is None:  # calibrated once on the undersampled data, tried first by every method's guard
        from recon.pipeline import estimate_maps

        calibrated = estimate_maps(masked, mask, cache_dir=False)
    for method in methods:
        t0 = time.perf_counter()
        ensemble = method == ENSEMBLE
        adapt = adapt_steps if method == ADAPTED else 0
        lr = adapt_lr if method == ADAPTED else None
        if maps is None:
            out[method] = run_method("modl" if method in (ENSEMBLE, ADAPTED) else method, masked, mask,
                                     sens_maps=calibrated, weights=weights, self_ensemble=ensemble,
                                     adapt_steps=adapt, adapt_lr=lr).image
        elif method == "zf":
            out[method] = baselines.zero_filled(masked, mask)
        elif method == "sense":
            out[method] = baselines.cg_sense(masked, mask, maps)
        elif method == "l1":
            out[method] = baselines.l1_wavelet(masked, mask, maps)
        else:
            out[method] = modl_reconstruct(model, masked, mask, sens_maps=maps, batch_size=4, self_ensemble=ensemble,
                                           adapt_steps=adapt, adapt_lr=lr)
        secs[method] = (time.perf_counter() - t0) / kspace.shape[0]
    return out, secs


def figure(path: Path, target, recons: dict, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon.files import atomic_path
    from recon.metrics import psnr, ssim

    vmax = float(np.percentile(target, 99.5))
    fig, axes = plt.subplots(2, 5, figsize=(15, 6.4))
    axes[0, 0].imshow(target, cmap="gray", vmin=0, vmax=vmax)
    axes[0, 0].set_title("reference (RSS, fully sampled)")
    axes[1, 0].axis("off")
    err_max = 0.25 * vmax
    for j, method in enumerate(METHODS, start=1):
        img = recons[method]
        axes[0, j].imshow(img, cmap="gray", vmin=0, vmax=vmax)
        axes[0, j].set_title(f"{LABELS[method]}\nPSNR {psnr(target, img, target.max()):.2f} dB, "
                             f"SSIM {ssim(target, img, target.max()):.3f}", fontsize=9)
        axes[1, j].imshow(np.abs(img - target), cmap="magma", vmin=0, vmax=err_max)
        axes[1, j].set_title(f"|error| (0 to {err_max:.2g})", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def smallfov_figure(model, base: str, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon import baselines
    from recon.files import atomic_path
    from recon.modl import modl_reconstruct
    from recon.pipeline import estimate_maps, load_kspace, undersample

    volume = load_kspace(base)
    sampled = undersample(volume, None)  # already undersampled: zeros are the unsampled lines
    mask = sampled.mask
    t0 = time.perf_counter()
    maps1 = estimate_maps(sampled.kspace, mask, volume.path, num_maps=1)
    maps2 = estimate_maps(sampled.kspace, mask, volume.path, num_maps=2)
    t_maps = time.perf_counter() - t0
    zf = baselines.zero_filled(sampled.kspace, mask.mask)
    sense2 = baselines.cg_sense(sampled.kspace, mask.mask, maps2)
    modl1 = modl_reconstruct(model, sampled.kspace, mask.mask, sens_maps=maps1)
    t0 = time.perf_counter()
    modl2 = modl_reconstruct(model, sampled.kspace, mask.mask, sens_maps=maps2)
    t_modl = time.perf_counter() - t0
    images = [(zf[0], "zero-filled RSS"), (sense2[0], "CG-SENSE, 2 ESPIRiT map sets"),
              (modl1[0], "MoDL, 1 map set"), (modl2[0], "MoDL, 2 map sets\n(soft SENSE)")]
    fig, axes = plt.subplots(1, 4, figsize=(13, 6.4))
    for ax, (img, name) in zip(axes, images):
        ax.imshow(img, cmap="gray", vmin=0, vmax=float(np.percentile(img, 99.5)))
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Real smallfov k-space, {volume.kspace.shape[1]} coils, {volume.kspace.shape[2]}x"
                 f"{volume.kspace.shape[3]}, R = {mask.acceleration_effective:.2f} (as acquired), no reference;\n"
                 f"the field of view folds over: one map set leaves a ghost that two sets resolve. MoDL: shipped "
                 f"weights (trained on simulated 128x128 data)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return (f"smallfov: {volume.kspace.shape}, R_eff = {mask.acceleration_effective:.2f}, "
            f"ACS {mask.num_low_frequencies} lines; ESPIRiT {t_maps:.1f} s, MoDL (2 sets) {t_modl:.1f} s -> {out}")


def per_subject_margins(rows: dict, volumes: list[str], accels, masks) -> list[str]:
    """Markdown rows: for each R and mask, MoDL's whole-image PSNR minus L1-wavelet's per subject
    (:func:`recon.evaluation.per_subject_mean`; ``volumes``: file stems in the order of ``rows``' lists)."""
    table = {}
    for r in accels:
        for kind in masks:
            diff = [a["PSNR"] - b["PSNR"] for a, b in zip(rows[(r, kind, "modl")], rows[(r, kind, "l1")])]
            table[(r, kind)] = per_subject_mean(diff, volumes)
    names = list(next(iter(table.values())))
    out = ["| R | mask | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    out += [f"| {r:g} | {kind} | " + " | ".join(f"{v:+.2f}" for v in means.values()) + " |"
            for (r, kind), means in table.items()]
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from recon.masks import center_fraction_for, make_mask
    from recon.metrics import evaluate_volume, support_metrics
    from recon.modl import load_modl, weights_metadata
    from recon.transforms import mask_seed

    model = load_modl(args.weights)
    meta = weights_metadata(args.weights)
    files = sorted((Path(args.data) / args.split).glob("*.h5"))
    if not files:
        print(f"no h5 files in {Path(args.data) / args.split}; run mriqa make-dataset first", file=sys.stderr)
        return 2
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[tuple[float, str, str], list[dict]] = {}
    methods = METHODS + ((ENSEMBLE,) if args.self_ensemble else ()) + ((ADAPTED,) if args.adapt else ())
    times: dict[str, list[float]] = {m: [] for m in methods}
    fig_done = False
    t_start = time.perf_counter()
    n_slices = 0
    for path in files:
        vol = read_eval_volume(path, args.max_slices)
        slices, kspace, target, maxval = vol.slices, vol.kspace, vol.target, vol.maxval
        n_slices += len(slices)
        maps = calibration_maps(kspace, path, slices, args.calib_width)
        support = coil_support(maps)  # where the ESPIRiT maps are non-zero (crop 0.95)
        for r in args.accels:
            for kind in args.masks:
                centre = center_fraction_for(r, kspace.shape[-1]) if args.maps == "pipeline" else None
                mask = make_mask(kind, kspace.shape[-2:], r, center_fraction=centre,
                                 seed=mask_seed(args.seed, path.name)).mask
                recons, secs = run_methods(model, kspace, mask, maps if args.maps == "calibration" else None,
                                           args.weights, methods, args.adapt, args.adapt_lr if args.adapt else None)
                for method, img in recons.items():
                    scores = evaluate_volume(target, img, maxval)
                    scores.update(support_metrics(target, img, support, maxval))
                    rows.setdefault((r, kind, method), []).append(scores)
                    times[method].append(secs[method])
                if not fig_done and r == args.figure_accel and kind == args.figure_mask:
                    mid = len(slices) // 2
                    figure(out_dir / "modl_eval.png", target[mid], {m: recons[m][mid] for m in METHODS},
                           f"{path.stem} slice {slices[mid]}, R = {r:g} ({kind} mask), {kspace.shape[1]} coils, "
                           f"{kspace.shape[-2]}x{kspace.shape[-1]}; held-out volume; maps: {args.maps}")
                    fig_done = True
                msg = " ".join(f"{m}={evaluate_volume(target, recons[m], maxval)['PSNR']:.2f}" for m in methods)
                print(f"  {path.name} R={r:g} {kind}: PSNR {msg}", file=sys.stderr, flush=True)

    lines = [f"Held-out simulated volumes: {len(files)} ({', '.join(p.stem for p in files)}), {n_slices} slices "
             f"in all; mean over volumes of the per-volume metric (fastMRI conventions). MoDL weights: "
             f"`{args.weights}` ({meta.get('extra', {}).get('name', '?')}, K = {model.num_unrolls}). Coil maps: "
             f"{args.maps} (`python scripts/eval_recon.py --maps {args.maps}`).", "",
             "| R | mask | method | PSNR (dB) | SSIM | NMSE | PSNR in support (dB) | NMSE in support |",
             "|---|---|---|---|---|---|---|---|"]
    for r in args.accels:
        for kind in args.masks:
            for method in methods:
                vals = rows[(r, kind, method)]
                mean = {k: float(np.mean([v[k] for v in vals])) for k in ("PSNR", "SSIM", "NMSE", "PSNR_in",
                                                                          "NMSE_in")}
                lines.append(f"| {r:g} | {kind} | {LABELS[method]} | {mean['PSNR']:.2f} | {mean['SSIM']:.4f} | "
                             f"{mean['NMSE']:.4f} | {mean['PSNR_in']:.2f} | {mean['NMSE_in']:.4f} |")
    lines += ["", "PSNR / NMSE / SSIM: whole image, fastMRI's conventions (the reference is the RSS of the noisy "
              "fully sampled k-space, which holds a noise floor outside the head). In support: only the pixels "
              "where the ESPIRiT maps (crop 0.95) are non-zero; CG-SENSE and L1-wavelet return 0 outside it, "
              "MoDL estimates it (``fill_background``)."]
    lines += ["", f"Seconds per slice (CPU, {args.threads} thread(s)): " + ", ".join(
        f"{LABELS[m]} {np.mean(times[m]):.3f}" for m in methods)]
    lines += ["", "MoDL - L1-wavelet per subject (whole-image PSNR, mean over the subject's volumes; a volume is one "
              "orientation, `<subject>_<orientation>.h5`):", ""]
    lines += per_subject_margins(rows, [p.stem for p in files], args.accels, args.masks)
    table = "\n".join(lines)
    print(table)
    # the acceptance numbers: MoDL vs L1-wavelet and CG-SENSE at R = 6
    summary = {}
    for kind in args.masks:
        if (6.0, kind, "modl") in rows:
            p = {m: float(np.mean([v["PSNR"] for v in rows[(6.0, kind, m)]])) for m in methods}
            q = {m: float(np.mean([v["PSNR_in"] for v in rows[(6.0, kind, m)]])) for m in methods}
            summary[kind] = {"modl_minus_l1_db": p["modl"] - p["l1"], "modl_minus_sense_db": p["modl"] - p["sense"],
                             "in_support_modl_minus_l1_db": q["modl"] - q["l1"],
                             "in_support_modl_minus_sense_db": q["modl"] - q["sense"]}
            print(f"R = 6, {kind}: MoDL - L1-wavelet = {p['modl'] - p['l1']:+.2f} dB, "
                  f"MoDL - CG-SENSE = {p['modl'] - p['sense']:+.2f} dB (whole image); in support: "
                  f"{q['modl'] - q['l1']:+.2f} dB, {q['modl'] - q['sense']:+.2f} dB")
    from recon.files import atomic_path

    with atomic_path(out_dir / "modl_eval.md") as tmp:
        tmp.write_text(table + "\n")
    with atomic_path(out_dir / "modl_eval.json") as tmp:
        tmp.write_text(json.dumps({"rows": {f"{r:g}/{k}/{m}": v for (r, k, m), v in rows.items()},
                                   "r6": summary}, indent=1))
    print(f"figure: {out_dir / 'modl_eval.png'}; total {time.perf_counter() - t_start:.0f} s")
    if args.smallfov and Path(args.smallfov + ".cfl").is_file():
        print(smallfov_figure(model, args.smallfov, out_dir / "modl_smallfov.png"))
    else:
        print(f"smallfov k-space not found at {args.smallfov}: skipped its picture")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
