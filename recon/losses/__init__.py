"""Losses for training reconstruction networks, piq-style (one file per loss: a functional form and an
``nn.Module``), all with one call, deepinv's model (the measurement physics is handed to every loss)::

    loss(output, target=None, *, physics, y, image=None, pred_kspace=None, data_range=None) -> 0-d tensor

===============  ==========================================================================================
``output``       float32 magnitude ``[B, 1, h, w]``, centre-cropped to the target's size (what metrics see)
``target``       the reference ``[B, 1, h, w]``, or None; a loss with ``requires_target = False``
                 (reference-free) always gets None (the attribute is taken as True when absent)
``physics``      the loss's measurement operator, built once per batch by the training step
                 (:func:`recon.train_step.batch_physics`): ``recon.physics.SenseOperator(maps, mask)``, or
                 ``recon.physics.Sampling(mask)`` for a batch without coil maps; in SSDU modes its mask is
                 the held-back set Lambda. ``physics.sampling`` is its mask ``M`` on k-space.
``y``            the acquired k-space, complex ``[B, C, H, W]`` (or fastMRI's real view ``[B, C, H, W, 2]``)
``image``        the network's complex image ``[B, H, W]`` (MoDL), or None
``pred_kspace``  the network's multi-coil k-space ``[B, C, H, W]`` (VarNet's last cascade), or None
``data_range``   ``[B]`` per-sample data range (the volume max, fastMRI's ``max_value``), or None
===============  ==========================================================================================

Every loss accepts all of these keywords and ignores the ones it does not use, so losses combine freely
(:class:`WeightedSum`) and none rebuilds the physics from a batch.

- :class:`DataConsistencyLoss` / :func:`dc_loss` (``dc.py``): ``||M (A x) - M y||^2 / ||M y||^2``.
- :class:`SupervisedLoss` (``supervised.py``): ``l1 * |out - tgt| / data_range + ssim * (1 - SSIM)``.
- :class:`WeightedSum` (``combine.py``): ``sum_i w_i * loss_i``, per-term values in ``.last``.

Quality losses (``mriqa.losses.QFLoss``) follow the same call and live in ``mriqa``; they reach recon's trainer
by injection (``recon.training.trainer.train(cfg, qf_loss=...)``) or by a dotted path in a config.
"""
from recon.losses.combine import WeightedSum, requires_target
from recon.losses.dc import DataConsistencyLoss, dc_loss
from recon.losses.supervised import SupervisedLoss

__all__ = ["DataConsistencyLoss", "dc_loss", "SupervisedLoss", "WeightedSum", "requires_target"]
