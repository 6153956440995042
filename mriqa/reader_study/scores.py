"""Scores of a study from its database: Elo, Bradley-Terry with bootstrap intervals, agreement, exports.

:func:`study_scores` returns a JSON-ready dict::

    {"study", "judgments", "readers", "ties",
     "elo": {"start": 1400, "M": 400, "K": 16, "passes", "last", "seed"},
     "bt": {"model": "Bradley-Terry-Davidson, Firth-penalised ML", "nu", "bootstrap", "level", "seed"},
     "images": [{"id", "file", "group", "label", "method", "acceleration", "n", "wins", "losses", "ties",
                 "elo", "bt", "bt_lo", "bt_hi", "bt_elo", "reference"}],
     "methods": [{"label", "groups", "n", "elo", "bt", "bt_lo", "bt_hi"}],   means over content groups
     "agreement": {"readers": {reader: {...}}, "pairs": [{...}]}}

``bt`` is on the natural-log scale, mean 0 in each content group (scores compare only inside a group);
``bt_elo`` is the same on Elo points (x 400 / ln 10, mean 0). Method rows average one label's scores over the
groups it appears in; their interval is the basic bootstrap interval of that mean over the same
resamples. An image without judgments has Elo 1400 and no BT score (null). :func:`write_csv` writes the generic CSV that ``mriqa iqa-bench --dataset csv:PATH`` reads.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from mriqa.reader_study import bt, db, rating
from mriqa.reader_study.study import Study

OUTCOME = {"left": 1.0, "right": 0.0, "tie": 0.5}


def load_judgments(study: Study):
    """``(a, b, outcome, readers)`` arrays ``[J]`` (a = left image index, outcome 1 = left preferred)."""
    index = study.image_index()
    conn = db.connect(study.db_path)
    try:
        rows = db.judgments(conn)
    finally:
        conn.close()
    a = np.array([index[r["left_id"]] for r in rows], dtype=np.int64)
    b = np.array([index[r["right_id"]] for r in rows], dtype=np.int64)
    s = np.array([OUTCOME[r["choice"]] for r in rows], dtype=np.float64)
    readers = np.array([r["reader"] for r in rows], dtype=object)
    return a, b, s, readers


def _f(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def study_scores(study: Study, *, n_boot: int = 200, level: float = 0.95, seed: int = 0, passes: int = 20,
                 last: int = 10) -> dict:
    """All scores of ``study`` (see the module doc)."""
    a, b, s, readers = load_judgments(study)
    n = len(study.images)
    groups = study.group_index()
    elo = rating.elo_scores(a, b, s, n, passes=passes, last=last, seed=seed)
    fit = rating.fit_bt(a, b, s, n, groups, firth=True)
    boot = rating.bootstrap_bt(a, b, s, n, groups, n_boot=n_boot, level=level, seed=seed, fit=fit, firth=True)
    wins = np.bincount(a, s == 1.0, n) + np.bincount(b, s == 0.0, n)
    losses = np.bincount(a, s == 0.0, n) + np.bincount(b, s == 1.0, n)
    ties = np.bincount(a, s == 0.5, n) + np.bincount(b, s == 0.5, n)
    judged = (wins + losses + ties) > 0
    refs = {g["id"]: g.get("reference") for g in study.manifest["groups"]}
    images = []
    for i, im in enumerate(study.images):
        images.append({
            "id": im["id"], "file": im["file"], "group": im["group"], "label": im["label"],
            "method": im.get("method"), "acceleration": im.get("acceleration"),
            "n": int(wins[i] + losses[i] + ties[i]), "wins": int(wins[i]), "losses": int(losses[i]),
            "ties": int(ties[i]), "elo": _f(elo[i]),
            **({"bt": _f(fit.theta[i]), "bt_lo": _f(boot.lo[i]), "bt_hi": _f(boot.hi[i]),
                "bt_elo": _f(bt.to_elo_scale(fit.theta[i]))} if judged[i] else
               {"bt": None, "bt_lo": None, "bt_hi": None, "bt_elo": None}),
            "reference": refs.get(im["group"]),
        })
    methods = []
    labels = sorted({im["label"] for im in study.images})
    for label in labels:
        sel = np.array([im["label"] == label for im in study.images])
        lo, hi = rating.basic_interval(fit.theta[sel].mean(), boot.samples[:, sel].mean(axis=1), level)
        methods.append({"label": label, "groups": int(sel.sum()), "n": int((wins + losses + ties)[sel].sum()),
                        "elo": _f(elo[sel].mean()), "bt": _f(fit.theta[sel].mean()), "bt_lo": _f(lo),
                        "bt_hi": _f(hi)})
    methods.sort(key=lambda m: -(m["bt"] if m["bt"] is not None else -np.inf))
    agree = rating.reader_agreement(a, b, s, readers, n, groups) if len(a) else {}
    return {
        "study": str(study.root), "judgments": int(len(a)), "readers": sorted(set(readers.tolist())),
        "ties": int(np.sum(s == 0.5)),
        "elo": {"start": rating.ELO_START, "M": rating.ELO_M, "K": rating.ELO_K, "passes": passes, "last": last,
                "seed": seed},
        "bt": {"model": "Bradley-Terry-Davidson, Firth-penalised maximum likelihood, mean 0 per content group",
               "nu": _f(fit.nu), "bootstrap": n_boot, "level": level, "seed": seed},
        "images": images, "methods": methods,
        "agreement": {"readers": {k: {kk: (_f(vv) if isinstance(vv, float) else vv) for kk, vv in v.items()}
                                  for k, v in agree.items()},
                      "pairs": [{**p, "agreement": _f(p["agreement"])}
                                for p in rating.pairwise_agreement(a, b, s, readers)]},
    }


def write_csv(result: dict, study: Study, out, score: str = "elo") -> Path:
    """The generic IQA CSV (header ``image,score,reference,distortion,...``; paths relative to the CSV's
    folder, pointing into the study): ``score`` = the image's Elo (``score="elo"``, PIPAL's convention) or
    BT score on Elo points (``"bt"``), higher = better; ``reference`` = the group's reference PNG (column
    present only when every group has one); ``distortion`` = the image's label (method and R). Extra columns
    (``group``, ``elo``, ``bt``, ``bt_lo``, ``bt_hi``, ``n``) are ignored by the reader. Only judged images
    are written (an unjudged one has no human score); InputError when there is none. Written atomically (an
    OSError is an InputError naming ``out``)."""
    from recon.errors import InputError
    from recon.io.output import output_file

    out = Path(out)
    base = out.resolve().parent
    rows = [im for im in result["images"] if im["n"] > 0]
    if not rows:
        raise InputError(study.root, "no judgments yet: nothing to export")
    has_ref = all(im["reference"] for im in rows)
    header = ["image", "score"] + (["reference"] if has_ref else []) + ["distortion", "group", "elo", "bt",
                                                                        "bt_lo", "bt_hi", "n"]
    key = {"elo": "elo", "bt": "bt_elo"}[score]

    def rel(name: str) -> str:
        return Path(os.path.relpath((study.root / name).resolve(), base)).as_posix()

    with output_file(out, "the CSV", suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for im in rows:
                row = [rel(im["file"]), f"{im[key]:.4f}"] + ([rel(im["reference"])] if has_ref else [])
                row += [im["label"], im["group"], f"{im['elo']:.4f}"]
                row += ["" if im[k] is None else f"{im[k]:.6f}" for k in ("bt", "bt_lo", "bt_hi")]
                row.append(str(im["n"]))
                w.writerow(row)
    return out
