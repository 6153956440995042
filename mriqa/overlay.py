"""QF-map overlays (``mriqa score --maps DIR``): the QF map colour-coded over the image, with a colour bar.

Rendering (:func:`render_overlay`):

- the image (its model input in [0, 1], gray or RGB) is shown at a display size whose longer side is at most
  ``max_side`` pixels (default 512) and, for small images, at least 256: small images are enlarged by the
  smallest integer factor that reaches 256 (nearest neighbour), large ones are reduced (bilinear), so files
  stay small and legible;
- the QF map is placed on the image by its geometry (:class:`mriqa.pooling.MapGeometry`: cell ``(i, j)`` sits
  at the centre of its receptive field) and upsampled bilinearly between cell centres; pixels outside the
  band covered by the cells (half a stride beyond the outer cell centres: the image's rim, where no cell is
  centred) stay uncoloured;
- colours: a matplotlib colour map (default ``viridis``) over the fixed range QF/100 in [``vmin``, ``vmax``]
  = [0, 1], so that colours compare across images; blended with ``alpha`` (default 0.45) over the image;
- a vertical colour bar labelled 0.0 / 0.5 / 1.0 on the right and a title line (e.g. ``QF 0.873 (mean)``) on
  top;
- saved as an optimised 8-bit palette PNG (256 colours), atomically.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mriqa.pooling import MapGeometry

MAX_SIDE = 512
MIN_SIDE = 256
BAR_WIDTH = 14
TITLE_HEIGHT = 16


def display_size(height: int, width: int, max_side: int = MAX_SIDE, min_side: int = MIN_SIDE) -> tuple[int, int]:
    """Display size ``(Hd, Wd)`` of an ``H x W`` image: enlarged by the smallest integer factor that brings
    the longer side to ``min_side`` (without passing ``max_side``), or reduced to ``max_side``."""
    longest = max(height, width)
    if longest > max_side:
        scale = max_side / longest
        return max(1, round(height * scale)), max(1, round(width * scale))
    factor = max(1, -(-min_side // longest))  # ceil: the smallest integer factor that reaches min_side
    while factor > 1 and longest * factor > max_side:
        factor -= 1
    return height * factor, width * factor


def _axis_interp(centres: np.ndarray, stride: float, size: int, display: int):
    """For each display pixel along one axis: (index of the left cell, weight of the right cell, covered)."""
    coords = (np.arange(display) + 0.5) * (size / display)  # display pixel centre in image coordinates
    u = (coords - centres[0]) / stride  # fractional cell index
    covered = (u >= -0.5) & (u <= len(centres) - 0.5)
    u = np.clip(u, 0, len(centres) - 1)
    left = np.minimum(np.floor(u).astype(int), max(len(centres) - 2, 0))
    frac = u - left if len(centres) > 1 else np.zeros_like(u)
    return left, frac, covered


def upsample_map(qf_map: np.ndarray, geometry: MapGeometry, display: tuple[int, int]):
    """QF map ``[h, w]`` -> ``(values [Hd, Wd], covered bool [Hd, Wd])`` at the display size, bilinear
    between the cells' receptive-field centres (see the module docstring)."""
    q = np.asarray(qf_map, dtype=np.float64)
    cy, cx = geometry.cell_centres()
    ly, fy, vy = _axis_interp(cy, geometry.stride, geometry.image_size[0], display[0])
    lx, fx, vx = _axis_interp(cx, geometry.stride, geometry.image_size[1], display[1])
    ry = np.minimum(ly + 1, q.shape[0] - 1)
    rx = np.minimum(lx + 1, q.shape[1] - 1)
    rows = q[ly] * (1 - fy)[:, None] + q[ry] * fy[:, None]  # [Hd, w]
    values = rows[:, lx] * (1 - fx)[None] + rows[:, rx] * fx[None]  # [Hd, Wd]
    return values, np.outer(vy, vx)


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def render_overlay(
    image,
    qf_map,
    geometry: MapGeometry,
    title: str | None = None,
    alpha: float = 0.45,
    cmap: str = "viridis",
    vmin: float = 0.0,
    vmax: float = 1.0,
    max_side: int = MAX_SIDE,
):
    """Overlay of ``qf_map`` ``[h, w]`` (QF / 100) on ``image`` (``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]``,
    float in [0, 1]) -> a ``PIL.Image`` in mode ``"P"`` (see the module docstring)."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"image must be [H, W], [H, W, 1] or [H, W, 3], got {np.shape(image)}")
    height, width = img.shape[:2]
    if (height, width) != tuple(geometry.image_size):
        raise ValueError(f"image {height}x{width} does not match the geometry {geometry.image_size}")
    hd, wd = display_size(height, width, max_side=max_side)
    base = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8), mode="RGB")
    if (hd, wd) != (height, width):
        resample = Image.NEAREST if hd > height else Image.BILINEAR
        base = base.resize((wd, hd), resample=resample)
    base_arr = np.asarray(base, dtype=np.float32) / 255.0

    values, covered = upsample_map(qf_map, geometry, (hd, wd))
    colour_map = colormaps[cmap]
    span = max(vmax - vmin, 1e-12)
    colours = colour_map(np.clip((values - vmin) / span, 0, 1))[..., :3]
    a = alpha * covered[..., None]
    blended = base_arr * (1 - a) + colours * a

    bar_gap, label_width = 6, 30
    canvas = Image.new("RGB", (wd + bar_gap + BAR_WIDTH + label_width, hd + TITLE_HEIGHT), "white")
    canvas.paste(Image.fromarray(np.round(blended * 255).astype(np.uint8), mode="RGB"), (0, TITLE_HEIGHT))
    ramp = np.linspace(1.0, 0.0, hd)[:, None].repeat(BAR_WIDTH, axis=1)  # top = vmax
    bar = colour_map(ramp)[..., :3]
    canvas.paste(Image.fromarray(np.round(bar * 255).astype(np.uint8), mode="RGB"), (wd + bar_gap, TITLE_HEIGHT))

    draw = ImageDraw.Draw(canvas)
    font = _font()
    x_label = wd + bar_gap + BAR_WIDTH + 3
    for frac, value in ((0.0, vmax), (0.5, (vmin + vmax) / 2), (1.0, vmin)):
        y = TITLE_HEIGHT + int(round(frac * (hd - 1)))
        draw.line([(wd + bar_gap + BAR_WIDTH, y), (x_label - 1, y)], fill="black")
        draw.text((x_label, min(max(y - 6, TITLE_HEIGHT), TITLE_HEIGHT + hd - 12)), f"{value:.1f}", fill="black", font=font)
    if title:
        draw.text((2, 2), title, fill="black", font=font)
    return canvas.quantize(colors=256, method=Image.Quantize.MEDIANCUT)


def save_overlay(path: str | os.PathLike, image, qf_map, geometry: MapGeometry, **kwargs) -> Path:
    """Render (:func:`render_overlay`) and write a PNG atomically; returns ``path``."""
    from recon.files import atomic_path

    path = Path(path)
    picture = render_overlay(image, qf_map, geometry, **kwargs)
    with atomic_path(path, suffix=".png") as tmp:
        picture.save(tmp, format="PNG", optimize=True)
        make_readable(tmp)
    return path


def make_readable(path: str | os.PathLike) -> None:
    """Give a temp file from ``atomic_path`` (created 0600 by ``mkstemp``) the mode of a normally created file
    (``0666 & ~umask``), so that the outputs are readable like any other file the user writes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
