"""Evaluate the R estimators on the held-out volume (Colin27) and on the real smallfov k-space.

Reads ``data/r128/test/<method>.h5`` (``scripts/make_r_dataset.py``: Colin27 reconstructions at nominal
R 2..12, random / equispaced / Poisson masks, zero-filled / CG-SENSE / MoDL; no model saw this volume), runs both
estimators through their public API (:mod:`mriqa.restimate`) on the images, and prints, per reconstruction
method and mask kind:

- Spearman correlation of the gray QF score with R for center / whole (mean) / foreground pooling,
- for each estimator: MAE in R over R in [2, 12] and over [2, 6] (against the nominal R; MAE against the
  effective R is in the JSON), interval coverage of the nominal R, interval width, fraction flagged OOD.

QF-based rows and ``learned`` use the per-method calibration (the h5 says which method made it, as
``mriqa recon`` writes), ``qf (any)`` and ``learned (any)`` the method-agnostic one; volume-level rows score
the estimate of all slices of one acquisition (:func:`mriqa.restimate.volume_estimate`). Then the real-data
check: the real 8-coil smallfov k-space (already
undersampled, R = 1.75: every other line + 25 centre lines) is retrospectively undersampled further to total
R of about 2, 3, 4, 6, 8 (keeping a subset of its own lines: a centre block of 32 % of the kept lines and
equispaced outer lines), reconstructed by zero-filled, CG-SENSE and MoDL (ESPIRiT maps from the acquired
centre), and both estimators are run on each.

Writes ``docs/r/README.md`` (intro + these tables, as printed), ``docs/r/eval.json``, and the figures
``docs/r/qf_vs_r.png`` (paper Fig. 14), ``docs/r/qf_maps.png`` (Fig. 15), ``docs/r/pred_vs_true.png``, and the
model card ``mriqa/weights/r-learned.md`` (shipped weights on the default data only). The measures are
:mod:`mriqa.evaluation.r_estimation`, the figures :mod:`mriqa.evaluation.r_figures`.

    python scripts/eval_r.py
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mriqa.evaluation.r_estimation import (LABELS, MASKS, METHODS, POOLS, file_sha256, interval_metrics,
                                           pooled_qf_scores, read_r_dataset, smallfov_masks, subset, volume_level)
from mriqa.evaluation.r_figures import figure_maps, figure_qf_vs_r, figure_scatter
from mriqa.iqa.correlation import srcc as spearman

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(REPO / "data/r128"))
    p.add_argument("--split", default="test")
    p.add_argument("--out", default=str(REPO / "docs/r"))
    p.add_argument("--smallfov", default=str(REPO.parent / "shared/data/mri/kspace/smallfov-brain8ch/smallfov"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--card", default="auto",
                   help="model card to write (default: mriqa/weights/r-learned.md, but only when the shipped "
                        "weights are evaluated on the default data and split; 'none': no card)")
    p.add_argument("--learned-weights", default=None,
                   help="learned estimator weights (default: the shipped mriqa/weights/r-learned.safetensors)")
    return p.parse_args(argv)


def smallfov_check(base: str, estimators: dict, lines: list[str], log) -> list[dict]:
    from recon import baselines
    from recon.modl import load_modl, modl_reconstruct
    from recon.pipeline import estimate_maps, load_kspace, undersample

    from mriqa.restimate import estimate_images

    volume = load_kspace(base)
    acquired = undersample(volume, None)
    width = acquired.kspace.shape[-1]
    cols = np.flatnonzero(acquired.mask.mask.numpy().ravel())
    c = width // 2  # the acquired ACS: the run of sampled columns through the centre, [lo, hi]
    lo, hi = c, c
    m0 = acquired.mask.mask.numpy().ravel() > 0
    while lo > 0 and m0[lo - 1]:
        lo -= 1
    while hi < width - 1 and m0[hi + 1]:
        hi += 1
    maps = estimate_maps(acquired.kspace, acquired.mask, volume.path, num_maps=1)
    model = load_modl("modl")
    rows = []
    cases = [(float(acquired.mask.acceleration_effective), m0.astype(np.float32))]
    cases += smallfov_masks(cols, (lo, hi), width, (2, 3, 4, 6, 8))
    for target, m in cases:
        mask = torch.from_numpy(m).view(1, 1, width)
        k = acquired.kspace * m
        r_eff = width / float(m.sum())
        recons = {"zf": baselines.zero_filled(k, mask), "sense": baselines.cg_sense(k, mask, maps),
                  "modl": modl_reconstruct(model, k, mask, sens_maps=maps)}
        for method, img in recons.items():
            row = {"target": float(target), "r_effective": r_eff, "method": method}
            for name, est in estimators.items():
                res = estimate_images(est, img, kind="mri", recon_method=method)
                row[name] = {"r_est": float(res["r_est"][0]), "r_low": float(res["r_low"][0]),
                             "r_high": float(res["r_high"][0]), "ood": res["ood"][0]}
            rows.append(row)
            log(f"  smallfov R_eff {r_eff:.2f} {method}: " + ", ".join(
                f"{n} {row[n]['r_est']:.2f} [{row[n]['r_low']:.2f}, {row[n]['r_high']:.2f}]" for n in estimators))
    names = list(estimators)
    lines += ["", "### Out-of-simulation check: real smallfov k-space (8 coils, 320 x 168), retrospectively "
              "undersampled further", "",
              "The first rows (R = 1.75) are the acquisition as it is. Effective R = 168 / kept lines. No "
              "model saw real data, this image size (320 x 168) or a field of view that folds over.", "",
              "| effective R | method | " + " | ".join(f"{n}: R est [interval]" for n in names) + " |",
              "|---:|---|" + "---|" * len(names)]
    for row in rows:
        cells = []
        for n in names:
            e = row[n]
            flag = " (OOD)" if e["ood"] else ""
            ok = "inside" if e["r_low"] <= row["r_effective"] <= e["r_high"] else "outside"
            cells.append(f"{e['r_est']:.2f} [{e['r_low']:.2f}, {e['r_high']:.2f}] {ok}{flag}")
        lines.append(f"| {row['r_effective']:.2f} | {LABELS[row['method']]} | " + " | ".join(cells) + " |")
    for n in names:
        err = [abs(r[n]["r_est"] - r["r_effective"]) for r in rows]
        cov = np.mean([r[n]["r_low"] <= r["r_effective"] <= r[n]["r_high"] for r in rows])
        ood_n = sum(r[n]["ood"] is not None for r in rows)
        lines.append(f"\n{n}: MAE vs effective R {np.mean(err):.2f}, coverage {cov:.2f}, flagged OOD {ood_n}/"
                     f"{len(rows)}; Spearman(estimate, effective R) "
                     f"{spearman([r[n]['r_est'] for r in rows], [r['r_effective'] for r in rows]):.3f}")
    return rows


def recalibration_lines(info: dict) -> list[str]:
    """Model-card lines for the linear recalibrations in the metadata ``r_estimation`` (none if absent)."""
    if not info.get("recalibration"):
        return []
    pair = lambda r: f"a = {r['a']:+.3f}, b = {r['b']:.3f}"  # noqa: E731
    lines = [f"- recalibration log R = a + b x pooled, fitted on all validation reconstructions: "
             f"{pair(info['recalibration'])}"]
    by_method = info.get("recalibration_by_method") or {}
    if by_method:
        lines.append("- per reconstruction method (used when the input says which method made it, as `mriqa recon` "
                     "writes): " + "; ".join(
                         f"{LABELS.get(m, m)} {pair(r)}, half-width {info['halfwidth_by_method'][m]:.3f}"
                         for m, r in by_method.items()))
    return lines


def write_model_card(path: Path, summary: dict, smallfov: list[dict]) -> None:
    """``mriqa/weights/r-learned.md`` from the weights' metadata and this evaluation (no typed numbers)."""
    from recon.files import atomic_path
    from recon.io.weights import load_weights

    from mriqa.restimate import learned

    import h5py

    _, meta = load_weights(learned.WEIGHTS)
    root = Path((meta.get("training", {}).get("config", {}).get("data", {}) or {}).get("root", "data/r128"))
    train_file = (root if root.is_absolute() else REPO / root) / "train/zf.h5"
    data_command = "python scripts/make_r_dataset.py  # (train data not found here)"
    augmented = False
    if train_file.is_file():
        with h5py.File(train_file, "r") as hf:
            data_command = "python " + str(hf.attrs.get("command", "scripts/make_r_dataset.py"))
            augmented = bool(hf.attrs.get("augmented", False))
    train_file = train_file.relative_to(REPO) if train_file.is_relative_to(REPO) else train_file
    info, tr = meta["r_estimation"], meta.get("training", {})
    cfg = tr.get("config", {})
    tc = cfg.get("train", {})
    allrow = summary["estimators"]["learned/all/all"]
    lines = [
        "# Model card: `r-learned` (mriqa/weights/r-learned.safetensors)", "",
        "Learned acceleration (R) estimator of `mriqa estimate-r` (`mriqa/restimate/learned.py`). Generated by "
        "`python scripts/eval_r.py` from the weights' metadata and the held-out evaluation; see docs/r/README.md.", "",
        "## Model",
        f"- QFNet (gray, width {meta['config'].get('width')}, receptive field 28 px, output stride 4), "
        f"initialised from `{tr.get('init', '?')}` (the gray QF predictor of that name at training time; "
        f"`configs/{cfg.get('name', 'r-learned')}.yaml` says which); the pre-sigmoid output map is log R per "
        "cell; image estimate = foreground-weighted mean of the map (`mriqa.pooling`).",
        "- Input: the QF predictor's normalisation (`mriqa/normalize.py`, magnitude / 99.5th percentile per "
        "slice, 8-bit). Any image size >= 28 x 28; trained at 128 x 128.", "",
        "## Data",
        f"- `scripts/make_r_dataset.py` -> `{root}`: train split (3T MPRAGE, {tr.get('train_images', '?')} "
        f"reconstructions: methods {', '.join(cfg.get('data', {}).get('methods', []))}; nominal R 2-12; random, "
        "equispaced and Poisson masks); validation split MNI152 (checkpoint selection, interval calibration); "
        "test Colin27 never read in training.", "",
        "## Training",
        f"```\n# data (train and val splits), as recorded in {train_file}:\n{data_command}\n"
        f"mriqa train-r --config configs/{cfg.get('name', 'r-learned')}.yaml\n```",
        f"- {info.get('steps')} steps of batch {tc.get('batch')} crops {cfg.get('sampler', {}).get('crop')} px, "
        f"Adam lr {tc.get('lr')} cosine, {tc.get('threads')} CPU thread(s), {tr.get('wall_s', '?')} s wall; "
        f"best validation step {info.get('best_step')}.", "",
        "## Interval and out-of-distribution thresholds (metadata `r_estimation`)",
        f"- conformal half-width on log R: {info['halfwidth']:.3f} (fitted at coverage {info['coverage_fit']}); "
        f"validation coverage {info['val_coverage']:.3f}, validation MAE {info['val_mae_r']:.3f}",
        *recalibration_lines(info),
        f"- OOD: spread of the log R map > {info['max_spread']:.3f}; neighbour correlation < "
        f"{info['min_correlation']:.3f}; see `mriqa/restimate/ood.py`.", "",
        "## Measured on the held-out test volume (Colin27), `python scripts/eval_r.py`",
        "| method | mask | MAE [2,12] | MAE [2,6] | coverage |", "|---|---|---:|---:|---:|"]
    for m in METHODS:
        for k in MASKS + ("all",):
            e = summary["estimators"][f"learned/{m}/{k}"]
            lines.append(f"| {LABELS[m]} | {k} | {e['mae']:.3f} | {e['mae_2_6']:.3f} | {e['coverage']:.3f} |")
    lines.append(f"| all | all | {allrow['mae']:.3f} | {allrow['mae_2_6']:.3f} | {allrow['coverage']:.3f} |")
    if smallfov:
        err = np.mean([abs(r["learned"]["r_est"] - r["r_effective"]) for r in smallfov])
        lines += ["", f"Real smallfov k-space (out of simulation, retrospectively undersampled): MAE vs effective R "
                  f"{err:.2f} over {len(smallfov)} reconstructions (table in docs/r/README.md)."]
    lines += ["", "## Limits",
              "- Trained on one simulated volume (one subject), 128 x 128, 8 coils, "
              + ("SNR 15-40 with a random k-space apodization (`--augment`), " if augmented else "SNR 40, ")
              + "three reconstruction "
              "methods; other sizes, contrasts, coil counts and methods are extrapolation (the OOD rules catch only "
              "gross mismatches). The interval is calibrated on a second simulated brain, not on real data."]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import mriqa
    from mriqa.restimate import learned, qf_based

    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    predictor = mriqa.load_predictor("gray", device="cpu", batch_size=32)
    estimators = {"learned": learned.LearnedREstimator.load(args.learned_weights),
                  "qf": qf_based.QFREstimator.load(predictor=predictor)}
    # the learned estimator as trained, without the linear recalibration added after the first evaluation
    info = dict(estimators["learned"].info, recalibration=None, recalibration_by_method=None)
    info["halfwidth"] = info.get("halfwidth_without_recalibration", info["halfwidth"])
    no_recal = learned.LearnedREstimator(estimators["learned"].wrapper.model.net, info)
    data, xs, maps, scores, results = {}, {}, {}, {}, {"learned": {}, "learned (any)": {},
                                                        "learned (no recal.)": {}, "qf": {}, "qf (any)": {}}
    geom = None
    for m in METHODS:
        path = Path(args.data) / args.split / f"{m}.h5"
        d = read_r_dataset(path)
        data[m] = d
        x = torch.cat([predictor.prepare(d["images"][a:a + 64], kind="mri")[0] for a in range(0, len(d["images"]), 64)])
        xs[m] = x
        with torch.no_grad():
            maps[m] = torch.cat([predictor.predict_input(x[a:a + 32]) for a in range(0, len(x), 32)]).float().numpy()
        geom = predictor.geometry(tuple(x.shape[-2:]), tuple(maps[m].shape[-2:]))
        scores[m] = pooled_qf_scores(maps[m], x[:, 0].numpy(), geom)
        results["learned"][m] = estimators["learned"].estimate(x, recon_method=m)
        results["learned (any)"][m] = estimators["learned"].estimate(x, recon_method=None)
        results["learned (no recal.)"][m] = no_recal.estimate(x)
        results["qf"][m] = estimators["qf"].estimate(x, recon_method=m)
        results["qf (any)"][m] = estimators["qf"].estimate(x, recon_method=None)
        log(f"{m}: {len(x)} images ({time.perf_counter() - t0:.0f} s)")
    stale = ""
    modl_attrs = data["modl"]["attrs"]
    current = file_sha256(REPO / "recon/weights/modl.safetensors")
    if str(modl_attrs.get("modl_weights_sha256")) != current:
        stale = ("**Warning: the MoDL reconstructions were made with MoDL weights that differ from the "
                 "current `recon/weights/modl.safetensors`; rerun `python scripts/make_r_dataset.py --methods "
                 "modl` and this script.**")

    n_slices = {m: len(set(zip(data[m]["volume"], data[m]["slice"]))) for m in METHODS}
    lines = ["Held-out volume Colin27 (3 orientations; slices per orientation subset: "
             + ", ".join(f"{LABELS[m]} {n_slices[m]}" for m in METHODS)
             + f"), nominal R {', '.join(f'{r:g}' for r in sorted(set(data['zf']['accel'])))}, masks "
             f"{', '.join(MASKS)}; one mask per volume, mask kind and R. MoDL weights sha256 "
             f"{str(modl_attrs.get('modl_weights_sha256', '?'))[:12]}; learned estimator "
             f"`{args.learned_weights or 'mriqa/weights/r-learned.safetensors'}`, QF calibration default pooling "
             f"`{estimators['qf'].pool}`.", ""]
    if stale:
        lines += [stale, ""]
    lines += ["### Gray QF score vs R: Spearman correlation", "",
              "Three readings of \"QF vs R\": **curve** = Spearman of the mean QF over slices at each R against R "
              "(the paper's Fig. 14 curves; 8 points); **within slice** = Spearman over R for one slice and mask, "
              "averaged over slices; **pooled** = Spearman over all (slice, R) pairs, so differences between "
              "slices count too (what a reference-free estimator faces).", "",
              "| method | mask | n | center: curve / within / pooled | whole (mean): curve / within / pooled | "
              "foreground: curve / within / pooled |", "|---|---|---:|---|---|---|"]
    summary = {"spearman": {}, "estimators": {}}
    for m in METHODS:
        d = data[m]
        for kind in MASKS + ("all",):
            s = np.ones(len(d["accel"]), bool) if kind == "all" else d["mask_kind"] == kind
            rho = {}
            for p in POOLS:
                q, r = scores[m][p][s], d["accel"][s]
                rs = sorted(set(r))
                curve = spearman([q[r == v].mean() for v in rs], rs)
                keys = list(zip(d["volume"][s], d["slice"][s], d["mask_kind"][s]))
                groups = {}
                for i, k in enumerate(keys):
                    groups.setdefault(k, []).append(i)
                within = float(np.nanmean([spearman(q[g], r[g]) for g in groups.values() if len(g) > 2]))
                rho[p] = {"curve": curve, "within": within, "pooled": spearman(q, r)}
            summary["spearman"][f"{m}/{kind}"] = rho
            lines.append(f"| {LABELS[m]} | {kind} | {s.sum()} | " + " | ".join(
                f"{rho[p]['curve']:.3f} / {rho[p]['within']:.3f} / {rho[p]['pooled']:.3f}" for p in POOLS) + " |")
    lines += ["", "### Estimators: error in R (nominal), interval coverage", "",
              "MAE over R in [2, 12] and over [2, 6]; coverage = fraction of slices whose interval contains the "
              "nominal R; width = median r_high / r_low; OOD = fraction flagged out of distribution (interval "
              "[1, 16]). `qf` uses the per-method calibration, `qf (any)` the method-agnostic one. `learned` "
              "includes the linear recalibration fitted on validation (added after a first evaluation showed "
              "the predictions shrunk towards the mean), per reconstruction method (the input says which "
              "method made it, as `mriqa recon` writes); `learned (any)` uses the one recalibration fitted on "
              "all methods; `learned (no recal.)` is the network alone, with its own conformal half-width.", "",
              "| estimator | method | mask | MAE [2,12] | MAE [2,6] | coverage | width | OOD |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, per in results.items():
        for m in METHODS:
            d = data[m]
            for kind in MASKS + ("all",):
                s = np.ones(len(d["accel"]), bool) if kind == "all" else d["mask_kind"] == kind
                met = interval_metrics(d["accel"][s], subset(per[m], s))
                met["mae_effective"] = float(np.mean(np.abs(per[m]["r_est"][s] - d["accel_effective"][s])))
                summary["estimators"][f"{name}/{m}/{kind}"] = met
                lines.append(f"| {name} | {LABELS[m]} | {kind} | {met['mae']:.3f} | {met['mae_2_6']:.3f} | "
                             f"{met['coverage']:.3f} | {met['width']:.2f} | {met['ood']:.3f} |")
    # overall per estimator
    lines += ["", "| estimator | all methods and masks: MAE [2,12] | MAE [2,6] | coverage |", "|---|---:|---:|---:|"]
    for name, per in results.items():
        r = np.concatenate([data[m]["accel"] for m in METHODS])
        res = {k: (np.concatenate([per[m][k] for m in METHODS]) if k != "ood" else sum((per[m]["ood"] for m in METHODS), []))
               for k in per["zf"]}
        met = interval_metrics(r, res)
        summary["estimators"][f"{name}/all/all"] = met
        lines.append(f"| {name} | {met['mae']:.3f} | {met['mae_2_6']:.3f} | {met['coverage']:.3f} |")

    # volume level: the slices of one acquisition share its mask, so `mriqa estimate-r`'s volume record
    lines += ["", "### Volume-level estimates (`mriqa estimate-r`'s `\"slice\": null` record)", "",
              "One estimate per acquisition = (orientation, mask kind, R) of a method: the mean log R of its "
              "slices with the median slice half-width (`mriqa.restimate.volume_estimate`); 8 R x 3 orientations "
              "= 24 acquisitions per cell.", "",
              "| estimator | method | mask | MAE [2,12] | MAE [2,6] | coverage |", "|---|---|---|---:|---:|---:|"]
    for name in ("learned", "learned (any)"):
        for m in METHODS:
            d, res = data[m], results[name][m]
            for kind in MASKS + ("all",):
                vols = volume_level(d, res, kind)
                summary["estimators"][f"{name} (volume)/{m}/{kind}"] = vols
                lines.append(f"| {name} | {LABELS[m]} | {kind} | {vols['mae']:.3f} | {vols['mae_2_6']:.3f} | "
                             f"{vols['coverage']:.3f} |")

    # acceptance
    lines += ["", "### Acceptance (issue 5)", ""]
    for m in ("sense", "modl"):
        for how in ("curve", "within", "pooled"):
            worst = max(summary["spearman"][f"{m}/{k}"]["foreground"][how] for k in MASKS)
            lines.append(f"- foreground QF vs R Spearman <= -0.95 for {LABELS[m]} ({how}): worst mask {worst:.3f} -> "
                         f"{'met' if worst <= -0.95 else 'NOT met'}")
    for name in results:
        cells = [summary["estimators"][f"{name}/{m}/{k}"] for m in METHODS for k in MASKS]
        mae_max = max(c["mae"] for c in cells)
        mae26_max = max(c["mae_2_6"] for c in cells)
        cov_min = min(c["coverage"] for c in cells)
        ok = mae_max <= 0.75 and mae26_max <= 0.5 and cov_min >= 0.8
        lines.append(f"- {name}: worst (method, mask) MAE [2,12] {mae_max:.3f} (<= 0.75?), MAE [2,6] "
                     f"{mae26_max:.3f} (<= 0.5?), coverage {cov_min:.3f} (>= 0.8?) -> "
                     f"{'all met' if ok else 'not all met'}")

    figure_qf_vs_r(out / "qf_vs_r.png", data, scores)
    fm = "modl"
    figure_maps(out / "qf_maps.png", data[fm], xs[fm], maps[fm], geom, fm)
    figure_scatter(out / "pred_vs_true.png", data, {k: results[k] for k in ("learned", "qf")})
    smallfov = []
    if args.smallfov and Path(args.smallfov + ".cfl").is_file():
        smallfov = smallfov_check(args.smallfov, {"learned": estimators["learned"], "qf": estimators["qf"]},
                                  lines, log)
    else:
        lines += ["", f"(smallfov k-space not found at {args.smallfov}: real-data check skipped)"]
    lines += ["", f"Printed by `python scripts/eval_r.py` in {time.perf_counter() - t0:.0f} s "
                  f"(CPU, {args.threads} thread(s))."]
    table = "\n".join(lines)
    print(table)
    from recon.files import atomic_path

    # the trainer's learning curves (in the run folder its metadata names), shown beside the results
    run_dir = estimators["learned"].training.get("config", {}).get("output_dir", "runs/r-learned")
    curves = REPO / run_dir / "curves.png"
    extra = ""
    if curves.is_file():
        import shutil

        with atomic_path(out / "learned_curves.png") as tmp:
            shutil.copyfile(curves, tmp)
        extra = "\n\n![learned estimator training curves](learned_curves.png)"
    intro_path = out / "INTRO.md"
    intro = intro_path.read_text() if intro_path.is_file() else ""
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(intro + "\n## Results (printed by `python scripts/eval_r.py`)\n\n" + table + "\n\n"
                       "![QF vs R](qf_vs_r.png)\n\n![QF maps](qf_maps.png)\n\n![estimated vs true R](pred_vs_true.png)"
                       + extra + "\n")
    summary["smallfov"] = smallfov
    card = args.card
    if card == "auto":
        standard = (args.learned_weights is None and args.split == "test"
                    and Path(args.data).resolve() == (REPO / "data/r128").resolve())
        card = str(REPO / "mriqa/weights/r-learned.md") if standard else "none"
    if card != "none":
        write_model_card(Path(card), summary, smallfov)
    with atomic_path(out / "eval.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
