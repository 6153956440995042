"""Cost of a quality term in a reference-free training step: DC alone, DC + the recon score, DC + the recon score
with the k-space check (``ReconQualityLoss(kspace_check=True)``, which re-runs the network without one fold),
same model, batch and threads, one run.

A step is ``recon.train_step.compute_loss`` + backward for MoDL as ``configs/modl-dc-rqk.yaml`` trains it (K = 10
unrolls, 10 CG iterations, 64 channels, 5 layers) on the demo's simulated multi-coil slice (``recon.demo_data``,
``--size`` x ``--size``, ``--coils`` coils, R = 6 random mask, ESPIRiT maps of the full data). Each figure is the
median of ``--reps`` timed steps after one warm-up, the losses interleaved round by round; ratios are against DC
alone measured in the same process.

    python scripts/bench_quality_loss.py                       # 128 x 128, 8 coils, batch 1, 2 threads
    python scripts/bench_quality_loss.py --threads 1 --reps 11
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--coils", type=int, default=8)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--unrolls", type=int, default=10)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def step_seconds(model, batch, losses: dict, reps: int) -> dict[str, float]:
    """``{name: median seconds}`` of a training step (loss + backward) with each loss: one warm-up each, then
    ``reps`` rounds, each timing every loss once (interleaved, so drift in the machine hits all alike)."""
    from recon.train_step import compute_loss

    def timed_step(loss) -> float:
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        total, _ = compute_loss(model, batch, loss, mode="dc+qf", seeds=list(range(len(batch["fname"]))))
        total.backward()
        return time.perf_counter() - t0

    for loss in losses.values():
        timed_step(loss)
    times = {name: [] for name in losses}
    for _ in range(reps):
        for name, loss in losses.items():
            times[name].append(timed_step(loss))
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    from mriqa.losses import ReconQualityLoss
    from recon.demo_data import demo_slice
    from recon.losses import DataConsistencyLoss, WeightedSum
    from recon.train_step import build_model
    from recon.transforms import ModlDataTransform, collate

    torch.set_num_threads(args.threads)
    kspace, rss, _ = demo_slice(size=args.size, coils=args.coils)
    transform = ModlDataTransform(accelerations=[6.0], calib_width=24, fixed=True, cache_dir=False)
    batch = collate([transform(kspace[0], None, rss[0], {}, "demo", i) for i in range(args.batch)])
    torch.manual_seed(0)
    model = build_model("modl", {"num_unrolls": args.unrolls, "cg_iters": 10, "channels": 64, "num_layers": 5})
    dc = DataConsistencyLoss(norm="l2")
    losses = {"DC alone": {"dc": (1.0, dc)},
              "DC + recon score": {"dc": (1.0, dc), "qf": (0.01, ReconQualityLoss("recon"))},
              "DC + recon score with the k-space check": {"dc": (1.0, dc),
                                                          "qf": (0.01, ReconQualityLoss("recon", kspace_check=True))}}
    results = step_seconds(model, batch, {name: WeightedSum(spec) for name, spec in losses.items()}, args.reps)
    base = results["DC alone"]
    print(f"MoDL training step (K = {args.unrolls}), {args.batch} x {args.coils} coils x {args.size} x {args.size}, "
          f"{args.threads} thread(s), median of {args.reps}:")
    print("| loss | s / step | vs DC alone |")
    print("|---|---:|---:|")
    for name, sec in results.items():
        print(f"| {name} | {sec:.2f} | {sec / base:.2f}x |")
    return results


if __name__ == "__main__":
    main()
