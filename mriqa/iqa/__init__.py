"""The standard IQA evaluation protocol: correlations, database readers and a metric registry.

>>> from mriqa.iqa import load_dataset, get_metric, evaluate, read_image01
>>> ds = load_dataset("tid2013:/data/tid2013")                  # LIVE, CSIQ, TID2013, KADID-10k, PIPAL, CSV
>>> psnr = get_metric("psnr")                                    # or "ssim", "qf-rgb", "qairn", "qf:PATH"
>>> scores = [psnr(read_image01(it.image), read_image01(it.reference)) for it in ds.items]
>>> evaluate(scores, ds.scores, ds.distortions, bootstrap=1000)  # SRCC/KRCC/PLCC, fits, NTIRE, breakdown, CIs

Modules: :mod:`mriqa.iqa.correlation` (statistics; ``srcc`` is THE Spearman correlation of the code base),
:mod:`mriqa.iqa.datasets` (the rated-image list, CSV, ``KIND:PATH``), :mod:`mriqa.iqa.databases` (the published
layouts), :mod:`mriqa.iqa.metrics_registry` (metrics by name). Command line: ``mriqa iqa-bench``.
"""
from mriqa.iqa.correlation import (
    bootstrap_ci,
    correlations,
    evaluate,
    fit,
    fitted_plcc,
    krcc,
    ntire_score,
    plcc,
    srcc,
)
from mriqa.iqa.databases import load_dataset
from mriqa.iqa.datasets import IQADataset, IQAItem
from mriqa.iqa.metrics_registry import Metric, get_metric, list_metrics, read_image01, register_metric

__all__ = [
    "IQADataset", "IQAItem", "Metric", "bootstrap_ci", "correlations", "evaluate", "fit", "fitted_plcc",
    "get_metric", "krcc", "list_metrics", "load_dataset", "ntire_score", "plcc", "read_image01",
    "register_metric", "srcc",
]
