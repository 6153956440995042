"""``mriqa demo``: undersample one multi-coil slice at R = 2..12, reconstruct it with every method, score it.

The built-in default needs no data beside the package: it simulates an 8-coil slice from the real T1 slice
that ships inside dipy's wheel (``recon.demo_data.demo_slice``). ``--input`` takes a user's fastMRI h5 or
BART cfl instead (fully sampled: its RSS is the reference, so k-space with unsampled points inside the region its
data span is refused; one slice, the middle one unless ``--slice``).

Writes to ``--out`` (default ``./mriqa-demo``): ``report.html``, ``panels.png`` (every reconstruction),
``errors.png`` (error maps), ``results.json``, and prints the table.
"""
from __future__ import annotations

import argparse

from mriqa.commands.shared import seed_value
from mriqa.recon_quality.kspace import COMBINED_POWER, COMBINED_TAU  # numpy only: the legend's constants

DEFAULT_ACCELS = "2,4,6,8,10,12"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="undersample a slice at R = 2..12, reconstruct with every method, write report.html",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--input", default=None, help="a fastMRI h5, BART cfl or SENSE-tutorial .mat (default: built-in "
                   "simulated slice)")
    p.add_argument("--slice", type=int, default=None, help="slice of --input (default: the middle one)")
    p.add_argument("--out", default="mriqa-demo", help="output folder (default ./mriqa-demo)")
    p.add_argument("--accels", default=DEFAULT_ACCELS, help=f"comma-separated R values (default {DEFAULT_ACCELS})")
    p.add_argument("--mask", dest="mask_type", choices=["random", "equispaced", "poisson"], default="equispaced")
    p.add_argument("--methods", default="zf,sense,l1,modl",
                   help="comma-separated methods; those whose model is not available are skipped")
    p.add_argument("--seed", type=seed_value, default=0)
    p.add_argument("--no-kspace-check", action="store_true",
                   help="leave out the k-space check columns (4 more reconstructions per method and R)")
    p.add_argument("--snr", type=float, default=None,
                   help="noise level of the built-in slice (default 40; a user's --input keeps its own noise)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    import torch

    from recon.errors import InputError
    from recon.files import atomic_path
    from recon.masks import center_fraction_for, describe_mask, make_mask
    from recon.metrics import nmse, object_mask, psnr, ssim, support_metrics
    from recon.pipeline import METHODS, estimate_maps, run_method

    torch.manual_seed(args.seed)
    try:
        accels = [float(a) for a in args.accels.split(",") if a.strip()]
    except ValueError:
        raise InputError(None, f"--accels {args.accels!r} is not a comma-separated list of numbers") from None
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(None, f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    methods = [m for m in methods if _available(m)]

    kspace, reference, source = _load(args)
    height, width = kspace.shape[-2:]
    out = Path(args.out)
    scorer = _quality_scorer()
    recon_scorer = _recon_scorer()
    inside = object_mask(reference)

    rows, images, quality_maps = [], {}, {}
    print(f"mriqa demo: {source}; {kspace.shape[1]} coils, {height}x{width}; methods {', '.join(methods)}")
    for accel in accels:
        # fastMRI's centre fraction (0.32 / R), but never fewer centre lines than coil calibration needs
        center = center_fraction_for(accel, width) if accel > 1 else None
        mask = make_mask(args.mask_type, (height, width), accel, center_fraction=center, seed=args.seed)
        under = kspace * mask.mask.numpy()
        maps = estimate_maps(under, mask) if any(m != "zf" for m in methods) else None
        for method in methods:
            start = time.perf_counter()
            recon_out = run_method(method, under, mask, sens_maps=maps)
            seconds = time.perf_counter() - start
            image = recon_out.image
            for note in recon_out.notes():
                print(f"  note ({method}, R = {accel:g}): {note}")
            row = {"method": method, **describe_mask(mask), **recon_out.summary(), "seconds": round(seconds, 3),
                   "psnr": float(psnr(reference, image)), "ssim": float(ssim(reference, image)),
                   "nmse": float(nmse(reference, image))}
            within = support_metrics(reference, image, inside, maxval=float(reference.max()), with_ssim=True)
            row.update(psnr_in=within["PSNR_in"], ssim_in=within["SSIM_in"])
            if scorer is not None:
                row["qf"] = float(scorer(image[0]))
            if recon_scorer is not None:
                row["recon_score"], quality_maps[(accel, method)] = recon_scorer(image[0])
            if maps is not None and not args.no_kspace_check:
                from mriqa.recon_quality.kspace import combined_score, kspace_check

                row["kspace_nmse"] = kspace_check(method, under, mask, maps)[0].nmse_estimate
                if "recon_score" in row:
                    row["combined"] = float(combined_score(row["recon_score"], row["kspace_nmse"]))
            rows.append(row)
            images[(accel, method)] = image[0]
            print(_format_row(row))

    out.mkdir(parents=True, exist_ok=True)  # only now: a run that fails above leaves nothing behind
    _write_figures(out, reference[0], images, accels, methods)
    if quality_maps:
        _write_quality_maps(out, quality_maps, accels, methods)
    result = {"source": source, "shape": [int(kspace.shape[1]), int(height), int(width)], "rows": rows,
              "reference": "RSS of the fully sampled k-space", "mask_type": args.mask_type,
              "object_fraction": float(inside.mean())}
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(_html(result, scorer is not None, bool(quality_maps), any("kspace_nmse" in r for r in rows)))
    print(f"wrote {out / 'report.html'}, panels.png, errors.png{', quality_maps.png' if quality_maps else ''}, "
          "results.json")
    return 0


def _available(method: str) -> bool:
    if method != "modl":
        return True
    try:
        from recon.modl import load_modl

        load_modl("modl")
        return True
    except Exception as exc:  # noqa: BLE001 - a missing optional model only drops its column
        print(f"(skipping modl: {str(exc).splitlines()[0]})")
        return False


def _quality_scorer():
    """The grayscale QF predictor's foreground score, when the shipped model is available."""
    try:
        from mriqa.predictor import load_predictor

        predictor = load_predictor("gray")
    except Exception as exc:  # noqa: BLE001 - QF scores are an optional column of the demo
        print(f"(no QF column: {str(exc).splitlines()[0]})")
        return None
    return lambda image: float(predictor.score(image, pool="foreground", kind="mri"))


def _recon_scorer():
    """The reconstruction-quality model (``--model recon``): ``image -> (score, quality map)``, when shipped."""
    try:
        from mriqa.predictor import load_predictor

        predictor = load_predictor("recon")
    except Exception as exc:  # noqa: BLE001 - the recon score is an optional column of the demo
        print(f"(no recon-score column: {str(exc).splitlines()[0]})")
        return None

    def score(image):
        pred = predictor.evaluate(image, pool="mean", kind="mri")
        return float(pred.scores[0]), pred.maps[0]
    return score


def _load(args):
    """-> (fully sampled k-space [1, C, H, W], reference RSS [1, H, W], description)."""
    import numpy as np

    from recon.errors import InputError

    if args.snr is not None and not (np.isfinite(args.snr) and args.snr > 0):
        raise InputError(None, f"--snr must be a positive number, got {args.snr:g}")
    if args.input is None:
        from recon.demo_data import demo_slice

        kspace, rss, info = demo_slice(seed=args.seed, **({} if args.snr is None else {"snr": args.snr}))
        return kspace, rss, info.get("description", "built-in simulated slice (dipy t1_coronal_slice)")
    if args.snr is not None:
        raise InputError(args.input, "--snr applies to the built-in slice only (a file's k-space has its own noise)")
    from recon.pipeline import load_kspace

    volume = load_kspace(args.input)
    index = volume.num_slices // 2 if args.slice is None else args.slice
    if not 0 <= index < volume.num_slices:
        raise InputError(args.input, f"slice {index} out of range (file has {volume.num_slices})")
    kspace = volume.kspace[index:index + 1]
    _refuse_undersampled(kspace, args.input)
    from recon.fft import ifft2c_np

    rss = np.sqrt((np.abs(ifft2c_np(kspace)) ** 2).sum(1)).astype(np.float32)
    return kspace, rss, f"{args.input} slice {index}"


def _refuse_undersampled(kspace, source) -> None:
    """InputError when ``kspace`` ``[1, C, H, W]`` holds no data at points inside the box its data span: an
    undersampled acquisition, whose RSS is no reference (the demo scores every method against it). Zeros outside
    that box pass: fastMRI's zero-padded edge columns, a partial-Fourier edge."""
    import numpy as np

    from recon.errors import InputError

    points = np.any(np.asarray(kspace).reshape(-1, *kspace.shape[-2:]) != 0, axis=0)
    rows, cols = np.flatnonzero(points.any(1)), np.flatnonzero(points.any(0))
    if not points.any():
        raise InputError(source, "k-space is all zero")
    box = points[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    if not box.all():
        lines = int((~box.any(0)).sum())
        what = (f"{lines} of the {box.shape[1]} phase-encode lines its data span hold none" if lines
                else f"{int((~box).sum())} k-space points inside the sampled region hold no data")
        raise InputError(source, f"already undersampled ({what}): the demo needs fully sampled k-space for its "
                                 "reference; reconstruct this file with `mriqa recon` instead")


def _format_row(row: dict) -> str:
    qf = f"  QF {row['qf']:.3f}" if "qf" in row else ""
    qf += f"  recon score {row['recon_score']:.3f}" if "recon_score" in row else ""
    qf += f"  k-space NMSE est. {row['kspace_nmse']:.4f}" if "kspace_nmse" in row else ""
    qf += f"  combined {row['combined']:.3f}" if "combined" in row else ""
    return (f"  R {row['acceleration']:>4g} (eff {row['acceleration_effective']:5.2f})  {row['method']:<6}"
            f"PSNR {row['psnr']:6.2f} dB ({row['psnr_in']:6.2f} in object)  SSIM {row['ssim']:.4f} "
            f"({row['ssim_in']:.4f})  NMSE {row['nmse']:.4f}{qf}  {row['seconds']:.2f} s")


def _write_figures(out, reference, images, accels, methods) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from recon.files import atomic_path

    vmax = float(np.percentile(reference, 99.5))
    for name, error in (("panels.png", False), ("errors.png", True)):
        fig, axes = plt.subplots(len(accels), len(methods) + 1, figsize=(2.0 * (len(methods) + 1) + 0.8,
                                                                         2.0 * len(accels)), squeeze=False)
        shown = None
        for i, accel in enumerate(accels):
            ax = axes[i, 0]
            ax.imshow(reference, cmap="gray", vmin=0, vmax=vmax)
            ax.set_ylabel(f"R = {accel:g}")
            if i == 0:
                ax.set_title("reference (RSS)", fontsize=8)
            for j, method in enumerate(methods):
                ax = axes[i, j + 1]
                image = images[(accel, method)]
                if error:
                    shown = ax.imshow(np.abs(image - reference) / vmax, cmap="magma", vmin=0, vmax=0.2)
                else:
                    shown = ax.imshow(image / vmax, cmap="gray", vmin=0, vmax=1)
                if i == 0:
                    ax.set_title(method + (" |error|" if error else ""), fontsize=8)
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout(rect=(0, 0, 1 - 0.8 / fig.get_figwidth(), 1))
        if shown is not None:
            bar = fig.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01)
            bar.set_label("|reconstruction - reference| / reference's 99.5th percentile" if error else
                          "intensity / reference's 99.5th percentile", fontsize=7)
            bar.ax.tick_params(labelsize=7)
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, dpi=80)
        plt.close(fig)


def _write_quality_maps(out, maps, accels, methods) -> None:
    """The recon model's quality maps (predicted local SSIM, one cell per 8 x 8 pixels), R by method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon.files import atomic_path

    fig, axes = plt.subplots(len(accels), len(methods), figsize=(2.0 * len(methods) + 0.8, 2.0 * len(accels)),
                             squeeze=False)
    shown = None
    for i, accel in enumerate(accels):
        for j, method in enumerate(methods):
            ax = axes[i, j]
            qmap = maps[(accel, method)]
            shown = ax.imshow(qmap, cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"{method} R={accel:g}: {qmap.mean():.2f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout(rect=(0, 0, 1 - 0.8 / fig.get_figwidth(), 1))
    bar = fig.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01)
    bar.set_label("predicted local SSIM (recon model)", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    with atomic_path(out / "quality_maps.png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


COLUMNS = [
    ("R", "nominal acceleration: the R asked for"),
    ("R eff.", "effective acceleration: phase-encode lines in the image / lines sampled (the fully sampled centre "
               "makes it differ from R)"),
    ("method", "zf: zero-filled root-sum-of-squares; sense: CG-SENSE with ESPIRiT coil maps; l1: L1-wavelet "
               "(sigpy); modl: the shipped MoDL network"),
    ("PSNR (dB)", "peak signal-to-noise ratio against the reference over the whole image, data range = the "
                  "reference's max (fastMRI's convention); higher is better"),
    ("PSNR in obj. (dB)", "the same over the object only (the reference thresholded at 10 % of its 99th "
                          "percentile, smoothed and hole-filled): the background of an RSS reference is its "
                          "noise floor, which SENSE-type methods set to zero, so whole-image figures penalise "
                          "them for a clean background"),
    ("SSIM", "structural similarity (skimage, 7x7 window) over the whole image; 1 = identical, higher is better"),
    ("SSIM in obj.", "the mean of the SSIM map over the object only"),
    ("NMSE", "normalised mean squared error ||x - ref||^2 / ||ref||^2 over the whole image; lower is better"),
    ("QF", "reference-free: the gray QF predictor's estimate of the JPEG quality factor / 100, pooled over the "
           "foreground. It measures how JPEG-compressed the image looks (higher = fewer blocking and ringing "
           "artefacts), not reconstruction fidelity: a blurred zero-filled image can score high. Shown as the "
           "paper's baseline, not as a verdict"),
    ("recon score", "reference-free: the reconstruction-quality model (--model recon) - the SSIM against a fully "
                    "sampled reference that it predicts from the image alone, mean of its quality map; higher is "
                    "better. Trained on simulated IXI reconstructions (see README, 'Reference-free "
                    "reconstruction quality' for what it ranks well and where it fails)"),
    ("k-space NMSE est.", "reference-free, from the measured k-space: the method reconstructs again with a quarter "
                          "of the sampled outer lines held out (4 folds) and predicts them; the held-out error, "
                          "applied to the estimated unmeasured energy, estimates the k-space NMSE against a fully "
                          "sampled scan (mriqa.recon_quality.kspace); lower is better"),
    ("combined", f"reference-free: recon score x (1 + k-space NMSE est. / {COMBINED_TAU:g}) ^ -{COMBINED_POWER:g}, "
                 "a ranking score (higher is better; on the real 16-coil scan it orders reconstructions as SSIM does "
                 "far better than either alone, see README)"),
    ("time (s)", "wall time of the reconstruction on this machine"),
]


def _html(result: dict, with_qf: bool, with_recon: bool = False, with_kspace: bool = False) -> str:
    import html

    hidden = {"QF"} if not with_qf else set()
    hidden |= {"recon score", "combined"} if not with_recon else set()
    hidden |= {"k-space NMSE est.", "combined"} if not with_kspace else set()
    columns = [c for c in COLUMNS if c[0] not in hidden]
    head = "<tr>" + "".join(f"<th>{html.escape(name)}</th>" for name, _ in columns) + "</tr>"
    body = []
    for r in result["rows"]:
        cells = [f"{r['acceleration']:g}", f"{r['acceleration_effective']:.2f}", html.escape(r["method"]),
                 f"{r['psnr']:.2f}", f"{r['psnr_in']:.2f}", f"{r['ssim']:.4f}", f"{r['ssim_in']:.4f}",
                 f"{r['nmse']:.4f}"]
        if with_qf:
            cells.append(f"{r['qf']:.3f}")
        if with_recon:
            cells.append(f"{r['recon_score']:.3f}")
        if with_kspace:
            cells.append(f"{r['kspace_nmse']:.4f}" if "kspace_nmse" in r else "—")
            if with_recon:
                cells.append(f"{r['combined']:.3f}" if "combined" in r else "—")
        cells.append(f"{r['seconds']:.2f}")
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    legend = "".join(f"<dt>{html.escape(name)}</dt><dd>{html.escape(text)}</dd>" for name, text in columns)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mriqa demo</title>
<style>body{{font-family:sans-serif;max-width:64em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}dt{{font-weight:bold}}dd{{margin:0 0 .4em 1.5em}}
</style></head><body>
<h1>mriqa demo</h1>
<p>Input: {html.escape(result['source'])} ({result['shape'][0]} coils, {result['shape'][1]}x{result['shape'][2]}),
{html.escape(result['mask_type'])} masks. Every method is compared with the same reference:
{html.escape(result['reference'])}. The object covers {100 * result['object_fraction']:.0f} % of the image.</p>
<table>{head}{''.join(body)}</table>
<h2>What the columns mean</h2><dl>{legend}</dl>
<h2>Reconstructions</h2><img src="panels.png" alt="reconstructions">
<h2>Error maps</h2><p>|reconstruction - reference|, scaled by the reference's 99.5th percentile (colour bar).</p>
<img src="errors.png" alt="error maps">
{'<h2>Quality maps (reference-free)</h2><p>The recon model&#39;s map: predicted local SSIM, one cell per 8 x 8 '
 'pixels; the title gives its mean, the recon score.</p><img src="quality_maps.png" alt="quality maps">'
 if with_recon else ''}
</body></html>
"""
