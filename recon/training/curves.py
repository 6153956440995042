"""Learning-curve figures of the trainers (``curves.png`` in a run folder): one row of panels, written atomically.

Each trainer keeps a ``history`` (one dict per evaluation: ``step`` plus its own metrics) and describes its
figure as :class:`Panel` s; :func:`plot_history` draws them, so the trainers share one plotting routine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Panel:
    """One axes: the ``series`` (history key, legend label or None) against the step."""

    ylabel: str
    series: tuple[tuple[str, str | None], ...]
    log_y: bool = False
    ylim: tuple[float, float] | None = None


def plot_history(history: Sequence[dict], path: str | os.PathLike, title: str, panels: Sequence[Panel],
                 require: str | None = "val_loss") -> bool:
    """Draw ``panels`` for the rows of ``history`` that have the key ``require`` (all rows if None) and save the
    figure to ``path`` (PNG, atomically). Returns False, writing nothing, when there is no such row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon.files import atomic_path

    rows = [h for h in history if require is None or require in h]
    if not rows or not panels:
        return False
    steps = [h["step"] for h in rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) - 0.5 * (len(panels) - 1), 3.4), dpi=80,
                             squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for key, label in panel.series:
            ax.plot(steps, [h.get(key, float("nan")) for h in rows], label=label)
        if panel.log_y:
            ax.set_yscale("log")
        if panel.ylim is not None:
            ax.set_ylim(*panel.ylim)
        ax.set_xlabel("step")
        ax.set_ylabel(panel.ylabel)
        if any(label for _, label in panel.series):
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return True
