"""How a reference-free score ranks reconstructions, against the reference's SSIM (issue 20's acceptance).

Input: a reconstruction-quality set (:func:`mriqa.recon_quality.data.read_quality_set` or ``real_kspace_set``)
and one score per image. Figures:

- **per subject**: Spearman(score, SSIM) pooled over methods x R x mask kinds (x the subject's orientations);
- **within method**: for every (file, method, mask kind), Spearman(score, R) over its R values (and the same for
  the SSIM itself, which is the ceiling: where the SSIM does not fall with R, no score should);
- **method order at equal R**: for every (file, R, mask kind), the pairs of methods whose SSIM differ by more
  than ``tie`` (0.005): the fraction the score orders as the SSIM does;
- **zero-filled above MoDL**: (file, R, mask kind) groups where zero-filled scores above MoDL;
- **means per R**: per method and R, the mean score beside the mean SSIM (a score can follow the SSIM on average
  and still miss the order inside a sequence when the SSIM steps between neighbouring R are below its error).
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

from mriqa.iqa.correlation import srcc
from recon.evaluation import subject_of

__all__ = ["subject_of", "ranking_report", "format_report", "within_slice_srcc", "in_object_ssim",
           "out_of_domain_scores"]

TIE = 0.005


def _groups(keys: list[np.ndarray]) -> dict[tuple, np.ndarray]:
    out: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(*keys)):
        out.setdefault(tuple(key), []).append(i)
    return {k: np.asarray(v) for k, v in out.items()}


def ranking_report(data: dict, scores: np.ndarray, tie: float = TIE) -> dict:
    """The figures of the module docstring for one data set and its ``scores`` ``[N]``."""
    scores = np.asarray(scores, np.float64)
    ssim = data["ssim"].astype(np.float64)
    subjects = np.asarray([subject_of(v) for v in data["volume"]])
    per_subject = {s: srcc(scores[idx], ssim[idx]) for (s,), idx in _groups([subjects]).items()}

    within: dict[str, dict[str, list[float]]] = {}
    for (vol, method, kind), idx in _groups([data["volume"], data["method"], data["mask_kind"]]).items():
        r = data["accel"][idx]
        if len(np.unique(r)) < 3:
            continue
        w = within.setdefault(method, {"score": [], "ssim": []})
        w["score"].append(srcc(scores[idx], r))
        w["ssim"].append(srcc(ssim[idx], r))

    agree = total = 0
    zf_above, zf_groups = [], 0
    for (vol, r, kind), idx in _groups([data["volume"], data["accel"], data["mask_kind"]]).items():
        for i, j in combinations(idx, 2):
            if abs(ssim[i] - ssim[j]) > tie:
                total += 1
                agree += int(np.sign(scores[i] - scores[j]) == np.sign(ssim[i] - ssim[j]))
        methods = list(data["method"][idx])
        if "zf" in methods and "modl" in methods:
            zf_groups += 1
            if scores[idx[methods.index("zf")]] > scores[idx[methods.index("modl")]]:
                zf_above.append(f"{vol} R = {float(r):g} {kind}")
    means_per_r: dict[str, dict[float, list[float]]] = {}
    for (method, r), idx in sorted(_groups([data["method"], data["accel"]]).items()):
        means_per_r.setdefault(str(method), {})[float(r)] = [float(scores[idx].mean()), float(ssim[idx].mean())]
    return {
        "n": int(len(scores)),
        "means_per_r": means_per_r,
        "score_mae": float(np.mean(np.abs(scores - ssim))),
        "pooled_srcc": float(srcc(scores, ssim)),
        "per_subject_srcc": {k: float(v) for k, v in sorted(per_subject.items())},
        "within_method_srcc_r": {m: {"score_mean": float(np.mean(v["score"])),
                                     "score_le_-0.9": float(np.mean(np.asarray(v["score"]) <= -0.9)),
                                     "ssim_mean": float(np.mean(v["ssim"])), "sequences": len(v["score"])}
                                 for m, v in sorted(within.items())},
        "pair_order_agreement": float(agree / total) if total else float("nan"),
        "pairs": int(total),
        "zf_above_modl": len(zf_above),
        "zf_above_modl_where": zf_above,
        "zf_modl_groups": int(zf_groups),
    }


def within_slice_srcc(data: dict, scores: np.ndarray, target: np.ndarray) -> float:
    """Mean Spearman(score, target) over the sequences of one method on one slice (R, mask and noise vary; the
    anatomy does not): the within-method ranking that pooled figures hide. NaN when no sequence has 3 images."""
    values = [srcc(scores[idx], target[idx])
              for idx in _groups([data["volume"], data["slice"], data["method"]]).values() if len(idx) >= 3]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def format_report(title: str, report: dict, labels: dict[str, str] | None = None) -> str:
    """Markdown lines of one :func:`ranking_report`."""
    labels = labels or {}
    lines = [f"### {title}", "",
             f"{report['n']} reconstructions; pooled Spearman(score, SSIM) = {report['pooled_srcc']:.3f}", "",
             "| subject | Spearman(score, SSIM) |", "|---|---:|"]
    lines += [f"| {s} | {v:.3f} |" for s, v in report["per_subject_srcc"].items()]
    lines += ["", "| method | mean Spearman(score, R) | share <= -0.9 | mean Spearman(SSIM, R) | sequences |",
              "|---|---:|---:|---:|---:|"]
    for m, v in report["within_method_srcc_r"].items():
        lines.append(f"| {labels.get(m, m)} | {v['score_mean']:.3f} | {v['score_le_-0.9']:.2f} | "
                     f"{v['ssim_mean']:.3f} | {v['sequences']} |")
    accels = sorted({r for v in report["means_per_r"].values() for r in v})
    lines += ["", f"Mean score / mean SSIM per R (score's mean absolute error against the SSIM "
                  f"{report['score_mae']:.3f}):", "",
              "| method | " + " | ".join(f"R {r:g}" for r in accels) + " |", "|---|" + "---:|" * len(accels)]
    for m, v in report["means_per_r"].items():
        cells = [f"{v[r][0]:.3f} / {v[r][1]:.3f}" if r in v else "—" for r in accels]
        lines.append(f"| {labels.get(m, m)} | " + " | ".join(cells) + " |")
    lines += ["", f"Method order at equal R and mask (pairs whose SSIM differ by > {TIE}): "
                  f"{report['pair_order_agreement']:.3f} of {report['pairs']} pairs as SSIM orders them; "
                  f"zero-filled above MoDL in {report['zf_above_modl']} of {report['zf_modl_groups']} groups"
                  + (f" ({', '.join(report['zf_above_modl_where'])})." if 0 < report["zf_above_modl"] <= 10 else "."),
              ""]
    return "\n".join(lines)


def out_of_domain_scores(predictor, data_root, qualities=(10, 30, 50, 70, 90), noise_images: int = 16,
                         seed: int = 0) -> dict:
    """Where the recon score is not meant to work, measured: photos and pure noise.

    - photos: the 24 Kodak images in gray (ITU-R 601 luma), as is and JPEG-compressed at ``qualities``: the mean
      score of the originals and Spearman(score, QF) over all (image, QF) pairs (a score that tracks image
      quality beyond MRI would be positive);
    - pure noise: ``noise_images`` 128 x 128 magnitudes of complex Gaussian noise (Rayleigh), the scan-like
      input with no object at all: mean and max score (the predictor's, after its noise gate), and the network's
      own mean-pooled score without the gate (``noise_network_mean`` / ``_max``).
    ``predictor``: a :class:`mriqa.predictor.QFPredictor` of the recon model."""
    from pathlib import Path

    from PIL import Image

    from mriqa.jpeg import jpeg_compress

    folder = Path(data_root) / "rgb" / "Kodak24"
    photos = [np.asarray(Image.open(p).convert("L"), np.float32) / 255.0 for p in sorted(folder.glob("*.png"))]
    clean, pairs_score, pairs_qf = [], [], []
    for photo in photos:
        clean.append(float(predictor.score(photo, pool="mean", kind="mri")))
        pairs_score.append(clean[-1])
        pairs_qf.append(100)
        for q in qualities:
            pairs_score.append(float(predictor.score(jpeg_compress(photo, int(q)), pool="mean", kind="mri")))
            pairs_qf.append(q)
    rng = np.random.default_rng(seed)
    noise = np.abs(rng.standard_normal((noise_images, 128, 128)) + 1j * rng.standard_normal((noise_images, 128, 128)))
    noise_scores = np.asarray(predictor.score(noise.astype(np.float32), pool="mean", kind="mri"))
    import torch

    with torch.no_grad():
        x = predictor.prepare(noise.astype(np.float32), kind="mri")[0]
        network = predictor.predict_input(x).float().mean(dim=(-2, -1)).cpu().numpy()
    return {"photos": len(photos), "photo_mean_score": float(np.mean(clean)),
            "photo_srcc_with_jpeg_qf": float(srcc(np.asarray(pairs_score), np.asarray(pairs_qf, np.float64))),
            "noise_images": noise_images, "noise_mean_score": float(noise_scores.mean()),
            "noise_max_score": float(noise_scores.max()), "noise_network_mean": float(network.mean()),
            "noise_network_max": float(network.max())}


def in_object_ssim(data: dict) -> np.ndarray:
    """``[N]`` SSIM of each image inside its reference's object (``recon.metrics.object_mask`` of the reference,
    mean of the SSIM map there; data range the reference's max): the figure without the background convention
    (zero vs the RSS noise floor) that the whole-image SSIM rewards."""
    from recon.metrics import object_mask, support_metrics

    masks = [object_mask(ref[None]) for ref in data["references"]]
    return np.asarray([support_metrics(data["references"][g][None], image[None], masks[g],
                                       maxval=float(data["references"][g].max()), with_ssim=True)["SSIM_in"]
                       for image, g in zip(data["images"], data["ref_index"])], np.float64)
