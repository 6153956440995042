"""How far a spectrum runs towards the matrix edge: the share of its energy beyond 3/4 of the half-width
(``recon.slice_transforms.spectrum_share_beyond``), for the real 16-coil scan's fully sampled RSS and for the
references (``reconstruction_rss``) of simulated datasets. Simulations interpolated to the matrix
(``make-dataset --resample linear``) fall off before the edge; a real acquisition, and ``--resample kspace``, do not.

    python scripts/spectrum_edge.py --sims data/sim128-ixi-snr100 data/sim128-ixi-ksp0 [--split multicoil_val]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="shared data root (the real scan)")
    p.add_argument("--sims", nargs="*", default=[], help="make-dataset output folders")
    p.add_argument("--split", default="multicoil_val")
    p.add_argument("--radius", type=float, default=0.75, help="fraction of the half-width (default 0.75)")
    args = p.parse_args(argv)

    import h5py

    from recon.fft import ifft2c_np
    from recon.io.sense_tutorial import SENSE_TUTORIAL, read_sense_tutorial
    from recon.slice_transforms import spectrum_share_beyond

    kspace = read_sense_tutorial(Path(args.data) / SENSE_TUTORIAL)
    rss = np.sqrt(np.sum(np.abs(ifft2c_np(kspace)) ** 2, axis=0))
    print(f"share of spectral energy beyond {args.radius:g} of the half-width")
    print(f"real 16-coil scan (RSS of the full data, {rss.shape[0]} x {rss.shape[1]}): "
          f"{100 * spectrum_share_beyond(rss, args.radius):.2f} %")
    for folder in args.sims:
        files = sorted((Path(folder) / args.split).glob("*.h5"))
        shares = [spectrum_share_beyond(ref, args.radius) for f in files
                  for ref in h5py.File(f, "r")["reconstruction_rss"][()]]
        print(f"{folder} ({args.split}, {len(shares)} references): mean {100 * np.mean(shares):.2f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
