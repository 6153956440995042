"""Benchmark MoDL per slice: forward and forward+backward time, and peak training memory.

Grid: K in {1, 5, 10} unrolls x CG iterations in {5, 10} x sizes 8 coils x 256 x 256 and 15 coils x 640 x 368
(fastMRI knee size), synthetic input (random k-space, random normalised coil maps, an R = 4 line mask), batch
of one slice, the paper's denoiser (5 layers x 64 channels). Forward+backward uses gradient checkpointing of
the denoiser (``checkpoint=True``, the low-memory training setting); K = 1 and K = 10 are also run without it
to show what checkpointing buys.

Memory:
- CPU: each configuration runs in a fresh subprocess with ``MALLOC_MMAP_THRESHOLD_=65536`` (so glibc serves
  every large tensor with mmap and gives it back on free: the resident set follows live memory);
  peak = ``ru_maxrss`` after one forward+backward minus the resident set just before it (inputs, model and
  libraries already loaded). Also reported: the bytes of the distinct tensors autograd saves for backward
  (``torch.autograd.graph.saved_tensors_hooks``, a separate forward), i.e. the graph held between forward and
  backward. (``tracemalloc`` does not see torch's allocations, hence neither of these uses it.)
- GPU (when CUDA is present): ``torch.cuda.max_memory_allocated`` minus the allocation before the step.
The acceptance number is the ratio of peak training memory at K = 10 to K = 1 (target: <= 2).

Timing: median of ``--reps`` runs after one warm-up, ``torch.set_num_threads(--threads)``.

    python scripts/bench_modl.py                 # CPU (+ GPU when present), prints markdown tables
    python scripts/bench_modl.py --sizes 8x256x256 --reps 3
    python scripts/bench_modl.py --no-cpu --out docs/recon/modl_bench_gpu.md   # GPU rows only

``docs/recon/modl_bench.md`` holds the tables it printed (``python scripts/bench_modl.py``).
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SIZES = ["8x256x256", "15x640x368"]
UNROLLS = [1, 5, 10]
CG_ITERS = [5, 10]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _inputs(coils: int, h: int, w: int, device):
    import torch

    g = torch.Generator().manual_seed(0)
    maps = torch.randn(1, coils, h, w, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().square().sum(1, keepdim=True).sqrt()
    kspace = torch.randn(1, coils, h, w, dtype=torch.complex64, generator=g)
    mask = (torch.rand(1, 1, 1, w, generator=g) < 0.25).float()
    mask[..., w // 2 - 8: w // 2 + 8] = 1
    target = torch.rand(1, h, w, generator=g)
    return kspace.mul(mask).to(device), mask.to(device), maps.to(device), target.to(device)


def worker(spec: dict) -> dict:
    """One configuration in this (fresh) process; returns the measurements."""
    import torch

    from recon.modl import MoDL, ModlConfig

    torch.set_num_threads(int(spec["threads"]))
    device = torch.device(spec["device"])
    coils, h, w = (int(v) for v in spec["size"].split("x"))
    torch.manual_seed(0)
    model = MoDL(ModlConfig(num_unrolls=spec["K"], cg_iters=spec["cg"], cg_tol=0.0,
                            checkpoint=spec["checkpoint"])).to(device)
    torch.nn.init.normal_(model.denoiser.net[-1].weight, std=0.01)  # a non-trivial denoiser
    k, m, maps, target = _inputs(coils, h, w, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    amp = bool(spec.get("amp")) and device.type == "cuda"

    def autocast():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp)

    def train_step():
        model.train()
        model.zero_grad(set_to_none=True)
        with autocast():
            out = model(k, m, sens_maps=maps)
            loss = (out.float() - target).abs().mean()
        loss.backward()
        sync()

    def forward():
        model.eval()
        with torch.no_grad(), autocast():
            model(k, m, sens_maps=maps)
        sync()

    result = {}
    # 1) peak memory of one training step, measured first (nothing has run yet in this process)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        train_step()
        result["first_fwd_bwd_s"] = time.perf_counter() - t0
        result["peak_bytes"] = torch.cuda.max_memory_allocated() - base
    else:
        base = _rss_bytes()
        t0 = time.perf_counter()
        train_step()
        result["first_fwd_bwd_s"] = time.perf_counter() - t0
        result["peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    # 2) bytes saved for backward (a forward under saved-tensor hooks)
    seen: dict[int, int] = {}
    keep = []

    def pack(t):
        keep.append(t)
        st = t.untyped_storage()
        seen[st.data_ptr()] = max(seen.get(st.data_ptr(), 0), st.nbytes())
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(k, m, sens_maps=maps)
    result["saved_bytes"] = sum(seen.values())
    del out
    keep.clear()  # release the saved tensors (the closure above still holds the list)
    # 3) timings (one warm-up already done for train_step)
    reps = int(spec["reps"])
    if spec.get("time", True):
        forward()
        result["fwd_s"] = _median_seconds(forward, reps)
        result["fwd_bwd_s"] = _median_seconds(train_step, reps)
    return result


def _median_seconds(step, reps: int) -> float:
    """Median wall time of ``reps`` calls of ``step`` (already warmed up)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_config(spec: dict) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env, cwd=str(REPO),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed for {spec}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mib(b: float) -> str:
    return f"{b / 2**20:.0f}"


def bench(device: str, sizes, reps: int, threads: int, amp: bool = False) -> str:
    import torch

    lines = []
    dev_name = torch.cuda.get_device_name(0) if device == "cuda" else \
        f"CPU ({os.cpu_count()} cores visible, torch threads = {threads})"
    memory_how = "torch.cuda.max_memory_allocated" if device == "cuda" else \
        "ru_maxrss - RSS before the step, fresh subprocess per config"
    precision = "bf16 autocast (as training's `amp: auto` on CUDA)" if amp else "fp32"
    lines.append(f"### MoDL on {dev_name}: per slice, 5 x 64-channel denoiser, synthetic input, {precision}")
    lines.append("")
    lines.append(f"fwd: eval, no_grad. fwd+bwd: train step (L1 loss, backward), denoiser checkpointing unless "
                 f"stated. Peak: {memory_how}. Saved: bytes autograd holds between forward and backward. "
                 f"Median of {reps} (after a warm-up).")
    lines.append("")
    lines.append("| coils x H x W | K | CG iters | checkpoint | fwd (s) | fwd+bwd (s) | peak train (MiB) | "
                 "saved for backward (MiB) |")
    lines.append("|---|---|---|---|---|---|---|---|")
    ratios = []
    for size in sizes:
        peaks = {}
        for cg in CG_ITERS:
            for k in UNROLLS:
                spec = dict(size=size, K=k, cg=cg, checkpoint=True, reps=reps, threads=threads, device=device,
                            amp=amp)
                r = run_config(spec)
                peaks[(cg, k, True)] = r["peak_bytes"]
                lines.append(f"| {size} | {k} | {cg} | yes | {r['fwd_s']:.3f} | {r['fwd_bwd_s']:.3f} | "
                             f"{mib(r['peak_bytes'])} | {mib(r['saved_bytes'])} |")
                print(lines[-1], file=sys.stderr, flush=True)
        for k in (1, 10):
            spec = dict(size=size, K=k, cg=10, checkpoint=False, reps=reps, threads=threads, device=device,
                        time=True, amp=amp)
            r = run_config(spec)
            peaks[(10, k, False)] = r["peak_bytes"]
            lines.append(f"| {size} | {k} | 10 | no | {r['fwd_s']:.3f} | {r['fwd_bwd_s']:.3f} | "
                         f"{mib(r['peak_bytes'])} | {mib(r['saved_bytes'])} |")
            print(lines[-1], file=sys.stderr, flush=True)
        for cg in CG_ITERS:
            ratios.append(f"| {size} | {cg} | yes | {peaks[(cg, 10, True)] / peaks[(cg, 1, True)]:.2f} |")
        ratios.append(f"| {size} | 10 | no | {peaks[(10, 10, False)] / peaks[(10, 1, False)]:.2f} |")
    lines += ["", "Peak training memory, K = 10 / K = 1 (acceptance: <= 2 with the implicit CG):", "",
              "| coils x H x W | CG iters | checkpoint | ratio |", "|---|---|---|---|"] + ratios
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--sizes", nargs="+", default=SIZES)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-gpu", action="store_true")
    p.add_argument("--no-cpu", action="store_true", help="GPU rows only (on a GPU machine)")
    p.add_argument("--amp", action="store_true", help="GPU rows also with bf16 autocast (training's amp: auto)")
    p.add_argument("--out", default=None, help="also write the tables here (markdown)")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    import torch

    tables = []
    if not args.no_cpu:
        tables.append(bench("cpu", args.sizes, args.reps, args.threads))
        print(tables[-1], flush=True)
    if torch.cuda.is_available() and not args.no_gpu:
        tables.append(bench("cuda", args.sizes, max(args.reps, 5), args.threads))
        print(tables[-1], flush=True)
        if args.amp:
            tables.append(bench("cuda", args.sizes, max(args.reps, 5), args.threads, amp=True))
            print(tables[-1], flush=True)
    else:
        print("\n(no CUDA device: GPU rows not measured)")
    if args.out:
        from recon.files import atomic_path

        with atomic_path(args.out) as tmp:
            Path(tmp).write_text("\n\n".join(tables) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
