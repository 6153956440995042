"""Train MoDL or fastMRI's VarNet with DC + QF (or any mode) through the Lightning module, on fastMRI h5 files.

    python -m examples.train_lightning --data DIR --arch varnet --mode dc+qf --qf-weight 0.01 --max-steps 100
    python -m examples.train_lightning --make-tiny-data tiny-data --arch modl --max-steps 5      # no data needed
    # the quality term that DC training does not game (the recon score with the k-space check):
    python -m examples.train_lightning --data DIR --mode dc+qf --qf-model recon --kspace-check
    # several GPUs (or nodes), unchanged code:
    python -m examples.train_lightning --data DIR --accelerator gpu --devices 4 --strategy ddp

``DIR`` holds ``train/`` and ``val/`` folders of fastMRI-format multi-coil h5 files (``mriqa make-dataset``
writes them as ``multicoil_train``/``multicoil_val``: pass ``--train-split``/``--val-split``). With
``--save-weights PREFIX`` every rank writes its final model weights to ``PREFIX.rank<r>.safetensors`` (the DDP
test compares them). Prints one JSON line with the final logged metrics (rank 0).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="folder with train/ and val/ fastMRI h5 files")
    p.add_argument("--make-tiny-data", default=None, help="write a tiny dataset here first and use it")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--arch", choices=["modl", "varnet"], default="varnet")
    p.add_argument("--mode", default="dc+qf", choices=["supervised", "dc", "ssdu", "dc+qf", "ssdu+qf"])
    p.add_argument("--qf-weight", type=float, default=0.01)
    p.add_argument("--qf-model", default="gray", help="gray | rgb (QFLoss) or recon (ReconQualityLoss)")
    p.add_argument("--kspace-check", action="store_true",
                   help="with --qf-model recon: 1 - the combined score (the k-space check on one held-out fold)")
    p.add_argument("--accelerations", type=float, nargs="+", default=[4.0])
    p.add_argument("--calib-width", type=int, default=24)
    p.add_argument("--max-steps", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--strategy", default="auto")
    p.add_argument("--tiny-model", action="store_true", help="a very small network (tests, smoke runs)")
    p.add_argument("--save-weights", default=None, help="PREFIX: each rank writes PREFIX.rank<r>.safetensors")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def build(args):
    import torch

    from mriqa.losses import CombinedLoss
    from recon.train_step import build_model

    torch.manual_seed(args.seed)
    if args.arch == "modl":
        cfg = {"num_unrolls": 2, "cg_iters": 3, "channels": 8} if args.tiny_model else {}
    else:
        cfg = ({"num_cascades": 2, "chans": 4, "pools": 2, "sens_chans": 2, "sens_pools": 2}
               if args.tiny_model else {"num_cascades": 8})
    model = build_model(args.arch, cfg)
    if args.mode == "supervised":
        loss = CombinedLoss({"l1": 1.0})
    else:
        weights = {"dc": 1.0}
        term = "recon" if args.qf_model == "recon" else "qf"
        if args.mode.endswith("+qf"):
            weights[term] = args.qf_weight
        loss = CombinedLoss(weights, options={"qf": {"model": args.qf_model},
                                              "recon": {"model": "recon", "kspace_check": args.kspace_check}})
    return model, loss


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.kspace_check and args.qf_model != "recon":
        raise SystemExit("--kspace-check needs --qf-model recon")
    import lightning as L
    import torch

    from recon.pl_module import QualityAwareModule, fastmri_dataloader

    torch.set_num_threads(1) if args.accelerator == "cpu" else None
    root = Path(args.data) if args.data else None
    if args.make_tiny_data:
        from examples.tiny_data import make_tiny_dataset

        root = make_tiny_dataset(args.make_tiny_data)
    if root is None:
        raise SystemExit("pass --data DIR or --make-tiny-data DIR")
    model, loss = build(args)
    module = QualityAwareModule(model, loss, mode=args.mode, lr=args.lr, seed=args.seed)
    common = dict(calib_width=args.calib_width, batch_size=args.batch_size, seed=args.seed)
    train = fastmri_dataloader(root / args.train_split, accelerations=args.accelerations, train=True, **common)
    val = fastmri_dataloader(root / args.val_split, accelerations=[args.accelerations[0]], train=False, **common)
    trainer = L.Trainer(max_steps=args.max_steps, accelerator=args.accelerator, devices=args.devices,
                        strategy=args.strategy, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=2,
                        val_check_interval=None, check_val_every_n_epoch=1, num_sanity_val_steps=0,
                        deterministic=True)
    trainer.fit(module, train, val)
    if args.save_weights:
        from safetensors.torch import save_file

        from recon.files import atomic_path

        path = Path(f"{args.save_weights}.rank{trainer.global_rank}.safetensors")
        tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics["global_step"] = int(trainer.global_step)
    if trainer.global_rank == 0:
        print(json.dumps(metrics, sort_keys=True))
    return metrics


if __name__ == "__main__":
    main()
