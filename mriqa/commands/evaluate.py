"""``mriqa evaluate``: NMSE, PSNR and SSIM of a reconstruction against a reference, fastMRI's conventions."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="NMSE / PSNR / SSIM of a reconstruction against the fully sampled RSS (fastMRI conventions)",
        description="Compare R.h5 (`reconstruction`) with T.h5 (`reconstruction_rss`, else `reconstruction`). "
                    "Data range = the target volume's max; SSIM per slice (7x7, skimage), averaged.",
    )
    p.add_argument("--target", required=True, help="h5 with reconstruction_rss (fastMRI) or reconstruction")
    p.add_argument("--recon", required=True, help="h5 with reconstruction (from `mriqa recon`)")
    p.add_argument("--json", default=None, help="write the metrics as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from recon.errors import InputError
    from recon.io.fastmri_h5 import read_reconstruction
    from recon.io.output import check_writable, output_file
    from recon.metrics import nmse, psnr, ssim

    if args.json:
        check_writable(args.json, "--json")
    target = read_reconstruction(args.target)
    recon = read_reconstruction(args.recon, key="reconstruction")
    t, r = target.image, recon.image
    if t.shape != r.shape:
        if t.shape[-2:] != r.shape[-2:] and t.shape[0] == r.shape[0]:
            r = _center_crop(r, t.shape[-2:])
        else:
            raise InputError(args.recon, f"reconstruction shape {r.shape} does not match the target's {t.shape} "
                                         f"({args.target})")
    result = {
        "target": str(args.target), "target_key": target.key, "recon": str(args.recon),
        "nmse": float(nmse(t, r)), "psnr": float(psnr(t, r)), "ssim": float(ssim(t, r)),
        "slices": int(t.shape[0]),
    }
    info = recon.info  # the typed reconstruction attributes
    for key in ("method", "acceleration", "acceleration_effective", "mask_type"):
        if getattr(info, key) is not None:
            result[key] = getattr(info, key)
    print(f"NMSE {result['nmse']:.4f}  PSNR {result['psnr']:.2f} dB  SSIM {result['ssim']:.4f}  "
          f"({result['slices']} slices)")
    if args.json:
        with output_file(args.json, "--json") as tmp:
            tmp.write_text(json.dumps(result, indent=2))
    return 0


def _center_crop(image, shape):
    """fastMRI targets are cropped to the recon size; crop the reconstruction's centre to match."""
    h, w = image.shape[-2:]
    th, tw = shape
    if th > h or tw > w:
        return image
    top, left = (h - th) // 2, (w - tw) // 2
    return image[..., top:top + th, left:left + tw]
