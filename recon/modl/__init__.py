"""MoDL (Aggarwal, Mani & Jacob, IEEE TMI 2019): the network (:mod:`recon.modl.network`), its weights files
(:mod:`recon.modl.weights`) and volume inference (:mod:`recon.modl.inference`); see :mod:`recon.modl.network`
for the method and its choices."""
from recon.masks import MIN_ACS
from recon.calibration import estimate_sens_maps  # re-exported: a batch without maps (MoDL's forward)
from recon.modl.inference import modl_reconstruct
from recon.modl.network import LAM_MIN, ModlConfig, MoDL, ResidualDenoiser
from recon.modl.weights import DEFAULT_WEIGHTS, WEIGHTS_DIR, resolve_weights, load_modl, save_modl, weights_metadata

__all__ = ["ModlConfig", "ResidualDenoiser", "MoDL", "estimate_sens_maps", "save_modl", "load_modl",
           "weights_metadata", "modl_reconstruct", "WEIGHTS_DIR", "DEFAULT_WEIGHTS", "MIN_ACS", "LAM_MIN",
           "resolve_weights"]
