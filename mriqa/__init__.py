"""mriqa: reference-free quality assessment for MRI reconstruction.

mriqa builds on recon (errors, files, FFT, readers, physics, the training loop, the config loader) and never
copies it; recon never imports mriqa. Heavy imports stay lazy: scoring a photo needs no sigpy.

Main entry points (imported lazily so that ``import mriqa`` stays light):

- ``mriqa.load_predictor("gray" | "rgb" | path)`` -> QF predictor with ``.qf_map(img)`` and ``.score(img)``.
"""
from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name):
    if name == "load_predictor":
        from mriqa.predictor import load_predictor

        return load_predictor
    raise AttributeError(f"module 'mriqa' has no attribute {name!r}")
