"""QAIRN on held-out images: restoration (paper Table I format), proxy quality correlations, model card.

1. Restoration (:func:`restoration`): each held-out image is JPEG-compressed (Pillow, 4:2:0) at QF 10, 20, 30,
   40 and restored; PSNR, SSIM and PSNR-B (:mod:`mriqa.evaluation.photo_metrics`: RGB, data range 1) of the
   JPEG input and of the restoration (quantised to 8 bits) against the original, averaged over the images, and
   the gain. Images are used whole unless cropped (:func:`mriqa.evaluation.heldout.grid_crop`).
2. Proxy correlations (:func:`proxy`): each held-out image degraded by JPEG (the trainer's pooling-selection
   QFs, 5..95), Gaussian blur (sigma 0.5..4 px) and additive white Gaussian noise (sigma 0.01..0.12 in [0, 1]
   units, seeded), each re-quantised to 8 bits; Spearman of Q1, Q2, Q3 with the JPEG QF (expected positive) and
   with the blur / noise sigma (expected negative if Q tracks quality; the paper's Table III found the opposite
   sign for noise), pooled over all images and as the mean of the per-image coefficients.

:func:`evaluate` returns every number as one JSON-able document; :func:`report` turns a document into the
printed text and :func:`model_card` into the weights' model card, so both can be re-rendered from a saved
document. Acceptance (issue 7): PSNR gain at QF 10 >= 1.5 dB; pooled Spearman(Q2, JPEG QF) >= 0.85.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from mriqa.evaluation.heldout import grid_crop
from mriqa.evaluation.photo_metrics import psnr, psnr_b, quantize8, ssim_rgb
from mriqa.iqa.correlation import srcc

__all__ = ["TABLE_QFS", "BLUR", "NOISE", "PAPER_QAIRN", "load_images", "Runner", "restoration", "proxy",
           "table_one", "proxy_table", "pooling_line", "model_card", "evaluate", "report"]

TABLE_QFS = (10, 20, 30, 40)
BLUR = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
NOISE = (0.01, 0.02, 0.03, 0.05, 0.08, 0.12)
PAPER_QAIRN = {10: (27.25, 0.803, 26.90), 20: (29.60, 0.868, 29.14), 30: (30.94, 0.896, 30.41),
               40: (31.86, 0.911, 31.29)}  # LIVE1 colour, paper Table I (for reference; other images)


# ----------------------------------------------------------------------------------------------- helpers
def load_images(folder: Path, names: list[str], crop: int | None) -> dict[str, np.ndarray]:
    """``{stem: uint8 [H, W, 3]}`` for the images of ``folder`` named (stem or file name) in ``names``, cropped
    to the central ``crop`` px on the 8 x 8 grid when given; a missing name is an ``InputError``."""
    from PIL import Image

    from recon.errors import InputError

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "image folder not found")
    out = {}
    for n in names:
        path = next((p for p in sorted(folder.iterdir()) if p.stem == n or p.name == n), None)
        if path is None:
            raise InputError(folder, f"held-out image {n} not found")
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        out[path.stem] = grid_crop(arr, crop)
    return out


class Runner:
    """QAIRN on one image: ``run(img [H, W, 3] float in [0, 1]) -> (restoration clipped to [0, 1] float64,
    quality estimates Q1..Q3 [3])``; ``self_ensemble``: the mean of the x8 rotated / flipped passes."""

    def __init__(self, model, device, self_ensemble: bool = False):
        self.model, self.device, self.self_ensemble = model, device, self_ensemble

    def __call__(self, img01: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from mriqa.models.qairn import restore_self_ensemble

        x = torch.from_numpy(np.ascontiguousarray(img01.transpose(2, 0, 1), dtype=np.float32))[None].to(self.device)
        with torch.no_grad():
            out, maps = restore_self_ensemble(self.model, x) if self.self_ensemble else self.model(x)
            q = self.model.quality(maps)[0].double().cpu().numpy()
        return out[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float64), q


def restoration(run: Runner, images: dict[str, np.ndarray], qfs) -> dict:
    """``{qf: mean PSNR / SSIM / PSNR-B of the JPEG and of the restoration, gains, per-image PSNR gain}``."""
    from mriqa.jpeg import jpeg_compress

    rows = {}
    for qf in qfs:
        acc = {k: [] for k in ("psnr_jpeg", "ssim_jpeg", "psnrb_jpeg", "psnr", "ssim", "psnrb")}
        for name, u8 in images.items():
            ref = u8.astype(np.float64) / 255
            jpg = jpeg_compress(u8, qf).astype(np.float64)
            res, _ = run(jpg)
            res = quantize8(res)  # what a saved 8-bit restoration would contain
            acc["psnr_jpeg"].append(psnr(ref, jpg))
            acc["ssim_jpeg"].append(ssim_rgb(ref, jpg))
            acc["psnrb_jpeg"].append(psnr_b(ref, jpg))
            acc["psnr"].append(psnr(ref, res))
            acc["ssim"].append(ssim_rgb(ref, res))
            acc["psnrb"].append(psnr_b(ref, res))
        row = {k: float(np.mean(v)) for k, v in acc.items()}
        row["psnr_gain"] = row["psnr"] - row["psnr_jpeg"]
        row["per_image_psnr_gain"] = {n: float(a - b) for n, a, b in zip(images, acc["psnr"], acc["psnr_jpeg"])}
        rows[qf] = row
    return rows


def proxy(run: Runner, images: dict[str, np.ndarray]) -> dict:
    """Per severity (``jpeg_qf``, ``blur_sigma``, ``noise_sigma``): Spearman of Q1..Q3 with it, pooled and the
    mean per image, and every value."""
    from scipy import ndimage

    from mriqa.jpeg import jpeg_compress
    from mriqa.train_qairn import POOLING_QFS  # the QFs the trainer's pooling selection uses

    series = {"jpeg_qf": [], "blur_sigma": [], "noise_sigma": []}
    for i, (name, u8) in enumerate(images.items()):
        ref = u8.astype(np.float64) / 255
        for qf in POOLING_QFS:
            series["jpeg_qf"].append((name, qf, run(jpeg_compress(u8, qf).astype(np.float64))[1]))
        for s in BLUR:
            series["blur_sigma"].append((name, s, run(quantize8(ndimage.gaussian_filter(ref, (s, s, 0))))[1]))
        rng = np.random.default_rng([7, i])
        for s in NOISE:
            series["noise_sigma"].append((name, s, run(quantize8(ref + s * rng.standard_normal(ref.shape)))[1]))
    out = {}
    for key, rows in series.items():
        sev = np.array([r[1] for r in rows], dtype=float)
        q = np.array([r[2] for r in rows])
        names = [r[0] for r in rows]
        res = {}
        for j in range(3):
            pooled = srcc(q[:, j], sev)  # NaN (no warning) for a constant estimate
            per = np.array([srcc(q[[n == m for n in names], j], sev[[n == m for n in names]]) for m in images])
            mean = float(np.mean(per[np.isfinite(per)])) if np.isfinite(per).any() else float("nan")
            res[f"q{j + 1}"] = {"srcc_pooled": float(pooled), "srcc_mean_per_image": mean}
        res["values"] = [{"image": r[0], "severity": r[1], "q": [float(v) for v in r[2]]} for r in rows]
        out[key] = res
    return out


# ----------------------------------------------------------------------------------------------- output
def table_one(rows: dict, network: str = "QAIRN (ours)") -> str:
    lines = ["| Network | QF | PSNR | SSIM | PSNR-B |", "|---|---|---|---|---|"]
    for qf, r in rows.items():
        lines.append(f"| JPEG | {qf} | {r['psnr_jpeg']:.2f} | {r['ssim_jpeg']:.3f} | {r['psnrb_jpeg']:.2f} |")
    for qf, r in rows.items():
        lines.append(f"| {network} | {qf} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['psnrb']:.2f} |")
    lines.append("")
    lines.append("| QF | PSNR gain (dB) | SSIM gain | PSNR-B gain (dB) |")
    lines.append("|---|---|---|---|")
    for qf, r in rows.items():
        lines.append(f"| {qf} | {r['psnr_gain']:+.2f} | {r['ssim'] - r['ssim_jpeg']:+.3f} | "
                     f"{r['psnrb'] - r['psnrb_jpeg']:+.2f} |")
    return "\n".join(lines)


def proxy_table(res: dict) -> str:
    lines = ["| severity | expected sign | Q1 pooled / per-image | Q2 pooled / per-image | Q3 pooled / per-image |",
             "|---|---|---|---|---|"]
    expected = {"jpeg_qf": "+ (QF up = better)", "blur_sigma": "- (sigma up = worse)",
                "noise_sigma": "- (sigma up = worse)"}
    for key, r in res.items():
        cells = [f"{r[q]['srcc_pooled']:+.3f} / {r[q]['srcc_mean_per_image']:+.3f}" for q in ("q1", "q2", "q3")]
        lines.append(f"| {key} | {expected[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pooling_line(meta: dict) -> str:
    """One line on how the Minkowski exponent was chosen (metadata ``pooling_selection``), or ''."""
    sel = meta.get("pooling_selection")
    if not sel:
        return ""
    table = ", ".join(f"p = {float(k):g}: {v:+.3f}" for k, v in sel["srcc_q2_qf"].items())
    return (f"- pooling: p = {sel['p']:g} (was {sel['previous_p']:g}), chosen on the validation images "
            f"{sel['val_images']} by Spearman(Q2, JPEG QF) over QF {sel['qfs'][0]}..{sel['qfs'][-1]} "
            f"({table}); `mriqa train-qairn --config configs/<name>.yaml --select-pooling`")


def model_card(meta: dict, weights: Path, doc: dict, t1: str, t3: str, notes: str = "") -> str:
    tr = meta.get("training", {}) or {}
    cfg = tr.get("config", {}) or {}
    acc = doc["acceptance"]
    return "\n".join([
        "# QAIRN weights (`qairn.safetensors`)",
        "",
        "Quality-Aware Image Restoration Network (Gedik, Venkataramanan & Bovik): a residual U-Net for JPEG "
        "deblocking whose skip connections pass through Residual Quality Attention blocks; the attention maps "
        "give unsupervised quality estimates Q1..Q3 (Minkowski pooling, p = "
        f"{meta.get('config', {}).get('minkowski_p')}). Architecture: `mriqa/models/qairn.py`.",
        "",
        f"- config: `{json.dumps(meta.get('config'))}`",
        f"- training: {tr.get('steps_done')} / {tr.get('steps_planned')} steps, best step {tr.get('best_step')}, "
        f"{tr.get('wall_s')} s on {tr.get('device')} (torch {tr.get('torch')})",
        f"- data: train {tr.get('train_images')}; validation {tr.get('val_images')}",
        f"- held out (never trained on): {doc['images']}",
        f"- sampler: {json.dumps(cfg.get('sampler'))}; loss L1 + (1 - SSIM); "
        f"Adam lr {json.dumps(cfg.get('train', {}).get('lr'))}"
        + (f"; the exported weights are the moving average of the weights (decay {cfg['train']['ema']})"
           if (cfg.get("train") or {}).get("ema") else ""),
        f"- trained with: `mriqa train-qairn --config configs/{cfg.get('name')}.yaml` "
        f"({tr.get('steps_done')} steps; {doc['n_parameters']:,} parameters)",
        *([pooling_line(meta)] if pooling_line(meta) else []),
        f"- weights file: `{weights.name}`"
        + (f", tensors stored as {meta['stored_dtype']} (loaded into the float32 network; "
           f"`python -m mriqa.weights_io --half`)" if meta.get("stored_dtype") else ""),
        "",
        "## Restoration on the held-out images (paper Table I format)",
        "",
        t1,
        "",
        "## Proxy quality correlations (Spearman)",
        "",
        t3,
        "",
        "## Acceptance (issue 7)",
        "",
        f"- PSNR gain at QF 10: {acc['psnr_gain_qf10']:+.2f} dB (target >= 1.5): "
        f"{'pass' if acc['psnr_gain_qf10_ok'] else 'FAIL'}",
        f"- Spearman(Q2, JPEG QF), pooled: {acc['q2_srcc_jpeg_qf']:+.3f} (target >= 0.85): "
        f"{'pass' if acc['q2_srcc_jpeg_qf_ok'] else 'FAIL'}",
        *([f"- with the x8 geometric self-ensemble (`mriqa restore --self-ensemble`, reported beside the single "
           f"pass): PSNR gain at QF 10 {acc['psnr_gain_qf10_self_ensemble']:+.2f} dB"]
          if "psnr_gain_qf10_self_ensemble" in acc else []),
        "",
        "Reproduce: `.venv/bin/python scripts/eval_qairn.py --weights <this file>"
        + (" --self-ensemble" if "psnr_gain_qf10_self_ensemble" in acc else "") + "`.",
        "",
        *([notes] if notes else []),
    ])


def evaluate(model, meta: dict, weights: Path, *, data: Path, names: list[str], crop: int | None = None,
             qfs=TABLE_QFS, self_ensemble: bool = False, skip_proxy: bool = False,
             weights_arg: str | None = None) -> dict:
    """Restoration at ``qfs`` (and with the x8 self-ensemble), proxy correlations unless ``skip_proxy``, and
    the acceptance of issue 7 for the images ``names`` of ``data`` -> every number (a JSON-able document;
    ``weights_arg`` records how the weights were asked for)."""
    train_names = set((meta.get("training") or {}).get("train_images") or [])
    leaked = [n for n in names if n in train_names or f"{n}.png" in train_names]
    if leaked:
        print(f"warning: {leaked} were in these weights' training set", file=sys.stderr)
    images = load_images(Path(data), names, crop)
    run = Runner(model, next(model.parameters()).device)
    t0 = time.time()
    rows = restoration(run, images, qfs)
    rows_se = restoration(Runner(model, run.device, self_ensemble=True), images, qfs) if self_ensemble else None
    prox = None if skip_proxy else proxy(run, images)
    q10 = rows.get(10, {}).get("psnr_gain", float("nan"))
    q2 = prox["jpeg_qf"]["q2"]["srcc_pooled"] if prox else float("nan")
    acc = {"psnr_gain_qf10": q10, "psnr_gain_qf10_ok": bool(q10 >= 1.5), "q2_srcc_jpeg_qf": q2,
           "q2_srcc_jpeg_qf_ok": bool(q2 >= 0.85)}
    if rows_se is not None:
        acc["psnr_gain_qf10_self_ensemble"] = rows_se.get(10, {}).get("psnr_gain", float("nan"))
    return {"weights": str(weights), "weights_arg": weights_arg, "images": list(images),
            "crop": crop, "restoration": rows, "restoration_self_ensemble": rows_se,
            "proxy": prox, "acceptance": acc, "paper_table1_qairn_live1": PAPER_QAIRN,
            "model_config": meta.get("config"), "n_parameters": model.num_parameters(),
            "elapsed_s": round(time.time() - t0, 1)}


def report(doc: dict) -> tuple[list[str], str, str]:
    """The printed text of an evaluation ``doc`` (list of blocks), its Table I text (with the x8 table appended
    when there is one, as the card shows it) and its proxy table ('' without one)."""
    acc, rows_se, prox = doc["acceptance"], doc.get("restoration_self_ensemble"), doc.get("proxy")
    t1 = table_one(doc["restoration"])
    printed = [f"# QAIRN restoration, {len(doc['images'])} held-out images ({', '.join(doc['images'])})\n", t1]
    if rows_se:
        t1_se = table_one(rows_se, "QAIRN x8 (ours)")
        printed += ["\n# The same with the x8 geometric self-ensemble (`mriqa restore --self-ensemble`: mean of the "
                    "restorations of the 8 rotated / flipped copies; 8 forward passes)\n", t1_se]
        t1 += "\n\nx8 geometric self-ensemble (`mriqa restore --self-ensemble`):\n\n" + t1_se
    t3 = proxy_table(prox) if prox else ""
    if prox:
        printed += ["\n# Spearman of Q1..Q3 with degradation severity (pooled / mean per image)\n", t3]
    q10, q2 = acc["psnr_gain_qf10"], acc["q2_srcc_jpeg_qf"]
    printed.append(
        f"\nacceptance: PSNR gain at QF 10 {q10:+.2f} dB (>= 1.5: {'pass' if acc['psnr_gain_qf10_ok'] else 'FAIL'}); "
        f"Spearman(Q2, QF) {q2:+.3f} (>= 0.85: {'pass' if acc['q2_srcc_jpeg_qf_ok'] else 'FAIL'}); "
        + (f"x8 self-ensemble {acc['psnr_gain_qf10_self_ensemble']:+.2f} dB at QF 10; " if rows_se else "")
        + f"{doc.get('elapsed_s', float('nan')):.0f}s")
    return printed, t1, t3
