"""The reconstruction training modes of issue 6 on held-out volumes: PSNR, SSIM, NMSE, QF and DC residual.

For every mode whose weights exist (``<runs>/<run>/final.safetensors`` with the runs of :data:`MODES`; the
supervised mode falls back to the shipped ``recon/weights/modl.safetensors``; ``EvalSettings.run`` overrides
any), on the volumes of one split at each R (one fixed mask per volume, fastMRI's centre fraction ``0.32 / R``;
ESPIRiT maps from the central 24 x 24 of the fully sampled k-space, as in training,
:mod:`recon.evaluation`):

- **PSNR / SSIM / NMSE**: fastMRI's conventions (:mod:`recon.metrics`; per volume, data range = the volume
  max), averaged over the volumes; **in support** (:func:`recon.metrics.support_metrics`): PSNR and the mean of
  skimage's SSIM map over the pixels inside the coil maps' support only;
- **QF**: the gray QF predictor's score of each reconstructed slice (``kind="mri"``, ``qf_pool``), times 100,
  averaged over slices (the reference RSS row gives its scale);
- **DC residual**: ``||M F S x - y||^2 / ||M y||^2`` on the acquired samples
  (:func:`recon.losses.dc_loss`; the complex image for MoDL, the predicted k-space for VarNet), averaged over
  slices. The zero-filled image has residual 0 per coil, so a low residual alone is not good.

Baseline rows: the reference, zero-filled RSS and CG-SENSE (magnitude outputs: no residual), and, when the
DC-only mode is evaluated, "MoDL untrained (D = identity)": the same network before training, DC-only's own
starting point. :func:`checks` turns the averaged table into the verdict lines of issue 6.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["UNTRAINED", "MODES", "EvalSettings", "find_weights", "evaluate", "averages", "checks", "figure"]

UNTRAINED = "MoDL untrained (D = identity)"
MODES = {"supervised": "modl-cpu-ft2", "dc": "modl-dc", "ssdu": "modl-ssdu-ft", "dc+qf": "modl-dc-qf",
         "ssdu+qf": "modl-ssdu-qf-ft", "dc+rq": "modl-dc-rq", "ssdu+rq": "modl-ssdu-rq", "dc+rqk": "modl-dc-rqk",
         "ssdu+rqk": "modl-ssdu-rqk"}
#: quality-loss mode -> the mode without the quality term it must not fall below (issue 20); ``+rqk``: the
#: quality term with the k-space check (ReconQualityLoss(kspace_check=True))
RQ_PAIRS = {"ssdu+rq": "ssdu", "dc+rq": "dc", "ssdu+rqk": "ssdu", "dc+rqk": "dc"}
REFERENCE = "reference (RSS)"


@dataclass
class EvalSettings:
    """What :func:`evaluate` runs (the options of ``scripts/eval_training.py``)."""

    data: str = "data/sim128"
    split: str = "multicoil_test"
    runs: str = "runs"  # folder of the run folders
    run: dict[str, str] = field(default_factory=dict)  # mode -> weights file, overriding the runs folder
    modes: list[str] | None = None  # None: all
    accels: list[float] = field(default_factory=lambda: [4.0, 8.0])
    mask: str = "random"
    max_slices: int | None = None
    calib_width: int = 24
    qf_pool: str = "foreground"
    seed: int = 0
    baselines: bool = True


def find_weights(settings: EvalSettings) -> tuple[dict[str, Path], list[str]]:
    """``({mode: weights file}, ["mode (path)" of the modes without weights])``."""
    import recon

    found, missing = {}, []
    for mode, run in MODES.items():
        if mode in settings.run:
            path = Path(settings.run[mode])
        else:
            path = Path(settings.runs) / run / "final.safetensors"
            if mode == "supervised" and not path.is_file():
                path = Path(recon.__file__).parent / "weights" / "modl.safetensors"
        if path.is_file():
            found[mode] = path
        else:
            missing.append(f"{mode} ({path})")
    return found, missing


def _models(weights: dict[str, Path]) -> dict:
    import torch

    from recon.train_step import load_model

    models = {mode: load_model(path)[1] for mode, path in weights.items()}
    if "dc" in models:
        # DC-only's starting point: the same MoDL untrained (the denoiser's last conv is zero-initialised, so
        # D = identity and the unrolls are plain data-consistency iterations from A^H y)
        from recon.modl import MoDL

        torch.manual_seed(0)
        models = {UNTRAINED: MoDL(models["dc"].config).eval(), **models}
    return models


def _run_network(model, masked, mask, maps, num_low_frequencies: int, crop) -> tuple[np.ndarray, float]:
    """Magnitude ``[S, H, W]`` and the mean DC residual of a network on a volume, 4 slices per batch."""
    import torch

    from recon.losses import dc_loss
    from recon.train_step import as_batch, batch_physics, forward_model

    recon, resid = [], []
    for i0 in range(0, masked.shape[0], 4):
        sl = slice(i0, i0 + 4)
        n = masked[sl].shape[0]
        batch = as_batch({"masked_kspace": masked[sl], "mask": mask.expand(n, 1, 1, -1),
                          "sens_maps": torch.from_numpy(maps[sl]),
                          "num_low_frequencies": torch.tensor([num_low_frequencies] * n), "crop_size": [crop]})
        with torch.no_grad():
            pred = forward_model(model, batch)
            resid.append(dc_loss(batch_physics(batch), batch["masked_kspace"], image=pred["image"],
                                 pred_kspace=pred["pred_kspace"], reduction="none").numpy())
        recon.append(pred["output"][:, 0].numpy())
    return np.concatenate(recon), float(np.mean(np.concatenate(resid)))


def evaluate(settings: EvalSettings) -> tuple[dict, dict, list, dict]:
    """``(rows {(method, R): [per-volume metrics]}, weights {mode: path}, missing [str],
    examples {R: {method: [H, W] middle slice of the first volume}})``."""
    import torch

    import mriqa
    from recon import baselines
    from recon.errors import InputError
    from recon.evaluation import calibration_maps, coil_support, psnr_between, read_eval_volume
    from recon.masks import make_mask
    from recon.metrics import evaluate_volume, support_metrics
    from recon.transforms import mask_seed

    weights, missing = find_weights(settings)
    if settings.modes:
        weights = {m: p for m, p in weights.items() if m in settings.modes}
        missing = [m for m in missing if m.split(" ")[0] in settings.modes]
    models = _models(weights)
    qf = mriqa.load_predictor("gray", device="cpu")
    rq = mriqa.load_predictor("recon", device="cpu")
    files = sorted((Path(settings.data) / settings.split).glob("*.h5"))
    if not files:
        raise InputError(Path(settings.data) / settings.split, "no .h5 files (run mriqa make-dataset first)")
    rows: dict[tuple[str, float], list[dict]] = {}
    examples: dict[float, dict[str, np.ndarray]] = {}
    for path in files:
        vol = read_eval_volume(path, settings.max_slices)
        target, maxval, mid = vol.target, vol.maxval, len(vol.slices) // 2
        maps = calibration_maps(vol.kspace, path, vol.slices, settings.calib_width)
        support = coil_support(maps)
        qf_ref = float(np.mean(qf.score(target, pool=settings.qf_pool, kind="mri")))
        rq_ref = float(np.mean(rq.score(target, pool="mean", kind="mri")))
        for r in settings.accels:
            sm = make_mask(settings.mask, vol.kspace.shape[-2:], r, seed=mask_seed(settings.seed, path.name))
            mask = sm.mask  # [1, 1, W]
            masked = torch.from_numpy(vol.kspace) * mask
            outs = {}
            if settings.baselines:
                outs[REFERENCE] = (target, None)
                outs["zero-filled"] = (baselines.zero_filled(masked.numpy(), mask), None)
                outs["CG-SENSE"] = (baselines.cg_sense(masked.numpy(), mask, maps), None)
            for mode, model in models.items():
                outs[mode] = _run_network(model, masked, mask, maps, sm.num_low_frequencies,
                                          tuple(target.shape[-2:]))
            zero_filled = outs["zero-filled"][0] if "zero-filled" in outs else \
                baselines.zero_filled(masked.numpy(), mask)
            untrained = outs[UNTRAINED][0] if UNTRAINED in outs else None
            if path == files[0]:
                examples[r] = {name: img[mid] for name, (img, _) in outs.items()}
                examples[r][REFERENCE] = target[mid]
            for name, (img, resid) in outs.items():
                if name == REFERENCE:
                    m = {"PSNR": float("inf"), "SSIM": 1.0, "NMSE": 0.0, "PSNR_in": float("inf"), "SSIM_in": 1.0}
                else:
                    m = evaluate_volume(target, img, maxval)
                    m.update(support_metrics(target, img, support, maxval, with_ssim=True))
                # how far the output is from the zero-filled image (PSNR with the reference's data range)
                m["PSNR_to_zf"] = psnr_between(img, zero_filled, maxval)
                m["PSNR_to_untrained"] = None if untrained is None else psnr_between(img, untrained, maxval)
                m["QF"] = 100 * (qf_ref if name == REFERENCE else
                                 float(np.mean(qf.score(img, pool=settings.qf_pool, kind="mri"))))
                m["RQ"] = 100 * (rq_ref if name == REFERENCE else
                                 float(np.mean(rq.score(img, pool="mean", kind="mri"))))
                m["DC"] = resid
                rows.setdefault((name, r), []).append(m)
    return rows, weights, missing, examples


def averages(rows: dict) -> dict:
    """``{(method, R): {PSNR, SSIM, NMSE, ..., QF, DC}}`` averaged over the volumes (None stays None)."""
    return {key: {k: (float(np.mean([m[k] for m in ms])) if ms[0][k] is not None else None) for k in ms[0]}
            for key, ms in rows.items()}


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
        for mode, base in RQ_PAIRS.items():
            if mode in row and base in row:
                q, u = row[mode], row[base]
                need = ("PSNR", "SSIM") if base == "ssdu" else ("PSNR",)
                below = [k for k in need if q[k] < u[k]]
                verdict = f"{' and '.join(below)} below (NOT met)" if below else f"{' and '.join(need)} not below (met)"
                lines.append(f"- R = {r:g}, {mode.upper()} vs {base.upper()} alone: PSNR {q['PSNR']:.2f} vs "
                             f"{u['PSNR']:.2f} dB ({q['PSNR'] - u['PSNR']:+.3f}), SSIM {q['SSIM']:.4f} vs "
                             f"{u['SSIM']:.4f} ({q['SSIM'] - u['SSIM']:+.5f}), recon score "
                             f"{q['RQ']:.1f} vs {u['RQ']:.1f}: {verdict}.")
    return lines


def figure(path, examples: dict) -> None:
    """Rows: each R (image) and its |error| against the reference; columns: every method of the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon.evaluation import psnr_between
    from recon.files import atomic_path

    accels = sorted(examples)
    names = list(examples[accels[0]])
    ref = examples[accels[0]][REFERENCE]
    vmax = float(np.percentile(ref, 99.5))
    fig, axes = plt.subplots(2 * len(accels), len(names), figsize=(2.2 * len(names), 4.6 * len(accels)),
                             squeeze=False)
    for i, r in enumerate(accels):
        for j, name in enumerate(names):
            img = examples[r][name]
            ax, ax_err = axes[2 * i, j], axes[2 * i + 1, j]
            ax.imshow(img, cmap="gray", vmin=0, vmax=vmax)
            ax.set_title(f"{name}\nR = {r:g}, {psnr_between(img, ref, ref.max()):.1f} dB", fontsize=7)
            ax_err.imshow(np.abs(img - ref), cmap="magma", vmin=0, vmax=0.25 * vmax)
            ax_err.set_title("|error| (0 to 25 % of p99.5)", fontsize=7)
            for a in (ax, ax_err):
                a.set_xticks([])
                a.set_yticks([])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
