#!/usr/bin/env python
"""Evaluate QAIRN on held-out images: restoration (paper Table I) and the proxy quality correlations.

    .venv/bin/python scripts/eval_qairn.py                                   # shipped weights, Kodak24 test
    .venv/bin/python scripts/eval_qairn.py --weights runs/qairn/best.safetensors --json runs/qairn/eval.json \
        --card mriqa/weights/qairn.md

1. Restoration (paper Table I format): each held-out image is JPEG-compressed (Pillow, 4:2:0) at QF 10, 20,
   30, 40 and restored; PSNR, SSIM and PSNR-B of the JPEG input and of the restoration against the original,
   averaged over the images, and the gain. PSNR: RGB, data range 1. SSIM: scikit-image, Gaussian window
   sigma 1.5, mean over the RGB channels (as FBCNN's colour evaluation). PSNR-B (Yim & Bovik 2011): per
   channel ``10 log10(1 / (MSE + BEF))``, BEF = blocking effect factor of the image under test (8 x 8 grid,
   ``eta = log2(8) / log2(min(H, W))``, 0 when boundary differences do not exceed the others), averaged over
   channels. Images are used whole (Kodak24 crops are 500 x 500; the JPEG grid starts at the top-left corner).
2. Proxy correlations: each held-out image degraded by JPEG (QF 5..95), Gaussian blur (sigma 0.5..4 px) and
   additive white Gaussian noise (sigma 0.01..0.12 in [0, 1] units, seeded), each re-quantised to 8 bits;
   Spearman of Q1, Q2, Q3 with the JPEG QF (expected positive) and with the blur / noise sigma (expected
   negative if Q tracks quality; the paper's Table III found the opposite sign for noise), pooled over all
   images and as the mean of the per-image coefficients.

Acceptance (issue 7): PSNR gain at QF 10 >= 1.5 dB; pooled Spearman(Q2, JPEG QF) >= 0.85. Printed with the
tables; ``--json`` writes every number, ``--card`` a markdown model card (training metadata + these results),
``--doc`` the printed text as markdown, both followed by ``--notes``. ``--render JSON`` rewrites the card and the
doc from a previous run's ``--json`` without evaluating again (minutes saved when only the notes changed).
Held-out list default: ``data.held_out`` of ``configs/qairn.yaml`` (Kodak24 kodim04, 08, 12, 16, 20, 24).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recon.files import atomic_path  # noqa: E402
from mriqa.iqa.correlation import srcc  # noqa: E402
from mriqa.jpeg import jpeg_compress  # noqa: E402
from mriqa.models.qairn import load_qairn, resolve_qairn_weights, restore_self_ensemble  # noqa: E402
from mriqa.train_qairn import POOLING_QFS  # noqa: E402
from recon.io.weights import load_weights  # noqa: E402

TABLE_QFS = (10, 20, 30, 40)
PROXY_QFS = POOLING_QFS  # the QFs the trainer's pooling selection uses on the validation images
BLUR = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
NOISE = (0.01, 0.02, 0.03, 0.05, 0.08, 0.12)
PAPER_QAIRN = {10: (27.25, 0.803, 26.90), 20: (29.60, 0.868, 29.14), 30: (30.94, 0.896, 30.41),
               40: (31.86, 0.911, 31.29)}  # LIVE1 colour, paper Table I (for reference; other images)


# ----------------------------------------------------------------------------------------------- metrics
def psnr(ref: np.ndarray, img: np.ndarray) -> float:
    mse = float(np.mean((ref.astype(np.float64) - img.astype(np.float64)) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def ssim(ref: np.ndarray, img: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(ref, img, data_range=1.0, channel_axis=-1, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False))


def blocking_effect_factor(ch: np.ndarray, block: int = 8) -> float:
    """BEF of one channel ``[H, W]`` (Yim & Bovik 2011), values in [0, 1]."""
    h, w = ch.shape
    ch = ch.astype(np.float64)
    dh = (ch[:, :-1] - ch[:, 1:]) ** 2  # horizontal neighbour pairs (p, p + 1)
    dv = (ch[:-1, :] - ch[1:, :]) ** 2
    bh = np.zeros(w - 1, bool)
    bh[block - 1:: block] = True
    bv = np.zeros(h - 1, bool)
    bv[block - 1:: block] = True
    n_b = dh[:, bh].size + dv[bv, :].size
    n_c = dh[:, ~bh].size + dv[~bv, :].size
    if n_b == 0 or n_c == 0:
        return 0.0
    d_b = (dh[:, bh].sum() + dv[bv, :].sum()) / n_b
    d_c = (dh[:, ~bh].sum() + dv[~bv, :].sum()) / n_c
    if d_b <= d_c:
        return 0.0
    eta = math.log2(block) / math.log2(min(h, w))
    return float(eta * (d_b - d_c))


def psnr_b(ref: np.ndarray, img: np.ndarray) -> float:
    """PSNR-B, per channel, averaged (data range 1); BEF of ``img``."""
    vals = []
    for c in range(img.shape[-1]):
        mse = float(np.mean((ref[..., c].astype(np.float64) - img[..., c]) ** 2))
        vals.append(10 * math.log10(1.0 / max(mse + blocking_effect_factor(img[..., c]), 1e-10)))
    return float(np.mean(vals))


# ----------------------------------------------------------------------------------------------- helpers
def load_images(folder: Path, names: list[str], crop: int | None) -> dict[str, np.ndarray]:
    from PIL import Image

    out = {}
    for n in names:
        path = next((p for p in sorted(folder.iterdir()) if p.stem == n or p.name == n), None)
        if path is None:
            raise SystemExit(f"eval_qairn: held-out image {n} not found in {folder}")
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        if crop:
            h, w = arr.shape[:2]
            s = min(crop, h, w) // 8 * 8
            r0, c0 = ((h - s) // 2) // 8 * 8, ((w - s) // 2) // 8 * 8
            arr = arr[r0:r0 + s, c0:c0 + s]
        out[path.stem] = arr
    return out


def q8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0, 1) * 255) / 255


class Runner:
    def __init__(self, model, device, self_ensemble: bool = False):
        self.model, self.device, self.self_ensemble = model, device, self_ensemble

    @torch.no_grad()
    def __call__(self, img01: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(img01.transpose(2, 0, 1), dtype=np.float32))[None].to(self.device)
        out, maps = restore_self_ensemble(self.model, x) if self.self_ensemble else self.model(x)
        q = self.model.quality(maps)[0].double().cpu().numpy()
        return out[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float64), q


def restoration(run: Runner, images: dict[str, np.ndarray], qfs) -> dict:
    rows = {}
    for qf in qfs:
        acc = {k: [] for k in ("psnr_jpeg", "ssim_jpeg", "psnrb_jpeg", "psnr", "ssim", "psnrb")}
        for name, u8 in images.items():
            ref = u8.astype(np.float64) / 255
            jpg = jpeg_compress(u8, qf).astype(np.float64)
            res, _ = run(jpg)
            res = q8(res)  # what a saved 8-bit restoration would contain
            acc["psnr_jpeg"].append(psnr(ref, jpg))
            acc["ssim_jpeg"].append(ssim(ref, jpg))
            acc["psnrb_jpeg"].append(psnr_b(ref, jpg))
            acc["psnr"].append(psnr(ref, res))
            acc["ssim"].append(ssim(ref, res))
            acc["psnrb"].append(psnr_b(ref, res))
        row = {k: float(np.mean(v)) for k, v in acc.items()}
        row["psnr_gain"] = row["psnr"] - row["psnr_jpeg"]
        row["per_image_psnr_gain"] = {n: float(a - b) for n, a, b in zip(images, acc["psnr"], acc["psnr_jpeg"])}
        rows[qf] = row
    return rows


def proxy(run: Runner, images: dict[str, np.ndarray]) -> dict:
    series = {"jpeg_qf": [], "blur_sigma": [], "noise_sigma": []}
    for i, (name, u8) in enumerate(images.items()):
        ref = u8.astype(np.float64) / 255
        for qf in PROXY_QFS:
            series["jpeg_qf"].append((name, qf, run(jpeg_compress(u8, qf).astype(np.float64))[1]))
        for s in BLUR:
            series["blur_sigma"].append((name, s, run(q8(ndimage.gaussian_filter(ref, (s, s, 0))))[1]))
        rng = np.random.default_rng([7, i])
        for s in NOISE:
            series["noise_sigma"].append((name, s, run(q8(ref + s * rng.standard_normal(ref.shape)))[1]))
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


@torch.no_grad()
def evaluate(model, meta: dict, weights: Path, args) -> dict:
    """Run the evaluation the arguments ask for -> every number (the ``--json`` document)."""
    names = [n.strip() for n in args.images.split(",") if n.strip()]
    train_names = set((meta.get("training") or {}).get("train_images") or [])
    leaked = [n for n in names if n in train_names or f"{n}.png" in train_names]
    if leaked:
        print(f"eval_qairn: warning: {leaked} were in these weights' training set", file=sys.stderr)
    images = load_images(Path(args.data), names, args.crop)
    run = Runner(model, next(model.parameters()).device)
    t0 = time.time()
    qfs = [int(q) for q in args.qfs.split(",")]
    rows = restoration(run, images, qfs)
    rows_se = restoration(Runner(model, run.device, self_ensemble=True), images, qfs) if args.self_ensemble else None
    prox = None if args.skip_proxy else proxy(run, images)
    q10 = rows.get(10, {}).get("psnr_gain", float("nan"))
    q2 = prox["jpeg_qf"]["q2"]["srcc_pooled"] if prox else float("nan")
    acc = {"psnr_gain_qf10": q10, "psnr_gain_qf10_ok": bool(q10 >= 1.5), "q2_srcc_jpeg_qf": q2,
           "q2_srcc_jpeg_qf_ok": bool(q2 >= 0.85)}
    if rows_se is not None:
        acc["psnr_gain_qf10_self_ensemble"] = rows_se.get(10, {}).get("psnr_gain", float("nan"))
    return {"weights": str(weights), "weights_arg": args.weights, "images": list(images),
            "crop": args.crop, "restoration": rows, "restoration_self_ensemble": rows_se,
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


def main(argv=None) -> int:
    cfg = yaml.safe_load((REPO / "configs" / "qairn.yaml").read_text())
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None,
                   help="QAIRN weights (default: the shipped mriqa/weights/qairn.safetensors)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "rgb" / "Kodak24"), help="image folder")
    p.add_argument("--images", default=",".join(cfg["data"]["held_out"]), help="comma-separated held-out names")
    p.add_argument("--qfs", default=",".join(map(str, TABLE_QFS)), help="Table I quality factors")
    p.add_argument("--crop", type=int, default=None, help="central crop (pixels) for a quick run")
    p.add_argument("--skip-proxy", action="store_true", help="restoration table only")
    p.add_argument("--self-ensemble", action="store_true",
                   help="also print Table I for the x8 geometric self-ensemble (mriqa restore --self-ensemble); "
                        "the acceptance line stays on the single pass")
    p.add_argument("--device", default=None)
    p.add_argument("--json", default=None, help="write all numbers here")
    p.add_argument("--card", default=None, help="write a markdown model card here")
    p.add_argument("--doc", default=None, help="write everything printed here as markdown (docs/qairn/README.md)")
    p.add_argument("--notes", default=None, help="a markdown file appended verbatim to --doc and --card")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="no evaluation: rewrite --doc / --card from the numbers a previous run wrote with --json "
                        "(e.g. after editing --notes)")
    args = p.parse_args(argv)

    from recon.errors import InputError

    try:
        if args.render:
            rendered = json.loads(Path(args.render).read_text()) if Path(args.render).is_file() else None
            if rendered is None or "restoration" not in rendered:
                raise InputError(args.render, "not an evaluation written by eval_qairn.py --json")
            args.weights, args.self_ensemble = rendered.get("weights_arg"), bool(rendered["restoration_self_ensemble"])
            weights = resolve_qairn_weights(rendered["weights"])
            model, meta = None, load_weights(weights)[1]
        else:
            weights = resolve_qairn_weights(args.weights)
            model, meta = load_qairn(weights, device=args.device)
    except InputError as exc:
        print(f"eval_qairn: {exc}", file=sys.stderr)
        return 2
    doc = rendered if args.render else evaluate(model, meta, weights, args)
    printed, t1, t3 = report(doc)
    print("\n".join(printed))
    if args.json and not args.render:
        with atomic_path(args.json, suffix=".json") as tmp:
            tmp.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    if args.card:
        with atomic_path(args.card, suffix=".md") as tmp:
            tmp.write_text(model_card(meta, weights, doc, t1, t3, Path(args.notes).read_text() if args.notes else ""))
    if args.doc:
        tr = meta.get("training") or {}
        flags = (" --weights " + args.weights if args.weights else "")
        flags += " --self-ensemble" if args.self_ensemble else ""
        head = [f"Printed by `python scripts/eval_qairn.py{flags}` "
                f"({tr.get('config', {}).get('name')}, {doc['n_parameters']:,} "
                f"parameters, config `{json.dumps(meta.get('config'))}`, {tr.get('steps_done')} training steps, "
                f"weights of step {tr.get('best_step')}).\n"]
        if pooling_line(meta):
            head.append(pooling_line(meta)[2:] + "\n")
        tail = [Path(args.notes).read_text()] if args.notes else []
        with atomic_path(args.doc, suffix=".md") as tmp:
            tmp.write_text("\n".join(head + printed + tail) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
