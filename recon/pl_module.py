"""Lightning 2 plug-in: train any reconstruction network (MoDL, fastMRI's VarNet, ...) with any loss of
:mod:`recon.losses`'s call (supervised, DC, SSDU, + QF) on fastMRI-format h5 files. Needs ``pip install lightning``
(the ``lightning`` extra); nothing else in ``recon`` imports it. fastMRI's own ``MriModule`` is not used (it
relies on hooks removed in Lightning 2, fastMRI issue #308).

>>> import lightning as L
>>> from fastmri.models import VarNet
>>> from mriqa.losses import CombinedLoss
>>> from recon.pl_module import QualityAwareModule, fastmri_dataloader
>>> module = QualityAwareModule(VarNet(num_cascades=4), CombinedLoss({"dc": 1.0, "qf": 0.01}), mode="dc+qf")
>>> train = fastmri_dataloader("data/multicoil_train", accelerations=[4, 8], train=True)
>>> L.Trainer(max_steps=1000, accelerator="gpu", devices=4, strategy="ddp").fit(module, train)

Data: :func:`fastmri_dataloader` = ``fastmri.data.SliceDataset(root, "multicoil", transform=
recon.transforms.ModlDataTransform(...))`` with ``recon.transforms.collate`` (batches with coil maps; masks new
every epoch, deterministic by ``(seed, epoch, file, slice)``), or any loader of fastMRI's own batches
(``fastmri.data.transforms.VarNetDataTransform``: ``VarNetSample`` with real-view k-space and bool masks, no
maps; ``examples/fastmri_varnet.py``): the step takes them as they come (``recon.train_step.as_batch``).

Step: :func:`recon.train_step.compute_loss`, the one the plain-PyTorch :func:`recon.train_step.train_step` and
``recon.training.trainer.Trainer`` run (SSDU split with seeds ``recon.train_step.ssdu_seeds(seed, global_step,
batch)``, physics built once per batch, the model adapter, the loss call). Logged: ``train/loss`` and each
term (``train/dc``, ``train/qf``, ...); validation logs ``val/dc`` (:func:`recon.losses.dc_loss` on the
acquired samples) and, when the batch has a reference, ``val/psnr`` / ``val/ssim`` (``recon.metrics``,
fastMRI's conventions; data range = the volume max).

Multi-GPU / multi-node: unchanged, ``strategy="ddp"``. A frozen QF predictor inside the loss is a submodule
with ``requires_grad=False``: DDP replicates it on every rank and syncs no gradient for it; it stays in eval
mode (``QFLoss.train`` keeps it there). ``tests/test_ddp.py`` runs 2-process DDP on CPU (gloo) and checks
that both ranks end with identical weights.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import lightning as L
import numpy as np
import torch

from recon.errors import InputError
from recon.losses.combine import WeightedSum
from recon.train_step import MODES, as_batch, batch_physics, compute_loss, forward_model, ssdu_seeds

__all__ = ["QualityAwareModule", "fastmri_dataloader"]


class QualityAwareModule(L.LightningModule):
    """A LightningModule around ``model`` and ``loss`` (see the module docstring).

    Args:
        model: ``recon.modl.MoDL``, ``fastmri.models.VarNet`` or any module called fastMRI-style.
        loss: a loss with :mod:`recon.losses`'s call (e.g. ``mriqa.losses.CombinedLoss``) or a dict of them
            (``{name: callable}`` / ``{name: (weight, callable)}``, summed by ``recon.losses.WeightedSum``).
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
        # an nn.Module loss is a submodule (moved with the model, replicated by DDP)
        self.loss = WeightedSum(loss) if isinstance(loss, Mapping) else loss
        self.mode = mode
        self.lr = float(lr)
        self.ssdu = dict(ssdu or {})
        self.num_unrolls = num_unrolls
        self.seed = int(seed)

    def forward(self, batch) -> torch.Tensor:
        """Magnitude ``[B, 1, h, w]`` from all acquired samples of ``batch``."""
        return forward_model(self.model, batch, num_unrolls=self.num_unrolls)["output"]

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        batch = as_batch(batch)
        seeded = self.mode.startswith("ssdu") or getattr(self.loss, "needs_refit", False)
        seeds = ssdu_seeds(self.seed, int(self.global_step), batch) if seeded else None
        total, parts = compute_loss(self.model, batch, self.loss, mode=self.mode, seeds=seeds, ssdu=self.ssdu,
                                    num_unrolls=self.num_unrolls)
        bsz = int(batch["masked_kspace"].shape[0])
        self.log("train/loss", total, batch_size=bsz, prog_bar=True, sync_dist=False)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=bsz)
        return total

    @torch.no_grad()
    def validation_step(self, batch, batch_idx: int) -> None:
        from recon.losses import dc_loss
        from recon.metrics import psnr, ssim

        batch = as_batch(batch)
        pred = forward_model(self.model, batch, num_unrolls=self.num_unrolls)
        bsz = int(batch["masked_kspace"].shape[0])
        if pred["pred_kspace"] is not None or (pred["image"] is not None and batch.get("sens_maps") is not None):
            resid = dc_loss(batch_physics(batch), batch["masked_kspace"], image=pred["image"],
                            pred_kspace=pred["pred_kspace"])
            self.log("val/dc", resid, batch_size=bsz, sync_dist=True)
        target = batch.get("target")
        if target is None:
            return
        out = pred["output"][:, 0].float().cpu().numpy()
        tgt = target.float().cpu().numpy()
        dr = batch["max_value"].cpu().numpy() if batch.get("max_value") is not None else tgt.reshape(bsz, -1).max(1)
        scores = np.array([(psnr(t, o, float(m)), ssim(t, o, float(m))) for t, o, m in zip(tgt, out, dr)])
        self.log("val/psnr", float(scores[:, 0].mean()), batch_size=bsz, sync_dist=True, prog_bar=True)
        self.log("val/ssim", float(scores[:, 1].mean()), batch_size=bsz, sync_dist=True)

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
