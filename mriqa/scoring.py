"""Score files: the library under ``mriqa score``.

>>> from mriqa.scoring import score_files
>>> records = score_files(["knee.h5", "photo.png"], pool="foreground")
>>> [r.to_json() for r in records]          # {"input", "slice", "qf", "score", "pool", "model"} per 2-D image

Every input is read with :func:`recon.io.images.read_images` (one record per 2-D image: per slice of a volume,
per frame of a multi-frame DICOM, per image of a folder of photos; a 4-D NIfTI adds ``volume``) and scored by
the QF predictor (:mod:`mriqa.predictor`), batched: consecutive images of one shape, dtype, kind and model
form one forward batch of at most ``batch_size``; an image larger than the predictor's tile runs tile by tile.

Model per image: ``model`` (``gray``, ``rgb``, ``recon`` or a weights path) or, when None, ``rgb`` for colour
images (3 or 4 channels) and ``gray`` for everything single-channel. Every record carries ``score``; a QF model's
records also carry ``qf`` (the same value), the reconstruction-quality model's (``recon``, or an RQNet weights
file) do not. An all-zero MRI slice is skipped with a note; a
``foreground`` pooling without foreground falls back to ``mean`` with a note (notes go to ``notes``).

Failures are per input: an unreadable file, NaN, an image smaller than the model's minimum input or larger
than ``max_pixels`` gives ONE record with ``error`` (and no score) for that input, and the others are still
scored. A problem that concerns every input (unknown model, missing weights, bad device) raises
:class:`recon.errors.InputError` before any input is read.

``maps_dir``: one PNG overlay per scored image (:mod:`mriqa.overlay`), ``<stem>.png`` or ``<stem>_s<slice>.png``
(``-2``, ``-3``... on a name clash), staged in the folder and published when the batch is done.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from recon.errors import InputError
from recon.io.images import DEFAULT_MAX_PIXELS, image_folder_files

POOLS = ("mean", "center", "foreground")
_STEM_SUFFIXES = (".nii.gz", ".nii", ".h5", ".hdf5", ".npy", ".dcm", ".png", ".tif", ".tiff", ".bmp", ".jpg",
                  ".jpeg", ".jpe", ".jfif", ".dicom", ".ima")


@dataclass
class ScoreRecord:
    """The score of one 2-D image, or the failure of one input (``error`` set, ``qf`` and ``score`` None).

    input: the path given; slice: slice / frame index (None for single images); volume: the 4th index of a
    4-D NIfTI (else None); qf: pooled QF / 100 in [0, 1] (QF models only, else None); pool: the pooling;
    model: ``gray`` / ``rgb`` / ``recon`` / the weights path used; score: the pooled score in [0, 1] of any
    model, higher is better (for a QF model the same value as ``qf``, which it defaults to); r_est, r_aware, r_ood:
    with ``r_aware`` scoring (recon only), the rq estimator's R of the image, ``score * r_est ** -R_AWARE_POWER``
    (:mod:`mriqa.recon_quality.r_aware`) and why the estimator flags the image as unlike its training
    reconstructions (None: it does not; ``mriqa estimate-r``'s checks), else None."""

    input: str
    slice: int | None = None
    qf: float | None = None
    pool: str | None = None
    model: str | None = None
    volume: int | None = None
    error: str | None = None
    score: float | None = None
    r_est: float | None = None
    r_aware: float | None = None
    r_ood: str | None = None

    def __post_init__(self):
        if self.score is None and self.qf is not None:
            self.score = self.qf

    def error_message(self) -> str:
        """``FILE: problem`` of a failure."""
        return self.error if self.error.startswith(self.input) else f"{self.input}: {self.error}"

    def to_json(self) -> dict:
        """``{"input", ["volume"], "slice", ["qf"], "score", ["r_est", "r_aware", "r_ood"], "pool", "model"}``
        (``qf`` for QF models only, ``r_est`` / ``r_aware`` / ``r_ood`` with ``r_aware`` scoring); a
        failure: ``{"input", "slice", "pool", "model", "error"}`` (``volume`` only for 4-D inputs)."""
        out: dict = {"input": self.input}
        if self.volume is not None:
            out["volume"] = self.volume
        out["slice"] = self.slice
        if self.error is None:
            if self.qf is not None:
                out["qf"] = self.qf
            out["score"] = self.score
            if self.r_aware is not None:
                out.update(r_est=self.r_est, r_aware=self.r_aware, r_ood=self.r_ood)
        out.update(pool=self.pool, model=self.model)
        if self.error is not None:
            out["error"] = self.error
        return out


def default_model(image) -> str:
    """``"rgb"`` for a colour image ``[H, W, 3|4]``, ``"gray"`` otherwise. A gray image stored as RGB (channels
    within 2/255 of each other, :func:`mriqa.restimate.ood.is_colour`: a screenshot, the later frames of a GIF) is
    gray, as a gray palette image is (:mod:`recon.io.photos`): the same pixels get the same model."""
    from mriqa.restimate.ood import is_colour

    return "rgb" if image.ndim == 3 and image.shape[-1] in (3, 4) and is_colour(image) else "gray"


def expand_inputs(paths: Sequence[str | os.PathLike]) -> list[str]:
    """``paths`` with every folder of photos replaced by its image files (so that one bad photo fails alone);
    DICOM folders stay one input (a series)."""
    out = []
    for p in paths:
        files = image_folder_files(p) if os.path.isdir(p) else None
        out += [str(f) for f in files] if files else [os.fspath(p)]
    return out


def failure_message(path: str, exc: Exception) -> str:
    """``FILE: problem`` for one failed input (an InputError names its own file or slice)."""
    if isinstance(exc, InputError):
        return str(exc) if exc.source else f"{path}: {exc.problem}"
    return f"{path}: {getattr(exc, 'strerror', None) or exc}"


def _problem(path: str, message: str) -> str:
    return message[len(path) + 2:] if message.startswith(f"{path}: ") else message


def batch_groups(records, model_of=None):
    """Consecutive records with the same shape, dtype, kind (and ``model_of(record)``) -> lists that stack
    into one forward batch each."""
    group, key = [], None
    for r in records:
        k = (r.image.shape, r.image.dtype.str, r.kind, model_of(r) if model_of else None)
        if group and k != key:
            yield group
            group = []
        group.append(r)
        key = k
    if group:
        yield group


def _map_stem(record) -> str:
    name = os.path.basename(os.path.normpath(record.source))
    for ext in _STEM_SUFFIXES:
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "image"
    if record.volume is not None:
        name = f"{name}_v{record.volume:03d}"
    return name if record.slice is None else f"{name}_s{record.slice:03d}"


def _write_map(staging: Path, record, pred, j: int, pool: str, model: str, used: set, label: str = "QF") -> Path:
    from mriqa.overlay import save_overlay

    stem = _map_stem(record)
    name, n = f"{stem}.png", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}.png"
    used.add(name)
    save_overlay(staging / name, pred.images[j], pred.maps[j], pred.geometry,
                 title=f"{label} {pred.scores[j]:.3f} ({pool}, {os.path.basename(str(model))})")
    return staging / name


class _ModelError(Exception):
    """A model failed to load: not a problem of the input being scored, so the batch stops."""

    def __init__(self, error: InputError):
        super().__init__(str(error))
        self.error = error


def _score_input(path, predictor, model_of, pool, batch_size, h5_key, max_pixels, notes, on_map, estimator=None):
    from recon.io.images import read_images, record_name, records_with_signal

    input_notes: list[str] = []  # kept only when the input succeeds
    records = records_with_signal(path, read_images(path, h5_key=h5_key, max_pixels=max_pixels), input_notes)
    plan = [(group, model_of(group[0])) for group in batch_groups(records, model_of)]
    qfs = {name: predictor(name) for _, name in plan}  # a model that cannot load fails the whole batch
    out, maps = [], []
    for group, name in plan:
        qf = qfs[name]
        for start in range(0, len(group), batch_size):
            chunk = group[start: start + batch_size]
            batch = np.stack([r.image for r in chunk])
            if batch.ndim == 3:
                batch = batch[..., None]  # [N, H, W, 1]: unambiguous channels-last batch
            names = [record_name(r) for r in chunk]
            pred = qf.evaluate(batch, pool=pool, kind=chunk[0].kind, source=names)
            r_estimates = None
            if estimator is not None:  # the estimate with its checks: r_est as point_estimates, and the flags
                from mriqa.restimate import estimate_images

                r_estimates = estimate_images(estimator, batch[..., 0], kind=chunk[0].kind, source=names)
            for j, r in enumerate(chunk):
                if pred.fallback[j]:
                    input_notes.append(f"{record_name(r)}: no foreground found, scored with mean pooling")
                if pred.noise_like[j]:
                    input_notes.append(f"{record_name(r)}: no spatial structure (constant or white-noise-like), "
                                       "scored 0 (mriqa.predictor.NOISE_GATE_CORRELATION)")
                elif qf.is_qf and np.ptp(r.image) == 0:  # JPEG keeps a constant image exactly at every QF
                    input_notes.append(f"{record_name(r)}: constant image: it has no JPEG quality factor (any QF "
                                       f"compresses it losslessly), so its score {float(pred.scores[j]):.2f} means "
                                       "nothing")
                value = round(float(pred.scores[j]), 6)
                record = ScoreRecord(r.source, r.slice, value if qf.is_qf else None, pool, name, r.volume, score=value)
                if r_estimates is not None:
                    from mriqa.recon_quality.r_aware import r_aware_score

                    r_est = r_estimates["r_est"][j]
                    record.r_est = round(float(r_est), 4)
                    record.r_aware = round(float(r_aware_score(pred.scores[j], r_est)), 6)
                    record.r_ood = r_estimates["ood"][j]
                    if record.r_ood is not None:
                        input_notes.append(f"{record_name(r)}: the R estimator flags this image ({record.r_ood}); "
                                           f"its r_est and r_aware are not to be trusted")
                out.append(record)
                if on_map is not None:
                    maps.append(on_map(r, pred, j, name, "QF" if qf.is_qf else "score"))
    notes += input_notes
    return out, maps


def score_files(paths: Sequence[str | os.PathLike], model: str | None = None, pool: str = "mean",
                batch_size: int = 16, device: str | None = None, h5_key: str | None = None,
                max_pixels: int | None = DEFAULT_MAX_PIXELS, maps_dir: str | os.PathLike | None = None,
                notes: list[str] | None = None, tile: int | None = None, r_aware: bool = False) -> list[ScoreRecord]:
    """Score every 2-D image of every input (module docstring); one :class:`ScoreRecord` per image, or one
    with ``error`` per input that failed. ``notes`` collects the notes (skipped slices, pooling fallbacks).
    ``r_aware`` (``model="recon"`` only): also the rq estimator's R and the R-aware score of each image.

    Raises:
        InputError: a bad ``pool``, ``batch_size`` or ``model``, missing shipped weights, a bad ``device``,
        ``r_aware`` with another model than ``recon``.
    """
    from mriqa.pooling import check_pool
    from mriqa.predictor import load_predictor
    from mriqa.tiling import QF_TILE

    check_pool(pool)
    if int(batch_size) < 1:
        raise InputError(None, f"--batch-size must be >= 1, got {batch_size}")
    notes = [] if notes is None else notes
    predictors: dict[str, object] = {}
    estimator = None
    if r_aware:
        if model != "recon":
            given = "no --model" if model is None else f"--model {model}"
            raise InputError(None, f"--r-aware needs --model recon (the R-aware score joins the recon score with the "
                                   f"rq estimator's R), got {given}")
        from mriqa.restimate import load_estimator

        estimator = load_estimator("rq")

    def predictor(name: str):
        if name not in predictors:
            try:
                predictors[name] = load_predictor(name, device=device, batch_size=batch_size, tile=tile or QF_TILE)
            except InputError as exc:
                raise _ModelError(exc) from None
        return predictors[name]

    if model is not None:
        try:
            predictor(model)  # a bad --model fails before any input is read
        except _ModelError as exc:
            raise exc.error from None

    def model_of(record) -> str:
        return model if model is not None else default_model(record.image)

    staging, used, made_dir = None, set(), maps_dir is not None and not Path(maps_dir).exists()
    if maps_dir is not None:
        Path(maps_dir).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".mriqa-maps.", dir=maps_dir))

    def on_map(record, pred, j, name, label):
        return _write_map(staging, record, pred, j, pool, name, used, label)

    records: list[ScoreRecord] = []
    try:
        for path in expand_inputs(paths):
            try:
                scored, maps = _score_input(path, predictor, model_of, pool, int(batch_size), h5_key, max_pixels,
                                            notes, on_map if staging is not None else None, estimator)
            except (InputError, OSError) as exc:
                records.append(ScoreRecord(path, None, None, pool, model,
                                           error=_problem(path, failure_message(path, exc))))
                continue
            records += scored
            for f in maps:
                os.replace(f, Path(maps_dir) / f.name)
    except _ModelError as exc:
        raise exc.error from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
            if made_dir and not any(Path(maps_dir).iterdir()):
                os.rmdir(maps_dir)  # we made it for this run and nothing was published
    return records
