"""Evaluate R estimators on held-out subjects, the real 16-coil k-space, other anatomy and non-MRI inputs.

Sets (the layout of :mod:`mriqa.recon_quality.data`; no estimator trained on any of them):

- held-out subjects, per slice: ``data/rq128/test.h5`` (IXI 36-40 + Colin27, one slice per orientation,
  every R x mask kind x method: zero-filled, CG-SENSE, L1-wavelet, MoDL);
- held-out subjects, volumes: ``data/rq128-vol/test.h5`` (the same subjects, three slices per orientation at
  every R x mask x method; ``python scripts/make_quality_dataset.py --split test --slices 3 --accels 2 3 4 6 8
  10 12 --out data/rq128-vol``): volume estimate = :func:`mriqa.restimate.volume_estimate` of its slices;
- the real 16-coil k-space (``data/rq128/real16.h5``, built by ``scripts/eval_rq.py``), both orientations;
- other anatomy (``data/rq128/msd.h5``, MSD brain tumour and prostate, simulated; built by ``scripts/eval_rq.py``);
- a second real scan, undersampled when acquired (``data/rq128/smallfov.h5``, built here from ``--data`` when
  missing: :func:`mriqa.recon_quality.data.acquired_kspace_set`, every 1st-8th acquired outer line; truth = the
  effective R);
- inputs to refuse (:func:`mriqa.evaluation.r_heldout.ood_inputs`): Kodak24 gray and colour, pure noise,
  non-MRI pictures.

Each estimator runs twice where it can: told the reconstruction method (as ``mriqa estimate-r`` is for files
that ``mriqa recon`` wrote) and not told. Measures: :mod:`mriqa.evaluation.r_heldout`. Writes the tables
(``--out``, markdown as printed), ``--json`` and figures in ``--figures`` (``r_pred_vs_true.png``: estimate
against true R per method and mask; ``r_error_vs_r.png``: MAE against R per method; ``r_real.png``: the real
k-space check).

    python scripts/eval_r_heldout.py --estimators rq learned --out docs/r/heldout.md --json docs/r/heldout.json \
        --figures docs/r
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def figures(folder: Path, name: str, test: dict, res: dict, real: dict | None, real_res: dict | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mriqa.evaluation.r_heldout import LABELS, MASK_KINDS
    from recon.files import atomic_path

    def save(fig, path):
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=80)
        plt.close(fig)

    methods = [m for m in LABELS if m in set(test["method"])]
    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 3.8), squeeze=False)
    for ax, m in zip(axes[0], methods):
        for k, kind in enumerate(MASK_KINDS):
            s = (test["method"] == m) & (test["mask_kind"] == kind)
            ax.scatter(test["accel"][s] + (k - 1) * 0.25 + rng.uniform(-0.08, 0.08, s.sum()), res["r_est"][s],
                       s=6, alpha=0.5, label=kind)
        ax.plot([1, 17], [1, 17], "k--", lw=0.8)
        keep = (test["method"] == m) & (test["accel"] <= 12)
        ax.set_title(f"{LABELS[m]} (MAE [2,12] {np.mean(np.abs(res['r_est'][keep] - test['accel'][keep])):.2f})",
                     fontsize=9)
        ax.set_xlabel("true nominal R")
        ax.set_ylabel("estimated R")
        ax.legend(fontsize=7, markerscale=2)
    fig.suptitle(f"{name}: estimated vs true R, held-out subjects (per slice)")
    save(fig, folder / "r_pred_vs_true.png")

    fig, ax = plt.subplots(figsize=(5.5, 4))
    accels = np.unique(test["accel"])
    for m in methods:
        ax.plot(accels, [np.mean(np.abs(res["r_est"] - test["accel"])[(test["method"] == m) & (test["accel"] == a)])
                         for a in accels], "o-", label=LABELS[m])
    ax.set_xlabel("true nominal R")
    ax.set_ylabel("MAE (R), per slice")
    ax.set_title(f"{name}: error against R (held-out subjects)", fontsize=10)
    ax.legend(fontsize=8)
    save(fig, folder / "r_error_vs_r.png")

    if real is not None:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for m in methods:
            s = real["method"] == m
            ax.scatter(real["accel"][s] + rng.uniform(-0.15, 0.15, s.sum()), real_res["r_est"][s], s=12, label=LABELS[m])
        ax.plot([1, 13], [1, 13], "k--", lw=0.8)
        ax.set_xlabel("true nominal R")
        ax.set_ylabel("estimated R")
        ax.set_title(f"{name}: real 16-coil k-space", fontsize=10)
        ax.legend(fontsize=8)
        save(fig, folder / "r_real.png")


def photo_negatives_text(ood: dict) -> str:
    """The outlier head's photo negatives as its training config ``ood`` names them, for the card."""
    folders = ood.get("photos") or []
    folders = [folders] if isinstance(folders, str) else folders
    if not folders:
        return "no photos"
    sides = ood.get("windows") or [128]
    return (" + ".join(Path(f).name for f in folders) + " gray photos (each whole and as "
            + f"{ood.get('window_count', 2)} random windows of " + " / ".join(str(int(x)) for x in sides) + " px)")


def write_card(path: Path, est, tables: dict, command: str) -> None:
    """The model card of the rq estimator: architecture, data, training (from the weights' metadata) and the
    held-out figures this script printed."""
    from recon.files import atomic_path

    tr = est.training
    cfg, info = tr.get("config", {}), est.info
    stages = list(tr.get("earlier_stages") or []) + [tr]
    first = stages[0].get("config", {})
    net = est.predictor.model.net
    params = sum(p.numel() for p in net.parameters())

    def row(title, t, key="all/all"):
        r = t[key]
        return (f"| {title} | {r['n']} | {r['mae']:.3f} | {r['mae_2_6']:.3f} | {r['srcc']:.3f} | {r['coverage']:.3f} "
                f"| {r['width']:.2f} | {r.get('ood', float('nan')):.3f} |")

    lines = [
        "# Model card: `r-rq` (mriqa/weights/r-rq.safetensors)", "",
        "Acceleration (R) estimator of `mriqa estimate-r --method rq` (`mriqa/restimate/rq_based.py`): the "
        "reconstruction-quality network fine-tuned to regress log R from a magnitude image alone. Generated by "
        f"`{command}`.", "",
        "## Model",
        f"- `RQNet({', '.join(f'{k}={v}' for k, v in net.config.items())})` ({params / 1000:.0f} k parameters; "
        f"receptive field {net.receptive_field} px + whole-image statistics"
        + (", spectral profiles of the image" if net.config.get("spectral") else "")
        + (", a full-resolution stem" if net.config.get("fine") else "")
        + f"), initialised from `{first.get('init')}` (the reconstruction-quality weights shipped when it was "
        "trained: a shared backbone)"
        + (f", then fine-tuned: {len(stages)} stages, table below" if len(stages) > 1 else "") + ". "
        "Its pre-sigmoid map is log R per 8 x 8 cell; the image estimate is the map's mean, the volume estimate "
        "the mean over its slices.",
        "- Input: magnitude / its 99.5th percentile, clipped to [0, 2] (`normalize_magnitude`); any size >= 32 px; "
        "trained at 128 x 128 and on random 64-128 px windows, flipped / transposed at random (phase-encode "
        "direction need not be known).", "",
        "## Data (split by subject)",
        "- The reconstruction-quality sets (`configs/rq.yaml` lists the commands): train = 3T MPRAGE + IXI 1-30, "
        "val = IXI 31-35 (model selection and calibration), test = IXI 36-40 + Colin27 (never read in training). "
        "Zero-filled, CG-SENSE, L1-wavelet, MoDL; random / equispaced / Poisson masks (default centre of "
        "`mriqa recon`); nominal R 2, 3, 4, 6, 8, 10, 12, 16; blur 0-1.2 px and SNR per acquisition. Every stage's "
        "sets are built from these subjects and this split (the table below; each config gives its commands).",
        "",
        "## Training",
        f"Commands: `{est.config}` says them (its first stage's config is named there). Loss: L1 on log R of the "
        "map mean + 0.25 x L1 of every cell.", "",
        "| stage | from | training sets | images (train / val) | steps x batch | lr | CPU s | best step |",
        "|---|---|---|---|---|---|---:|---:|",
    ]
    for st in stages:
        c = st.get("config", {})
        lines.append(f"| {c.get('name')} | `{c.get('init')}` | " + ", ".join(f"`{t}`" for t in c.get("data", {}).get(
            "train", [])) + f" | {st.get('train_images')} / {st.get('val_images')} | {st.get('steps_done')} x "
            f"{c.get('train', {}).get('batch')} | {c.get('train', {}).get('lr')} | {st.get('wall_s')} | "
            f"{st.get('best_step')} |")
    calib = (cfg.get("calibrate") or {}).get("data")
    lines += [
        "",
        "## Calibration (metadata `r_estimation`, fitted on "
        + (f"`{', '.join(calib['val'])}` and the outlier head's inliers from `{', '.join(calib['train'])}`)"
           if calib else "val)"),
        f"- conformal half-width on log R {info['halfwidth']:.3f} (coverage 0.9 on val; "
        + ", ".join(f"{m} {v:.3f}" for m, v in info["halfwidth_by_method"].items()) + " when the method is known); "
        f"validation MAE {info['val_mae_r']:.3f} (R 2-16).",
        f"- OOD: map spread > {info['max_spread']:.3f}, neighbour correlation < {info['min_correlation']:.3f}, "
        "pooled log R outside [log 1.5, log 20], colour, no anatomy, more than 5 % of the object exactly flat, "
        f"outlier head logit > {info['outlier_head']['threshold']:.2f} (logistic regression on the network's "
        "whole-image statistics and the spectral profiles; negatives: " + photo_negatives_text(cfg.get("ood") or {})
        + ", synthetic pictures, noise; threshold keeps 99 % of validation images) (`mriqa/restimate/ood.py`).", "",
        f"## Measured (held out; `{command}`)",
        "| set | n | MAE [2,12] | MAE [2,6] | Spearman | coverage | width (x) | flagged OOD |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for title, t in tables.items():
        if title != "inputs to refuse":
            lines.append(row(title, t))
    refuse = tables.get("inputs to refuse") or {}
    if refuse:
        lines += ["", "Inputs to refuse, flagged: " + "; ".join(
            f"{name} {round(v['ood'] * v['n'])} of {v['n']}" for name, v in refuse.items()) + "."]
    lines += ["", "Per method and mask: docs/r/heldout.md.", "",
              "## Limits",
              "- Simulated 8-coil 128 x 128 brain k-space for training; other coil counts, sizes and contrasts are "
              "extrapolation (the real 16-coil scan above is the check). Nominal R is estimated, not the mask.",
              "- The acceptance targets of issue 21 (volume MAE <= 0.75 on [2, 12]) are not met: see the tables."]
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


def write_card_from(summary: dict, args, argv) -> None:
    """:func:`write_card` with the rq tables of ``summary`` (this script's JSON)."""
    from mriqa.restimate import load_estimator
    from mriqa.restimate.rq_based import RQREstimator

    rq = summary["estimators"]["rq"]
    pick = {"held-out subjects, per slice (method known)": rq.get("rq, method known: held-out subjects, per slice"),
            "held-out subjects, volumes (method known)":
                (rq.get("rq, method known: held-out subjects, volumes") or {}).get("volumes"),
            "held-out subjects, per slice (method not given)": rq.get("rq, method not given: held-out subjects, per slice"),
            "real 16-coil k-space (method known)": rq.get("rq, method known: real 16-coil k-space"),
            "real 8-coil k-space, undersampled when acquired (method known)": rq.get(f"rq, method known: {ACQUIRED}"),
            "other anatomy, MSD (method known)": rq.get("rq, method known: other anatomy (MSD, simulated)"),
            "inputs to refuse": rq.get("out of distribution")}
    est = RQREstimator.load(args.rq_weights) if args.rq_weights else load_estimator("rq")
    command = "python scripts/eval_r_heldout.py " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    write_card(Path(args.card), est, {k: v for k, v in pick.items() if v}, command)


ACQUIRED = "real 8-coil k-space, undersampled when acquired"


def acquired_set(cache: Path, data_root: Path) -> dict:
    """The second real scan's set (:func:`mriqa.recon_quality.data.acquired_kspace_set`), read from ``cache`` or
    built from ``data_root`` and written there."""
    from mriqa.recon_quality.data import SMALLFOV, acquired_kspace_set, read_quality_set, write_quality_set
    from recon.errors import InputError

    if cache.is_file():
        return read_quality_set([cache])
    if not (data_root / SMALLFOV).exists():
        raise InputError(data_root / SMALLFOV, "no such file")
    write_quality_set(cache, acquired_kspace_set(data_root, log=lambda s: print(s, flush=True)),
                      {"source": SMALLFOV, "split": "real-acquired"})
    return read_quality_set([cache])


def main(argv=None) -> int:
    import torch

    from mriqa.evaluation.r_heldout import estimate_set, format_table, ood_inputs, r_table, volume_table
    from mriqa.recon_quality.data import read_quality_set
    from mriqa.restimate import estimate_images, load_estimator
    from recon.errors import InputError
    from recon.files import atomic_path
    from recon.training.checkpoints import write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--estimators", nargs="+", default=["rq"], help="names for load_estimator (rq, learned, qf)")
    p.add_argument("--rq-weights", default=None, help="weights file for the rq estimator (default: shipped)")
    # each set: one file or its shards (make_quality_dataset.py --shard I N writes test.IofN.h5)
    p.add_argument("--test", nargs="+", default=[str(REPO / "data/rq128/test.h5")])
    p.add_argument("--volumes", nargs="+", default=[str(REPO / "data/rq128-vol/test.h5")])
    p.add_argument("--real", nargs="+", default=[str(REPO / "data/rq128/real16.h5")])
    p.add_argument("--msd", nargs="+", default=[str(REPO / "data/rq128/msd.h5")])
    p.add_argument("--acquired", default=str(REPO / "data/rq128/smallfov.h5"),
                   help="the second real scan's set (built from --data and cached here when missing)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="shared data root (photos)")
    p.add_argument("--out", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--figures", default=None, help="folder for the figures of the first estimator")
    p.add_argument("--card", default=None, help="write the rq estimator's model card here")
    p.add_argument("--card-from", default=None, metavar="JSON",
                   help="only write --card, from the --json of an earlier run (no estimation)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.card_from:
        import json

        summary = json.loads(Path(args.card_from).read_text())
        write_card_from(summary, args, argv)
        return 0
    sets = {}
    for key, paths in (("held-out subjects, per slice", args.test), ("held-out subjects, volumes", args.volumes),
                       ("real 16-coil k-space", args.real), ("other anatomy (MSD, simulated)", args.msd)):
        try:
            sets[key] = read_quality_set(paths)
        except InputError as exc:
            print(f"eval_r_heldout: {key}: skipped ({exc})", flush=True)
    try:
        sets[ACQUIRED] = acquired_set(Path(args.acquired), Path(args.data))
    except InputError as exc:
        print(f"eval_r_heldout: {ACQUIRED}: skipped ({exc})", flush=True)
    lines = [f"Printed by `python scripts/eval_r_heldout.py {' '.join(argv if argv is not None else sys.argv[1:])}`.\n"]
    summary: dict = {"estimators": {}}

    def say(text):
        lines.append(text)
        print(text, flush=True)

    from mriqa.restimate.rq_based import RQREstimator

    for name in args.estimators:
        if name == "rq" and args.rq_weights:
            est = RQREstimator.load(args.rq_weights)
        else:
            est = load_estimator(name)
        summary["estimators"][name] = out = {}
        ref_estimates: dict[str, np.ndarray] = {}
        for known in ((True, False) if name != "qf" else (False,)):
            tag = f"{name}, method {'known' if known else 'not given'}"
            for title, data in sets.items():
                res = estimate_set(est, data, method_known=known)
                if title.endswith("volumes"):
                    table = volume_table(data, res)
                    say(f"### {tag}: {title} (volume estimates of {table['_slices_per_volume']['median']:.0f} "
                        f"slices)\n\n" + format_table(table, "method") + "\n")
                    per_slice = r_table(data, res)
                    say(f"Per slice on the same set: MAE [2,12] {per_slice['all/all']['mae']:.3f}, [2,6] "
                        f"{per_slice['all/all']['mae_2_6']:.3f}, coverage {per_slice['all/all']['coverage']:.3f}.\n")
                    out[f"{tag}: {title}"] = {"volumes": table, "slices": per_slice}
                elif title == ACQUIRED:  # no fully sampled reference: the images as acquired stand for it
                    table = r_table(data, res)
                    native = data["accel"] < 2
                    table["_as_acquired"] = {"n": int(native.sum()), "r_eff": float(np.median(data["accel"][native])),
                                             "median_r_est": float(np.median(res["r_est"][native]))}
                    say(f"### {tag}: {title}\n\n" + format_table(table, "method")
                        + f"\n\nAs acquired (effective R {np.median(data['accel'][native]):.2f}; "
                        f"{int(native.sum())} reconstructions, not in the table) it is estimated at R = "
                        f"{np.median(res['r_est'][native]):.2f} (median; range {res['r_est'][native].min():.2f}-"
                        f"{res['r_est'][native].max():.2f}).\n")
                    out[f"{tag}: {title}"] = table
                else:
                    table = r_table(data, res)
                    if title not in ref_estimates:  # the references carry no method: one estimate for both runs
                        ref_estimates[title] = estimate_images(est, data["references"], kind="mri")["r_est"]
                    refs = ref_estimates[title]
                    table["_references"] = {"n": int(len(refs)), "median_r_est": float(np.median(refs))}
                    say(f"### {tag}: {title}\n\n" + format_table(table, "method")
                        + f"\n\nThe fully sampled references ({len(refs)}, true R = 1) are estimated at R = "
                        + f"{np.median(refs):.2f} (median; range {refs.min():.2f}-{refs.max():.2f}).\n")
                    out[f"{tag}: {title}"] = table
                if args.figures and known and name == args.estimators[0] and title.endswith("per slice"):
                    fig_test, fig_res = data, res
                if args.figures and known and name == args.estimators[0] and title.startswith("real 16-coil"):
                    fig_real, fig_real_res = data, res
        ood = ood_inputs(est, args.data)
        out["out of distribution"] = ood
        width_in = out.get(f"{name}, method not given: held-out subjects, per slice", {}).get("all/all", {}).get("width")
        say(f"### {name}: inputs to refuse\n\n| input | n | flagged OOD | median interval width (x) |\n|---|---:|---:|---:|\n"
            + "\n".join(f"| {k} | {v['n']} | {v['ood']:.3f} | {v['width']:.2f} |" for k, v in ood.items())
            + (f"\n\nIn distribution (held-out subjects, method not given): median width {width_in:.2f}x.\n"
               if width_in else "\n"))
        if args.figures and name == args.estimators[0] and "held-out subjects, per slice" in sets:
            Path(args.figures).mkdir(parents=True, exist_ok=True)
            figures(Path(args.figures), name, fig_test, fig_res, locals().get("fig_real"), locals().get("fig_real_res"))
    if args.card and "rq" in summary["estimators"]:
        write_card_from(summary, args, argv)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text("\n".join(lines) + "\n")
    if args.json:
        write_json(summary, Path(args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
