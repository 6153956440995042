"""Pooling of QF maps (mriqa.pooling): geometry, the three poolings, and the black-border property."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mriqa import pooling
from recon.errors import InputError
from mriqa.models import QFNet
from mriqa.predictor import QFPredictor


class LocalMean(torch.nn.Module):
    """Test stub with a predictable map: the mean intensity of each cell's receptive field (valid, no padding)."""

    in_channels = 1
    receptive_field = 28
    output_stride = 4
    min_input_size = 28

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))  # so that the predictor can find a device

    def forward(self, x):
        return F.avg_pool2d(x[:, :1], self.receptive_field, stride=self.output_stride)


def _geometry(model, size):
    h, w = size
    return pooling.MapGeometry.for_model(model, (h, w), model.output_shape(h, w))


# ------------------------------------------------------------------------------------------------ geometry
def test_geometry_matches_qfnet_input_gradient():
    """Cell (i, j)'s box from MapGeometry is exactly where its input gradient is non-zero."""
    net = QFNet(1, width=4).eval()
    geometry = _geometry(net, (60, 52))
    y0, y1, x0, x1 = geometry.cell_boxes()
    assert geometry.padding == (0, 0)
    torch.manual_seed(1)
    x = torch.rand(1, 1, 60, 52, requires_grad=True)
    out = net(x)
    assert tuple(out.shape[-2:]) == geometry.map_size
    for i, j in [(0, 0), (2, 3), (out.shape[2] - 1, out.shape[3] - 1)]:
        (g,) = torch.autograd.grad(out[0, 0, i, j], x, retain_graph=True)
        rows = torch.nonzero(g[0, 0].abs().sum(1)).flatten()
        cols = torch.nonzero(g[0, 0].abs().sum(0)).flatten()
        assert (rows.min().item(), rows.max().item() + 1) == (y0[i], y1[i])
        assert (cols.min().item(), cols.max().item() + 1) == (x0[j], x1[j])
    cy, cx = geometry.cell_centres()
    assert cy[0] == pytest.approx(14.0) and cy[1] - cy[0] == pytest.approx(4.0)


def test_geometry_infers_same_padding():
    g = pooling.MapGeometry(image_size=(64, 64), map_size=(16, 16), stride=4, receptive_field=20)
    assert g.padding == (8, 8)  # ((16-1)*4 + 20 - 64) // 2
    y0, y1, _, _ = g.cell_boxes()
    assert y0[0] == 0 and y1[0] == 12 and y1[-1] == 64  # clipped to the image


# ------------------------------------------------------------------------------------------------ weights
def test_mean_and_center_weights():
    net = QFNet(1, width=4)
    g = _geometry(net, (124, 124))  # 25 x 25 cells, centres at 14 + 4 i
    q = np.zeros(g.map_size)
    assert pooling.mean_weights(q).shape == q.shape and pooling.mean_weights(q).min() == 1
    w = pooling.center_weights(q, g, fraction=0.5)
    cy, _ = g.cell_centres()
    inside = (cy >= 31) & (cy <= 93)
    np.testing.assert_array_equal(w, np.outer(inside, inside))
    # a 1-cell-wide map: the nearest cell is used
    g1 = _geometry(net, (28, 28))
    assert pooling.center_weights(np.zeros((1, 1)), g1).sum() == 1
    # without geometry: the central half of the map
    w2 = pooling.center_weights(np.zeros((3, 8, 8)))
    assert w2.shape == (3, 8, 8) and w2[0, 2:6, 2:6].min() == 1 and w2[0].sum() == 16


def test_receptive_field_coverage_matches_brute_force():
    rng = np.random.default_rng(0)
    mask = rng.random((50, 45)) > 0.5
    g = pooling.MapGeometry(image_size=(50, 45), map_size=(6, 5), stride=4, receptive_field=28)
    cov = pooling.receptive_field_coverage(mask, g)
    y0, y1, x0, x1 = g.cell_boxes()
    for i in range(6):
        for j in range(5):
            assert cov[i, j] == pytest.approx(mask[y0[i] : y1[i], x0[j] : x1[j]].mean())
    batch = pooling.receptive_field_coverage(np.stack([mask, ~mask]), g)
    np.testing.assert_allclose(batch[0] + batch[1], 1.0)


def test_foreground_weights_ramp_and_thin_fallback():
    g = pooling.MapGeometry(image_size=(100, 100), map_size=(19, 19), stride=4, receptive_field=28)
    mask = np.zeros((100, 100), bool)
    mask[:, :50] = True
    w = pooling.foreground_weights(mask, g)
    cov = pooling.receptive_field_coverage(mask, g)
    assert np.all(w[cov >= 0.95] == 1) and np.all(w[cov <= 0.75] == 0)
    mid = (cov > 0.75) & (cov < 0.95)
    assert mid.any() and np.all((w[mid] > 0) & (w[mid] < 1))
    thin = np.zeros((100, 100), bool)
    thin[:, 48:52] = True  # 4 px wide: no cell is 75 % covered
    np.testing.assert_allclose(pooling.foreground_weights(thin, g), pooling.receptive_field_coverage(thin, g))


def test_foreground_mask_finds_anatomy_and_fills_holes():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    r = np.hypot(yy - 64, xx - 60)
    ring = (r < 40) & (r > 15)  # anatomy with a dark hole (a ventricle)
    img = 0.02 * rng.random((128, 128)) + 0.8 * ring  # noisy near-black background
    mask = pooling.foreground_mask(img)
    disk = r < 40
    iou = (mask & disk).sum() / (mask | disk).sum()
    assert iou > 0.95
    assert mask[64, 60]  # the hole is filled
    assert not pooling.foreground_mask(np.zeros((64, 64))).any()
    rgb = np.repeat(img[..., None], 3, axis=-1)
    np.testing.assert_array_equal(pooling.foreground_mask(rgb), mask)


# ------------------------------------------------------------------------------------------------ the property
def _bordered(rng, size=224, shape="square"):
    anat = (0.4 + 0.5 * rng.random((size, size))).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    if shape == "square":
        keep = np.zeros((size, size), bool)
        keep[64:160, 64:160] = True
        crop = anat[64:160, 64:160]
    else:
        keep = np.hypot(yy - size / 2, xx - size / 2) < 70
        crop = (anat * keep)[42:182, 42:182]
    background = 0.02 * rng.random((size, size)).astype(np.float32)
    return np.where(keep, anat, background), crop


@pytest.mark.parametrize("shape", ["square", "disk"])
def test_foreground_ignores_black_border_while_mean_is_pulled_down(shape):
    qf = QFPredictor(LocalMean(), device="cpu")
    img, crop = _bordered(np.random.default_rng(0), shape=shape)
    inner = qf.score(crop[20:-20, 20:-20])  # the anatomy alone (no background at all)
    fg = qf.score(img, pool="foreground")
    mean = qf.score(img, pool="mean")
    assert abs(fg - inner) < 0.02, (fg, inner)
    assert mean < inner - 0.3  # the black border drags the plain mean far down (paper Fig. 15)
    if shape == "square":  # the anatomy exactly cropped out: the same score
        assert abs(fg - qf.score(crop)) < 0.02
    # weights = plain coverage would not do: edge cells that half see black pull the score down
    pred = qf.evaluate(img, pool="mean")
    mask = pooling.foreground_mask(pred.images[0])
    cov = pooling.receptive_field_coverage(mask, pred.geometry)
    assert pooling.weighted_mean(pred.maps[0], cov) < inner - 0.05


def test_center_on_bordered_image_sees_only_the_middle():
    qf = QFPredictor(LocalMean(), device="cpu")
    img, crop = _bordered(np.random.default_rng(1), shape="square")  # anatomy = rows/cols 64..160 of 224
    inner = qf.score(crop[20:-20, 20:-20])
    # central 25 %: cell centres in 84..140, receptive fields within 70..154: all anatomy
    assert abs(qf.score(img, pool="center", fraction=0.25) - inner) < 0.02
    # central 50 % (default): 56..168 reaches past the anatomy's edge, still far above the plain mean
    center = qf.score(img, pool="center")
    assert qf.score(img, pool="mean") + 0.2 < center < inner - 0.05


# ------------------------------------------------------------------------------------------------ pool()
def test_weighted_mean_torch_is_differentiable():
    q = torch.rand(2, 5, 6, requires_grad=True)
    w = np.zeros((5, 6))
    w[1:3, 2:4] = 1.0
    s = pooling.weighted_mean(q, w)
    assert s.shape == (2,)
    s.sum().backward()
    expected = torch.as_tensor(w / w.sum(), dtype=q.dtype).expand(2, 5, 6)
    torch.testing.assert_close(q.grad, expected)
    np.testing.assert_allclose(pooling.weighted_mean(q.detach().numpy(), w), s.detach().numpy(), rtol=1e-6)


def test_pool_fallback_and_errors():
    g = pooling.MapGeometry(image_size=(64, 64), map_size=(10, 10), stride=4, receptive_field=28)
    q = np.linspace(0, 1, 200).reshape(2, 10, 10)
    images = np.zeros((2, 64, 64))
    images[1, 10:50, 10:50] = 1.0
    with pytest.warns(pooling.PoolingFallbackWarning, match=r"image\(s\) 0;"):
        s = pooling.pool(q, "foreground", image=images, geometry=g)
    assert s[0] == pytest.approx(q[0].mean())
    assert s[1] != pytest.approx(q[1].mean())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pooling.pool(q[1], "mean") == pytest.approx(q[1].mean())
    with pytest.raises(InputError, match="unknown pooling 'median'"):
        pooling.pool(q, "median")
    with pytest.raises(ValueError, match="needs the input image"):
        pooling.pool(q, "foreground")


def test_disk_closing_equals_scipy_binary_closing():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for trial in range(20):
        radius = int(rng.integers(1, 9))
        level = 0.5 + 0.05 * rng.standard_normal()
        mask = ndimage.gaussian_filter(rng.random(tuple(rng.integers(20, 80, 2))), 2) > level
        mask = np.pad(mask, radius)
        want = ndimage.binary_closing(mask, structure=pooling._disk(radius))
        got = pooling.disk_closing(mask, radius)
        inner = (slice(radius, -radius), slice(radius, -radius))
        np.testing.assert_array_equal(got[inner], want[inner], err_msg=f"trial {trial}, radius {radius}")
    assert not pooling.disk_closing(np.zeros((9, 9), bool), 2).any()
