"""Issue 20's reference-free signals: does the acceleration the image shows, or cross-validating on the measured
k-space, rank reconstructions better than the recon score alone?

Four reference-free scores of every reconstruction, each against the reference's SSIM
(``mriqa.evaluation.recon_quality.ranking_report``):

- ``image``: the recon model's score of the magnitude alone (``load_predictor("recon")``, ``--pool`` pooling);
- ``image x R``: ``image * r_est ** -power`` (``mriqa.recon_quality.r_aware``: ``r_est`` from the rq acceleration
  estimator, the image alone, the method not given); ``power`` chosen on the validation subjects by the same
  criterion as below (grid ``R_POWERS``; the shipped ``R_AWARE_POWER`` is set from it by hand, and the script says
  when they differ);
- ``kspace``: the k-space check's NMSE estimate (``mriqa.recon_quality.kspace.kspace_check``: 4 folds of
  held-out lines or points, the same maps, the held-out error per radial band; lower is better, ranked as
  ``-nmse``; a slice without a sample outside the centre has no estimate and is ranked last here, while
  ``combined`` falls back to the image score there);
- ``combined``: ``image * (1 + nmse / tau) ** -power`` (``mriqa.recon_quality.kspace.combined_score``); the bands
  of the estimate (``recon.crossval.NMSE_BAND_CHOICES``), ``tau`` and ``power`` chosen on the validation subjects
  (IXI 31-35) as the grid point with the best mean of three acceptance figures there (pooled Spearman with SSIM,
  minus the mean within-method Spearman with R, the method-order agreement). The shipped constants
  (``recon.crossval.NMSE_BANDS``, ``COMBINED_TAU``, ``COMBINED_POWER``) are set from this choice by hand; the
  script says when they differ (mean pooling: the shipped score).

For comparison the table also ranks by each image's PSNR against its reference (full reference, not available to a
user): how far an NMSE-like signal can agree with the SSIM on each set at best.

Sets (built once and cached; every reconstruction with its k-space check, ``kspace_check=True`` of
``mriqa.recon_quality.data``): validation = the axial file of each IXI 31-35 subject of ``--sim``; test = the axial
file of each held-out subject (IXI 36-40, Colin27); the full grid R 2-16 x random / equispaced / Poisson, one
slice per file, as ``scripts/eval_rq.py``'s held-out set; and the real 16-coil k-space (both orientations,
R 2-12, three mask kinds, every method as ``mriqa recon`` runs it). Building them took 9, 11 and 8 minutes
(2026-12-05, on one thread each, two at a time); with the cache the script runs in about a minute (the R estimates).

Usage: ``python scripts/eval_kspace_quality.py [--sim data/sim128-ixi-snr100] [--cache data/rqk]
[--out docs/rq/kspace.md --json docs/rq/kspace.json]``
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TAUS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
POWERS = (0.02, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0)
R_POWERS = (0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.3, 0.5)
AXIAL = (0, 3)  # shard (i, n) of the sorted files: every 3rd from the first, one orientation per subject


def build_sets(args) -> dict[str, dict]:
    from mriqa.recon_quality.data import build_quality_split, read_quality_set, real_kspace_set, write_quality_set

    cache = Path(args.cache)
    sets = {}
    for split in ("val", "test"):
        path = cache / f"{split}.h5"
        if not path.exists():
            build_quality_split(args.sim, split, path, slices=1, shard=AXIAL, kspace_check=True,
                                log=lambda s: print(s, flush=True))
        sets[split] = read_quality_set([path])
    path = cache / "real16.h5"
    if not args.no_real:
        if not path.exists():
            real = real_kspace_set(args.data, kspace_check=True, log=lambda s: print(s, flush=True))
            write_quality_set(path, real, {"source": "real_kspace_set", "data": str(args.data), "kspace_check": True})
        sets["real"] = read_quality_set([path])
    return sets


def image_scores(images: np.ndarray, weights: str, pool: str) -> np.ndarray:
    import mriqa

    predictor = mriqa.load_predictor(weights, device="cpu", batch_size=64)
    return np.concatenate([predictor.score(images[a:a + 64], pool=pool, kind="mri")
                           for a in range(0, len(images), 64)])


def r_estimates(images: np.ndarray) -> np.ndarray:
    """The rq acceleration estimator's R of each image (method not given; ``mriqa.restimate.point_estimates``)."""
    from mriqa.restimate import load_estimator, point_estimates

    estimator = load_estimator("rq")
    return np.concatenate([point_estimates(estimator, images[a:a + 64], kind="mri")
                           for a in range(0, len(images), 64)])


def figures(report: dict) -> dict[str, float]:
    within = report["within_method_srcc_r"]
    return {"pooled": report["pooled_srcc"],
            "per_subject_min": min(report["per_subject_srcc"].values()),
            "within": float(np.mean([w["score_mean"] for w in within.values()])),
            "within_modl": within["modl"]["score_mean"] if "modl" in within else float("nan"),
            "within_share": float(np.mean([w["score_le_-0.9"] for w in within.values()])),
            "order": report["pair_order_agreement"],
            "zf_above_modl": report["zf_above_modl"], "groups": report["zf_modl_groups"]}


def criterion(f: dict) -> float:
    """What tau is chosen by on validation: the mean of pooled Spearman, -within-method Spearman, method order."""
    return (f["pooled"] - f["within"] + f["order"]) / 3


def estimate_table(data: dict, bands: int) -> str:
    """Mean k-space NMSE estimate with one band and with ``bands`` against the mean true NMSE, per method, mask kind
    and R."""
    from recon.crossval import NMSE_BAND_CHOICES

    one, chosen = (data["kspace_bands"][:, NMSE_BAND_CHOICES.index(b)] for b in (1, bands))
    accels = np.unique(data["accel"])
    lines = [f"Mean k-space NMSE estimate, one band / {bands} bands / true NMSE, per R:", "",
             "| method | mask | " + " | ".join(f"R {r:g}" for r in accels) + " |", "|---|---|" + "---:|" * len(accels)]
    for m in ("zf", "sense", "l1", "modl"):
        for kind in ("random", "equispaced", "poisson"):
            cells = []
            for r in accels:
                idx = (data["method"] == m) & (data["mask_kind"] == kind) & (data["accel"] == r)
                cells.append(f"{np.nanmean(one[idx]):.4f} / {np.nanmean(chosen[idx]):.4f} / "
                             f"{data['nmse'][idx].mean():.4f}" if idx.any() else "—")
            lines.append(f"| {m} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import torch

    from mriqa.evaluation.recon_quality import format_report, ranking_report
    from mriqa.recon_quality.kspace import COMBINED_POWER, COMBINED_TAU, combined_score
    from mriqa.recon_quality.r_aware import R_AWARE_POWER, r_aware_score
    from recon.crossval import NMSE_BAND_CHOICES, NMSE_BANDS
    from recon.files import atomic_path
    from recon.training.checkpoints import write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sim", default=str(REPO / "data/sim128-ixi-snr100"),
                   help="simulated multi-coil volumes split by subject (mriqa make-dataset --splits ixi)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="shared data root (real k-space)")
    p.add_argument("--cache", default=str(REPO / "data/rqk"), help="where the sets are cached")
    p.add_argument("--weights", default="recon")
    p.add_argument("--pool", default="mean", choices=["mean", "foreground"],
                   help="pooling of the recon model's map (mriqa.pooling; default mean, the model's score)")
    p.add_argument("--no-real", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="also write the printed text here (markdown)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    sets = build_sets(args)
    for name, d in sets.items():
        if d.get("kspace_bands") is None or d["kspace_bands"].shape[-1] != len(NMSE_BAND_CHOICES):
            raise SystemExit(f"{args.cache}: the {name} set has no estimate per band choice {NMSE_BAND_CHOICES} "
                             "(made before the bands): delete it to rebuild")
    reports: dict[str, dict] = {}
    scores = {name: image_scores(d["images"], args.weights, args.pool) for name, d in sets.items()}
    r_est = {name: r_estimates(d["images"]) for name, d in sets.items()}
    val = sets["val"]
    r_choice = {q: criterion(figures(ranking_report(val, r_aware_score(scores["val"], r_est["val"], q))))
                for q in R_POWERS}
    r_power = max(r_choice, key=r_choice.get)
    choice = {(bands, tau, power): criterion(figures(ranking_report(val, combined_score(
        scores["val"], val["kspace_bands"][:, i], tau, power))))
        for i, bands in enumerate(NMSE_BAND_CHOICES) for tau in TAUS for power in POWERS}
    bands, tau, power = max(choice, key=choice.get)
    for d in sets.values():
        d["kspace_nmse"] = d["kspace_bands"][:, NMSE_BAND_CHOICES.index(bands)]
    best = {b: max(v for k, v in choice.items() if k[0] == b) for b in NMSE_BAND_CHOICES}
    lines = [f"bands, tau, power chosen on the validation subjects (IXI 31-35, {len(val['images'])} reconstructions): "
             f"{bands}, {tau:g}, {power:g}; the best criterion per number of bands: " + ", ".join(
                 f"{b}: {c:.3f}" for b, c in best.items()) + f"; with {bands} bands, per tau / power: " + ", ".join(
                 f"{t:g}/{q:g}: {c:.3f}" for (b, t, q), c in choice.items() if b == bands) + "\n"]
    lines.append(f"image x R: power chosen on the validation subjects: {r_power:g}; per power: " + ", ".join(
        f"{q:g}: {c:.3f}" for q, c in r_choice.items()) + "\n")
    if args.pool == "mean" and (bands, tau, power) != (NMSE_BANDS, COMBINED_TAU, COMBINED_POWER):
        lines.append(f"NOTE: the shipped constants are bands {NMSE_BANDS}, tau {COMBINED_TAU:g}, power "
                     f"{COMBINED_POWER:g}: set them to the choice above\n")
    if args.pool == "mean" and r_power != R_AWARE_POWER:
        lines.append(f"NOTE: the shipped R_AWARE_POWER is {R_AWARE_POWER:g}: set it to the choice above\n")
    names = {"val": "validation subjects (IXI 31-35; tau chosen here)",
             "test": "held-out subjects (IXI 36-40, Colin27)", "real": "real 16-coil k-space"}
    header = ("| set | score | pooled Spearman(score, SSIM) | min per subject | mean within-method Spearman(score, R) "
              "| MoDL's | share <= -0.9 | method order | zero-filled above MoDL |\n"
              "|---|---|---:|---:|---:|---:|---:|---:|---:|")
    table = [header]
    for name, d in sets.items():
        nmse = d["kspace_nmse"]
        worst = np.where(np.isfinite(nmse), nmse, np.nanmax(nmse))  # no outer line to hold out: ranked last
        variants = {"image": scores[name], "image x R": r_aware_score(scores[name], r_est[name], r_power),
                    "kspace": -worst,
                    "combined": combined_score(scores[name], d["kspace_nmse"], tau, power),
                    "PSNR (full reference)": d["psnr"]}
        reports[name] = {}
        for label, s in variants.items():
            report = ranking_report(d, s)
            f = figures(report)
            reports[name][label] = f
            table.append(f"| {names[name].split(' (')[0]} | {label} | {f['pooled']:.3f} | {f['per_subject_min']:.3f} | "
                         f"{f['within']:.3f} | {f['within_modl']:.3f} | {f['within_share']:.2f} | {f['order']:.3f} | "
                         f"{f['zf_above_modl']} of {f['groups']} |")
            if label in ("image x R", "combined") and name != "val":
                if label == "image x R":
                    lines.append(format_report(f"{names[name]}: image x R (power {r_power:g})", report))
                    continue
                lines.append(format_report(f"{names[name]}: combined score (bands {bands}, tau {tau:g}, power "
                                           f"{power:g})", report))
                lines.append(estimate_table(d, bands))
    runners_up = sorted(choice, key=choice.get, reverse=True)[:10]
    for name, d in sets.items():  # how much the method order hangs on the exact choice
        if name == "val":
            continue
        orders = [ranking_report(d, combined_score(scores[name], d["kspace_bands"][:, NMSE_BAND_CHOICES.index(b)], t,
                                                   q))["pair_order_agreement"] for b, t, q in runners_up]
        lines.append(f"{names[name]}: combined score's method order under the 10 best validation choices of bands / "
                     f"tau / power: {min(orders):.3f}-{max(orders):.3f} ({sum(o >= 0.9 for o in orders)} of 10 >= "
                     "0.900)\n")
    lines.insert(1, "\n".join(table) + "\n")
    text = "\n".join(lines)
    print(text)
    if args.out:
        command = " ".join(argv if argv is not None else sys.argv[1:])
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(f"Printed by `python scripts/eval_kspace_quality.py {command}`.\n\n{text}\n")
    if args.json:
        write_json({"bands": bands, "tau": tau, "power": power, "pool": args.pool, "r_power": r_power,
                    "r_criterion": {f"{q:g}": v for q, v in r_choice.items()},
                    "criterion": {f"{b}/{t:g}/{q:g}": v for (b, t, q), v in choice.items()}, "sets": reports},
                   Path(args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
