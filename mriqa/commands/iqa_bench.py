"""``mriqa iqa-bench``: a metric against the subjective scores of an IQA database (the standard protocol).

::

    mriqa iqa-bench --dataset KIND:PATH --metric NAME [--metric NAME ...] [--json OUT] [--bootstrap N]
                    [--seed S] [--level L] [--limit N] [--plugin MODULE] [--device DEV]

``--dataset``: ``live``, ``live-realigned``, ``csiq``, ``tid2013``, ``kadid10k``, ``pipal`` or ``csv`` and the
database's folder (the CSV file for ``csv``); layouts in :mod:`mriqa.iqa.datasets`. ``--metric``: a name of
:mod:`mriqa.iqa.metrics_registry` (``qf-gray``, ``qf-rgb``, ``qf:PATH``, ``recon``, ``recon:PATH``, ``qairn``,
``qairn:PATH``, ``psnr``, ``ssim``, or one registered by ``--plugin MODULE``, a Python module imported first
that calls :func:`mriqa.iqa.register_metric`).

Orientation: before any statistic both sides are turned "higher = better quality": DMOS scores (LIVE, CSIQ,
a CSV ``dmos`` column) and the scores of lower-is-better metrics are negated. A metric that agrees with the
subjects then has positive SRCC / KRCC / PLCC, one that disagrees negative (fitted PLCCs keep that sign).

Printed, per metric: SRCC, KRCC, PLCC without fitting; PLCC and RMSE after the 4-parameter (VQEG) and
5-parameter (Sheikh 2006) logistic and the third-order polynomial (NTIRE 2021) fits; the NTIRE main score
(SRCC + PLCC after the polynomial fit); the same per distortion type; and, with ``--bootstrap N`` (default
1000; 0 = off), percentile confidence intervals at ``--level`` (0.95) from N resamples seeded with
``--seed`` (0). ``--limit N`` scores N images evenly spaced over the database (a quick, deterministic sample).

``--json OUT`` (written atomically, NaN as null): ``{"dataset": {...}, "protocol": {...}, "metrics": [{"name",
"kind", "higher_better", "overall": {...}, "per_distortion": {...}, "images": [{"image", "reference",
"distortion", "subjective", "score"}]}]}``. Errors (unknown kind or metric, missing image, malformed score
file, a full-reference metric on a database without references) are one line, exit 2, no output file.
"""
from __future__ import annotations

import argparse
import math

from mriqa.commands.shared import seed_value

STAT_COLUMNS = (
    ("srcc", "SRCC"), ("krcc", "KRCC"), ("plcc", "PLCC"),
    ("plcc_logistic4", "PLCC-L4"), ("plcc_logistic5", "PLCC-L5"), ("plcc_poly3", "PLCC-P3"), ("ntire", "NTIRE"),
)
RMSE_COLUMNS = (("rmse_logistic4", "RMSE-L4"), ("rmse_logistic5", "RMSE-L5"), ("rmse_poly3", "RMSE-P3"))


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "iqa-bench",
        help="correlate a quality metric with the subjective scores of an IQA database",
        description="SRCC / KRCC / PLCC (raw and after logistic / cubic fits), NTIRE 2021 score, per-distortion "
        "breakdown and bootstrap intervals of a metric on LIVE, CSIQ, TID2013, KADID-10k, PIPAL or a CSV.",
    )
    p.add_argument("--dataset", required=True, metavar="KIND:PATH",
                   help="live | live-realigned | csiq | tid2013 | kadid10k | pipal | csv, and the database folder "
                   "(the CSV file for csv)")
    p.add_argument("--metric", required=True, action="append", metavar="NAME",
                   help="qf-gray, qf-rgb, qf:PATH, recon, recon:PATH, qairn, qairn:PATH, psnr, ssim or a registered name "
                   "(repeat for several)")
    p.add_argument("--json", metavar="OUT", default=None, help="write the results (and per-image scores) as JSON")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for confidence intervals (default 1000; 0 = none)")
    p.add_argument("--seed", type=seed_value, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="score only N images, evenly spaced over the database")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import this Python module first (it may call mriqa.iqa.register_metric)")
    p.add_argument("--device", default=None, help="torch device for network metrics (default: cuda if available)")
    p.set_defaults(func=run)
    return p


def _clean(obj):
    """NaN / Inf -> None, numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


W = 11  # column width of the table


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _fmt(v) -> str:
    return f"{v:.3f}" if _finite(v) else "-"


def _fmt_rmse(v) -> str:
    return f"{v:.4g}" if _finite(v) else "-"


def _ci(lo_hi) -> str:
    if lo_hi is None or not _finite(lo_hi[0]):
        return ""
    return f"{lo_hi[0]:.2f},{lo_hi[1]:.2f}"


def _table(result: dict, with_ci: bool) -> str:
    label_w = max([7] + [len(k) for k in result["per_distortion"]]) + 2
    cols = [h for _, h in STAT_COLUMNS] + [h for _, h in RMSE_COLUMNS]
    lines = ["".ljust(label_w) + f"{'n':>6}" + "".join(f"{h:>{W}}" for h in cols)]

    def row(label, c):
        cells = [_fmt(c.get(k)) for k, _ in STAT_COLUMNS] + [_fmt_rmse(c.get(k)) for k, _ in RMSE_COLUMNS]
        lines.append(label.ljust(label_w) + f"{c['n']:>6}" + "".join(f"{v:>{W}}" for v in cells))
        if with_ci and "ci" in c:
            cis = [_ci(c["ci"].get(k)) for k, _ in STAT_COLUMNS]
            lines.append(("  ci".ljust(label_w) + " " * 6 + "".join(f"{v:>{W}}" for v in cis)).rstrip())

    row("overall", result["overall"])
    for label, c in result["per_distortion"].items():
        row(label, c)
    return "\n".join(lines)


def run(args) -> int:
    import importlib
    import json

    import numpy as np

    from recon.errors import InputError
    from recon.io.output import check_writable, output_file
    from mriqa.iqa.correlation import evaluate
    from mriqa.iqa.databases import load_dataset
    from mriqa.iqa.metrics_registry import get_metric, read_image01

    if args.bootstrap < 0:
        raise InputError(None, f"--bootstrap must be >= 0, got {args.bootstrap}")
    if not 0 < args.level < 1:
        raise InputError(None, f"--level must be in (0, 1), got {args.level}")
    if args.limit is not None and args.limit < 3:
        raise InputError(None, f"--limit must be >= 3 (correlations need points), got {args.limit}")
    if args.json is not None:
        check_writable(args.json, "--json")
    for mod in args.plugin:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise InputError(None, f"--plugin {mod!r}: cannot import ({exc})") from None

    dataset = load_dataset(args.dataset)
    if args.limit is not None:
        dataset = dataset.subset(args.limit)
    metrics = [get_metric(name, device=args.device) for name in args.metric]
    for m in metrics:
        if m.kind == "FR" and not dataset.has_reference:
            raise InputError(dataset.score_files[0] if dataset.score_files else None,
                             f"metric {m.name!r} is full-reference but the dataset has no reference images")
    if len(dataset) < 3:
        raise InputError(dataset.score_files[0] if dataset.score_files else None,
                         f"only {len(dataset)} rated image(s); correlations need at least 3")

    from tqdm import tqdm

    subjective = dataset.scores
    oriented_mos = subjective if dataset.higher_better else -subjective
    cache: dict = {}

    def image(path):
        key = str(path)
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[key] = read_image01(path)
        return cache[key]

    results = []
    for m in metrics:
        scores = np.empty(len(dataset), dtype=np.float64)
        bar = tqdm(dataset.items, desc=m.name, disable=None, leave=False, mininterval=2)
        for i, item in enumerate(bar):
            img = image(item.image)
            ref = image(item.reference) if m.kind == "FR" else None
            scores[i] = m(img, ref, source=str(item.image))
        bar.close()
        oriented = scores if m.higher_better else -scores
        res = evaluate(oriented, oriented_mos, dataset.distortions, bootstrap=args.bootstrap, seed=args.seed,
                       level=args.level)
        results.append({
            "name": m.name, "kind": m.kind, "higher_better": m.higher_better, "description": m.description,
            **res,
            "images": [
                {"image": str(it.image), "reference": None if it.reference is None else str(it.reference),
                 "distortion": it.distortion, "level": it.level, "subjective": it.score, "score": float(s)}
                for it, s in zip(dataset.items, scores)
            ],
        })

    n_types = len({d for d in dataset.distortions if d is not None})
    print(f"dataset: {dataset.name} ({dataset.root}): {len(dataset)} images, {dataset.score_name} "
          f"({'higher' if dataset.higher_better else 'lower'} is better), {n_types} distortion type(s)")
    print("statistics on oriented scores (higher = better on both sides); PLCC-L4/L5 = after the 4/5-parameter "
          "logistic, PLCC-P3 = after the cubic, NTIRE = SRCC + PLCC-P3")
    if args.bootstrap:
        print(f"ci: {100 * args.level:g}% percentile bootstrap, {args.bootstrap} resamples, seed {args.seed}")
    for r in results:
        print(f"\nmetric {r['name']} ({r['kind']}, {'higher' if r['higher_better'] else 'lower'} is better)")
        print(_table(r, bool(args.bootstrap)))

    if args.json is not None:
        doc = {
            "dataset": {"kind": dataset.kind, "name": dataset.name, "root": str(dataset.root), "n": len(dataset),
                        "score_name": dataset.score_name, "higher_better": dataset.higher_better,
                        "score_files": [str(p) for p in dataset.score_files], "limit": args.limit},
            "protocol": {"orientation": "both sides higher = better (DMOS and lower-better metrics negated)",
                         "fits": {"logistic4": "VQEG 4-parameter logistic", "logistic5": "Sheikh 2006 5-parameter "
                                  "logistic", "poly3": "third-order polynomial (NTIRE 2021)"},
                         "ntire": "SRCC + PLCC after poly3",
                         "bootstrap": {"n": args.bootstrap, "seed": args.seed, "level": args.level}},
            "metrics": results,
        }
        with output_file(args.json, "--json", suffix=".json") as tmp:
            tmp.write_text(json.dumps(_clean(doc), indent=1) + "\n")
        print(f"\nwrote {args.json}")
    return 0
