"""Lightning 2 plug-in: train any reconstruction network (MoDL, fastMRI's VarNet, ...) with any trainer-interface
loss (supervised, DC, SSDU, + QF) on fastMRI-format h5 files. Needs ``pip install lightning`` (the
``lightning`` extra); nothing else in ``recon`` imports it. fastMRI's own ``MriModule`` is not used (it relies
on hooks removed in Lightning 2, fastMRI issue #308).

>>> import lightning as L
>>> from fastmri.models import VarNet
>>> from mriqa.losses import CombinedLoss
>>> from recon.pl_module import QualityAwareModule, fastmri_dataloader
>>> module = QualityAwareModule(VarNet(num_cascades=4), CombinedLoss({"dc": 1.0, "qf": 0.01}), mode="dc+qf")
>>> train = fastmri_dataloader("data/multicoil_train", accelerations=[4, 8], train=True)
>>> L.Trainer(max_steps=1000, accelerator="gpu", devices=4, strategy="ddp").fit(module, train)

Data: :func:`fastmri_dataloader` = ``fastmri.data.SliceDataset(root, "multicoil", transform=
recon.transforms.ModlDataTransform(...))`` with ``recon.transforms.collate``: batches are dicts
(``masked_kspace`` complex ``[B, C, H, W]``, ``mask``, ``sens_maps``, ``target`` ``[B, h, w]`` or None,
``max_value`` ``[B]``, ...). Training masks are new every epoch (the module calls the transform's
``set_epoch``), deterministic by ``(seed, epoch, file, slice)``.

Step (shared with the plain-PyTorch :func:`recon.train_step.train_step`): SSDU modes split the acquired
samples (network sees Theta, losses get ``mask`` = Lambda; the split seed is
``mask_seed(seed, "ssdu", global_step, fname, slice_num)``), the model adapter
:func:`recon.train_step.forward_model` gives ``output`` / ``image`` / ``pred_kspace``, and
:func:`recon.train_step.compute_loss` calls the loss(es). Logged: ``train/loss`` and each term
(``train/dc``, ``train/qf``, ...); validation logs ``val/psnr``, ``val/ssim`` (against the reference when the
files have one; data range = the volume max) and ``val/dc`` (k-space residual on the acquired samples).

Multi-GPU / multi-node: unchanged, ``strategy="ddp"``. A frozen QF predictor inside the loss is a submodule
with ``requires_grad=False``: DDP replicates it on every rank and syncs no gradient for it; it stays in eval
mode (``QFLoss.train`` keeps it there). ``tests/test_ddp.py`` runs 2-process DDP on CPU (gloo) and checks
that both ranks end with identical weights.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import lightning as L
import torch

from recon.errors import InputError
from recon.train_step import MODES, compute_loss, forward_model, ssdu_inputs

__all__ = ["QualityAwareModule", "fastmri_dataloader"]


class QualityAwareModule(L.LightningModule):
    """A LightningModule around ``model`` and ``loss`` (see the module docstring).

    Args:
        model: ``recon.modl.MoDL``, ``fastmri.models.VarNet`` or any module called fastMRI-style.
        loss: a trainer-interface loss (e.g. ``mriqa.losses.CombinedLoss``) or a dict of them
            (``{name: callable}`` / ``{name: (weight, callable)}``).
        mode: one of ``recon.train_step.MODES``; ``ssdu*`` modes split the samples.
        lr: Adam learning rate (model parameters only; the loss's frozen networks are not optimised).
        ssdu: options of ``recon.ssdu.split_batch`` (``ratio`` 0.4, ``selection``, ``std_scale``, ``keep_center``).
        num_unrolls: MoDL's K (None: the model's own).
        seed: base seed of the SSDU splits.
    """

    def __init__(self, model: torch.nn.Module, loss: Any, mode: str = "dc", lr: float = 1e-3,
                 ssdu: Mapping | None = None, num_unrolls: int | None = None, seed: int = 0):
        super().__init__()
        if mode not in MODES:
            raise InputError(None, f"mode must be one of {MODES}, got {mode!r}")
        self.model = model
        self.loss = loss  # an nn.Module loss is a submodule (moved with the model, replicated by DDP)
        if isinstance(loss, Mapping):  # register the module terms of a dict of losses, too
            fns = {k: (v[1] if isinstance(v, (tuple, list)) else v) for k, v in loss.items()}
            self.loss_modules = torch.nn.ModuleDict({k: f for k, f in fns.items() if isinstance(f, torch.nn.Module)})
        self.mode = mode
        self.lr = float(lr)
        self.ssdu = dict(ssdu or {})
        self.num_unrolls = num_unrolls
        self.seed = int(seed)

    def forward(self, batch: Mapping) -> torch.Tensor:
        """Magnitude ``[B, 1, h, w]`` from all acquired samples of ``batch``."""
        return forward_model(self.model, batch, num_unrolls=self.num_unrolls)["output"]

    def _split(self, batch: Mapping) -> tuple[Mapping, Mapping]:
        if not self.mode.startswith("ssdu"):
            return batch, batch
        from recon.transforms import mask_seed

        sn = batch["slice_num"]
        sn = sn.tolist() if torch.is_tensor(sn) else list(sn)
        seeds = [mask_seed(self.seed, "ssdu", int(self.global_step), f, int(s)) for f, s in zip(batch["fname"], sn)]
        opts = dict(self.ssdu)
        if isinstance(opts.get("keep_center"), list):
            opts["keep_center"] = tuple(opts["keep_center"])
        return ssdu_inputs(batch, seeds, **opts)

    def training_step(self, batch: Mapping, batch_idx: int) -> torch.Tensor:
        net_batch, loss_batch = self._split(batch)
        pred = forward_model(self.model, net_batch, num_unrolls=self.num_unrolls)
        target = batch.get("target") if self.mode == "supervised" else None
        total, parts = compute_loss(self.loss, pred, loss_batch, target)
        bsz = int(batch["masked_kspace"].shape[0])
        self.log("train/loss", total, batch_size=bsz, prog_bar=True, sync_dist=False)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=bsz)
        return total

    @torch.no_grad()
    def validation_step(self, batch: Mapping, batch_idx: int) -> None:
        pred = forward_model(self.model, batch, num_unrolls=self.num_unrolls)
        bsz = int(batch["masked_kspace"].shape[0])
        if pred["image"] is not None or pred["pred_kspace"] is not None:
            from recon.fft import fft2c

            k = pred["pred_kspace"] if pred["pred_kspace"] is not None else \
                fft2c(batch["sens_maps"] * pred["image"].unsqueeze(1))
            y, m = batch["masked_kspace"], batch["mask"]
            resid = (((k - y) * m).abs().square().sum((1, 2, 3)) / (y * m).abs().square().sum((1, 2, 3))).mean()
            self.log("val/dc", resid, batch_size=bsz, sync_dist=True)
        target = batch.get("target")
        if target is None:
            return
        from fastmri.losses import SSIMLoss

        out = pred["output"]
        tgt = target.unsqueeze(1).to(out)
        dr = batch["max_value"].to(out).reshape(-1, 1, 1, 1)
        mse = (out - tgt).square().mean((1, 2, 3))
        psnr = (10 * torch.log10(dr.flatten().square() / mse.clamp_min(1e-20))).mean()
        ssim = 1 - SSIMLoss().to(out.device)(out, tgt, batch["max_value"].to(out))
        self.log("val/psnr", psnr, batch_size=bsz, sync_dist=True, prog_bar=True)
        self.log("val/ssim", ssim, batch_size=bsz, sync_dist=True)

    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        ds = getattr(loader, "dataset", None)
        tf = getattr(ds, "transform", None)
        if hasattr(tf, "set_epoch"):
            tf.set_epoch(int(self.current_epoch))

    def configure_optimizers(self):
        return torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=self.lr)


def fastmri_dataloader(root: str | os.PathLike, accelerations: Sequence[float] = (4.0,),
                       mask_types: Sequence[str] = ("random",), train: bool = True, batch_size: int = 1,
                       num_workers: int = 0, seed: int = 0, **transform_options) -> torch.utils.data.DataLoader:
    """``DataLoader`` over ``fastmri.data.SliceDataset(root, "multicoil")`` with ``ModlDataTransform``
    (``train=True``: masks drawn per sample over ``accelerations``, shuffled; ``False``: one fixed mask per
    volume, not shuffled) and ``recon.transforms.collate``. Lightning adds a ``DistributedSampler`` under DDP."""
    from recon.transforms import ModlDataTransform, collate, slice_dataset

    tf = ModlDataTransform(accelerations=list(accelerations), mask_types=list(mask_types), fixed=not train,
                           continuous=train and len(accelerations) > 1, seed=seed, root=root,
                           **transform_options)
    ds = slice_dataset(root, tf)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=train, num_workers=num_workers,
                                       collate_fn=collate)
