"""``mriqa recon``: reconstruct a fastMRI h5 or BART cfl k-space file with a classical method or MoDL."""
from __future__ import annotations

import argparse

from mriqa.commands.shared import seed_value


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "recon",
        help="reconstruct k-space (fastMRI h5, BART cfl, SENSE-tutorial .mat) with zf / sense / l1 / modl",
        description="Reconstruct multi-coil k-space. With --accel the input is treated as fully sampled and "
                    "retrospectively undersampled; without it, zeros in the k-space are the unsampled points. "
                    "OUT holds `reconstruction` (float32 [slices, H, W] magnitude on the scale of the RSS of "
                    "the fully sampled data), `mask`, and attrs method, acceleration, acceleration_effective, "
                    "mask_type, center_fraction, seed.",
    )
    p.add_argument("input", help="fastMRI h5 file, BART .cfl/.hdr (or its base name), or SENSE-tutorial .mat")
    p.add_argument("--method", choices=["zf", "sense", "l1", "modl"], default="sense")
    p.add_argument("--accel", type=float, default=None, help="nominal acceleration R for retrospective undersampling")
    p.add_argument("--mask", dest="mask_type", choices=["random", "equispaced", "poisson"], default="random")
    p.add_argument("--center-fraction", type=float, default=None,
                   help="fully sampled centre fraction (default 0.32 / R: fastMRI's 0.08 at R=4, 0.04 at R=8)")
    p.add_argument("--seed", type=seed_value, default=0, help="mask seed")
    p.add_argument("--num-maps", type=int, default=1, choices=[1, 2],
                   help="ESPIRiT map sets (2 where a small field of view folds over; with 1 the collapse guard "
                        "falls back to 2 when one set fails its checks)")
    p.add_argument("--calibration", default="auto", choices=["auto", "espirit", "refined", "select"],
                   help="coil calibration: auto (ESPIRiT; a refinement step under 6 centre lines and for 2-D masks), "
                        "espirit, refined (always the joint image/maps step) or select (line masks: per slice ESPIRiT, "
                        "refined or low-threshold ESPIRiT maps, whichever predicts held-out measured lines clearly "
                        "best)")
    p.add_argument("--maps", default=None, metavar="FILE",
                   help="coil maps you already have (.npy, .h5 with sens_maps, or BART .cfl; [C,H,W], [S,C,H,W] or "
                        "[S,M,C,H,W]) instead of ESPIRiT from the data; estimated maps are cached in "
                        "~/.cache/mriqa/espirit ($MRIQA_CACHE to move it, MRIQA_CACHE=off to disable, "
                        "$MRIQA_CACHE_MAX_MB caps it, default 2048)")
    p.add_argument("--weights", default=None,
                   help="MoDL weights: a shipped name (modl: supervised; modl-qf: reference-free SSDU + QF) or a file")
    p.add_argument("--self-ensemble", action="store_true",
                   help="MoDL: average every denoiser pass over the 8 flips and transposes of its image (about 5x "
                        "the time; -0.2 to +0.4 dB per row on the real 16-coil brain, +0.1 to +0.3 dB on held-out "
                        "simulations: recon/weights/modl.md)")
    p.add_argument("--adapt", type=int, nargs="?", const=300, default=0, metavar="STEPS",
                   help="MoDL: fine-tune a copy of the network on each slice's own measurements first (zero-shot "
                        "self-supervised, ZS-SSL; no reference; up to STEPS steps, default 300, about 2 min a slice "
                        "at 16 x 96 x 96 on 2 CPU threads); refused per slice (noted) where too few samples lie "
                        "outside the calibration centre (docs/recon/real_kspace.md)")
    p.add_argument("--adapt-lr", type=float, default=None, metavar="LR",
                   help="MoDL --adapt: Adam learning rate (default 5e-4; on the real 16-coil brain 300 steps at 1e-3 "
                        "gained about what 600 at 5e-4 do, in half the time: recon/weights/modl.md)")
    p.add_argument("--slices", default=None, help="slice range to reconstruct, e.g. 10:20 (default: all)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--quality", action="store_true",
                   help="also judge the result without a reference: the recon model's score, the k-space check's "
                        "NMSE estimate (4 more reconstructions per slice from held-out lines) and their combination "
                        "(mriqa.recon_quality.kspace); printed and stored in the file's attributes")
    p.add_argument("--out", required=True, help="output h5 file")
    p.set_defaults(func=run)


def _slice_range(text: str | None, n: int) -> slice:
    if text is None:
        return slice(0, n)
    from recon.errors import InputError

    try:
        parts = [int(t) if t else None for t in text.split(":")]
        sl = slice(*parts) if len(parts) > 1 else slice(parts[0], parts[0] + 1)
    except ValueError:
        raise InputError(None, f"--slices {text!r} is not a range like 10:20") from None
    if len(range(n)[sl]) == 0:
        raise InputError(None, f"--slices {text!r} selects no slice of {n}")
    return sl


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    import numpy as np

    from recon.device import resolve_device
    from recon.io.fastmri_h5 import write_reconstruction_h5
    from recon.masks import describe_mask
    from recon.modl.adapt import DEFAULT_LR
    from recon.pipeline import load_kspace, run_method, undersample

    device = resolve_device(args.device)
    volume = load_kspace(args.input)
    selected = _slice_range(args.slices, volume.num_slices)
    maps = None
    if args.maps is not None:
        from recon.io.maps import read_coil_maps

        maps = read_coil_maps(args.maps, volume.kspace.shape)[selected]
    volume.kspace = volume.kspace[selected]
    sampled = undersample(volume, args.accel, args.mask_type, args.center_fraction, args.seed)
    start = time.perf_counter()
    result = run_method(args.method, sampled.kspace, sampled.mask, sens_maps=maps, source=volume.path,
                        num_maps=args.num_maps, weights=args.weights, device=device, calibration=args.calibration,
                        keep_maps=args.quality, self_ensemble=args.self_ensemble, adapt_steps=args.adapt,
                        adapt_lr=args.adapt_lr)
    seconds = time.perf_counter() - start
    image = result.image
    if sampled.retrospective and sampled.input_acceleration > 1.0:
        print(f"mriqa: note: {volume.path} was already undersampled (effective R "
              f"{sampled.input_acceleration:.2f}): the mask keeps only what was acquired, and the effective R "
              "counts that", file=sys.stderr)
    for note in result.notes():
        print(f"mriqa: note: {note}", file=sys.stderr)
    attrs = describe_mask(sampled.mask)
    attrs.update(result.summary())
    attrs.update(method=args.method, input=str(args.input), retrospective=sampled.retrospective,
                 num_maps=args.num_maps, weights=args.weights or ("modl" if args.method == "modl" else "none"),
                 self_ensemble=bool(args.self_ensemble), adapt_steps=int(args.adapt))
    if args.adapt:
        attrs["adapt_lr"] = args.adapt_lr or DEFAULT_LR
    if not sampled.retrospective:
        attrs["seed"] = None
    if args.quality:
        from mriqa.recon_quality.kspace import reconstruction_quality

        # the k-space check predicts with the maps each slice was reconstructed with (the guard's choice; zf has none)
        quality = reconstruction_quality(args.method, sampled.kspace, sampled.mask, image, maps=result.maps or maps,
                                         num_maps=args.num_maps, calibration=args.calibration, weights=args.weights, device=device,
                                         source=volume.path, self_ensemble=args.self_ensemble,
                                         adapt_steps=args.adapt, adapt_lr=args.adapt_lr)
        attrs.update({f"quality_{k}": v for k, v in quality.items()})
        nmse = np.asarray(quality["kspace_nmse"])
        nmse_text = (f"{np.nanmean(nmse):.4f}" if np.isfinite(nmse).any()
                     else "n/a (no sample outside the fully sampled centre to hold out)")
        print("quality (mean over slices, reference-free): recon score "
              f"{np.mean(quality['image_score']):.3f}, k-space NMSE estimate {nmse_text}, "
              f"combined {np.mean(quality['combined']):.3f}")
    write_reconstruction_h5(args.out, image, mask=sampled.mask.mask.numpy(), attrs=attrs)
    print(f"{args.method}: {image.shape[0]} slice(s) {image.shape[1]}x{image.shape[2]}, "
          f"R = {attrs['acceleration']:.2f} nominal / {attrs['acceleration_effective']:.2f} effective, "
          f"{seconds:.1f} s -> {args.out}")
    return 0
