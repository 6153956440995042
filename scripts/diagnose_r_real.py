"""Why the rq R estimator reads the real 16-coil scan as accelerated (issue 21): what moves its reading of the
scan's fully sampled images (true R = 1).

1. The estimate (``mriqa.restimate.estimate_images``, calibrated, as ``mriqa estimate-r`` prints it) of the real
   references as they are and transformed: zero-padded to a larger field of view, blurred, intensities raised to
   a power.
   And the intensity histogram: the foreground's median against the 99.5th percentile, real and simulated.
2. Which part of the network carries it: RQNet adds one whole-image vector to every map cell (the global branch
   on the deepest features' mean / std, plus the spectral branch on the image's spectrum profiles). The raw
   reading ``exp(mean of the log R map)`` (before calibration) of a real reference with its whole-image vector
   (or only its global or spectral part) replaced by that of a simulated reference, and the other way round.

Real data: ``<data root>/mri/kspace/sense-tutorial-brain16ch`` (RSS of the full k-space, both orientations).
Simulated references: the RSS targets of ``--sim`` (a ``mriqa make-dataset`` split folder).

    python scripts/diagnose_r_real.py [--weights mriqa/weights/r-rq.safetensors] \
        [--sim data/sim128-ixi-snr100/multicoil_val]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def real_references(data_root: Path) -> list[np.ndarray]:
    from recon.fft import ifft2c_np
    from recon.io.sense_tutorial import SENSE_TUTORIAL, read_sense_tutorial, sense_tutorial_orientations

    stored = read_sense_tutorial(data_root / SENSE_TUTORIAL)
    return [np.sqrt((np.abs(ifft2c_np(k[None])) ** 2).sum(1))[0].astype(np.float32)
            for k in sense_tutorial_orientations(stored).values()]


def simulated_references(folder: Path, count: int) -> list[np.ndarray]:
    import h5py

    from recon.errors import InputError

    files = sorted(folder.glob("*.h5"))
    if not files:
        raise InputError(folder, "no simulated .h5 files (run mriqa make-dataset first)")
    out = []
    for f in files:
        with h5py.File(f) as h:
            rss = h["reconstruction_rss"]
            out.append(np.asarray(rss[len(rss) // 2], np.float32))
        if len(out) == count:
            break
    return out


def raw_reading(model, parts: dict, vector) -> float:
    """``exp`` of the mean of the log R map that ``parts`` (:meth:`RQNet.parts`) and the whole-image ``vector``
    give: the reading before calibration."""
    import torch

    return float(torch.exp(model.head_of(parts, vector).mean()))


def main(argv=None) -> int:
    import torch
    from scipy.ndimage import gaussian_filter

    from mriqa.restimate import estimate_images, load_estimator
    from mriqa.restimate.rq_based import RQREstimator
    from recon.errors import InputError
    from recon.simulate import default_data_root

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="rq estimator weights (default: the shipped ones)")
    p.add_argument("--sim", default=str(REPO / "data/sim128-ixi-snr100/multicoil_val"))
    p.add_argument("--data-root", default=None)
    p.add_argument("--count", type=int, default=8, help="simulated references")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        est = RQREstimator.load(args.weights) if args.weights else load_estimator("rq")
        real = real_references(Path(args.data_root) if args.data_root else default_data_root())
        sim = simulated_references(Path(args.sim), args.count)
    except InputError as exc:
        print(f"diagnose_r_real: {exc}", file=sys.stderr)
        return 2

    def estimate(images) -> str:
        res = estimate_images(est, np.stack(images).astype(np.float32), kind="mri", recon_method="zf")
        return " / ".join(f"{r:.1f}" for r in res["r_est"])

    def pad(image, side):
        out = np.zeros((side, side), np.float32)
        top, left = (side - image.shape[0]) // 2, (side - image.shape[1]) // 2
        out[top:top + image.shape[0], left:left + image.shape[1]] = image
        return out

    print("## 1. Estimated R of the real fully sampled references (true R = 1; axial orientations as stored / "
          "transposed), method given as zero-filled\n")
    print("| the references | estimated R |\n|---|---|")
    print(f"| as they are ({real[0].shape[0]} x {real[0].shape[1]}) | {estimate(real)} |")
    for side in (128, 160):
        padded = estimate([pad(r, side) for r in real])
        print(f"| zero-padded to {side} x {side} (head spans less of the FOV) | {padded} |")
    for sigma in (0.5, 1.2):
        print(f"| blurred, sigma {sigma} px | {estimate([gaussian_filter(r, sigma) for r in real])} |")
    for power in (0.5, 2.0):
        print(f"| intensities to the power {power:g} | {estimate([(r / r.max()) ** power for r in real])} |")
    print(f"| simulated references ({len(sim)}, {Path(args.sim)}) | {estimate(sim)} |")

    def foreground_median(image):
        x = image / np.percentile(image, 99.5)
        return float(np.median(x[x > 0.1]))

    sim_medians = [foreground_median(s) for s in sim]
    print(f"\nForeground median (/ the 99.5th percentile, pixels > 0.1): real "
          f"{' / '.join(f'{foreground_median(r):.2f}' for r in real)}, simulated median {np.median(sim_medians):.2f} "
          f"(10-90 %: {' - '.join(f'{v:.2f}' for v in np.percentile(sim_medians, [10, 90]))})")

    model = est.predictor.model.net.eval()  # the RQNet inside the log R wrapper
    with torch.no_grad():
        from mriqa.models.reconq import normalize_magnitude

        def parts(image):
            return model.parts(normalize_magnitude(torch.from_numpy(image[None])))

        r, sims = parts(real[0]), [parts(s) for s in sim]

        def summary(values):
            return f"{np.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"

        print("\n## 2. Raw reading exp(mean log R map), before calibration: median (range) over the simulated "
              "references\n")
        print("| image | whole-image vector from | raw R |\n|---|---|---|")
        print(f"| real | itself | {raw_reading(model, r, r['global'] + r['spectral']):.1f} |")
        own = summary([raw_reading(model, s, s["global"] + s["spectral"]) for s in sims])
        print(f"| simulated | themselves | {own} |")
        for label, vector in (("a simulated one: global part only", lambda s: s["global"] + r["spectral"]),
                              ("a simulated one: spectral part only", lambda s: r["global"] + s["spectral"]),
                              ("a simulated one: both", lambda s: s["global"] + s["spectral"])):
            print(f"| real | {label} | {summary([raw_reading(model, r, vector(s)) for s in sims])} |")
        print(f"| simulated | the real one (both) | "
              f"{summary([raw_reading(model, s, r['global'] + r['spectral']) for s in sims])} |")
        print(f"| real | none (local evidence only) | {raw_reading(model, r, None):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
