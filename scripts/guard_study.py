"""How the collapse guard (``recon.guard.check_reconstruction``) tells good coil maps from bad ones.

CG-SENSE (``recon.baselines.sense_image``) with coil maps calibrated five ways on the real 16-coil brain (both
orientations) and on one slice of each of the first ``--sim-files`` simulated held-out volumes: the shipped
calibration (``recon.calibration.calibrate_maps``) and four perturbed ones that a user's own maps could look
like (ESPIRiT kernels wider along the phase encode than ``recon.calibration.kernel_for`` picks: ``ceil(acs / 3)``,
half the centre as sigpy's habit, one more line; or an eigenvalue crop of 0.99). Random, equispaced and
Poisson-disk masks, R = 2, 3, 4, 6, 8, 12, default centre fractions. Per reconstruction the guard's figures and
the PSNR gain over zero-filled (against the RSS of the full data, which the guard never sees); then counts:
reconstructions more than 1 dB below zero-filled that the guard passes, with and without its held-out check, and
good ones (> 0.5 dB above zero-filled) it rejects.

Usage: ``python scripts/guard_study.py [--data ../shared/data] [--sim DIR] [--sim-files 9] [--verbose]``
(about 4 minutes on 2 CPU threads; ``--sim`` defaults to data/sim128-ixi-snrwide/multicoil_test, the held-out
volumes of the set made by the command in configs/modl-snrwide.yaml, SNR 30-2000 per slice; skipped when missing).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

ACCELERATIONS = (2, 3, 4, 6, 8, 12)
VARIANTS = ("shipped", "ceil", "half", "plus1", "crop0.99")
BAD_DB, GOOD_DB = -1.0, 0.5


def _kernel_rule(variant: str):
    """``recon.calibration.kernel_for`` for a variant: the shipped rule or a wider phase-encode kernel."""
    import recon.calibration as cal

    shipped = cal.kernel_for
    if variant in ("shipped", "crop0.99"):
        return shipped

    def wider(calib):
        rows, acs = calib
        if variant == "ceil":
            pe = min(cal.KERNEL_MAX, max(2, math.ceil(acs / 3)), acs)
        elif variant == "half":
            pe = min(cal.KERNEL_MAX, max(2, acs // 2), acs - 1)
        else:  # plus1
            pe = min(acs - 1, max(2, round(acs / 3)) + 1)
        ro = max(1, min(cal.KERNEL_MAX, 2 * pe, max(2, round(rows / 3)), rows - 1))
        return int(ro), int(pe)
    return wider


def _slices(data_root: Path, sim_dir: Path, sim_files: int):
    """``(name, k-space [1, C, H, W])``: the real brain in both orientations, then one simulated slice per file."""
    import h5py

    from recon.io.sense_tutorial import SENSE_TUTORIAL, read_sense_tutorial, sense_tutorial_orientations

    for name, k in sense_tutorial_orientations(read_sense_tutorial(data_root / SENSE_TUTORIAL)).items():
        yield f"real/{name}", np.asarray(k, dtype=np.complex64)[None]
    rng = np.random.default_rng(0)
    for path in sorted(sim_dir.glob("*.h5"))[::2][:sim_files] if sim_dir.is_dir() else []:
        with h5py.File(path, "r") as f:
            index = int(rng.integers(f["kspace"].shape[0]))
            yield f"sim/{path.stem}/{index}", f["kspace"][index:index + 1].astype(np.complex64)


def run(data_root: Path, sim_dir: Path, sim_files: int, verbose: bool = False) -> list[dict]:
    import recon.calibration as cal
    from recon.baselines import sense_image, zero_filled
    from recon.errors import InputError
    from recon.fft import ifft2c_np
    from recon.guard import check_reconstruction
    from recon.masks import center_fraction_for, make_mask
    from recon.metrics import psnr
    from tqdm import tqdm

    shipped_rule = cal.kernel_for
    rows = []
    for name, full in _slices(data_root, sim_dir, sim_files):
        rss = np.sqrt(np.sum(np.abs(ifft2c_np(full)) ** 2, axis=1))
        cases = [(kind, accel) for kind in ("random", "equispaced", "poisson") for accel in ACCELERATIONS]
        for kind, accel in tqdm(cases, desc=name, leave=False, disable=verbose or None):
            try:
                mask = make_mask(kind, full.shape[-2:], accel, seed=0,
                                 center_fraction=center_fraction_for(accel, full.shape[-1]))
            except InputError:  # sigpy's Poisson-disk sampler cannot reach every R on 96 x 96
                continue
            k = full * mask.mask.numpy()
            zf = zero_filled(k, mask.mask)
            zf_db = psnr(rss, zf)
            for variant in VARIANTS:
                cal.kernel_for = _kernel_rule(variant)
                try:
                    crop = 0.99 if variant == "crop0.99" else cal.CROP
                    maps, info = cal.calibrate_maps(k, mask, crop=crop, cache_dir=False)
                except InputError:
                    continue
                finally:
                    cal.kernel_for = shipped_rule
                image = sense_image(k, mask.mask, maps)
                report = check_reconstruction(image, k, mask, maps, zero_filled=zf)
                others = [r for r in report.reasons if "held out" not in r]
                row = {"slice": name, "mask": kind, "R": accel, "variant": variant, "kernel": info.kernel,
                       "gain_db": psnr(rss, np.abs(image[:, 0])) - zf_db, "ok": report.ok,
                       "ok_without_heldout": not others, "heldout": report.heldout_error,
                       "line": report.line()}
                rows.append(row)
                if verbose:
                    print(f"{name:38s} {kind:10s} {accel:2d} {variant:8s} {str(info.kernel):8s} "
                          f"{row['gain_db']:+6.2f} dB  {report.line()}", flush=True)
    return rows


def summary(rows: list[dict]) -> str:
    bad = [r for r in rows if r["gain_db"] < BAD_DB]
    good = [r for r in rows if r["gain_db"] > GOOD_DB]
    shipped = [r for r in rows if r["variant"] == "shipped"]

    def heldout_range(subset):
        values = [r["heldout"] for r in subset if np.isfinite(r["heldout"])]
        return f"{min(values):.2f}-{max(values):.2f} ({len(values)} run)" if values else "never run"

    lines = [
        f"{len(rows)} CG-SENSE reconstructions; {len(bad)} more than {-BAD_DB:g} dB below zero-filled, "
        f"{len(good)} more than {GOOD_DB:g} dB above",
        f"below zero-filled by > {-BAD_DB:g} dB and passed: {sum(r['ok_without_heldout'] for r in bad)} without the "
        f"held-out check, {sum(r['ok'] for r in bad)} with it",
        f"above zero-filled by > {GOOD_DB:g} dB and rejected: {sum(not r['ok_without_heldout'] for r in good)} without "
        f"the held-out check, {sum(not r['ok'] for r in good)} with it",
        f"shipped calibration: {len(shipped)} reconstructions, rejected {sum(not r['ok'] for r in shipped)}; "
        f"held-out error real {heldout_range([r for r in shipped if r['slice'].startswith('real')])}, "
        f"simulated {heldout_range([r for r in shipped if r['slice'].startswith('sim')])}",
        f"below zero-filled by > {-BAD_DB:g} dB but passing every other check: held-out error "
        f"{heldout_range([r for r in bad if r['ok_without_heldout']])}",
    ]

    def listed(label, subset):
        return [f"  {label}: {r['slice']} {r['mask']} R={r['R']} {r['variant']} {r['kernel']} {r['gain_db']:+.2f} dB "
                f"({r['line']})" for r in subset]
    lines += listed("passed though below", [r for r in bad if r["ok"]])
    lines += listed("rejected by the held-out check alone though above",
                    [r for r in good if r["ok_without_heldout"] and not r["ok"]])
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--data", type=Path, default=root.parent / "shared" / "data",
                        help="the shared data root (default ../shared/data beside the checkout)")
    parser.add_argument("--sim", type=Path, default=root / "data" / "sim128-ixi-snrwide" / "multicoil_test",
                        help="folder of simulated held-out volumes (fastMRI multi-coil h5)")
    parser.add_argument("--sim-files", type=int, default=9, help="simulated volumes to take a slice of (default 9)")
    parser.add_argument("--verbose", action="store_true", help="print every reconstruction's guard line")
    args = parser.parse_args(argv)
    rows = run(args.data, args.sim, args.sim_files, args.verbose)
    print(summary(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
