"""Coil calibration methods against each other on simulated held-out slices: CG-SENSE PSNR per method.

``recon.calibration.calibrate_maps`` with each ``--methods`` entry (default ``auto`` and ``select``) on one slice of
each of ``--sim-files`` simulated held-out volumes (every other file of the folder), random, equispaced and
Poisson-disk masks, R = 2, 3, 4, 6, 8, 10, 12, the default centre fractions; CG-SENSE (``recon.baselines.cg_sense``)
with those maps, PSNR in dB against the RSS of the full data. Prints, per method against the first, the mean
difference per mask kind, the range, and the reconstructions worse / better by more than 0.3 dB. The real 16-coil
brain's version of this comparison is ``scripts/real_kspace_check.py --calibration auto select``.

Usage: ``python scripts/calibration_study.py [--sim DIR] [--sim-files 9] [--methods auto select espirit:0.005]
[--verbose]`` (``METHOD:THRESH`` sets the ESPIRiT singular-value threshold, default 0.02)
(``--sim`` defaults to data/sim128-ixi-snrwide/multicoil_test: the held-out volumes of the set made by the command
in configs/modl-snrwide.yaml, SNR 30-2000 per slice).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ACCELERATIONS = (2, 3, 4, 6, 8, 10, 12)
MASKS = ("random", "equispaced", "poisson")


def run(sim_dir: Path, sim_files: int, methods, verbose: bool = False) -> list[dict]:
    import h5py
    from tqdm import tqdm

    from recon.baselines import cg_sense
    from recon.calibration import calibrate_maps
    from recon.errors import InputError
    from recon.fft import ifft2c_np
    from recon.masks import center_fraction_for, make_mask
    from recon.metrics import psnr

    files = sorted(sim_dir.glob("*.h5"))[1::2][:sim_files]
    if not files:
        raise SystemExit(f"no .h5 files in {sim_dir} (see the module docstring for the command that makes them)")
    rng = np.random.default_rng(5)
    rows = []
    for path in tqdm(files, desc="volumes", disable=verbose or None):
        with h5py.File(path, "r") as f:
            index = int(rng.integers(f["kspace"].shape[0]))
            full = f["kspace"][index:index + 1].astype(np.complex64)
        rss = np.sqrt(np.sum(np.abs(ifft2c_np(full)) ** 2, axis=1))
        for kind in MASKS:
            for accel in ACCELERATIONS:
                try:
                    mask = make_mask(kind, full.shape[-2:], accel, seed=0,
                                     center_fraction=center_fraction_for(accel, full.shape[-1]))
                except InputError:  # sigpy's Poisson-disk sampler cannot reach every R on every grid
                    continue
                k = full * mask.mask.numpy()
                row = {"slice": f"{path.stem}/{index}", "mask": kind, "R": accel}
                for method in methods:
                    name, _, thresh = method.partition(":")
                    maps, info = calibrate_maps(k, mask, method=name, cache_dir=False,
                                                **({"thresh": float(thresh)} if thresh else {}))
                    row[method] = psnr(rss, cg_sense(k, mask.mask, maps))
                    row[method + "_note"] = next((w for w in info.warnings if "held-out" in w), info.method)
                rows.append(row)
                if verbose:
                    print(f"{row['slice']:36s} {kind:10s} {accel:2d} " + "  ".join(
                        f"{m} {row[m]:5.2f} ({row[m + '_note']})" for m in methods), flush=True)
    return rows


def summary(rows: list[dict], methods) -> str:
    base = methods[0]
    lines = [f"{len(rows)} CG-SENSE reconstructions (PSNR dB against the RSS of the full data)"]
    for method in methods[1:]:
        d = np.array([r[method] - r[base] for r in rows])
        per_kind = ", ".join(f"{kind} {np.mean([r[method] - r[base] for r in rows if r['mask'] == kind]):+.2f}"
                             for kind in MASKS if any(r["mask"] == kind for r in rows))
        lines.append(f"{method} against {base}: mean {d.mean():+.2f} dB ({per_kind}), {d.min():+.2f} to "
                     f"{d.max():+.2f}; worse by > 0.3 dB in {int((d < -0.3).sum())}, better by > 0.3 dB in "
                     f"{int((d > 0.3).sum())}")
    return "\n".join(lines)


def _method(text: str) -> str:
    from recon.calibration import CALIBRATION_METHODS

    name, colon, thresh = text.partition(":")
    try:
        ok = name in CALIBRATION_METHODS and (not colon or 0 < float(thresh) < 1)
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"{text!r}: expected one of {', '.join(CALIBRATION_METHODS)}, optionally "
                                         f"with :THRESH in (0, 1)")
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--sim", type=Path, default=root / "data" / "sim128-ixi-snrwide" / "multicoil_test",
                        help="folder of simulated held-out volumes (fastMRI multi-coil h5)")
    parser.add_argument("--sim-files", type=int, default=9, help="volumes to take one slice of (default 9)")
    parser.add_argument("--methods", nargs="+", default=["auto", "select"], type=_method,
                        help="calibrate_maps methods (auto, espirit, refined, select), each optionally with its "
                        "ESPIRiT threshold as METHOD:THRESH (e.g. espirit:0.005); the first is the baseline "
                        "(default auto select)")
    parser.add_argument("--verbose", action="store_true", help="print every reconstruction")
    args = parser.parse_args(argv)
    rows = run(args.sim, args.sim_files, args.methods, args.verbose)
    print(summary(rows, args.methods))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
