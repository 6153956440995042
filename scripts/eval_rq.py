"""Evaluate reference-free reconstruction-quality scores against the reference's SSIM (issue 20).

Held out: the test split of the reconstruction-quality set (IXI subjects 36-40 and Colin27, never seen in
training; ``scripts/make_quality_dataset.py --split test``: every R in 2..16 x random / equispaced / Poisson
masks x zero-filled / CG-SENSE / L1-wavelet / MoDL) and the real 16-coil k-space (R = 2..12, both
orientations, every method as ``mriqa recon`` runs it: ``mriqa.recon_quality.data.real_kspace_set``), and
other anatomy (the MSD brain-tumour and prostate slices, simulated as the training volumes:
``other_anatomy_files``; R 2..12, every mask and method). Out of domain (``out_of_domain_scores``): gray photos
(Kodak24, as is and JPEG-compressed) and pure noise. The real and MSD sets are built once and cached under
``data/rq128/`` (``--real-cache``, ``--msd-cache``).

Scores: the recon model (``--weights``, default the shipped ``recon``) and, for comparison, the gray QF model
(the paper's JPEG quality factor); ``--r-aware`` adds the R-aware score of every set (``score * r_est **
-R_AWARE_POWER``, ``mriqa.recon_quality.r_aware``: the rq acceleration estimator on the same images).
Prints the tables of ``mriqa.evaluation.recon_quality`` (markdown),
writes ``--json`` and the scatter figure ``--figure``.

    python scripts/eval_rq.py [--weights recon] [--test data/rq128/test.h5] [--json docs/rq/eval.json]
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
LABELS = {"zf": "zero-filled", "sense": "CG-SENSE", "l1": "L1-wavelet", "modl": "MoDL"}
COLORS = {"zf": "tab:gray", "sense": "tab:orange", "l1": "tab:green", "modl": "tab:blue"}


def model_scores(model: str, images: np.ndarray, pool: str = "mean") -> np.ndarray:
    """Whole-image scores of ``images`` ``[N, H, W]`` (RSS scale) by a predictor (``recon``, ``gray`` or a path),
    ``pool`` pooling (``mriqa.pooling``), MRI windowing."""
    import mriqa

    predictor = mriqa.load_predictor(model, device="cpu", batch_size=64)
    return np.concatenate([predictor.score(images[a:a + 64], pool=pool, kind="mri")
                           for a in range(0, len(images), 64)])


def scatter(sets: dict[str, tuple[dict, np.ndarray]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon.files import atomic_path

    fig, axes = plt.subplots(1, len(sets), figsize=(4.6 * len(sets), 4.2), dpi=90, squeeze=False)
    for ax, (title, (data, scores)) in zip(axes[0], sets.items()):
        for m, label in LABELS.items():
            sel = data["method"] == m
            if sel.any():
                ax.scatter(data["ssim"][sel], scores[sel], s=8, alpha=0.6, c=COLORS[m], label=label)
        ax.set_xlabel("SSIM against the fully sampled reference")
        ax.set_ylabel("reference-free score")
        ax.set_title(title, fontsize=10)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def main(argv=None) -> int:
    import torch

    from mriqa.evaluation.recon_quality import format_report, in_object_ssim, ranking_report
    from mriqa.pooling import neighbour_correlation
    from mriqa.predictor import NOISE_GATE_CORRELATION
    from mriqa.iqa.correlation import srcc
    from mriqa.recon_quality.data import (build_quality_split, other_anatomy_files, read_quality_set,
                                          real_kspace_set, write_quality_set)
    import mriqa
    from recon.files import atomic_path
    from recon.training.checkpoints import write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="recon", help="recon model: shipped name or weights file")
    p.add_argument("--test", nargs="+", default=[str(REPO / "data/rq128/test.h5")])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="shared data root (real k-space)")
    p.add_argument("--real-cache", default=str(REPO / "data/rq128/real16.h5"),
                   help="the real-k-space reconstructions: read from here when present, else built and written")
    p.add_argument("--msd-cache", default=str(REPO / "data/rq128/msd.h5"),
                   help="the other-anatomy reconstructions: read from here when present, else built and written")
    p.add_argument("--no-real", action="store_true")
    p.add_argument("--no-msd", action="store_true")
    p.add_argument("--no-gray", action="store_true", help="leave out the gray QF comparison")
    p.add_argument("--json", default=None)
    p.add_argument("--out", default=None, help="also write the printed tables here (markdown)")
    p.add_argument("--figure", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pool", default="mean", choices=["mean", "foreground"],
                   help="pooling of the recon model's map: mean (the model's score) or foreground (the image's "
                        "own object cells, mriqa.pooling; the gray QF comparison keeps mean)")
    p.add_argument("--r-aware", action="store_true",
                   help="also rank by the R-aware score (recon score x the rq estimator's R ** -R_AWARE_POWER)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    sets = {"held-out subjects (IXI 36-40, Colin27)": read_quality_set(args.test)}
    if not args.no_real:
        cache = Path(args.real_cache)
        if not cache.exists():
            real = real_kspace_set(args.data, log=lambda s: print(s, flush=True))
            write_quality_set(cache, real, {"source": "real_kspace_set", "data": str(args.data)})
        sets["real 16-coil k-space"] = read_quality_set([cache])
    if not args.no_msd:
        cache = Path(args.msd_cache)
        if not cache.exists():
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                build_quality_split(other_anatomy_files(args.data, tmp), "test", cache, slices=1,
                                    accels=(2, 3, 4, 6, 8, 10, 12), log=lambda s: print(s, flush=True))
        sets["other anatomy (MSD brain tumour, prostate; simulated)"] = read_quality_set([cache])
    summary: dict = {"weights": args.weights, "sets": {}}
    out_lines: list[str] = []
    figure_sets = {}
    for title, data in sets.items():
        scores = model_scores(args.weights, data["images"], args.pool)
        report = ranking_report(data, scores)
        ref_scores = model_scores(args.weights, data["references"], args.pool)
        report["reference_mean_score"] = float(ref_scores.mean())
        report["srcc_in_object_ssim"] = float(srcc(scores, in_object_ssim(data)))
        report["min_neighbour_correlation"] = float(neighbour_correlation(data["images"]).min())
        out_lines.append(format_report(f"{title}: recon score", report, LABELS)
                         + f"\nThe fully sampled references ({len(ref_scores)}) score {ref_scores.mean():.3f} on "
                         f"average (min {ref_scores.min():.3f}). Spearman(score, SSIM inside the reference's object) "
                         f"= {report['srcc_in_object_ssim']:.3f}. Lowest neighbour correlation of the reconstructions "
                         f"{report['min_neighbour_correlation']:.3f} (the noise gate: below {NOISE_GATE_CORRELATION:g})."
                         "\n")
        print(out_lines[-1], flush=True)
        summary["sets"][title] = {"recon": report}
        figure_sets[title] = (data, scores)
        if args.r_aware:
            from mriqa.recon_quality.r_aware import R_AWARE_POWER, r_aware_score
            from mriqa.restimate import load_estimator, point_estimates

            estimator = load_estimator("rq")
            r_est = np.concatenate([point_estimates(estimator, data["images"][a:a + 64])
                                    for a in range(0, len(data["images"]), 64)])
            aware = ranking_report(data, r_aware_score(scores, r_est))  # the recon scores computed above
            out_lines.append(format_report(f"{title}: recon score x R ** -{R_AWARE_POWER:g}", aware, LABELS))
            print(out_lines[-1], flush=True)
            summary["sets"][title]["r_aware"] = aware
        if not args.no_gray:
            gray = ranking_report(data, model_scores("gray", data["images"]))
            out_lines.append(f"gray QF on the same images: pooled Spearman {gray['pooled_srcc']:.3f}, per subject "
                  + ", ".join(f"{v:.2f}" for v in gray["per_subject_srcc"].values())
                  + f"; method order {gray['pair_order_agreement']:.3f}; zero-filled above MoDL "
                  f"{gray['zf_above_modl']} of {gray['zf_modl_groups']}\n")
            print(out_lines[-1], flush=True)
            summary["sets"][title]["gray_qf"] = gray
    from mriqa.evaluation.recon_quality import out_of_domain_scores

    ood = out_of_domain_scores(mriqa.load_predictor(args.weights, device="cpu"), args.data)
    summary["out_of_domain"] = ood
    out_lines.append(f"### out of domain\n\n- gray photos (Kodak24, {ood['photos']}): mean score {ood['photo_mean_score']:.3f} "
          f"as is; Spearman(score, JPEG QF 10..90 and the original) = {ood['photo_srcc_with_jpeg_qf']:.3f}\n"
          f"- pure noise ({ood['noise_images']} Rayleigh 128 x 128): mean score {ood['noise_mean_score']:.3f}, "
          f"max {ood['noise_max_score']:.3f} (the noise gate, mriqa.predictor.NOISE_GATE_CORRELATION; the network "
          f"alone: mean {ood['noise_network_mean']:.3f}, max {ood['noise_network_max']:.3f})\n")
    print(out_lines[-1], flush=True)
    if args.out:
        header = (f"Printed by `python scripts/eval_rq.py{' ' + ' '.join(argv if argv is not None else sys.argv[1:])}"
                  f"`; weights: {args.weights}, {args.pool} pooling.\n")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text("\n".join([header, *out_lines]) + "\n")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_json(summary, Path(args.json))
    if args.figure:
        scatter(figure_sets, Path(args.figure))
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
