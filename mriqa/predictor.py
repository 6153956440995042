"""The QF predictor and the reconstruction-quality predictor: score images without a reference.

>>> import mriqa
>>> qf = mriqa.load_predictor("gray")              # or "rgb", "recon", or a path to a .safetensors file
>>> qf.qf_map(image)                                # [h, w] quality map (QF / 100, in [0, 1])
>>> qf.score(image, pool="foreground")              # one float in [0, 1]

``"gray"`` / ``"rgb"``: QF predictors (JPEG quality factor / 100); ``"recon"``: the reconstruction-quality model
(:mod:`mriqa.models.reconq`: predicted local SSIM against the unseen fully sampled reference, a
``ceil(H / 8) x ceil(W / 8)`` map whose mean is the ``mean``-pooled score). A weights path is loaded by its
metadata's ``arch`` (:func:`mriqa.weights_io.load_scoring_model`). Higher is better for all.

Inputs (numpy or torch):

==========================  ======================================================================
shape                       meaning
==========================  ======================================================================
``[H, W]``                  one gray image
``[H, W, C]``, C in 1..4    one image, channels last (gray, gray+alpha, RGB, RGBA; alpha dropped)
``[N, H, W]``               N gray images (an MRI volume ``[slices, H, W]``); a colour image given
                            channels-first must be ``[1, 3, H, W]``
``[N, C, H, W]``, C 1 or 3  N images, channels first (a torch batch)
``[N, H, W, C]``            N images, channels last (C in 1..4, when dim 1 is not 1 or 3)
==========================  ======================================================================

Pixel values are mapped to [0, 1] by :func:`mriqa.normalize.to_unit_range`, the same normalisation used in
training, **image by image** (slice by slice for a volume), with ``kind``:

- ``kind=None`` (auto, decided once for the whole input): ``uint8`` / ``uint16`` / other integers / bool and
  floats already in [0, 1] are ``"photo"`` (``/ 255``, ``/ 65535``, dtype max, as is); complex values or
  floats with any value outside [0, 1] (an MRI magnitude on its scanner scale) are ``"mri"`` (divided by the
  99.5th percentile of each slice).
- ``kind="mri"`` forces the MRI windowing: use it for magnitudes that happen to lie inside [0, 1], such as
  fastMRI ``reconstruction_rss`` arrays (values ~1e-4), which "auto" would take as a nearly black photo
  (it then issues a :class:`DarkInputWarning`: a float input whose maximum is below 0.05). Code that scores
  reconstructions should always pass ``kind="mri"``.
- ``kind="photo"`` forces the photo rule (floats outside [0, 1] are then an error).

Then the channels are matched to the model (:func:`mriqa.normalize.as_model_input`: BT.601 luma for the gray
model, repetition for the RGB model). NaN/Inf values, an image smaller than the network's minimum input
(its receptive field, 28 x 28 px for the default QFNet; 32 x 32 px for RQNet) or an unsupported shape raise
:class:`recon.errors.InputError` with the sizes in the message.

The reconstruction-quality model (its network has ``input_normalization = "magnitude"``) takes instead the
magnitude (complex -> ``abs``) of each image divided by its own 99.5th percentile and clipped to [0, 2], not
quantised (:func:`mriqa.models.reconq.normalize_magnitude`, as in its training; scale-free, so ``kind`` is
ignored). Gray magnitudes only: a colour image ``[H, W, 3|4]`` is an InputError (alpha of ``[H, W, 2]``
dropped), and so is an all-zero image. An image without spatial structure (white noise: neighbour correlation
below :data:`NOISE_GATE_CORRELATION`) gets a zero map and score (``Prediction.noise_like``).

Outputs: the map is ``[h, w]`` for one image and ``[N, h, w]`` for a batch, numpy ``float32`` for numpy input
and a torch ``float32`` tensor on the input's device for torch input; scores are a Python ``float`` for one
image, ``[N]`` (numpy float64 / torch float32) for a batch. Map geometry and pooling: :mod:`mriqa.pooling`.
Computation runs without gradients, ``batch_size`` images at a time (fewer when they would exceed
``tile`` x ``tile`` pixels together), on ``device`` (``None``: CUDA when available, else CPU). An image larger
than ``tile`` pixels on a side is run tile by tile (:func:`mriqa.tiling.valid_tiled_map`: the same map as the
whole image, in bounded memory). A network that is not padding-free (RQNet, whose global branch sees the
whole image) always runs each image whole.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mriqa import pooling
from mriqa.tiling import QF_TILE, valid_tiled_map
from recon.device import resolve_device
from recon.errors import InputError

#: names of the shipped models -> files in ``mriqa/weights/``.
SHIPPED = {"gray": "qf-gray.safetensors", "rgb": "qf-rgb.safetensors", "recon": "rq-recon.safetensors"}
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_BATCH_SIZE = 16
_UNIT_TOL = 0.002  # the tolerance of mriqa.normalize for float photos slightly outside [0, 1]
_DARK_FLOAT = 0.05  # auto kind: a float "photo" whose maximum is below this is probably an unwindowed magnitude
#: The reconstruction-quality model's noise gate: an input whose neighbour correlation
#: (:func:`mriqa.pooling.neighbour_correlation`) is below this has no spatial structure and gets a zero map and
#: score, the SSIM of independent noise against any reference. White noise measures about 0; the lowest
#: reconstruction of the held-out, real-scan and MSD sets 0.935 / 0.877 / 0.916 (scripts/eval_rq.py prints them),
#: of the training and validation shards 0.884 (an ad-hoc check, 2026-12-06). The
#: network alone scores white noise 0.48 (stage 1: 0.24; it was not trained on such images; docs/rq/eval.md).
NOISE_GATE_CORRELATION = 0.25


class DarkInputWarning(UserWarning):
    """``kind=None`` took a float input whose maximum is below 0.05 as [0, 1] photo values; it is probably an
    MRI magnitude on a small scale (fastMRI) that wants ``kind="mri"``."""


def is_batch(shape: Sequence[int]) -> bool:
    """Whether an input of this shape is a batch (see the table in the module docstring); InputError for a
    shape that is neither one image nor a batch."""
    shape = tuple(int(n) for n in shape)
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] <= 4):
        return False  # [H, W] or [H, W, C] (a batch [N, H, W] this narrow is below any network's input)
    if len(shape) == 3 or (len(shape) == 4 and (shape[1] in (1, 3) or shape[-1] <= 4)):
        return True
    raise InputError(
        None,
        f"unsupported image shape {shape}: expected [H, W], [H, W, C], [N, H, W], "
        "[N, C, H, W] (C = 1 or 3) or [N, H, W, C]",
    )


def shipped_weights(name: str) -> Path:
    """Path of a shipped model's weights (``"gray"``, ``"rgb"`` or ``"recon"``); it may not exist in a source
    checkout."""
    return WEIGHTS_DIR / SHIPPED[name]


def resolve_weights(model: str | os.PathLike) -> tuple[Path, str]:
    """``"gray"`` / ``"rgb"`` / ``"recon"`` / a path -> ``(weights path, display name)``; a clear InputError
    otherwise."""
    text = os.fspath(model)
    if text in SHIPPED:
        path = shipped_weights(text)
        if not path.is_file():
            what, trainer = ("reconstruction-quality", "train-rq") if text == "recon" else ("QF", "train-qf")
            raise InputError(
                path,
                f"the shipped {text!r} {what} model is not installed (train it with `mriqa {trainer}` "
                "or pass --model PATH to a .safetensors file)",
            )
        return path, text
    path = Path(text).expanduser()
    if path.exists():
        return path, text
    if path.suffix == ".safetensors":
        raise InputError(path, "weights file not found")
    raise InputError(
        None,
        f"unknown model {text!r}: expected 'gray', 'rgb' (QF predictors), 'recon' (reconstruction quality) "
        "or the path of a .safetensors weights file",
    )


def load_predictor(
    model: str | os.PathLike = "gray",
    device: str | torch.device | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    tile: int = QF_TILE,
) -> "QFPredictor":
    """Load a predictor: ``"gray"`` (MRI / grayscale QF model), ``"rgb"`` (QF model for photos), ``"recon"`` (the
    reconstruction-quality model, :mod:`mriqa.models.reconq`) or a weights path (a QFNet or an RQNet, by the
    metadata's ``arch``).

    ``device``: ``None`` = CUDA when available, else CPU. ``batch_size``: images per forward pass. ``tile``:
    the largest input side run in one piece (:mod:`mriqa.tiling`).
    A missing or unreadable file or an unknown name raises :class:`recon.errors.InputError`.
    """
    from mriqa.weights_io import load_scoring_model

    path, name = resolve_weights(model)
    resolve_device(device)  # a bad device fails before the weights are read
    net, metadata = load_scoring_model(path)
    return QFPredictor(net, metadata=metadata, name=name, device=device, batch_size=batch_size, tile=tile)


@dataclass
class Prediction:
    """Everything :meth:`QFPredictor.evaluate` computes for a batch of ``N`` images, as numpy.

    maps: float32 ``[N, h, w]`` QF (or quality) maps; scores: float64 ``[N]`` pooled scores; images: float32
    ``[N, H, W, C]`` the model inputs (C = the model's channels; in [0, 1], in [0, 2] for the
    reconstruction-quality model); geometry: where the cells lie
    (:class:`mriqa.pooling.MapGeometry`); pool: the pooling asked for; fallback: bool ``[N]``, True where
    ``foreground`` found no foreground and used ``mean``.
    """

    maps: np.ndarray
    scores: np.ndarray
    images: np.ndarray
    geometry: pooling.MapGeometry
    pool: str
    fallback: np.ndarray
    noise_like: np.ndarray


class QFPredictor:
    """A QF network (or the reconstruction-quality network) with its input handling, batching and pooling (see
    the module docstring).

    Args:
        model: a QFNet (or any module with ``in_channels``, ``receptive_field``, ``output_stride``,
            ``min_input_size`` and ``forward([B, C, H, W] in [0, 1]) -> [B, 1, h, w]``); put in eval mode. A
            module with ``input_normalization = "magnitude"`` (RQNet) gets
            :func:`mriqa.models.reconq.normalize_magnitude` inputs instead (module docstring).
        metadata: the weights' metadata (kept as ``.metadata``).
        name: how the model is reported (``"gray"``, ``"rgb"``, ``"recon"`` or the path given).
        device: ``None`` = CUDA when available, else CPU; the model is moved there.
        batch_size: images per forward pass.
        tile: input side (pixels) up to which an image runs in one piece; larger ones run tile by tile when
            the model is padding-free (it has ``output_size(n) == (n - receptive_field) // output_stride + 1``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        device: str | torch.device | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        tile: int = QF_TILE,
    ):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval().to(resolve_device(device))
        self.metadata = dict(metadata or {})
        self.name = name or type(model).__name__
        self.batch_size = int(batch_size)
        if int(tile) < self.min_input_size:
            raise ValueError(f"tile must be >= the minimum input size {self.min_input_size}, got {tile}")
        self.tile = int(tile)
        self._check_normalization()

    def _check_normalization(self):
        from mriqa.normalize import NORMALIZATION

        norm = self.metadata.get("normalization")
        if self.uses_magnitude:
            return  # mriqa.normalize is not this model's normalisation
        if isinstance(norm, dict) and norm.get("name") not in (None, NORMALIZATION["name"]):
            warnings.warn(
                f"QF model {self.name}: trained with normalisation {norm.get('name')!r}, "
                f"this mriqa uses {NORMALIZATION['name']!r}",
                stacklevel=3,
            )

    # -------------------------------------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        """Where the model's parameters are (follows ``predictor.model.to(...)``)."""
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def in_channels(self) -> int:
        return int(self.model.in_channels)

    @property
    def uses_magnitude(self) -> bool:
        """Whether the model takes :func:`mriqa.models.reconq.normalize_magnitude` inputs (the
        reconstruction-quality model) rather than :mod:`mriqa.normalize`'s (the QF models)."""
        return getattr(self.model, "input_normalization", None) == "magnitude"

    @property
    def is_qf(self) -> bool:
        """Whether the score is a predicted JPEG quality factor / 100 (a QF model)."""
        return not self.uses_magnitude

    @property
    def receptive_field(self) -> int:
        """Pixels seen by one map cell (square)."""
        return int(self.model.receptive_field)

    @property
    def output_stride(self) -> int:
        """Input pixels between neighbouring map cells."""
        return int(self.model.output_stride)

    @property
    def min_input_size(self) -> int:
        """Smallest image height and width the model accepts, pixels."""
        return int(self.model.min_input_size)

    def __repr__(self) -> str:
        return (
            f"QFPredictor(name={self.name!r}, in_channels={self.in_channels}, "
            f"receptive_field={self.receptive_field}, output_stride={self.output_stride}, device={self.device})"
        )

    # ------------------------------------------------------------------------------------------ input handling
    @staticmethod
    def _split_batch(img) -> tuple[list, bool]:
        """Raw input -> (list of per-image numpy arrays [H, W] or [H, W, C], batched?)."""
        if isinstance(img, torch.Tensor):
            arr = img.detach().cpu()
            arr = arr.abs() if arr.is_complex() else arr
            if arr.dtype in (torch.float16, torch.bfloat16):
                arr = arr.float()
            arr = arr.numpy()
        else:
            arr = np.asarray(img)
        batched = is_batch(arr.shape)
        if not batched:
            return [arr], False
        if arr.ndim == 3:
            return list(arr), True
        if arr.shape[1] in (1, 3):
            return [a.transpose(1, 2, 0) for a in arr], True
        return list(arr), True

    @staticmethod
    def _auto_kind(arr: np.ndarray) -> str:
        if np.iscomplexobj(arr):
            return "mri"
        if arr.dtype.kind == "f" and arr.size:
            finite = arr[np.isfinite(arr)]
            if finite.size and (finite.min() < -_UNIT_TOL or finite.max() > 1 + _UNIT_TOL):
                return "mri"
        return "photo"

    def prepare(self, img, kind: str | None = None, source: str | Sequence[str] | None = None) -> tuple[torch.Tensor, bool]:
        """Raw input -> ``(model input float32 [N, C, H, W] on the CPU, batched?)``: in [0, 1] for a QF model,
        :func:`mriqa.models.reconq.normalize_magnitude`'s [0, 2] for the reconstruction-quality model.

        ``kind``: ``None`` (auto), ``"photo"`` or ``"mri"`` (see the module docstring; ignored by the
        reconstruction-quality model). ``source``: a name for error messages, or one name per image.
        """
        from mriqa.normalize import KINDS, as_model_input

        if kind is not None and kind not in KINDS:
            raise InputError(None, f"kind must be None or one of {KINDS}, got {kind!r}")
        images, batched = self._split_batch(img)
        magnitude = self.uses_magnitude
        if kind is None and images and not magnitude:
            # one decision for the whole input, so that a volume's dim end slices are windowed like the rest
            kind = "mri" if any(self._auto_kind(a) == "mri" for a in images) else "photo"
            if kind == "photo" and images[0].dtype.kind == "f":
                peak = max(float(np.max(a)) for a in images)
                if peak < _DARK_FLOAT:
                    warnings.warn(
                        f"float image(s) with maximum {peak:.3g} taken as [0, 1] photo values (nearly black); "
                        "pass kind='mri' to window MRI magnitudes such as fastMRI reconstructions",
                        DarkInputWarning,
                        stacklevel=4,
                    )
        if not images:
            raise InputError(source if isinstance(source, str) else None, "empty batch (no images)")
        if source is None or isinstance(source, str):
            names = [source if not batched else f"{source or 'batch'}[{i}]" for i in range(len(images))]
        else:
            names = list(source)
            if len(names) != len(images):
                raise ValueError(f"{len(names)} sources for {len(images)} images")
        tensors = []
        for arr, name in zip(images, names):
            if magnitude:
                arr = _gray_magnitude(arr, name)
            height, width = arr.shape[:2]
            if min(height, width) < self.min_input_size:
                size = f"{self.min_input_size}x{self.min_input_size}"
                raise InputError(
                    name,
                    f"image is {height}x{width} pixels, smaller than the recon model's minimum input {size}"
                    if magnitude else
                    f"image is {height}x{width} pixels, smaller than the QF model's minimum input {size} "
                    f"(its receptive field is {self.receptive_field} px)",
                )
            if magnitude:
                tensors.append(_magnitude_input(arr, name))
                continue
            if kind == "mri" and arr.ndim == 3 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            tensors.append(as_model_input(arr, self.in_channels, kind=kind, source=name))
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) > 1:  # cannot happen for an array input; kept for safety
            raise InputError(None, f"images of different sizes in one batch: {sorted(shapes)}")
        return (tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=0)), batched

    # ----------------------------------------------------------------------------------------------- network
    def _tileable(self) -> bool:
        size = getattr(self.model, "output_size", None)
        n = self.tile
        return size is not None and size(n) == (n - self.receptive_field) // self.output_stride + 1

    def predict_input(self, x: torch.Tensor) -> torch.Tensor:
        """Model input ``[N, C, H, W]`` already in [0, 1] (see :meth:`prepare`) -> QF maps ``[N, h, w]``
        (torch, on the model's device). Runs in chunks of at most ``batch_size`` images and ``tile**2`` pixels,
        an image larger than ``tile`` tile by tile; no ``no_grad`` here, so a caller may differentiate
        through it (call it under ``torch.no_grad()`` for inference)."""
        device = self.device

        def run(t: torch.Tensor) -> torch.Tensor:
            return self.model(t.to(device=device, dtype=torch.float32))

        height, width = x.shape[-2:]
        if max(height, width) > self.tile and self._tileable():
            return torch.cat([valid_tiled_map(run, x[i: i + 1], self.output_stride, self.receptive_field,
                                              self.model.output_size, self.tile)[:, 0]
                              for i in range(x.shape[0])], dim=0)
        step = max(1, min(self.batch_size, self.tile ** 2 // max(1, height * width)))
        return torch.cat([run(x[i: i + step])[:, 0] for i in range(0, x.shape[0], step)], dim=0)

    def geometry(self, image_size: tuple[int, int], map_size: tuple[int, int]) -> pooling.MapGeometry:
        """Where the map cells lie in the image (:class:`mriqa.pooling.MapGeometry`)."""
        return pooling.MapGeometry.for_model(self.model, image_size, map_size)

    def noise_like(self, x: torch.Tensor) -> np.ndarray:
        """bool ``[N]`` of model inputs ``[N, C, H, W]``: True where the reconstruction-quality model's noise gate
        applies (neighbour correlation below :data:`NOISE_GATE_CORRELATION`); all False for a QF model."""
        if not self.uses_magnitude:
            return np.zeros(len(x), dtype=bool)
        return pooling.neighbour_correlation(x[:, :1]) < NOISE_GATE_CORRELATION

    @torch.no_grad()
    def _maps(self, img, kind, source) -> tuple[torch.Tensor, torch.Tensor, bool, np.ndarray]:
        x, batched = self.prepare(img, kind=kind, source=source)
        maps = self.predict_input(x).float()
        noise = self.noise_like(x)
        if noise.any():
            maps[torch.as_tensor(noise, device=maps.device)] = 0.0
        return x, maps, batched, noise

    # ----------------------------------------------------------------------------------------------- public
    def qf_map(self, img, kind: str | None = None, source: str | Sequence[str] | None = None):
        """QF map(s) of ``img`` (the quality map of the reconstruction-quality model: predicted local SSIM):
        ``[h, w]`` for one image, ``[N, h, w]`` for a batch, values QF / 100 in [0, 1]. Numpy in -> numpy
        float32 out; torch in -> torch float32 on the input's device."""
        _, maps, batched, _ = self._maps(img, kind, source)
        maps = maps if batched else maps[0]
        if isinstance(img, torch.Tensor):
            return maps.to(img.device)
        return maps.cpu().numpy()

    def evaluate(
        self,
        img,
        pool: str = "mean",
        kind: str | None = None,
        source: str | Sequence[str] | None = None,
        **pool_options,
    ) -> Prediction:
        """Maps, scores and model inputs of ``img`` as a batch (even for one image), numpy; see
        :class:`Prediction`. ``pool_options`` go to :func:`mriqa.pooling.pool` (``fraction``, ``threshold``)."""
        pooling.check_pool(pool)
        x, maps_t, _, noise = self._maps(img, kind, source)
        maps = maps_t.cpu().numpy()
        images = x.permute(0, 2, 3, 1).numpy()
        geometry = self.geometry(tuple(x.shape[-2:]), tuple(maps.shape[-2:]))
        weights = pooling.pool_weights(maps, pool, image=images, geometry=geometry, **pool_options)
        fallback = weights.sum(axis=(-2, -1)) <= 0
        weights[fallback] = 1.0
        scores = np.asarray(pooling.weighted_mean(maps, weights), dtype=np.float64)
        return Prediction(maps, scores, images, geometry, pool, fallback, noise)

    def score(
        self,
        img,
        pool: str = "mean",
        kind: str | None = None,
        source: str | Sequence[str] | None = None,
        **pool_options,
    ):
        """Pooled QF score(s) in [0, 1] (QF / 100; the predicted SSIM for the reconstruction-quality model,
        whose ``mean`` pooling is :meth:`mriqa.models.reconq.RQNet.score`): a ``float`` for one image, ``[N]``
        for a batch (numpy float64 for numpy input, torch float32 on the input's device for torch input).

        ``pool``: ``"mean"``, ``"center"`` or ``"foreground"`` (:mod:`mriqa.pooling`); for ``foreground``, an
        image without foreground is scored with ``mean`` and a :class:`mriqa.pooling.PoolingFallbackWarning`
        is issued. ``kind``: see the module docstring.
        """
        pred = self.evaluate(img, pool=pool, kind=kind, source=source, **pool_options)
        if pred.fallback.any():
            where = ", ".join(str(i) for i in np.flatnonzero(pred.fallback))
            warnings.warn(
                f"foreground pooling: no foreground in image(s) {where}; mean pooling used instead",
                pooling.PoolingFallbackWarning,
                stacklevel=2,
            )
        if not is_batch(np.shape(img) if not hasattr(img, "shape") else tuple(img.shape)):
            return float(pred.scores[0])
        if isinstance(img, torch.Tensor):
            return torch.as_tensor(pred.scores, dtype=torch.float32, device=img.device)
        return pred.scores


# ------------------------------------------------------------------------------ the reconstruction-quality model
def _gray_magnitude(arr: np.ndarray, name: str | None) -> np.ndarray:
    """One image ``[H, W]`` / ``[H, W, 1|2]`` (real or complex) -> its magnitude ``[H, W]``; InputError for colour."""
    if arr.ndim == 3:
        if arr.shape[-1] in (3, 4):
            raise InputError(name, f"the recon model scores gray MRI magnitudes, got a colour image "
                                   f"{arr.shape[0]}x{arr.shape[1]}x{arr.shape[2]}")
        arr = arr[..., 0]  # gray, or gray + alpha (alpha dropped)
    return np.abs(arr) if np.iscomplexobj(arr) else arr


def _magnitude_input(arr: np.ndarray, name: str | None) -> torch.Tensor:
    """A gray magnitude ``[H, W]`` -> the reconstruction-quality model's input ``[1, 1, H, W]``
    (:func:`mriqa.models.reconq.normalize_magnitude`); the caller's array is not modified."""
    from mriqa.models.reconq import normalize_magnitude

    if arr.dtype.kind not in "biuf":
        raise InputError(name, f"unsupported pixel type {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise InputError(name, "image contains NaN or Inf values")
    mag = np.array(arr, dtype=np.float32)  # a copy
    if not np.all(np.isfinite(mag)):
        raise InputError(name, "image contains values too large for float32")
    if not np.any(mag):
        raise InputError(name, "image is all zero (nothing to score)")
    return normalize_magnitude(torch.from_numpy(mag)[None, None])
