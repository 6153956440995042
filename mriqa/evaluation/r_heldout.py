"""Measures of the R estimators on the reconstruction-quality sets (held-out subjects, the real k-space, other
anatomy) and on inputs they must refuse (``scripts/eval_r_heldout.py``).

- :func:`estimate_set`: one estimator over a set of :func:`mriqa.recon_quality.data.read_quality_set` layout,
  through the public API (:func:`mriqa.restimate.estimate_images`), with or without telling it the method.
- :func:`r_table`: per method x mask rows of MAE over R in [2, 12] and [2, 6], Spearman(estimate, R), interval
  coverage and width, OOD fraction; :func:`volume_table`: the same for volume estimates (one per volume, method,
  mask kind and R from its slices, :func:`mriqa.restimate.volume_estimate`).
- :func:`ood_inputs`: photos (gray and colour), pure noise and non-MRI pictures, with the fraction flagged and
  the interval widths against the in-distribution one.
"""
from __future__ import annotations

import numpy as np

from mriqa.evaluation.r_estimation import interval_metrics, subset

__all__ = ["LABELS", "estimate_set", "r_table", "volume_table", "ood_inputs", "format_table"]

LABELS = {"zf": "zero-filled", "sense": "CG-SENSE", "l1": "L1-wavelet", "modl": "MoDL"}
MASK_KINDS = ("random", "equispaced", "poisson")


def estimate_set(estimator, data: dict, method_known: bool, batch: int = 64) -> dict:
    """Estimator results (``r_est``, ``r_low``, ``r_high``, ``log_r``, ``halfwidth`` arrays ``[N]``, ``ood``
    list) for ``data["images"]`` ``[N, H, W]``; ``method_known``: each image's ``data["method"]`` is passed as
    ``recon_method`` (as ``mriqa estimate-r`` does for files written by ``mriqa recon``)."""
    from mriqa.restimate import estimate_images

    n = len(data["images"])
    out = {k: np.zeros(n) for k in ("r_est", "r_low", "r_high", "log_r", "halfwidth")}
    out["ood"] = [None] * n
    methods = np.asarray(data["method"])
    for m in (np.unique(methods) if method_known else [None]):
        idx = np.flatnonzero(methods == m) if m is not None else np.arange(n)
        for a in range(0, len(idx), batch):
            rows = idx[a:a + batch]
            res = estimate_images(estimator, data["images"][rows], kind="mri", recon_method=m)
            for k in ("r_est", "r_low", "r_high", "log_r", "halfwidth"):
                out[k][rows] = res[k]
            for i, why in zip(rows, res["ood"]):
                out["ood"][i] = why
    return out


def _row(r_true, res) -> dict:
    from mriqa.iqa.correlation import srcc

    row = interval_metrics(r_true, res)
    row["srcc"] = float(srcc(np.asarray(res["r_est"]), np.asarray(r_true, float))) if len(r_true) > 2 else float("nan")
    row["n"] = int(len(r_true))
    return row


def r_table(data: dict, res: dict, max_r: float = 12.0) -> dict[str, dict]:
    """``{"<method>/<mask>": metrics}`` (and ``<method>/all``, ``all/<mask>``, ``all/all``) over the images with
    nominal R in [2, ``max_r``]; metrics: :func:`mriqa.evaluation.r_estimation.interval_metrics` + ``srcc``,
    ``n``."""
    keep = (data["accel"] >= 2) & (data["accel"] <= max_r)
    rows = {}
    for m in [*sorted(np.unique(data["method"]), key=list(LABELS).index), "all"]:
        for kind in [*MASK_KINDS, "all"]:
            sel = keep & ((data["method"] == m) | (m == "all")) & ((data["mask_kind"] == kind) | (kind == "all"))
            if sel.any():
                rows[f"{m}/{kind}"] = _row(data["accel"][sel], subset(res, sel))
    return rows


def volume_table(data: dict, res: dict, max_r: float = 12.0) -> dict[str, dict]:
    """:func:`r_table`'s rows for volume estimates: one per (volume, method, mask kind, R) group of slices
    (:func:`mriqa.restimate.volume_estimate`: mean log R of the slices, median half-width)."""
    from mriqa.restimate import volume_estimate

    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(data["volume"], data["method"], data["mask_kind"], data["accel"])):
        if 2 <= key[3] <= max_r:
            groups.setdefault(key, []).append(i)
    keys = list(groups)
    est = {"r_est": [], "r_low": [], "r_high": [], "ood": []}
    for key in keys:
        idx = groups[key]
        v = volume_estimate(res["log_r"][idx], res["halfwidth"][idx], [res["ood"][i] for i in idx])
        for k in est:
            est[k].append(v[k] if not (k == "r_est" and v[k] is None) else float("nan"))
    vol = {"volume": np.array([k[0] for k in keys]), "method": np.array([k[1] for k in keys]),
           "mask_kind": np.array([k[2] for k in keys]), "accel": np.array([k[3] for k in keys], float)}
    vres = {k: (np.asarray(v, float) if k != "ood" else v) for k, v in est.items()}
    table = r_table(vol, vres, max_r)
    table["_slices_per_volume"] = {"median": float(np.median([len(v) for v in groups.values()]))}
    return table


def format_table(rows: dict[str, dict], title: str) -> str:
    """Markdown table of :func:`r_table` rows."""
    lines = [f"| {title} | mask | n | MAE [2,12] | MAE [2,6] | Spearman | coverage | width (x) | OOD |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, r in rows.items():
        if key.startswith("_"):
            continue
        m, kind = key.split("/")
        lines.append(f"| {LABELS.get(m, m)} | {kind} | {r['n']} | {r['mae']:.3f} | {r['mae_2_6']:.3f} | "
                     f"{r['srcc']:.3f} | {r['coverage']:.3f} | {r['width']:.2f} | {r['ood']:.3f} |")
    return "\n".join(lines)


def ood_inputs(estimator, data_root, noise_images: int = 16, seed: int = 0) -> dict[str, dict]:
    """What the estimator does with inputs that are not MRI reconstructions, per group: ``n``, the fraction
    flagged OOD and the median interval width ``r_high / r_low``.

    Groups: Kodak24 and Set14 in gray (ITU-R 601 luma), Kodak24 in colour (the colour check flags these before any network
    runs), pure noise (Rayleigh magnitudes of complex Gaussian noise, 128 x 128) and non-MRI pictures made
    here (a checkerboard, smooth gradients, uniform-random discs on black)."""
    from pathlib import Path

    from PIL import Image

    from mriqa.restimate import estimate_images
    from mriqa.restimate.ood import is_colour

    paths = sorted((Path(data_root) / "rgb" / "Kodak24").glob("*.png"))
    set14 = sorted((Path(data_root) / "rgb" / "Set14").glob("*.png"))
    rng = np.random.default_rng(seed)
    noise = np.abs(rng.standard_normal((noise_images, 128, 128)) + 1j * rng.standard_normal((noise_images, 128, 128)))
    yy, xx = np.mgrid[0:128, 0:128] / 127.0
    pictures = [((np.floor(yy * 8) + np.floor(xx * 8)) % 2).astype(np.float32),
                (0.2 + 0.8 * xx * yy).astype(np.float32), (0.5 + 0.5 * np.sin(12 * xx + 3 * yy)).astype(np.float32)]
    for _ in range(5):
        disc = np.zeros((128, 128), np.float32)
        for _ in range(6):
            cy, cx, rad = rng.uniform(10, 118), rng.uniform(10, 118), rng.uniform(4, 20)
            disc[(yy * 127 - cy) ** 2 + (xx * 127 - cx) ** 2 < rad ** 2] = rng.uniform(0.3, 1.0)
        pictures.append(disc)

    def run(images, colour=None):
        flagged, widths = [], []
        for img, col in zip(images, colour or [False] * len(images)):
            res = estimate_images(estimator, img, kind="mri", colour=[col])
            flagged.append(res["ood"][0] is not None)
            widths.append(float(res["r_high"][0] / res["r_low"][0]))
        return {"n": len(images), "ood": float(np.mean(flagged)), "width": float(np.median(widths))}

    gray = [np.asarray(Image.open(p).convert("L"), np.float32) / 255.0 for p in paths]
    rgb = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    out = {"photos (gray, Kodak24)": run(gray),
           "photos (gray, Set14)": run([np.asarray(Image.open(p).convert("L"), np.float32) / 255.0 for p in set14]),
           "pure noise": run(list(noise.astype(np.float32))),
           "non-MRI pictures": run(pictures)}
    colour = {"n": len(rgb), "ood": float(np.mean([is_colour(im) for im in rgb])), "width": 16.0}
    out["photos (colour, Kodak24)"] = colour
    return out
