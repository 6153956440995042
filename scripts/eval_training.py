"""Evaluate the training modes of issue 6 on held-out volumes: PSNR, SSIM, NMSE, QF and k-space residual.

For every mode whose weights exist (``runs/<run>/final.safetensors`` with the runs of ``MODES``: the SSDU
modes' second stages ``modl-ssdu-ft`` / ``modl-ssdu-qf-ft``; supervised: ``runs/modl-cpu-ft2``, else the shipped
``recon/weights/modl.safetensors``; override with ``--run MODE=PATH``), on the test split (default
``data/sim128/multicoil_test``: Colin27, never seen in training or validation), at each R of ``--accels`` (default 4 and 8; one fixed ``--mask`` per volume,
fastMRI's centre fraction ``0.32 / R``; ESPIRiT maps from the central 24 x 24 of the fully sampled k-space, as
in training):

- **PSNR / SSIM / NMSE**: fastMRI's conventions (``recon.metrics``; per volume, data range = the volume max),
  averaged over the volumes; **in support**: PSNR and the mean of skimage's SSIM map over the pixels inside the
  coil maps' support only (the reference's noise floor outside it, which CG-SENSE leaves at 0, excluded);
- **QF**: the gray QF predictor's score of each reconstructed slice (``kind="mri"``, ``--qf-pool``, default
  ``foreground``), times 100, averaged over slices (higher = looks less compressed; the reference RSS row
  gives its scale);
- **DC residual**: ``||M F S x - y||^2 / ||M y||^2`` on the acquired samples (``mriqa.losses.dc_loss``; the
  complex image for MoDL, the predicted k-space for VarNet), averaged over slices. Low is not automatically
  good: the zero-filled image has residual 0 per coil, so a DC-only model can reach it by copying the data.

Baseline rows: zero-filled RSS and CG-SENSE (QF only, no residual: magnitude outputs) and the reference.
Prints a markdown table (``--out FILE`` also writes it), which modes have no weights yet, and the checks of
issue 6: DC-only against its own starting point (a row "MoDL untrained (D = identity)": the same network before
training, whose unrolls are plain data-consistency iterations from ``A^H y``; what DC-only training adds to it),
and the reference-free SSDU + QF model's SSIM against SSDU-only's and its PSNR against the supervised model's,
at each R. (With a network that has no data-consistency step, DC-only training reproduces the zero-filled
input; MoDL's CG step already makes every output consistent, so DC-only has nothing left to learn.)

    python scripts/eval_training.py --max-slices 12 --out docs/recon/training_eval.md \
        --figure docs/recon/training_eval.png
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

UNTRAINED = "MoDL untrained (D = identity)"
MODES = {"supervised": "modl-cpu-ft2", "dc": "modl-dc", "ssdu": "modl-ssdu-ft", "dc+qf": "modl-dc-qf",
         "ssdu+qf": "modl-ssdu-qf-ft"}


def _rel(path) -> str:
    """``path`` relative to the repository when it lies inside it (tables stay machine-independent)."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(REPO / "data/sim128"))
    p.add_argument("--split", default="multicoil_test")
    p.add_argument("--runs", default=str(REPO / "runs"), help="folder of the run folders")
    p.add_argument("--run", action="append", default=[], help="MODE=PATH: weights of a mode (repeatable)")
    p.add_argument("--accels", type=float, nargs="+", default=[4.0, 8.0])
    p.add_argument("--mask", default="random")
    p.add_argument("--max-slices", type=int, default=None)
    p.add_argument("--calib-width", type=int, default=24)
    p.add_argument("--qf-pool", default="foreground", choices=["mean", "foreground"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--modes", nargs="+", default=None, help="evaluate only these modes (default: all)")
    p.add_argument("--out", default=None, help="also write the table here")
    p.add_argument("--figure", default=None,
                   help="also write a PNG here: the middle evaluated slice of the first volume, every method, each R")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def find_weights(args) -> tuple[dict[str, Path], list[str]]:
    found, missing = {}, []
    given = dict(item.split("=", 1) for item in args.run)
    for mode, run in MODES.items():
        if mode in given:
            path = Path(given[mode])
        else:
            path = Path(args.runs) / run / "final.safetensors"
            if mode == "supervised" and not path.is_file():
                path = REPO / "recon" / "weights" / "modl.safetensors"
        (found.__setitem__(mode, path) if path.is_file() else missing.append(f"{mode} ({path})"))
    return found, missing


def evenly(n, k):
    if k is None or k >= n:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def evaluate(args) -> tuple[dict, dict, list, dict]:
    """``(rows {(method, R): [per-volume metrics]}, weights {mode: path}, missing [str],
    examples {R: {method: [H, W] middle slice of the first volume}})``."""
    torch.set_num_threads(args.threads)
    import h5py

    import mriqa
    from mriqa.losses import dc_loss
    from recon import baselines
    from recon.coils import espirit_maps_cached
    from recon.masks import make_mask
    from recon.metrics import evaluate_volume, support_metrics
    from recon.train_step import forward_model, load_model
    from recon.transforms import mask_seed

    weights, missing = find_weights(args)
    if args.modes:
        weights = {m: p for m, p in weights.items() if m in args.modes}
        missing = [m for m in missing if m.split(" ")[0] in args.modes]
    models = {mode: load_model(path)[1] for mode, path in weights.items()}
    if "dc" in models:
        # DC-only's starting point: the same MoDL untrained (the denoiser's last conv is zero-initialised, so
        # D = identity and the unrolls are plain data-consistency iterations from A^H y)
        from recon.modl import MoDL

        torch.manual_seed(0)
        models = {UNTRAINED: MoDL(models["dc"].config).eval(), **models}
    qf = mriqa.load_predictor("gray", device="cpu")
    files = sorted((Path(args.data) / args.split).glob("*.h5"))
    if not files:
        raise SystemExit(f"no .h5 files in {Path(args.data) / args.split}")
    rows: dict[tuple[str, float], list[dict]] = {}
    examples: dict[float, dict[str, np.ndarray]] = {}  # R -> {method: middle slice of the first volume}
    for path in files:
        with h5py.File(path, "r") as hf:
            slices = evenly(hf["kspace"].shape[0], args.max_slices)
            kspace = hf["kspace"][slices].astype(np.complex64)
            target = hf["reconstruction_rss"][slices].astype(np.float32)
            maxval = float(hf.attrs["max"])
        maps = np.stack([espirit_maps_cached(kspace[i], path, s, calib_width=args.calib_width)
                         for i, s in enumerate(slices)]).astype(np.complex64)
        maps = maps[:, 0] if maps.ndim == 5 else maps
        support = (np.abs(maps) ** 2).sum(1) > 0  # [S, H, W]: where the ESPIRiT maps are non-zero
        qf_ref = float(np.mean(qf.score(target, pool=args.qf_pool, kind="mri")))
        for r in args.accels:
            sm = make_mask(args.mask, kspace.shape[-2:], r, seed=mask_seed(args.seed, path.name))
            mask = sm.mask  # [1, 1, W]
            masked = torch.from_numpy(kspace) * mask
            outs = {}
            if not args.no_baselines:
                outs["reference (RSS)"] = (target, None)
                outs["zero-filled"] = (baselines.zero_filled(masked.numpy(), mask), None)
                outs["CG-SENSE"] = (baselines.cg_sense(masked.numpy(), mask, maps), None)
            for mode, model in models.items():
                recon, resid = [], []
                for i0 in range(0, len(slices), 4):
                    sl = slice(i0, i0 + 4)
                    b = {"masked_kspace": masked[sl], "mask": mask.expand(masked[sl].shape[0], 1, 1, -1),
                         "sens_maps": torch.from_numpy(maps[sl]),
                         "num_low_frequencies": torch.tensor([sm.num_low_frequencies] * masked[sl].shape[0]),
                         "crop_size": [tuple(target.shape[-2:])]}
                    with torch.no_grad():
                        pred = forward_model(model, b)
                        resid.append(dc_loss(b["masked_kspace"], b["mask"], image=pred["image"],
                                             sens_maps=b["sens_maps"], pred_kspace=pred["pred_kspace"],
                                             reduction="none").numpy())
                    recon.append(pred["output"][:, 0].numpy())
                outs[mode] = (np.concatenate(recon), float(np.mean(np.concatenate(resid))))
            zero_filled = outs["zero-filled"][0] if "zero-filled" in outs else \
                baselines.zero_filled(masked.numpy(), mask)
            untrained = outs[UNTRAINED][0] if UNTRAINED in outs else None
            if path == files[0]:
                examples[r] = {name: img[len(slices) // 2] for name, (img, _) in outs.items()}
                examples[r]["reference (RSS)"] = target[len(slices) // 2]
            for name, (img, resid) in outs.items():
                if name == "reference (RSS)":
                    m = {"PSNR": float("inf"), "SSIM": 1.0, "NMSE": 0.0, "PSNR_in": float("inf"), "SSIM_in": 1.0}
                else:
                    m = evaluate_volume(target, img, maxval)
                    m.update(support_metrics(target, img, support, maxval, with_ssim=True))
                # how far the output is from the zero-filled image (PSNR with the reference's data range)
                m["PSNR_to_zf"] = _psnr_between(img, zero_filled, maxval)
                m["PSNR_to_untrained"] = None if untrained is None else _psnr_between(img, untrained, maxval)
                m["QF"] = 100 * (qf_ref if name == "reference (RSS)" else
                                 float(np.mean(qf.score(img, pool=args.qf_pool, kind="mri"))))
                m["DC"] = resid
                rows.setdefault((name, r), []).append(m)
    return rows, weights, missing, examples


def figure(path, examples: dict) -> None:
    """Rows: each R (image) and its |error| against the reference; columns: every method of the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon.files import atomic_path

    accels = sorted(examples)
    names = list(examples[accels[0]])
    ref = examples[accels[0]]["reference (RSS)"]
    vmax = float(np.percentile(ref, 99.5))
    fig, axes = plt.subplots(2 * len(accels), len(names), figsize=(2.2 * len(names), 4.6 * len(accels)),
                             squeeze=False)
    for i, r in enumerate(accels):
        for j, name in enumerate(names):
            img = examples[r][name]
            ax, ax_err = axes[2 * i, j], axes[2 * i + 1, j]
            ax.imshow(img, cmap="gray", vmin=0, vmax=vmax)
            ax.set_title(f"{name}\nR = {r:g}, {_psnr_between(img, ref, ref.max()):.1f} dB", fontsize=7)
            ax_err.imshow(np.abs(img - ref), cmap="magma", vmin=0, vmax=0.25 * vmax)
            ax_err.set_title("|error| (0 to 25 % of p99.5)", fontsize=7)
            for a in (ax, ax_err):
                a.set_xticks([])
                a.set_yticks([])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _psnr_between(a, b, maxval) -> float:
    """PSNR of image ``a`` against image ``b`` (not the reference), with the reference's data range."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10 * np.log10(maxval ** 2 / mse)) if mse > 0 else float("inf")


def checks(avg: dict) -> list[str]:
    """The issue-6 verdict lines from the averaged table (only for the modes that were evaluated)."""
    lines = []
    for r in sorted({r for _, r in avg}):
        row = {name: m for (name, rr), m in avg.items() if rr == r}
        if "dc" in row and UNTRAINED in row and "ssdu" in row:
            d, u, v = row["dc"], row[UNTRAINED], row["ssdu"]
            learnt = d["PSNR"] - u["PSNR"]
            verdict = ("fails: it stays at its own starting point, the untrained network's data-consistency "
                       "iterations (< 0.5 dB learnt), below SSDU" if learnt < 0.5 and d["PSNR"] < v["PSNR"]
                       else "learns something beyond its starting point")
            zf = f", zero-filled {row['zero-filled']['PSNR']:.2f}" if "zero-filled" in row else ""
            lines.append(f"- R = {r:g}, DC only: PSNR {d['PSNR']:.2f} dB vs the untrained MoDL {u['PSNR']:.2f} "
                         f"({learnt:+.2f} dB learnt; the two outputs are {d['PSNR_to_untrained']:.1f} dB apart), "
                         f"SSDU {v['PSNR']:.2f}{zf}; DC residual {d['DC']:.1e}: {verdict}.")
        if "ssdu+qf" in row and "ssdu" in row:
            q, u = row["ssdu+qf"], row["ssdu"]
            ok = q["SSIM"] >= u["SSIM"]
            lines.append(f"- R = {r:g}, SSIM of SSDU+QF {q['SSIM']:.4f} vs SSDU-only {u['SSIM']:.4f}: "
                         f"{'>=' if ok else '<'} ({'met' if ok else 'NOT met'}; in support {q['SSIM_in']:.4f} vs "
                         f"{u['SSIM_in']:.4f}).")
        if "ssdu+qf" in row and "supervised" in row:
            q, s = row["ssdu+qf"], row["supervised"]
            gap = s["PSNR"] - q["PSNR"]
            lines.append(f"- R = {r:g}, PSNR of SSDU+QF {q['PSNR']:.2f} dB vs supervised {s['PSNR']:.2f}: "
                         f"{gap:.2f} dB below ({'within' if gap <= 1 else 'NOT within'} 1 dB; in support "
                         f"{s['PSNR_in'] - q['PSNR_in']:.2f} dB below).")
    return lines


def averages(rows: dict) -> dict:
    """``{(method, R): {PSNR, SSIM, NMSE, QF, DC}}`` averaged over the volumes (DC None for baselines)."""
    return {key: {k: (float(np.mean([m[k] for m in ms])) if ms[0][k] is not None else None) for k in ms[0]}
            for key, ms in rows.items()}


def main(argv=None) -> str:
    args = parse_args(argv)
    rows, weights, missing, examples = evaluate(args)
    files = sorted((Path(args.data) / args.split).glob("*.h5"))
    lines = [f"Held-out: {len(files)} volumes of {_rel(Path(args.data) / args.split)}, "
             f"{'all' if args.max_slices is None else args.max_slices} slices each, {args.mask} masks; "
             f"QF = gray predictor, {args.qf_pool} pooling, x 100", "",
             "| method | R | PSNR (dB) | SSIM | NMSE | PSNR in support | SSIM in support | QF | DC residual |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    avg_all = averages(rows)
    for (name, r), avg in avg_all.items():
        dc = "—" if avg["DC"] is None else f"{avg['DC']:.2e}"
        lines.append(f"| {name} | {r:g} | {avg['PSNR']:.2f} | {avg['SSIM']:.4f} | {avg['NMSE']:.4f} | "
                     f"{avg['PSNR_in']:.2f} | {avg['SSIM_in']:.4f} | {avg['QF']:.1f} | {dc} |")
    lines += ["", "Checks (issue 6):"] + (checks(avg_all) or ["- (no mode pair to compare)"])
    lines.append("")
    lines.append("weights: " + (", ".join(f"{m} = {_rel(p)}" for m, p in weights.items()) or "none"))
    lines.append("missing (not trained yet): " + (", ".join(missing) or "none"))
    if args.figure:
        figure(args.figure, examples)
        lines.append(f"figure: {_rel(args.figure)}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        from recon.files import atomic_path

        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
