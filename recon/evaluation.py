"""What the reconstruction evaluations share: held-out volumes, their calibration coil maps, PSNR between images.

Used by ``scripts/eval_recon.py``, ``scripts/eval_training.py`` (via :mod:`mriqa.evaluation.training_modes`) and
``scripts/make_r_dataset.py``, which all read simulated fastMRI-format files (``mriqa make-dataset``) the same way:

- :func:`read_eval_volume` ``(path, max_slices)``: an evenly spaced subset of a file's slices
  (:func:`recon.select.evenly_spaced`), their fully sampled k-space, the RSS reference and the volume max (the
  fastMRI data range, the file's ``max`` attribute).
- :func:`calibration_maps`: ESPIRiT maps from the central ``calib_width`` x ``calib_width`` block of the *fully
  sampled* k-space (a calibration scan, so every method and mask sees the same maps; cached on disk per slice).
- :func:`coil_support`: where those maps are non-zero (ESPIRiT's crop), for the in-support metrics of
  :func:`recon.metrics.support_metrics`.
- :func:`psnr_between`: PSNR of one reconstruction against another (not against the reference), with the
  reference's data range.
- :func:`per_subject_mean`: per-volume figures averaged per subject (a simulated file is one subject's
  orientation, ``<subject>_<orientation>.h5``), for acceptance targets stated per subject.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = ["EvalVolume", "read_eval_volume", "calibration_maps", "coil_support", "psnr_between",
           "per_subject_mean", "subject_of"]


class EvalVolume(NamedTuple):
    """Slices of one fully sampled file.

    Attributes:
        path: the file.
        slices: indices of the slices read (sorted).
        kspace: complex64 ``[S, C, H, W]``, fully sampled.
        target: float32 ``[S, H, W]``, the file's ``reconstruction_rss``.
        maxval: the volume max (attribute ``max``), the data range of fastMRI's metrics.
        attrs: every file attribute (e.g. the simulation's per-slice ``noise_std``, for all slices of the file).
    """

    path: Path
    slices: list[int]
    kspace: np.ndarray
    target: np.ndarray
    maxval: float
    attrs: dict[str, Any]

    def simulated_snrs(self, default: float = 40.0) -> np.ndarray:
        """The simulation's SNR of each slice read, float64 ``[S]``: a file of ``mriqa make-dataset --snr-max``
        holds one per slice (``snr_per_slice``; its ``snr`` is the range's low end), other files one ``snr``
        (``default`` when the file has neither)."""
        per_slice = self.attrs.get("snr_per_slice")
        if per_slice is not None:
            return np.asarray(per_slice, np.float64)[self.slices]
        return np.full(len(self.slices), float(self.attrs.get("snr", default)))


def read_eval_volume(path: str | os.PathLike, max_slices: int | None = None) -> EvalVolume:
    """``max_slices`` evenly spaced slices of a fastMRI-format file (all of them with ``None``)."""
    import h5py

    from recon.errors import InputError
    from recon.io.fastmri_h5 import read_kspace
    from recon.select import evenly_spaced

    path = Path(path)
    with h5py.File(path, "r") as hf:
        total = hf["kspace"].shape[0]
    slices = evenly_spaced(total, max_slices)
    volume = read_kspace(path, slices)
    if volume.target_key != "reconstruction_rss" or "max" not in volume.attrs:
        raise InputError(path, "needs 'reconstruction_rss' and the attribute 'max' (a fully sampled "
                               "multi-coil file, as mriqa make-dataset writes)")
    return EvalVolume(path, slices, volume.kspace, volume.target, float(volume.attrs["max"]), volume.attrs)


def calibration_maps(kspace: np.ndarray, path: str | os.PathLike, slices: list[int],
                     calib_width: int = 24) -> np.ndarray:
    """ESPIRiT maps ``[S, C, H, W]`` (complex64) of fully sampled k-space ``[S, C, H, W]`` from its central
    ``calib_width`` x ``calib_width`` block, cached on disk by ``path`` and slice index."""
    from recon.coils import espirit_maps_cached

    return np.stack([espirit_maps_cached(kspace[i], path, s, calib_width=calib_width)
                     for i, s in enumerate(slices)]).astype(np.complex64)


def coil_support(maps: np.ndarray) -> np.ndarray:
    """bool ``[S, H, W]``: the pixels where coil maps ``[S, C, H, W]`` are not all zero."""
    return (np.abs(maps) ** 2).sum(1) > 0


def psnr_between(image: np.ndarray, other: np.ndarray, maxval: float) -> float:
    """PSNR in dB of ``image`` against ``other`` (e.g. how far a trained network moved from the zero-filled
    input), data range ``maxval``; identical images give ``inf`` (``recon.metrics.psnr`` would divide by 0)."""
    from recon.metrics import psnr

    if np.array_equal(np.asarray(image), np.asarray(other)):
        return float("inf")
    return psnr(other, image, maxval)


def per_subject_mean(values, volumes) -> dict[str, float]:
    """Mean of per-volume ``values`` over each subject's volumes, subjects in order of first appearance.

    ``volumes``: the volumes' file stems, ``<subject>_<orientation>`` (``mriqa make-dataset``'s names, e.g.
    ``ixi-IXI575-HH-2658_axial``); a stem without ``_`` is its own subject.
    """
    if len(values) != len(volumes):
        raise ValueError(f"{len(values)} values for {len(volumes)} volumes")
    subjects = [subject_of(v) for v in volumes]
    return {name: float(np.mean([x for x, s in zip(values, subjects) if s == name]))
            for name in dict.fromkeys(subjects)}


def subject_of(volume: str) -> str:
    """``ixi-IXI575-HH-2658_axial`` -> ``ixi-IXI575-HH-2658``: the file stem without its orientation."""
    return str(volume).rsplit("_", 1)[0]
