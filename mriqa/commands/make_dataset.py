"""``mriqa make-dataset``: simulate fastMRI-format multi-coil training data from the real volumes."""
from __future__ import annotations

import argparse

from mriqa.commands.shared import seed_value


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "make-dataset",
        help="simulate fastMRI multi-coil h5 training data from real MRI volumes (../shared/data)",
        description="Simulate fully sampled multi-coil k-space from the real volumes in DATA_ROOT/mri/volumes "
                    "(train = 3T MPRAGE, val = MNI152, test = Colin27; split by volume): smooth random phase, "
                    "coil maps, complex Gaussian k-space noise at SNR = mean foreground magnitude / noise std. "
                    "Writes OUT/multicoil_{train,val,test}/*.h5 (fastMRI layout, with reconstruction_rss) and "
                    "OUT/dataset.json listing every file and choice. Deterministic by --seed.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--data-root", default=None,
                   help="folder holding mri/volumes (default: ../shared/data beside the checkout)")
    p.add_argument("--size", type=int, default=256,
                   help="square matrix size H = W (default 256; 128 for quick CPU runs)")
    p.add_argument("--coils", type=int, default=8, help="number of coils (default 8; <= 8 with espirit/mixed maps)")
    p.add_argument("--snr", type=float, default=40.0,
                   help="mean foreground magnitude / complex noise std, per slice (default 40)")
    p.add_argument("--snr-max", type=float, default=None,
                   help="draw each slice's SNR log-uniform in [--snr, --snr-max] (scans differ widely in SNR)")
    p.add_argument("--coil-maps", choices=["birdcage", "espirit", "mixed"], default="birdcage",
                   help="birdcage (sigpy), espirit (resampled from the real smallfov k-space) or mixed (50/50)")
    p.add_argument("--slice-step", type=int, default=4, help="keep every N-th slice with anatomy (default 4)")
    p.add_argument("--max-slices-per-file", type=int, default=36,
                   help="at most this many slices per volume and orientation (default 36: ~1.4 GB at 256/8 coils)")
    p.add_argument("--fov-fill", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="crop each slice so its anatomy spans U(LO, HI) of the field of view, as real scans are "
                   "prescribed (e.g. 0.8 1.0; default: the volume's own FOV)")
    p.add_argument("--contrast", type=float, default=0.0,
                   help="strength in [0, 1] of a random tissue-intensity remapping per slice (other contrasts)")
    p.add_argument("--bias", type=float, default=0.0,
                   help="max |log| of a smooth random receive-bias field per slice (default 0: none)")
    p.add_argument("--resample", choices=["linear", "kspace"], default="linear",
                   help="bring each slice to --size by linear interpolation (default; a smooth spectrum) or by "
                   "cropping / zero-padding its k-space (kspace: a real acquisition's truncation and Gibbs ringing)")
    p.add_argument("--seed", type=seed_value, default=0)
    p.add_argument("--splits", choices=["default", "ixi"], default="default",
                   help="default: train = 3T MPRAGE, val = MNI152, test = Colin27; ixi: train = MPRAGE + 30 IXI "
                   "subjects, val = 5 IXI subjects, test = 5 IXI subjects + Colin27 (by subject)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recon.simulate import SimulationConfig, make_dataset, split_preset

    config = SimulationConfig(size=args.size, coils=args.coils, snr=args.snr, snr_max=args.snr_max,
                              coil_maps=args.coil_maps, fov_fill=tuple(args.fov_fill) if args.fov_fill else None,
                              contrast=args.contrast, bias=args.bias, resample=args.resample,
                              slice_step=args.slice_step, max_slices_per_file=args.max_slices_per_file,
                              seed=args.seed, splits=split_preset(args.splits, args.data_root))
    manifest = make_dataset(args.out, args.data_root, config, progress=not args.no_progress)
    for split, files in manifest["splits"].items():
        slices = sum(entry["num_slices"] for entry in files)
        print(f"{split}: {len(files)} files, {slices} slices")
    print(f"{manifest['total_bytes'] / 1e6:.1f} MB in {args.out} (manifest: {args.out}/dataset.json)")
    return 0
