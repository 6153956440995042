"""Pooling a QF map into one score per image.

A QF predictor is fully convolutional: for an image of ``H x W`` pixels it returns a *QF map* of ``h x w``
cells (``h < H``), each cell the predicted JPEG quality factor / 100 (in [0, 1]) of the image region that the
network sees through its receptive field. Every pooling here is a **weighted mean of the map cells** with
non-negative weights; the methods differ only in the weights:

``mean``
    every cell weighs 1: the plain average over the whole map (the paper's "whole image" score).
``center``
    the cells whose receptive-field centre lies in the central box of the image that spans ``fraction``
    (default 0.5) of its height and of its width, i.e. the central 25 % of the image area; each weighs 1, the
    rest 0. If no cell centre falls inside the box along an axis (a tiny map), the cell(s) nearest the image
    centre on that axis are used. This is the paper's "central patch" for MRI (Sec. 5.2, Fig. 14-15): the
    detailed centre of the anatomy, away from the background.
``foreground``
    weights from a mask of the anatomy, so that near-black background - to which the network assigns low QF
    values (the paper's Fig. 15 failure) - does not drag the score down. The mask (:func:`foreground_mask`) is
    computed on the model input in [0, 1]: a 3x3 median filter (removes isolated noise pixels, keeps edges),
    threshold at ``threshold`` (default 0.1) x the 99.5th percentile of the filtered image ("near-black" =
    darker than 10 % of the robust maximum), removal of specks smaller than 0.1 % of the image, morphological
    closing (disk of radius max(1, round(min(H, W) / 64)) px) and hole filling. Each cell's *coverage* is the
    fraction of its receptive field (clipped to the image) inside the mask
    (:func:`receptive_field_coverage`); its weight ramps from 0 at coverage <= 0.75 to 1 at coverage >= 0.95
    (:func:`foreground_weights`). So cells that see only anatomy weigh 1, cells that see mostly background
    weigh 0, and the anatomy's outline - where a cell sees a tissue/black edge that no "cropped anatomy"
    cell sees - counts little. The ramp (rather than weights = coverage) is what makes the score of an image
    with a wide black border match the ``mean`` score of the anatomy cropped out of it (the weights =
    coverage rule leaves it 15-20 % low for a network that responds to the black part of its view; tested in
    ``tests/test_pooling.py``). Anatomy thinner than the receptive field (no cell above 0.75) falls back to
    weights = coverage. If the mask is empty (an all-black or constant image, an end slice of a volume with no
    anatomy) the weights are all zero and :func:`pool` falls back to ``mean`` for that image with a
    :class:`PoolingFallbackWarning`.

Geometry: :class:`MapGeometry` maps the cells back to input pixels from the network's output stride ``s`` and
receptive field ``r``: cell ``i`` sees rows ``[i*s - p, i*s - p + r)`` (clipped to the image), with the
padding ``p = max(0, ((h - 1) * s + r - H) // 2)`` inferred from the sizes (``p = 0`` for a network without
padding, whose map then starts at the image's first row; about ``(r - s) / 2`` for "same"-padded layers).

All functions work on one map ``[h, w]`` or a batch ``[N, h, w]``; weights are numpy ``float64`` of the same
shape. :func:`weighted_mean` also takes a torch map and is then differentiable in the map (the weights are
constants), so the same pooling can serve a loss later.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

POOLS = ("mean", "center", "foreground")

#: default fraction of the image height and width that the ``center`` box spans.
CENTER_FRACTION = 0.5
#: default ``foreground`` threshold, as a fraction of the robust maximum (99.5th percentile) of the image.
FOREGROUND_THRESHOLD = 0.1
FOREGROUND_PERCENTILE = 99.5
#: receptive-field coverage (fraction on the anatomy) at which a cell's ``foreground`` weight starts / is 1.
FOREGROUND_COVERAGE = (0.75, 0.95)


class PoolingFallbackWarning(UserWarning):
    """``foreground`` pooling found no foreground in an image and used ``mean`` for it instead."""


@dataclass(frozen=True)
class MapGeometry:
    """Where each QF-map cell lies in the input image.

    image_size: ``(H, W)`` in input pixels; map_size: ``(h, w)`` in cells; stride: the network's output
    stride in pixels per cell; receptive_field: its receptive field in pixels (square); padding: ``(py, px)``
    in pixels, inferred from the sizes when not given (see the module docstring).
    """

    image_size: tuple[int, int]
    map_size: tuple[int, int]
    stride: int
    receptive_field: int
    padding: tuple[int, int] | None = None

    def __post_init__(self):
        if self.padding is None:
            pads = tuple(
                max(0, ((m - 1) * self.stride + self.receptive_field - n) // 2)
                for n, m in zip(self.image_size, self.map_size)
            )
            object.__setattr__(self, "padding", pads)

    @classmethod
    def for_model(cls, model, image_size, map_size) -> "MapGeometry":
        """Geometry of ``model`` (a QFNet: ``output_stride``, ``receptive_field``) for one input size."""
        return cls(
            image_size=(int(image_size[0]), int(image_size[1])),
            map_size=(int(map_size[0]), int(map_size[1])),
            stride=int(model.output_stride),
            receptive_field=int(model.receptive_field),
        )

    def _axis_boxes(self, axis: int) -> tuple[np.ndarray, np.ndarray]:
        n, m, p = self.image_size[axis], self.map_size[axis], self.padding[axis]
        start = np.arange(m) * self.stride - p
        stop = start + self.receptive_field
        return np.clip(start, 0, n), np.clip(stop, 0, n)

    def cell_boxes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Receptive field of each cell clipped to the image: ``(y0 [h], y1 [h], x0 [w], x1 [w])``, pixels,
        half-open (rows ``y0[i]:y1[i]`` and columns ``x0[j]:x1[j]`` are seen by cell ``(i, j)``)."""
        y0, y1 = self._axis_boxes(0)
        x0, x1 = self._axis_boxes(1)
        return y0, y1, x0, x1

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Centre of each cell's (unclipped) receptive field in pixel coordinates: ``(cy [h], cx [w])``
        (pixel ``k`` spans ``[k, k + 1)``, so the image centre is ``H / 2``)."""
        return tuple(
            np.arange(m) * self.stride - p + self.receptive_field / 2.0
            for m, p in zip(self.map_size, self.padding)
        )


def _map_shape(qf_map) -> tuple[int, ...]:
    shape = tuple(qf_map.shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"a QF map is [h, w] or [N, h, w], got shape {shape}")
    return shape


def mean_weights(qf_map) -> np.ndarray:
    """Uniform weights, the shape of ``qf_map`` (``[h, w]`` or ``[N, h, w]``)."""
    return np.ones(_map_shape(qf_map), dtype=np.float64)


def _central_cells(centres: np.ndarray, size: int, fraction: float) -> np.ndarray:
    lo, hi = size * (1 - fraction) / 2.0, size * (1 + fraction) / 2.0
    inside = (centres >= lo) & (centres <= hi)
    if not inside.any():
        dist = np.abs(centres - size / 2.0)
        inside = np.isclose(dist, dist.min())
    return inside


def center_weights(qf_map, geometry: MapGeometry | None = None, fraction: float = CENTER_FRACTION) -> np.ndarray:
    """Weights 1 for the cells whose receptive-field centre lies in the central ``fraction`` of the image's
    height and width, 0 elsewhere; the shape of ``qf_map``. Without ``geometry`` the central ``fraction`` of
    the map itself is used (cell centres at ``i + 0.5`` on an ``h x w`` grid)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"center fraction must be in (0, 1], got {fraction}")
    shape = _map_shape(qf_map)
    h, w = shape[-2:]
    if geometry is None:
        cy, cx, size = np.arange(h) + 0.5, np.arange(w) + 0.5, (h, w)
    else:
        if tuple(geometry.map_size) != (h, w):
            raise ValueError(f"geometry is for a {geometry.map_size} map, the map is {(h, w)}")
        (cy, cx), size = geometry.cell_centres(), geometry.image_size
    rows = _central_cells(cy, size[0], fraction)
    cols = _central_cells(cx, size[1], fraction)
    weights = np.outer(rows, cols).astype(np.float64)
    return np.broadcast_to(weights, shape).copy()


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (yy**2 + xx**2) <= radius**2


def foreground_mask(
    image,
    threshold: float = FOREGROUND_THRESHOLD,
    percentile: float = FOREGROUND_PERCENTILE,
) -> np.ndarray:
    """Mask of the anatomy (bool ``[H, W]``) of one image ``[H, W]`` (or ``[H, W, C]``, reduced to the mean
    of its first three channels) with values in [0, 1]: pixels of the smoothed image brighter than ``threshold`` x its
    ``percentile``-th percentile, closed and hole-filled (see the module docstring). All ``False`` for an
    all-black image."""
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3 and img.shape[-1] <= 4:
        img = img[..., : min(3, img.shape[-1])].mean(axis=-1)  # gray / RGB (alpha ignored) -> channel mean
    if img.ndim != 2:
        raise ValueError(f"foreground_mask takes one image [H, W] or [H, W, C], got shape {img.shape}")
    height, width = img.shape
    smooth = ndimage.median_filter(img, size=3, mode="nearest")  # removes isolated noise pixels, keeps edges
    reference = float(np.percentile(smooth, percentile))
    if not reference > 0:
        return np.zeros(img.shape, dtype=bool)
    mask = smooth > threshold * reference
    # drop specks: connected components smaller than 0.1 % of the image (noise that survived the median)
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = np.bincount(labels.ravel())
        small = sizes < max(2.0, 1e-3 * height * width)
        small[0] = False
        mask[small[labels]] = False
    radius = max(1, int(round(min(height, width) / 64.0)))
    # closing with a border of background around the image, so that anatomy touching the edge is not eroded
    padded = np.pad(mask, radius, mode="constant")
    mask = disk_closing(padded, radius)[radius:-radius, radius:-radius]
    return ndimage.binary_fill_holes(mask)


def disk_closing(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary closing of ``mask`` with the disk ``y^2 + x^2 <= radius^2``: the same pixels as
    ``scipy.ndimage.binary_closing(mask, structure=_disk(radius))`` away from the array border (within
    ``radius`` of it the erosion differs: ``foreground_mask`` pads first), in time linear in the pixels
    (two exact Euclidean distance transforms) instead of pixels x disk area (minutes at 12 Mpx)."""
    from scipy import ndimage

    if not mask.any():
        return np.zeros_like(mask, dtype=bool)
    dilated = ndimage.distance_transform_edt(~mask) <= radius  # within radius of the mask
    if dilated.all():
        return dilated
    return ndimage.distance_transform_edt(dilated) > radius  # no background within radius


def receptive_field_coverage(mask, geometry: MapGeometry) -> np.ndarray:
    """Fraction of each cell's receptive field (clipped to the image) that lies inside ``mask``.

    mask: bool ``[H, W]`` or ``[N, H, W]`` (see :func:`foreground_mask`), the size of the input image;
    returns float64 ``[h, w]`` or ``[N, h, w]`` in [0, 1].
    """
    mask = np.asarray(mask, dtype=np.float64)
    single = mask.ndim == 2
    if single:
        mask = mask[None]
    if mask.ndim != 3 or tuple(mask.shape[-2:]) != tuple(geometry.image_size):
        raise ValueError(f"mask of shape {mask.shape} does not match the image size {geometry.image_size}")
    # summed-area table with a zero row/column in front: box sum = S[y1,x1] - S[y0,x1] - S[y1,x0] + S[y0,x0]
    table = np.zeros((mask.shape[0], mask.shape[1] + 1, mask.shape[2] + 1))
    table[:, 1:, 1:] = mask.cumsum(axis=1).cumsum(axis=2)
    y0, y1, x0, x1 = geometry.cell_boxes()
    Y0, X0 = y0[:, None], x0[None, :]
    Y1, X1 = y1[:, None], x1[None, :]
    inside = table[:, Y1, X1] - table[:, Y0, X1] - table[:, Y1, X0] + table[:, Y0, X0]
    area = (Y1 - Y0) * (X1 - X0)
    coverage = np.clip(np.where(area > 0, inside / np.maximum(area, 1), 0.0), 0.0, 1.0)
    return coverage[0] if single else coverage


def foreground_weights(
    mask, geometry: MapGeometry, coverage_range: tuple[float, float] = FOREGROUND_COVERAGE
) -> np.ndarray:
    """Cell weights from the anatomy mask: a ramp of the receptive-field coverage ``c``
    (:func:`receptive_field_coverage`), 0 for ``c <= lo``, 1 for ``c >= hi``, linear in between
    (``coverage_range = (lo, hi)``, default (0.75, 0.95)). An image whose anatomy is too thin for any cell to
    pass ``lo`` gets the coverage itself as weights (all zero only when the mask is empty).

    mask: bool ``[H, W]`` or ``[N, H, W]``; returns float64 ``[h, w]`` or ``[N, h, w]`` in [0, 1].
    """
    lo, hi = coverage_range
    if not 0 <= lo < hi <= 1:
        raise ValueError(f"coverage_range must satisfy 0 <= lo < hi <= 1, got {coverage_range}")
    coverage = receptive_field_coverage(mask, geometry)
    weights = np.clip((coverage - lo) / (hi - lo), 0.0, 1.0)
    thin = weights.sum(axis=(-2, -1)) <= 0
    if np.any(thin):
        if weights.ndim == 2:
            weights = coverage
        else:
            weights[thin] = coverage[thin]
    return weights


def weighted_mean(qf_map, weights):
    """Weighted mean over the last two dims: ``[h, w] -> scalar``, ``[N, h, w] -> [N]``.

    ``qf_map`` numpy or torch (then the result is torch, differentiable in the map, on its device);
    ``weights`` non-negative, broadcastable to the map. An image whose weights sum to 0 gets NaN.
    """
    if hasattr(qf_map, "detach"):  # torch
        import torch

        w = torch.as_tensor(np.asarray(weights), dtype=qf_map.dtype, device=qf_map.device)
        w = w.expand_as(qf_map)
        total = w.sum(dim=(-2, -1))
        return (qf_map * w).sum(dim=(-2, -1)) / total
    q = np.asarray(qf_map, dtype=np.float64)
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), q.shape)
    total = w.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (q * w).sum(axis=(-2, -1)) / total


def pool_weights(
    qf_map,
    method: str = "mean",
    *,
    image=None,
    geometry: MapGeometry | None = None,
    fraction: float = CENTER_FRACTION,
    threshold: float = FOREGROUND_THRESHOLD,
) -> np.ndarray:
    """Weights of ``method`` for ``qf_map`` ``[h, w]`` / ``[N, h, w]`` (float64, same shape).

    ``center`` uses ``geometry`` if given; ``foreground`` needs ``image`` (``[H, W]`` / ``[N, H, W]``, or
    with a trailing colour axis of 3, values in [0, 1], the image(s) the map was computed from) and
    ``geometry``. Images without foreground get all-zero weights here (see :func:`pool`).
    """
    check_pool(method)
    if method == "mean":
        return mean_weights(qf_map)
    if method == "center":
        return center_weights(qf_map, geometry, fraction=fraction)
    if image is None or geometry is None:
        raise ValueError("foreground pooling needs the input image and the map geometry")
    shape = _map_shape(qf_map)
    img = np.asarray(image)
    if len(shape) == 2:
        return foreground_weights(foreground_mask(img, threshold=threshold), geometry)
    if len(img) != shape[0]:
        raise ValueError(f"{len(img)} images for {shape[0]} maps")
    masks = np.stack([foreground_mask(one, threshold=threshold) for one in img])
    return foreground_weights(masks, geometry)


def pool(
    qf_map,
    method: str = "mean",
    *,
    image=None,
    geometry: MapGeometry | None = None,
    fraction: float = CENTER_FRACTION,
    threshold: float = FOREGROUND_THRESHOLD,
):
    """Pool ``qf_map`` (``[h, w]`` -> scalar, ``[N, h, w]`` -> ``[N]``; numpy -> numpy float64, torch ->
    torch) with ``method`` in :data:`POOLS`. Arguments as :func:`pool_weights`. For ``foreground``, an image
    with an empty mask falls back to ``mean`` (uniform weights) with a :class:`PoolingFallbackWarning` that
    names its index in the batch."""
    weights = pool_weights(
        qf_map, method, image=image, geometry=geometry, fraction=fraction, threshold=threshold
    )
    totals = weights.sum(axis=(-2, -1))
    empty = np.atleast_1d(totals <= 0)
    if empty.any():
        where = ", ".join(str(i) for i in np.flatnonzero(empty)) if weights.ndim == 3 else "0"
        warnings.warn(
            f"{method} pooling: no foreground in image(s) {where}; mean pooling used instead",
            PoolingFallbackWarning,
            stacklevel=2,
        )
        if weights.ndim == 2:
            weights = np.ones_like(weights)
        else:
            weights[empty] = 1.0
    return weighted_mean(qf_map, weights)


def check_pool(method: str) -> str:
    """Return ``method`` if it is a known pooling, else raise ``recon.errors.InputError`` (a ``ValueError``)
    listing :data:`POOLS`."""
    if method not in POOLS:
        from recon.errors import InputError

        raise InputError(None, f"unknown pooling {method!r}: expected one of {', '.join(POOLS)}")
    return method


def neighbour_correlation(x) -> np.ndarray:
    """Mean of the lag-1 Pearson correlations along rows and along columns: about 0 for white noise, above 0.85
    for every MRI reconstruction the project was measured on (the recon predictor's noise gate, the R estimators'
    noise-like check).

    x: images ``[N, H, W]`` or ``[N, 1, H, W]`` on any scale (numpy or torch) -> float64 ``[N]``
    (0 for a constant image)."""
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim == 4:
        a = a[:, 0]
    out = np.zeros(len(a))
    for i, img in enumerate(a):
        vals = []
        for u, v in ((img[1:, :], img[:-1, :]), (img[:, 1:], img[:, :-1])):
            u = u.ravel() - u.mean()
            v = v.ravel() - v.mean()
            den = np.sqrt((u * u).sum() * (v * v).sum())
            vals.append(float((u * v).sum() / den) if den > 0 else 0.0)
        out[i] = float(np.mean(vals))
    return out
