"""Throughput of the reconstruction-quality score (``--model recon``) against the gray QF predictor, same run.

Input: ``--batch`` magnitude slices of ``--size`` x ``--size`` (a textured disc phantom with Rician noise, so
the percentile normalisation does real work), scored through the public API
(``mriqa.load_predictor(name).score(images, pool="mean", kind="mri")``: normalisation, network, pooling) with
``torch.set_num_threads(--threads)``. Each figure is the median of ``--reps`` timed calls after one warm-up;
the ratio line compares the two models measured in this process. ``--models recon-r`` adds the R-aware score
(``mriqa.recon_quality.r_aware.r_aware_scores``: the recon score and the rq acceleration estimator on the same
images).

    python scripts/bench_rq.py                        # 320 x 320, batch 16, 2 threads
    python scripts/bench_rq.py --size 256 --batch 32 --threads 1
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import time

import numpy as np


def phantom_batch(batch: int, size: int, seed: int = 0) -> np.ndarray:
    """``[batch, size, size]`` float32 magnitudes: a textured disc plus Rician noise (SNR about 30)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    disc = ((xx**2 + yy**2) < 0.4**2) * (1 + 0.4 * np.cos(23 * xx) * np.sin(17 * yy))
    noise = rng.standard_normal((2, batch, size, size)) / 30.0
    return np.sqrt((disc[None] + noise[0]) ** 2 + noise[1] ** 2).astype(np.float32)


def slices_per_second(score, images: np.ndarray, reps: int) -> float:
    """``len(images)`` / the median time of ``score(images)`` over ``reps`` calls after one warm-up."""
    score(images)  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        score(images)
        times.append(time.perf_counter() - t0)
    return len(images) / statistics.median(times)


def scorer(name: str, batch: int):
    """``images -> scores`` of a shipped model, or of the R-aware score (``recon-r``)."""
    import mriqa

    if name == "recon-r":
        from mriqa.recon_quality.r_aware import r_aware_scores
        from mriqa.restimate import load_estimator

        predictor, estimator = mriqa.load_predictor("recon", device="cpu", batch_size=batch), load_estimator("rq")
        return lambda images: r_aware_scores(images, predictor=predictor, estimator=estimator, batch=batch)
    predictor = mriqa.load_predictor(name, device="cpu", batch_size=batch)
    return lambda images: predictor.score(images, pool="mean", kind="mri")


def main(argv=None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--models", nargs="+", default=["recon", "gray"], help="shipped model names, or recon-r")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = phantom_batch(args.batch, args.size)
    rates = {}
    print(f"| model | slices/s ({args.size} x {args.size}, batch {args.batch}, {args.threads} threads, "
          f"median of {args.reps}) |\n|---|---:|")
    for name in args.models:
        rates[name] = slices_per_second(scorer(name, args.batch), images, args.reps)
        print(f"| {name} | {rates[name]:.1f} |", flush=True)
    if len(rates) >= 2:
        first, second = list(rates)[:2]
        print(f"\n{first} / {second} throughput: {rates[first] / rates[second]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
