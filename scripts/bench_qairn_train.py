"""Benchmark one QAIRN training step: float32 vs bfloat16 autocast, contiguous vs channels-last.

One step = forward, the paper's loss (L1 + 1 - SSIM), backward and an Adam update, on random inputs of the
configured size (``--batch`` patches of ``--patch`` x ``--patch``, RGB). Each setting runs in the same process
on the same model; the time is the median of ``--reps`` steps after two warm-up steps, and the table prints
the speed-up of each setting over float32 / contiguous (the trainer's default). bfloat16 pays off only where
the processor has bf16 instructions (AVX-512 BF16 / AMX on CPUs, tensor cores on GPUs); the table says how
much on the machine at hand.

    python scripts/bench_qairn_train.py                          # configs/qairn.yaml's network, 16 x 96^2
    python scripts/bench_qairn_train.py --config configs/qairn-cpu.yaml --batch 8 --patch 48

README.md and docs/qairn/notes.md quote its step times (``--config configs/qairn-deep.yaml`` for the deep model).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def step_seconds(model_cfg: dict, batch: int, patch: int, bf16: bool, channels_last: bool, reps: int,
                 device: str) -> float:
    import torch

    from mriqa.models.qairn import QAIRN
    from mriqa.train_qairn import loss_fn

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    model = QAIRN.from_config({"in_channels": 3, **model_cfg}).to(device, memory_format=fmt).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, patch, patch, generator=g).to(device, memory_format=fmt)
    y = torch.rand(batch, 3, patch, patch, generator=g).to(device)
    times = []
    for i in range(reps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            out, _ = model(x)
        loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    import torch

    from mriqa.train_qairn import load_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "qairn.yaml"))
    ap.add_argument("--batch", type=int, default=None, help="default: the config's train.batch")
    ap.add_argument("--patch", type=int, default=None, help="default: the config's sampler.patch")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    batch = args.batch or int(cfg["train"]["batch"])
    patch = args.patch or int(cfg["sampler"]["patch"])
    torch.set_num_threads(args.threads)
    print(f"QAIRN training step, {Path(args.config).name} network {cfg['model']['channels']} x "
          f"{cfg['model']['n_res']} res blocks, batch {batch} x {patch}^2, device {args.device}"
          + (f", {args.threads} threads" if args.device == "cpu" else "") + f", median of {args.reps}\n")
    print("| precision | layout | s / step | speed-up vs fp32 contiguous |")
    print("|---|---|---:|---:|")
    base = None
    for bf16 in (False, True):
        for cl in (False, True):
            s = step_seconds(cfg["model"], batch, patch, bf16, cl, args.reps, args.device)
            base = base or s
            print(f"| {'bf16 autocast' if bf16 else 'fp32'} | {'channels-last' if cl else 'contiguous'} | "
                  f"{s:.3f} | {base / s:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
