"""Reconstruction on real k-space, with coil calibration that fits the data and the collapse guard.

The real fully sampled 16-coil brain slice ``<data>/mri/kspace/sense-tutorial-brain16ch/raw_data.mat``
(96 x 96; see its PROVENANCE.md) is undersampled retrospectively with random and equispaced line masks at
R = 2, 3, 4, 6, 8, 10, 12 and the default centre fraction with the calibration minimum
(``recon.masks.center_fraction_for(R, W)``, the default of ``mriqa recon``), in both orientations (which axis is the
phase encode is not documented: ``as-stored`` masks the file's last axis, ``transposed`` its first in-plane
axis). Per row: zero-filled, CG-SENSE (``recon.baselines.cg_sense``), L1-wavelet (``recon.baselines.l1_wavelet``)
and MoDL (shipped weights), each as ``mriqa recon`` runs it: ``recon.pipeline.run_method`` (maps of
``recon.calibration.calibrate_maps``, under the collapse guard ``recon.guard.guarded``); PSNR (dB) against the RSS of the
full data over the whole image and inside the object (``recon.metrics.object_mask``), the ACS width, the
calibration used, the nominal and effective R, and whether CG-SENSE beats zero-filled by >= 1 dB.

``--small-fov`` adds the second real scan, BART's small-FOV 8-coil brain, undersampled further as ``mriqa recon
--accel R`` does (:func:`run_small_fov`; it has no fully sampled reference: scored against CG-SENSE of every acquired
line with two map sets). ``--self-ensemble`` adds a column ``modl-x8``: MoDL with its denoiser averaged over the
8 flips and transposes (``mriqa recon --self-ensemble``), with its own counts. ``--adapt [STEPS]`` adds a column
``modl-zs``: MoDL fine-tuned on each row's own measurements first (``mriqa recon --adapt``, ZS-SSL,
``recon.modl.adapt``; about 2 minutes a row; ``--adapt-lr``: its learning rate), with its counts and the step each
row kept. ``--accels`` picks the R.

Usage: ``python scripts/real_kspace_check.py [--data ../shared/data] [--orientation both] [--no-modl]
[--calibration auto [select refined full ...]] [--small-fov] [--self-ensemble] [--adapt [STEPS]] [--adapt-lr LR]
[--accels R ...]``
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ACCELERATIONS = (2, 3, 4, 6, 8, 10, 12)
TARGET_DB = 1.0


ENSEMBLE = "modl-x8"  # MoDL with its denoiser averaged over the 8 flips and transposes (self_ensemble)
ADAPTED = "modl-zs"  # MoDL fine-tuned on the row's own measurements first (adapt_steps, ZS-SSL)
LABELS = {"modl": "MoDL", ENSEMBLE: "MoDL self-ensemble", ADAPTED: "MoDL adapted (ZS-SSL)"}


def _methods(with_modl: bool, self_ensemble: bool = False, adapt: bool = False) -> tuple[str, ...]:
    if not with_modl:
        return ("sense", "l1")
    return ("sense", "l1", "modl") + ((ENSEMBLE,) if self_ensemble else ()) + ((ADAPTED,) if adapt else ())


def run(data_root: Path, orientations, with_modl: bool, seed: int = 0, masks=("random", "equispaced"),
        modl_weights: str | None = None, calibration: str = "auto", self_ensemble: bool = False,
        accels=ACCELERATIONS, adapt_steps: int = 0, adapt_lr: float | None = None) -> list[dict]:
    from recon.errors import InputError
    from recon.fft import ifft2c_np
    from recon.io.sense_tutorial import SENSE_TUTORIAL, read_sense_tutorial
    from recon.masks import center_fraction_for, make_mask
    from recon.metrics import object_mask, psnr, support_metrics

    stored = read_sense_tutorial(data_root / SENSE_TUTORIAL)
    methods = _methods(with_modl, self_ensemble, adapt_steps > 0)
    rows = []
    for orientation in orientations:
        full = stored if orientation == "as-stored" else np.ascontiguousarray(stored.transpose(0, 2, 1))
        full = full[None]  # [1, C, H, W]
        oracle = None
        if calibration == "full":  # a bound, not a method: ESPIRiT maps of the fully sampled data, given to each
            from recon.coils import espirit_maps

            oracle = espirit_maps(full[0].astype(np.complex64))[None]
        rss = np.sqrt(np.sum(np.abs(ifft2c_np(full)) ** 2, axis=1))
        inside = object_mask(rss)
        peak = float(rss.max())

        def score(image):
            return psnr(rss, image), support_metrics(rss, image, inside, peak)["PSNR_in"]

        for kind in masks:
            for accel in accels:
                cf = center_fraction_for(accel, full.shape[-1])
                try:
                    mask = make_mask(kind, full.shape[-2:], accel, center_fraction=cf, seed=seed)
                except InputError as exc:  # sigpy's Poisson-disk sampler cannot reach every R on 96 x 96
                    print(f"{orientation:11s} {kind:10s} {accel:3d}  no mask: {exc}", flush=True)
                    continue
                kspace = full * mask.mask.numpy()
                row = {"orientation": orientation, "mask": kind, "R": accel, "R_eff": mask.acceleration_effective,
                       "acs": mask.num_low_frequencies}
                row.update(_reconstruct(kspace, mask, score, methods, modl_weights, oracle, calibration, adapt_steps,
                                        adapt_lr))
                rows.append(row)
                print(_format(row, methods), flush=True)
    return rows


def _reconstruct(kspace, mask, score, methods, modl_weights=None, oracle=None, calibration="auto",
                 adapt_steps: int = 0, adapt_lr: float | None = None) -> dict:
    """One table row's figures: ``score(image)`` of zero-filled and of every method as ``mriqa recon`` runs it
    (``recon.pipeline.run_method``; :data:`ENSEMBLE`: MoDL with ``self_ensemble``; :data:`ADAPTED`: with
    ``adapt_steps`` at ``adapt_lr``, the kept step or the reason it was not adapted among the notes), the
    calibration, the guard's attempt when not the first, the seconds."""
    from recon.baselines import zero_filled
    from recon.errors import InputError
    from recon.pipeline import run_method

    row = {"zf": score(zero_filled(kspace, mask.mask))}
    for name in methods:
        start = time.perf_counter()
        try:
            result = run_method("modl" if name in (ENSEMBLE, ADAPTED) else name, kspace, mask, weights=modl_weights,
                                sens_maps=oracle, calibration="auto" if oracle is not None else calibration,
                                self_ensemble=name == ENSEMBLE, adapt_steps=adapt_steps if name == ADAPTED else 0,
                                adapt_lr=adapt_lr if name == ADAPTED else None)
            report, info = result.guard[0], result.calibration[0]
            row[name] = score(result.image)
            row[name + "_attempt"] = report.attempt
            row.setdefault("calib", info.short() if info is not None else "given")
            if report.attempt != "calibrated":
                row.setdefault("notes", []).append(f"{name}: {report.attempt}")
            if result.adapt:
                done = result.adapt[0]
                row.setdefault("notes", []).append(f"{name}: " + (done.short() if done.skipped else
                                                                  f"step {done.best_step} kept"))
        except InputError as exc:
            row[name] = (float("nan"), float("nan"))
            row.setdefault("notes", []).append(f"{name}: {exc}")
        row[name + "_s"] = time.perf_counter() - start
    return row


def run_small_fov(data_root: Path, with_modl: bool, seed: int = 0, masks=("random", "equispaced"),
                  modl_weights: str | None = None, calibration: str = "auto", accels=ACCELERATIONS,
                  self_ensemble: bool = False) -> list[dict]:
    """The second real scan, BART's small-FOV 8-coil brain (``mriqa.recon_quality.data.SMALLFOV``: 96 of 168 lines
    acquired, its field of view smaller than the head), undersampled further as ``mriqa recon --accel R --mask
    KIND`` does (the mask keeps only acquired lines; ``R_eff`` counts all 168). It has no fully sampled reference:
    the scores are against CG-SENSE with two map sets of every acquired line (a proxy, stated in the header)."""
    from mriqa.recon_quality.data import SMALLFOV
    from recon.metrics import object_mask, psnr, support_metrics
    from recon.pipeline import load_kspace, run_method, undersample

    volume = load_kspace(data_root / SMALLFOV)
    acquired = undersample(volume)  # the lines as acquired
    reference = run_method("sense", acquired.kspace, acquired.mask, num_maps=2).image
    inside, peak = object_mask(reference), float(reference.max())

    def score(image):
        return psnr(reference, image), support_metrics(reference, image, inside, peak)["PSNR_in"]

    methods = _methods(with_modl, self_ensemble)
    rows = []
    for kind in masks:
        for accel in accels:
            sampled = undersample(volume, accel, kind, None, seed)
            row = {"orientation": "acquired", "mask": kind, "R": accel, "R_eff": sampled.mask.acceleration_effective,
                   "acs": sampled.mask.num_low_frequencies}
            row.update(_reconstruct(sampled.kspace, sampled.mask, score, methods, modl_weights, None, calibration))
            rows.append(row)
            print(_format(row, methods), flush=True)
    return rows


def _header(methods) -> str:
    cols = "".join(f" {name:>11s}" for name in ("zf", *methods))
    return f"{'orientation':11s} {'mask':10s} {'R':>3s} {'R_eff':>5s} {'acs':>3s} {'calibration':26s}{cols}  sense-zf"


def _format(row, methods) -> str:
    cells = "".join(f" {row[name][0]:5.1f}/{row[name][1]:5.1f}" for name in ("zf", *methods))
    gain = row["sense"][0] - row["zf"][0]
    flag = "ok" if gain >= TARGET_DB else "BELOW TARGET"
    notes = "  " + "; ".join(row["notes"]) if row.get("notes") else ""
    return (f"{row['orientation']:11s} {row['mask']:10s} {row['R']:3d} {row['R_eff']:5.2f} {row['acs']:3d} "
            f"{row.get('calib', '-'):26s}{cells}  {gain:+5.1f} {flag}{notes}")


def _counts(rows, methods) -> str:
    """The acceptance counts of issue 19 over ``rows`` (whole-image PSNR)."""
    below = [r for r in rows if not r["sense"][0] - r["zf"][0] >= TARGET_DB]
    text = f"CG-SENSE >= zero-filled + {TARGET_DB:g} dB in {len(rows) - len(below)} of {len(rows)} rows"
    for name, label in LABELS.items():
        if name in methods:
            above_sense = sum(r[name][0] >= r["sense"][0] for r in rows)
            mid = [r for r in rows if 4 <= r["R"] <= 8]
            above_l1 = sum(r[name][0] >= r["l1"][0] + TARGET_DB for r in mid)
            text += (f"\n{label} >= CG-SENSE in {above_sense} of {len(rows)} rows; {label} >= L1-wavelet + "
                     f"{TARGET_DB:g} dB at R = 4..8 in {above_l1} of {len(mid)} (whole-image PSNR)")
    return text


def _compare(base, other, base_name: str, other_name: str, methods) -> str:
    """Per method, the whole-image PSNR of ``other`` minus ``base`` over the rows both have: mean, range, and rows
    worse / better by more than 0.3 dB; CG-SENSE per mask kind too."""
    key = lambda r: (r["orientation"], r["mask"], r["R"])  # noqa: E731
    pairs = [(b, o) for b in base for o in other if key(b) == key(o)]
    lines = [f"calibration {other_name} against {base_name}, whole-image PSNR difference over {len(pairs)} rows:"]
    for name in methods:
        d = np.array([o[name][0] - b[name][0] for b, o in pairs])
        lines.append(f"  {name:6s} mean {d.mean():+.2f} dB, {d.min():+.2f} to {d.max():+.2f}; worse by > 0.3 dB in "
                     f"{int((d < -0.3).sum())}, better by > 0.3 dB in {int((d > 0.3).sum())}")
    kinds = sorted({b["mask"] for b, _ in pairs})
    lines.append("  sense per mask: " + ", ".join(
        f"{k} {np.mean([o['sense'][0] - b['sense'][0] for b, o in pairs if b['mask'] == k]):+.2f}" for k in kinds))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data",
                        help="the shared data root (default ../shared/data beside the checkout)")
    parser.add_argument("--orientation", choices=("both", "as-stored", "transposed"), default="both")
    parser.add_argument("--no-modl", action="store_true", help="leave out the MoDL column")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--masks", nargs="+", default=["random", "equispaced"],
                        choices=["random", "equispaced", "poisson"], help="mask kinds (default random equispaced)")
    parser.add_argument("--modl-weights", default=None, help="MoDL weights: shipped name or file (default modl)")
    parser.add_argument("--self-ensemble", action="store_true",
                        help=f"add the column {ENSEMBLE}: MoDL with its denoiser averaged over the 8 flips and "
                             "transposes (mriqa recon --self-ensemble)")
    parser.add_argument("--adapt", type=int, nargs="?", const=300, default=0, metavar="STEPS",
                        help=f"add the column {ADAPTED}: MoDL fine-tuned on each row's own measurements first "
                             "(mriqa recon --adapt, ZS-SSL; default 300 steps, about 2 minutes a row)")
    parser.add_argument("--adapt-lr", type=float, default=None, metavar="LR",
                        help="the adaptation's learning rate (mriqa recon --adapt-lr; default 5e-4)")
    parser.add_argument("--accels", type=int, nargs="+", default=list(ACCELERATIONS), help="the R of the rows")
    parser.add_argument("--small-fov", action="store_true",
                        help="then the same rows on the second real scan, BART's small-FOV 8-coil brain (run_small_fov)")
    parser.add_argument("--calibration", nargs="+", default=["auto"],
                        choices=["auto", "espirit", "refined", "select", "full"],
                        help="coil calibration of every method (recon.calibration.calibrate_maps; default auto); "
                             "full: ESPIRiT maps of the fully sampled data (a bound no real acquisition has); several: "
                             "one table each, then each against the first")
    args = parser.parse_args(argv)
    orientations = ("as-stored", "transposed") if args.orientation == "both" else (args.orientation,)
    methods = _methods(not args.no_modl, args.self_ensemble, args.adapt > 0)
    tables = {}
    for calibration in args.calibration:
        print("PSNR dB whole/in-object against the RSS of the full data; every method through "
              f"recon.pipeline.run_method (calibrate_maps, calibration {calibration}, + the collapse guard)")
        print(_header(methods))
        rows = run(args.data, orientations, not args.no_modl, args.seed, args.masks, args.modl_weights, calibration,
                   args.self_ensemble, args.accels, args.adapt, args.adapt_lr if args.adapt else None)
        print(_counts(rows, methods) + "\n", flush=True)
        tables[calibration] = rows
    first = args.calibration[0]
    for calibration in args.calibration[1:]:
        print(_compare(tables[first], tables[calibration], first, calibration, methods))
    if args.small_fov:
        print("\nThe small-FOV 8-coil scan (undersampled when acquired, R_eff 1.75): PSNR dB whole/in-object against "
              "CG-SENSE with two map sets of every acquired line (a proxy: no fully sampled data exist); calibration "
              f"{first}")
        small_fov_methods = _methods(not args.no_modl, args.self_ensemble)  # not adapted: no reference to check it
        print(_header(small_fov_methods))
        rows = run_small_fov(args.data, not args.no_modl, args.seed, args.masks, args.modl_weights, first,
                             self_ensemble=args.self_ensemble)
        print(_counts(rows, small_fov_methods), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
