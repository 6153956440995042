"""Scan-specific adaptation of MoDL: zero-shot self-supervised learning (ZS-SSL; Yaman, Hosseini and Akcakaya,
"Zero-shot self-supervised learning for MRI reconstruction", ICLR 2022), written from the paper.

The shipped weights learned their prior on simulated IXI slices; a real scan differs (coils, contrast, noise,
field of view). ZS-SSL fine-tunes the network on the one slice it is about to reconstruct, with no reference:

- The acquired samples ``Omega`` are split once into ``Gamma`` (``val_ratio`` of ``Omega``, drawn outside the
  calibration centre) and the rest. ``Gamma`` is never used for training.
- Every step (Adam, ``lr`` decayed to 0 on a cosine) splits the rest again into ``Theta`` and ``Lambda`` (SSDU, :func:`recon.ssdu.ssdu_split`, Gaussian
  points, ``ratio`` of the rest, the centre kept in ``Theta``); the network reconstructs from ``Theta`` and its
  k-space is compared with the measured samples on ``Lambda`` (SSDU's loss: normalised L2 + normalised L1,
  :func:`recon.losses.dc.dc_loss` with ``norm="l1l2"``).
- Every ``every`` steps the network reconstructs from the rest and predicts ``Gamma``; the weights with the lowest
  ``Gamma`` error are kept (ZS-SSL's early stopping). Step 0 (the shipped weights) is a candidate, so a scan on
  which training never predicts ``Gamma`` better gets the shipped weights back.
- **Refused** where ``Lambda`` would hold nearly every sample outside the centre: the network would then learn to
  predict the outer k-space from the calibration centre alone. The pool outside the centre (after ``Gamma``) must be
  at least :data:`MIN_POOL` times ``Lambda``'s size. On the real 16-coil brain (96 phase encodes, default centre) the
  rows at R <= 6 have 1.25 or more, those at R >= 8 at most 0.94 (``Lambda`` would hold every outer sample): random
  R = 8, trained anyway, lost 1.4 dB while its ``Gamma`` error fell.
- Outside the coil maps' support the measurements say nothing, so the loss cannot teach anything there: the image
  keeps the given model's values there (:func:`recon.modl.modl_reconstruct`; on the real scan an adapted network
  changed the background of equispaced R = 2 by enough to cost 1.9 dB whole-image while gaining 0.4 in the object).

Cost: ``steps`` training steps of the unrolled network (about 0.35 s each at 16 x 96 x 96 on 2 CPU threads, so
300 steps take about 2 minutes per slice). Measured on the real scan: ``docs/recon/real_kspace.md`` (last section).
"""
from __future__ import annotations

import copy
import time
from typing import NamedTuple

import torch

from recon.errors import InputError
from recon.losses.dc import dc_loss
from recon.modl.network import MoDL
from recon.physics import SenseOperator
from recon.ssdu import holdout_candidates, ssdu_split

__all__ = ["adapt_modl", "AdaptReport", "DEFAULT_STEPS", "MIN_POOL"]

DEFAULT_STEPS = 300
DEFAULT_LR = 5e-4
MIN_POOL = 1.1  # the outer samples left after Gamma, in units of |Lambda| (at 1 Lambda takes them all)


class AdaptReport(NamedTuple):
    """What :func:`adapt_modl` did: ``skipped`` is None or the reason no training ran; ``best_step`` the step whose
    weights were kept (0: the given weights); ``val_start`` / ``val_best`` the ``Gamma`` errors (SSDU loss) at
    step 0 and at the kept step."""

    steps: int
    best_step: int
    val_start: float
    val_best: float
    seconds: float
    skipped: str | None = None

    def short(self) -> str:
        if self.skipped:
            return f"not adapted ({self.skipped})"
        return (f"adapted: step {self.best_step} of {self.steps} kept, held-out k-space error "
                f"{self.val_start:.3f} -> {self.val_best:.3f}")


def adapt_modl(model: MoDL, y: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor, *,
               steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR, ratio: float = 0.4, val_ratio: float = 0.2,
               every: int = 10, seed: int = 0, progress: bool = False, source=None) -> tuple[MoDL, AdaptReport]:
    """A copy of ``model`` fine-tuned on one slice's own measurements (module docstring); ``model`` is unchanged.

    Args:
        model: the MoDL to start from.
        y: masked k-space ``[1, C, H, W]`` complex64 (as :meth:`MoDL.prepare_inputs` returns it).
        mask: its sampling mask, broadcastable to ``[1, 1, H, W]`` (line or 2-D, 0/1).
        sens_maps: ``[1, C, H, W]`` or map sets ``[1, M, C, H, W]``, on ``y``'s device.
        steps / lr: Adam steps and learning rate; ratio: ``|Lambda| / |rest|``; val_ratio: ``|Gamma| / |Omega|``;
        every: steps between ``Gamma`` checks; seed: the splits' seed.
    Returns: ``(adapted model in eval mode, AdaptReport)``.
    """
    if y.ndim != 4 or y.shape[0] != 1:
        raise InputError(source, f"adaptation takes one slice [1, C, H, W], got {tuple(y.shape)}")
    if int(steps) < 1 or int(every) < 1:
        raise InputError(source, f"adaptation needs steps >= 1 and every >= 1, got {steps} and {every}")
    if not float(lr) > 0:
        raise InputError(source, f"adaptation needs a learning rate > 0, got {lr}")
    start = time.perf_counter()
    h, w = y.shape[-2:]
    omega = (mask.reshape(-1, *mask.shape[-2:])[:1] > 0).float().expand(1, h, w).contiguous().cpu()
    model = copy.deepcopy(model)
    outer = int(holdout_candidates(omega).sum())
    if outer < 2:
        return model.eval(), AdaptReport(0, 0, float("nan"), float("nan"), 0.0,
                                         f"{outer} acquired samples outside the centre: nothing to learn from")
    rest, gamma = ssdu_split(omega, ratio=val_ratio, seed=seed + 7919, selection="points")
    centre = int(omega.sum()) - outer
    pool = outer - int(gamma.sum())
    need = round(ratio * float(rest.sum()))
    if pool < MIN_POOL * need:
        reason = (f"{pool} acquired samples outside the {centre}-sample centre (after {int(gamma.sum())} held out) "
                  f"for a loss set of {need}: too few to learn from")
        return model.eval(), AdaptReport(0, 0, float("nan"), float("nan"), time.perf_counter() - start, reason)
    device = y.device

    def reconstruct(sub: torch.Tensor) -> torch.Tensor:
        m = sub[None].to(device)
        return model.unroll(y * m, SenseOperator(sens_maps, m))

    def kspace_error(image: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        return dc_loss(SenseOperator(sens_maps, sub[None].to(device)), y, image=image, norm="l1l2")

    def validate() -> float:
        model.eval()
        with torch.no_grad():
            return float(kspace_error(reconstruct(rest), gamma))

    opt = torch.optim.Adam(model.parameters(), lr=float(lr))
    # cosine decay to 0: the late steps settle instead of wandering (on the real scan the Gamma error then falls
    # monotonically and the kept step no longer depends on luck)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, int(steps))
    val_start = validate()
    best = (val_start, copy.deepcopy(model.state_dict()), 0)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=int(steps), desc="ZS-SSL", unit="step")
    for step in range(1, int(steps) + 1):
        model.train()
        theta, lam = ssdu_split(rest, ratio=ratio, seed=seed + step, selection="points")
        loss = kspace_error(reconstruct(theta), lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        if step % int(every) == 0 or step == int(steps):
            val = validate()
            if val < best[0]:
                best = (val, copy.deepcopy(model.state_dict()), step)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(held_out=f"{best[0]:.3f}")
    if bar is not None:
        bar.close()
    model.load_state_dict(best[1])
    return model.eval(), AdaptReport(int(steps), best[2], val_start, best[0], time.perf_counter() - start)

