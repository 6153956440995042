"""Plain PyTorch (no Lightning): train MoDL or VarNet with DC + QF using ``recon.train_step.train_step``.

    python -m examples.train_step_example --data DIR --arch modl --mode dc+qf --qf-weight 0.01 --steps 100
    python -m examples.train_step_example --make-tiny-data tiny-data --steps 4      # no data needed
    python -m examples.train_step_example --data DIR --mode dc+qf --qf-model recon --kspace-check   # issue 20's term

``DIR/train`` holds fastMRI-format multi-coil h5 files. Prints one line per step
(``step, loss, dc, qf``) and returns the list of per-step stats.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None)
    p.add_argument("--make-tiny-data", default=None)
    p.add_argument("--arch", choices=["modl", "varnet"], default="modl")
    p.add_argument("--mode", default="dc+qf", choices=["dc", "ssdu", "dc+qf", "ssdu+qf"])
    p.add_argument("--qf-weight", type=float, default=0.01)
    p.add_argument("--qf-model", default="gray", help="gray | rgb (QFLoss) or recon (ReconQualityLoss)")
    p.add_argument("--kspace-check", action="store_true",
                   help="with --qf-model recon: 1 - the combined score (the network re-run without a held-out fold)")
    p.add_argument("--accelerations", type=float, nargs="+", default=[4.0])
    p.add_argument("--calib-width", type=int, default=24)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--tiny-model", action="store_true")
    args = p.parse_args(argv)
    if args.kspace_check and args.qf_model != "recon":
        raise SystemExit("--kspace-check needs --qf-model recon")

    import torch

    from mriqa.losses import QFLoss, ReconQualityLoss
    from recon.losses import DataConsistencyLoss
    from recon.pl_module import fastmri_dataloader  # only the DataLoader helper; Lightning is not used
    from recon.train_step import build_model, train_step

    torch.manual_seed(0)
    root = Path(args.data) if args.data else None
    if args.make_tiny_data:
        from examples.tiny_data import make_tiny_dataset

        root = make_tiny_dataset(args.make_tiny_data)
    if root is None:
        raise SystemExit("pass --data DIR or --make-tiny-data DIR")
    if args.arch == "modl":
        cfg = {"num_unrolls": 2, "cg_iters": 3, "channels": 8} if args.tiny_model else {}
    else:
        cfg = {"num_cascades": 2, "chans": 4, "pools": 2, "sens_chans": 2, "sens_pools": 2} if args.tiny_model else {}
    model = build_model(args.arch, cfg)
    losses = {"dc": (1.0, DataConsistencyLoss())}
    if args.mode.endswith("+qf"):
        quality = (ReconQualityLoss("recon", kspace_check=args.kspace_check) if args.qf_model == "recon"
                   else QFLoss(args.qf_model))
        losses["qf"] = (args.qf_weight, quality)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loader = fastmri_dataloader(root / "train", accelerations=args.accelerations, train=True,
                                calib_width=args.calib_width)
    history, step = [], 0
    while step < args.steps:
        loader.dataset.transform.set_epoch(step)  # new masks every pass
        for batch in loader:
            stats = train_step(model, batch, losses, optimizer, mode=args.mode, grad_clip=1.0,
                               seeds=[step * 1000 + int(s) for s in batch["slice_num"]])
            step += 1
            history.append(stats)
            print(f"step {step}: " + " ".join(f"{k}={v:.5f}" for k, v in stats.items()), flush=True)
            if step >= args.steps:
                break
    return history


if __name__ == "__main__":
    main()
