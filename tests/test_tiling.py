"""Tiled inference (mriqa.tiling): big images give the whole-image result, at small tile sizes here."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mriqa import tiling
from mriqa.models import QFNet
from mriqa.models.qairn import QAIRN, run_qairn
from mriqa.predictor import QFPredictor

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _qfnet(in_channels: int, seed: int = 0, **kw) -> QFNet:
    torch.manual_seed(seed)
    net = QFNet(in_channels, width=8, **kw)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.05, 0.5)
    return net.eval()


def _qairn(seed: int = 0, **cfg) -> QAIRN:
    torch.manual_seed(seed)
    model = QAIRN(**{"channels": (4, 8, 8, 8), "n_res": 2, "att_depth": 2, **cfg}).eval()
    with torch.no_grad():  # a random init with non-trivial gates
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _photo(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    base = 0.5 + 0.3 * np.sin(9 * xx + 5 * yy)[..., None] * np.linspace(0.6, 1.0, channels)
    return np.clip(base + 0.1 * rng.standard_normal((h, w, channels)), 0, 1).astype(np.float32)


@pytest.mark.parametrize("channels,blurpool", [(1, False), (3, False), (1, True)])
def test_qf_maps_tiled_equal_whole_image(channels, blurpool):
    net = _qfnet(channels, blurpool=blurpool)
    x = torch.from_numpy(_photo(157, 211, channels).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        whole = net(x)
        tiled = tiling.valid_tiled_map(net, x, net.output_stride, net.receptive_field, net.output_size, tile=60)
    assert tiled.shape == whole.shape
    assert float((tiled - whole).abs().max()) < 1e-4


def test_predictor_scores_and_maps_do_not_depend_on_the_tile():
    net = _qfnet(3, seed=1)
    image = (_photo(150, 173) * 255).round().astype(np.uint8)
    whole = QFPredictor(net, device="cpu")
    small = QFPredictor(net, device="cpu", tile=64)
    for pool in ("mean", "center", "foreground"):
        a, b = whole.evaluate(image, pool=pool), small.evaluate(image, pool=pool)
        assert np.abs(a.maps - b.maps).max() < 1e-4 and np.abs(a.scores - b.scores).max() < 1e-4


def test_learned_r_estimator_is_tiled_too():
    from mriqa.restimate import learned

    est = learned.LearnedREstimator(_qfnet(1, seed=2), {"halfwidth": 0.3, "max_spread": 9.0,
                                                         "min_correlation": 0.1})
    x = torch.from_numpy(_photo(140, 150, 1)[..., 0])[None, None]
    whole = est.log_r_maps(x)
    est.predictor.tile = 48
    assert np.abs(est.log_r_maps(x) - whole).max() < 1e-4


@pytest.mark.parametrize("cfg", [{}, {"n_res": 1, "att_depth": 3, "global_residual": True}, {"n_res": 0}])
def test_qairn_tiled_equals_whole_image(cfg):
    model = _qairn(**cfg)
    x = torch.rand(1, 3, 203, 331)
    tile = 2 * tiling.qairn_halos(model)[2] + model.multiple  # the smallest useful tile: many tiles
    with torch.no_grad():
        out, maps = model(x)
        tout, tmaps = tiling.qairn_tiled_forward(model, x, tile=tile)
    assert tout.shape == out.shape and [m.shape for m in tmaps] == [m.shape for m in maps]
    assert float((tout - out).abs().max()) < 1e-4
    assert max(float((a - b).abs().max()) for a, b in zip(tmaps, maps)) < 1e-4


def test_qairn_halos_that_are_too_small_change_the_result(monkeypatch):
    """The check above can fail: halos below the receptive field leave visible seams."""
    model = _qairn()
    x = torch.rand(1, 3, 203, 331)
    with torch.no_grad():
        out, maps = model(x)
        monkeypatch.setattr(tiling, "qairn_halos", lambda m: (16, 16, 16))
        tout, tmaps = tiling.qairn_tiled_forward(model, x, tile=144)
    assert max(float((a - b).abs().max()) for a, b in zip([tout, *tmaps], [out, *maps])) > 1e-4


def test_qairn_halo_bounds_the_measured_receptive_field():
    """A one-pixel change moves the output no further than the sum of the three stage halos."""
    model = _qairn(channels=(2, 2, 2, 2), n_res=1, att_depth=1).double()
    size, c = 256, 128
    base = torch.rand(1, 3, size, size, dtype=torch.float64)
    bumped = base.clone()
    bumped[..., c, c] += 1.0
    with torch.no_grad():
        moved = (model(bumped)[0] - model(base)[0]).abs().sum(1)[0] > 0
    rows = torch.nonzero(moved.any(1)).ravel()
    radius = max(c - int(rows.min()), int(rows.max()) - c)
    assert 0 < radius <= sum(tiling.qairn_halos(model))


def test_run_qairn_tiled_gray_and_rgb():
    model = _qairn()
    for image in (_photo(150, 230), _photo(150, 230, 1)[..., 0]):
        restored, q = run_qairn(model, image)
        tiled, tq = run_qairn(model, image, tile=2 * tiling.qairn_halos(model)[2] + 16)
        assert tiled.shape == restored.shape == image.shape
        assert np.abs(tiled - restored).max() < 1e-4 and np.abs(tq - q).max() < 1e-5
