"""Train MoDL or fastMRI's VarNet: the public entry point (``mriqa train-recon`` runs it).

>>> from recon.train import train
>>> trainer = train("configs/modl-dc.yaml")                                   # reference-free DC
>>> trainer = train("configs/modl-ssdu.yaml", qf_loss=my_quality_loss)        # ssdu+qf with an injected term

The pieces live in :mod:`recon.training.trainer` (the run: data, stages, validation, outputs; see its
docstring), :mod:`recon.training.recon_config` (defaults, the strict loader, the losses a config names),
:mod:`recon.train_step` (the step every trainer runs) and :mod:`recon.losses` (the loss call).
"""
from recon.training.recon_config import DEFAULT_CONFIG, build_loss, build_mode_loss
from recon.training.recon_config import load_recon_config as load_config
from recon.training.trainer import Trainer, train

__all__ = ["DEFAULT_CONFIG", "load_config", "build_loss", "build_mode_loss", "Trainer", "train"]
