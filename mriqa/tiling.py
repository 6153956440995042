"""Tiled inference: big images through the image models in bounded memory, with the whole-image result.

Two network families, two exact tilings (equal to whole-image inference up to float rounding; tested in
``tests/test_tiling.py`` at small tile sizes):

- **Valid (unpadded) networks with an output stride** (QFNet, the learned R estimator's LogRNet): output cell
  ``i`` sees input rows ``[s i, s i + r)`` (stride ``s``, receptive field ``r``) and nothing else, so the map is
  computed block by block: output rows ``[a, b)`` need input rows ``[s a, s (b - 1) + r)``, which start on the
  stride grid (every pooling sees the same pixels as in the whole image). Neighbouring input tiles overlap by
  ``r - s`` pixels. :func:`valid_tiled_map`.
- **Padded U-Nets** (QAIRN): every output pixel depends on the input within its receptive-field radius, and
  zero padding at a tile's border changes the outputs within that radius of it, so each tile is run with a
  halo of real image around its core (less at the image border, where the whole-image run pads too), core
  origins on the network's multiple (16: the stride-2 grids align), and only the cores are kept. QAIRN's
  radius (276 px) comes almost all from its 1/4- and 1/8-resolution layers, so :func:`qairn_tiled_forward`
  runs it in three stages with a halo each (:func:`qairn_halos`): the expensive full-resolution layers with
  small halos (32 and 64 px), the deep layers with the big one (192 px) but at 1/4 resolution.

Tile sizes are in input pixels per side (:data:`QF_TILE`, :data:`QAIRN_TILE`; peak memory grows with the
square of the tile). An image that fits in one tile runs in one piece, exactly as before.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

#: default input tile side for valid networks (QF maps): about 1 Mpx, ~0.5 GB for a width-32 QFNet
QF_TILE = 1024
#: default input tile side for QAIRN (full-resolution stages; QAIRN needs ~1 GB per Mpx of tile)
QAIRN_TILE = 768


def valid_tiled_map(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, stride: int, receptive_field: int,
                    output_size: Callable[[int], int], tile: int = QF_TILE) -> torch.Tensor:
    """The output of a padding-free network ``fn`` (``[N, C, H, W] -> [N, K, h, w]``) on ``x``, block by block.

    ``stride`` / ``receptive_field``: the network's output stride and receptive field (pixels);
    ``output_size(n)``: its output length for an input length ``n``; ``tile``: the largest input tile side
    (>= the receptive field). Returns the same ``[N, K, h, w]`` as ``fn(x)``."""
    height, width = x.shape[-2:]
    if height <= tile and width <= tile:
        return fn(x)
    s, r = int(stride), int(receptive_field)
    cells = max(1, (int(tile) - r) // s + 1)  # output cells per tile side
    ho, wo = output_size(height), output_size(width)
    out = None
    for a in range(0, ho, cells):
        b = min(ho, a + cells)
        for c in range(0, wo, cells):
            d = min(wo, c + cells)
            y = fn(x[..., a * s: (b - 1) * s + r, c * s: (d - 1) * s + r])
            if out is None:
                out = y.new_empty((*y.shape[:2], ho, wo))
            out[..., a:b, c:d] = y
    return out


def _up(n: int, m: int) -> int:
    return int(math.ceil(n / m) * m)


def qairn_halos(model) -> tuple[int, int, int]:
    """Upper bounds of the receptive-field radius (input pixels, rounded up to ``model.multiple``) of the three
    stages of :func:`qairn_tiled_forward`: ``x -> x3`` (head, down1, down2), ``x3 -> RQA3 output`` (down3, body,
    up3, RQA3) and ``(x, RQA3 output) -> output`` (up2, RQA2, up1, RQA1, tail, with x1 and x2 recomputed).

    Per 3x3 convolution at a level of spacing ``j`` (input pixels between its samples) the radius grows by
    ``j``; per 2x2 stride-2 convolution or 2x2 transposed convolution by at most the coarser spacing. An
    attention autoencoder at spacing ``j`` (3x3 conv, ``d`` stride-2 3x3 convs, ``d`` transposed convs, 3x3 conv)
    adds ``j (3 * 2**d - 1)``; its gate multiplies the features, so it adds to the decoder path's radius. With
    ``n = n_res`` blocks of two 3x3 convolutions per stage: stage 1 ``6 n + 4``, stage 2
    ``4 (8 n + 2 + 3 * 2**d)``, stage 3 ``6 n + 9 * 2**d + 4``; together ``44 n + 16 + 21 * 2**d`` = 276 px for
    the shipped model (a probe with a random image and a one-pixel change measures 171 px)."""
    nb, d, m = int(model.n_res), int(model.att_depth), int(model.multiple)
    return (_up(6 * nb + 4, m), _up(4 * (8 * nb + 2 + 3 * 2 ** d), m), _up(6 * nb + 9 * 2 ** d + 4, m))


def _window(t: torch.Tensor, level: int, rows: tuple[int, int], cols: tuple[int, int], device) -> torch.Tensor:
    """Rows / columns (level-0 pixels, multiples of ``2**level``) of ``t`` at ``level``, on ``device``; beyond
    ``t``'s extent (only for the unpadded input) the last row / column is repeated, as QAIRN pads."""
    from mriqa.normalize import unit_range

    f = 2 ** level
    (a, b), (c, d) = (rows[0] // f, rows[1] // f), (cols[0] // f, cols[1] // f)
    h, w = t.shape[-2:]
    win = unit_range(t[..., a:min(b, h), c:min(d, w)].contiguous().to(device))
    if b > h or d > w:
        win = torch.nn.functional.pad(win, (0, d - min(d, w), 0, b - min(b, h)), mode="replicate")
    return win


def _run_tiles(fn, sources, levels, padded, core: int, halo: int, device) -> list[torch.Tensor]:
    """``fn(*windows) -> [tensor at each of levels]`` over cores of ``core`` level-0 pixels with a ``halo``, on
    the padded grid ``padded = (Hp, Wp)``; sources are ``(tensor, level)``; the cores of the outputs are stitched
    into full-size tensors (``Hp / 2**level`` x ``Wp / 2**level``)."""
    hp, wp = padded
    outs: list[torch.Tensor] = []
    for y0 in range(0, hp, core):
        y1 = min(hp, y0 + core)
        rows = (max(0, y0 - halo), min(hp, y1 + halo))
        for x0 in range(0, wp, core):
            x1 = min(wp, x0 + core)
            cols = (max(0, x0 - halo), min(wp, x1 + halo))
            results = fn(*[_window(t, lvl, rows, cols, device) for t, lvl in sources])
            if not outs:
                outs = [r.new_empty((*r.shape[:2], hp // 2 ** lvl, wp // 2 ** lvl)) for r, lvl in zip(results, levels)]
            for r, full, lvl in zip(results, outs, levels):
                f = 2 ** lvl
                full[..., y0 // f: y1 // f, x0 // f: x1 // f] = \
                    r[..., (y0 - rows[0]) // f: (y1 - rows[0]) // f, (x0 - cols[0]) // f: (x1 - cols[0]) // f]
    return outs


def qairn_tiled_forward(model, x: torch.Tensor, tile: int = QAIRN_TILE) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``model(x)`` for a QAIRN (``(restored [B, 3, H, W], [gamma_1, gamma_2, gamma_3])``, gamma_l
    ``[B, 1, ceil(H / 2^l), ceil(W / 2^l)]``) in bounded memory. An image up to ``tile`` pixels per side runs in
    one piece; a larger one in three stages, each tiled with the halo of its own receptive field
    (:func:`qairn_halos`), so that the big halo is paid only at 1/4 resolution:

    1. ``x3 = down2(down1(head(x)))`` on tiles of ``tile`` pixels (halo ~32 px), stitched (1/4 resolution);
    2. ``y3, gamma_3 = RQA3(x3, up3(body(down3(x3)) + down3(x3)))`` on tiles of ``1.5 tile`` input pixels;
    3. ``x1, x2`` recomputed from ``x``, then ``up2``, RQA2, ``up1``, RQA1, tail on tiles of ``tile`` pixels.

    Tile origins lie on ``model.multiple`` (stride-2 grids align) and the bottom / right border is padded by
    repetition exactly as the whole-image forward pads it, so the result equals ``model(x)`` up to float
    rounding. ``x`` may be a non-contiguous CPU view, and uint8 / uint16 (:func:`mriqa.normalize.unit_range`):
    each window is converted and copied to the model's device on its own. Call it under ``torch.no_grad()``."""
    height, width = x.shape[-2:]
    device = next(model.parameters()).device
    if height <= tile and width <= tile:
        from mriqa.normalize import unit_range

        return model(unit_range(x.contiguous().to(device)))
    m = int(model.multiple)
    padded = (_up(height, m), _up(width, m))
    h1, h2, h3 = qairn_halos(model)

    def core(side: int, halo: int) -> int:
        return max(m, (int(side) - 2 * halo) // m * m)

    def stage2(x3):
        x4 = model.down3(x3)
        y, g3 = model.rqa[2](x3, model.up3(model.body(x4) + x4))
        return [y, g3]

    def stage3(xt, y3):
        x1 = model.head(xt)
        y, g2 = model.rqa[1](model.down1(x1), model.up2(y3))
        y, g1 = model.rqa[0](x1, model.up1(y))
        out = model.tail(y)
        return [xt + out if model.global_residual else out, g1, g2]

    (x3,) = _run_tiles(lambda xt: [model.down2(model.down1(model.head(xt)))], [(x, 0)], [2], padded,
                       core(tile, h1), h1, device)
    y3, g3 = _run_tiles(stage2, [(x3, 2)], [2, 2], padded, core(3 * tile // 2, h2), h2, device)
    del x3
    out, g1, g2 = _run_tiles(stage3, [(x, 0), (y3, 2)], [0, 0, 1], padded, core(tile, h3), h3, device)
    maps = [g[..., : math.ceil(height / 2 ** lvl), : math.ceil(width / 2 ** lvl)] for lvl, g in enumerate((g1, g2, g3))]
    return out[..., :height, :width], maps
