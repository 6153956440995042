"""Training checkpoints of the step loop's trainers (QF predictor, QAIRN, learned R estimator, AR-CNN): one format,
written atomically, read back without unpickling arbitrary objects.

A checkpoint (``<output_dir>/checkpoint.pt``) holds the model and optimiser state, the step, the history (JSON
text), the best-validation record, the wall time so far, the resolved config (JSON text) and, for a run that
keeps one, the exponential moving average of the weights (``ema``; None otherwise). It is written with
:func:`recon.files.atomic_path` (temp file + rename, so an interrupted write leaves the previous checkpoint) and
read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from recon.files import atomic_path


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    history: list[dict], best: Any, wall_s: float, config: dict,
                    ema: dict[str, torch.Tensor] | None = None) -> None:
    """Write the checkpoint of a run at ``step`` to ``path`` (atomically; the model state is copied to the CPU)."""
    state = {
        "model": {k: v.cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "step": int(step),
        "history": json.dumps(history),
        "best": best,
        "wall_s": float(wall_s),
        "config": json.dumps(config),
        "ema": None if ema is None else {k: v.cpu() for k, v in ema.items()},
    }
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore ``model`` and ``optimizer`` from ``path`` -> ``{"step", "history", "best", "wall_s", "config",
    "ema"}`` (``ema``: the moving-average weights on the CPU, or None)."""
    ck = torch.load(Path(path), map_location="cpu", weights_only=True)
    model.load_state_dict(ck["model"])  # copied onto the model's device
    optimizer.load_state_dict(ck["optimizer"])
    return {"step": int(ck["step"]), "history": json.loads(ck["history"]), "best": ck.get("best"),
            "wall_s": float(ck.get("wall_s", 0.0)), "config": json.loads(ck["config"]) if ck.get("config") else None,
            "ema": ck.get("ema")}


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """``obj`` as indented JSON at ``path`` (atomically)."""
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=1))
