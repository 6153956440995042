"""Picking subsets: evenly spaced indices of a sequence and the centre crop of an image.

- :func:`evenly_spaced` ``(n, k)``: ``k`` indices spread over ``range(n)`` from the first to the last (all
  of them when ``k`` is None or ``>= n``): the validation slices of a trainer, the slices an evaluation reads.
- :func:`center_crop` ``(x, (h, w))``: the centred ``h x w`` window of the last two dims of a torch tensor or
  numpy array (a size larger than the image keeps that dim whole); the window starts at ``(H - h) // 2``, as
  fastMRI's ``center_crop`` does.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["evenly_spaced", "center_crop"]


def evenly_spaced(n: int, k: int | None) -> list[int]:
    """Sorted distinct indices ``round(linspace(0, n - 1, k))`` (``list(range(n))`` if ``k`` is None or ``>= n``)."""
    n = int(n)
    if k is None or int(k) >= n:
        return list(range(n))
    if int(k) < 1:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, int(k))})


def center_crop(x, size: Sequence[int]):
    """The centred ``size = (h, w)`` window of the last two dims of ``x`` (tensor or array; a view)."""
    height, width = x.shape[-2:]
    ch, cw = min(int(size[0]), height), min(int(size[1]), width)
    top, left = (height - ch) // 2, (width - cw) // 2
    return x[..., top:top + ch, left:left + cw]
