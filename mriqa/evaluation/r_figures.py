"""The figures of the R-estimation evaluation (``scripts/eval_r.py``; ``docs/r/``).

- :func:`figure_qf_vs_r`: the gray QF score against nominal R per method and pooling (paper Fig. 14).
- :func:`figure_maps`: QF maps of one slice at several R, centre and foreground cells (paper Fig. 15).
- :func:`figure_scatter`: estimated against true R per estimator and method.

``data`` is ``{method: read_r_dataset(...)}``; scores / results are per method as the evaluation makes them.
"""
from __future__ import annotations

import numpy as np

from mriqa.evaluation.r_estimation import LABELS, MASKS, METHODS, POOL_LABELS, POOLS
from mriqa.iqa.correlation import srcc

__all__ = ["figure_qf_vs_r", "figure_maps", "figure_scatter"]


def figure_qf_vs_r(path, data, scores):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon.files import atomic_path

    fig, axes = plt.subplots(3, 3, figsize=(12, 10), sharey=True)
    for i, pool in enumerate(POOLS):
        for j, m in enumerate(METHODS):
            ax = axes[i, j]
            d = data[m]
            for kind in MASKS:
                rs = sorted(set(d["accel"][d["mask_kind"] == kind]))
                mu = [scores[m][pool][(d["mask_kind"] == kind) & (d["accel"] == r)].mean() * 100 for r in rs]
                sd = [scores[m][pool][(d["mask_kind"] == kind) & (d["accel"] == r)].std() * 100 for r in rs]
                ax.errorbar(rs, mu, yerr=sd, marker="o", ms=3, capsize=3, label=kind)
            rho = srcc(scores[m][pool], d["accel"])
            ax.set_title(f"{LABELS[m]}, {POOL_LABELS[pool]} pooling\nSpearman {rho:.3f} (all masks)", fontsize=9)
            ax.set_xlabel("nominal R")
            if j == 0:
                ax.set_ylabel("predicted QF (mean +- sd over slices)")
            ax.legend(fontsize=7)
    fig.suptitle("Gray QF predictor vs acceleration on Colin27 (held out); cf. paper Fig. 14")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def figure_maps(path, d, x, maps, geom, method, kind="random", accels=(2, 4, 8, 12)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon.files import atomic_path
    from mriqa.pooling import pool_weights

    vol = d["volume"][0]
    sl = sorted(set(d["slice"][d["volume"] == vol]))[len(set(d["slice"][d["volume"] == vol])) // 2]
    fig, axes = plt.subplots(3, len(accels), figsize=(3.2 * len(accels), 9.6))
    (y0, y1, x0, x1) = geom.cell_boxes()
    extent = (x0[0] + (x1[0] - x0[0]) / 2 - geom.stride / 2, x0[-1] + (x1[-1] - x0[-1]) / 2 + geom.stride / 2,
              y0[-1] + (y1[-1] - y0[-1]) / 2 + geom.stride / 2, y0[0] + (y1[0] - y0[0]) / 2 - geom.stride / 2)
    for j, r in enumerate(accels):
        i = np.flatnonzero((d["volume"] == vol) & (d["slice"] == sl) & (d["mask_kind"] == kind) & (d["accel"] == r))
        if not len(i):
            continue
        i = int(i[0])
        img = x[i, 0].numpy()
        axes[0, j].imshow(img, cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"{LABELS[method]}, R = {r} ({kind})", fontsize=9)
        for row, pool in ((1, "center"), (2, "foreground")):
            w = pool_weights(maps[i], pool, image=img, geometry=geom)
            score = float((maps[i] * w).sum() / max(w.sum(), 1e-12))
            axes[row, j].imshow(img, cmap="gray", vmin=0, vmax=1)
            shown = np.ma.masked_where(w <= 0, maps[i] * 100)
            im = axes[row, j].imshow(shown, cmap="jet", vmin=20, vmax=100, alpha=0.6, extent=extent,
                                     interpolation="nearest")
            axes[row, j].set_title(f"QF map, {POOL_LABELS[pool]} cells: QF {100 * score:.1f}", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[1:, :].ravel().tolist(), shrink=0.6, label="QF")
    fig.suptitle(f"Colin27 {vol} slice {sl}: QF maps at several R (cf. paper Fig. 15); row 2 centre cells, "
                 f"row 3 foreground-weighted cells")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def figure_scatter(path, data, results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon.files import atomic_path

    names = list(results)
    fig, axes = plt.subplots(len(names), 3, figsize=(12, 3.8 * len(names)), squeeze=False)
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        for j, m in enumerate(METHODS):
            ax = axes[i, j]
            d, res = data[m], results[name][m]
            for k, kind in enumerate(MASKS):
                s = d["mask_kind"] == kind
                jitter = (k - 1) * 0.18 + rng.uniform(-0.06, 0.06, s.sum())
                ax.scatter(d["accel"][s] + jitter, res["r_est"][s], s=6, alpha=0.5, label=kind)
            ax.plot([1, 13], [1, 13], "k--", lw=0.8)
            ax.set_xlim(1, 13)
            ax.set_ylim(1, 16)
            mae = float(np.mean(np.abs(res["r_est"] - d["accel"])))
            ax.set_title(f"{name}: {LABELS[m]} (MAE {mae:.2f})", fontsize=9)
            ax.set_xlabel("true nominal R")
            ax.set_ylabel("estimated R")
            ax.legend(fontsize=7, markerscale=2)
    fig.suptitle("Estimated vs true R on Colin27 (held out), per slice")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
