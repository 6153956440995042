"""fastMRI plug-in: train fastMRI's own VarNet on fastMRI's own batches with QFLoss + the data-consistency loss,
in a plain PyTorch loop and in Lightning 2. Nothing of fastMRI's is converted by hand.

    python -m examples.fastmri_varnet --out varnet-demo --steps 4      # writes a small synthetic dataset first
    python -m examples.fastmri_varnet --data DIR --size 0 --steps 100  # DIR/train, DIR/val: fastMRI multicoil h5

The batches come from ``fastmri.data.SliceDataset`` + ``fastmri.data.transforms.VarNetDataTransform`` with a
``fastmri.data.subsample.RandomMaskFunc``, collated by PyTorch's default collate: ``VarNetSample`` s with
real-view k-space ``[B, C, H, W, 2]``, a bool mask ``[B, 1, 1, W, 1]``, no coil maps. They go to the losses as
they come:

- VarNet's ``forward`` returns only the RSS magnitude ``[B, H, W]``; a data-consistency loss needs the
  prediction in k-space. ``recon.train_step.forward_model`` runs VarNet's own sensitivity network and cascades
  and returns both the magnitude (``output``, equal to ``VarNet.forward``) and the last cascade's k-space
  (``pred_kspace``).
- ``recon.train_step.batch_physics`` builds the batch's measurement operator once: here
  ``recon.physics.Sampling(mask)`` (no maps: the DC loss compares ``M k_pred`` with ``M y``).
- Every loss is called ``loss(output, target, *, physics, y, image, pred_kspace, data_range)``
  (:mod:`recon.losses`); ``QFLoss`` scores ``output``, ``DataConsistencyLoss`` uses ``physics``, ``y`` and
  ``pred_kspace``.

The plain loop spells these calls out; ``recon.train_step.train_step`` (and the Lightning module
``recon.pl_module.QualityAwareModule``) make the same ones. Prints one JSON line: the per-step losses of the
plain loop and Lightning's final logged metrics.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="folder with train/ and val/ fastMRI multi-coil h5 files")
    p.add_argument("--out", default="varnet-demo", help="work folder (the synthetic dataset goes here)")
    p.add_argument("--size", type=int, default=32, help="synthetic data size (0: use --data)")
    p.add_argument("--steps", type=int, default=4, help="optimiser steps of each of the two loops")
    p.add_argument("--qf-weight", type=float, default=0.05)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def loaders(root: Path, batch_size: int, seed: int):
    """fastMRI's SliceDataset + VarNetDataTransform (R = 4, 16 % centre), PyTorch's default collate."""
    import torch
    from fastmri.data import SliceDataset
    from fastmri.data.subsample import RandomMaskFunc
    from fastmri.data.transforms import VarNetDataTransform

    def dataset(split: str, train: bool):
        mask_func = RandomMaskFunc(center_fractions=[0.16], accelerations=[4], seed=seed)
        # training: a new mask per sample (the mask function's own seeded generator); validation: one per volume
        return SliceDataset(root / split, challenge="multicoil",
                            transform=VarNetDataTransform(mask_func=mask_func, use_seed=not train))

    g = torch.Generator().manual_seed(seed)
    train = torch.utils.data.DataLoader(dataset("train", True), batch_size=batch_size, shuffle=True, generator=g)
    val = torch.utils.data.DataLoader(dataset("val", False), batch_size=batch_size)
    return train, val


def build(args):
    """(VarNet, loss): fastMRI's small VarNet and ``DC + qf_weight x (1 - QF)``."""
    import torch
    from fastmri.models import VarNet

    from mriqa.losses import QFLoss
    from recon.losses import DataConsistencyLoss, WeightedSum

    torch.manual_seed(args.seed)
    model = VarNet(num_cascades=2, chans=4, sens_chans=2)
    loss = WeightedSum({"dc": (1.0, DataConsistencyLoss()), "qf": (args.qf_weight, QFLoss("gray"))})
    return model, loss


def plain_loop(model, loss, loader, steps: int, lr: float) -> list[dict]:
    """The plug-in in your own loop: fastMRI batch -> model adapter -> physics -> loss -> step."""
    import torch

    from recon.train_step import as_batch, batch_physics, forward_model

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history: list[dict] = []
    while len(history) < steps:
        for sample in loader:  # a VarNetSample batch, as fastMRI makes it
            batch = as_batch(sample)  # the same tensors as a dict; complex k-space, float mask
            pred = forward_model(model, batch)  # output = VarNet(...) [B, 1, h, w]; pred_kspace [B, C, H, W]
            physics = batch_physics(batch)  # Sampling(mask): fastMRI's batch has no coil maps
            value = loss(pred["output"], None, physics=physics, y=batch["masked_kspace"], image=pred["image"],
                         pred_kspace=pred["pred_kspace"], data_range=batch["max_value"])
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            history.append({"loss": float(value.detach()), **loss.last})
            if len(history) >= steps:
                break
    return history


def lightning_loop(model, loss, train, val, steps: int, lr: float) -> dict:
    """The same model and loss through ``recon.pl_module.QualityAwareModule`` (Lightning 2)."""
    import lightning as L

    from recon.pl_module import QualityAwareModule

    module = QualityAwareModule(model, loss, mode="dc+qf", lr=lr)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=1)
    trainer.fit(module, train, val)
    return {**{k: float(v) for k, v in trainer.callback_metrics.items()}, "global_step": int(trainer.global_step)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.size:
        from examples.tiny_data import make_tiny_dataset

        root = make_tiny_dataset(Path(args.out) / "data", size=args.size, coils=4)
    elif args.data:
        root = Path(args.data)
    else:
        raise SystemExit("pass --data DIR with --size 0, or a --size for synthetic data")
    train, val = loaders(root, args.batch_size, args.seed)
    model, loss = build(args)
    plain = plain_loop(model, loss, train, args.steps, args.lr)
    model, loss = build(args)  # a fresh start for the Lightning run
    lightning = lightning_loop(model, loss, train, val, args.steps, args.lr)
    result = {"plain": plain, "lightning": lightning}
    print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    main()
