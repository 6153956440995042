"""Build the reconstruction-quality data set (``mriqa.recon_quality.data``): reconstructions by every method at
known R, mask and noise, with their reference and full-reference figures, from simulated fully sampled data.

    mriqa make-dataset --out data/sim128-ixi-snr100 --size 128 --coils 8 --coil-maps mixed --snr 100 \\
        --slice-step 4 --max-slices-per-file 8 --splits ixi
    python scripts/make_quality_dataset.py --split train --groups 10 --augment --shard 0 2 &
    python scripts/make_quality_dataset.py --split train --groups 10 --augment --shard 1 2
    python scripts/make_quality_dataset.py --split val --groups 10 --augment
    python scripts/make_quality_dataset.py --split test           # every R x mask, no augmentation

Output: ``<out>/<split>[.<i>of<n>].h5``.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    import torch

    from mriqa.recon_quality.data import QUALITY_ACCELS, QUALITY_MASKS, QUALITY_METHODS, build_quality_split
    from recon.errors import InputError

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(REPO / "data/sim128-ixi-snr100"))
    p.add_argument("--out", default=str(REPO / "data/rq128"))
    p.add_argument("--split", required=True, choices=["train", "val", "test"])
    p.add_argument("--methods", nargs="+", default=list(QUALITY_METHODS), choices=list(QUALITY_METHODS))
    p.add_argument("--accels", type=float, nargs="+", default=list(QUALITY_ACCELS))
    p.add_argument("--masks", nargs="+", default=list(QUALITY_MASKS))
    p.add_argument("--groups", type=int, default=None, help="(R, mask) groups per slice (default: all)")
    p.add_argument("--slices", type=int, default=1, help="evenly spaced slices per file")
    p.add_argument("--augment", action="store_true", help="blur + extra noise per group")
    p.add_argument("--snr-range", type=float, nargs=2, default=(15.0, 100.0))
    p.add_argument("--shard", type=int, nargs=2, default=(0, 1), metavar=("I", "N"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modl-weights", default="modl")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    name = args.split if args.shard[1] == 1 else f"{args.split}.{args.shard[0]}of{args.shard[1]}"
    try:
        build_quality_split(args.data, args.split, Path(args.out) / f"{name}.h5", methods=args.methods,
                            accels=args.accels, masks=args.masks, groups=args.groups, slices=args.slices,
                            augment=args.augment, snr_range=tuple(args.snr_range), shard=tuple(args.shard),
                            seed=args.seed, modl_weights=args.modl_weights,
                            log=lambda s: print(s, flush=True))
    except InputError as exc:
        print(f"make_quality_dataset: error: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
