"""Metric interfaces: the pyiqa-style QFMetric and the torchmetrics QFScore."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import mriqa.metric as metric_mod
from mriqa.metric import QFMetric
from mriqa.models import QFNet
from mriqa.predictor import load_predictor
from recon.io.weights import save_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    net = QFNet(3, width=8)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.05, 0.5)
    path = tmp_path_factory.mktemp("w") / "rgb.safetensors"
    save_weights(net, path)
    return path


def _batch(n=3, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, 48, 40, generator=g)


def test_pyiqa_attributes_and_call(weights):
    metric = QFMetric(str(weights), pool="center", device="cpu")
    assert metric.lower_better is False
    assert metric.score_range == (0, 1)
    assert metric.metric_mode == "NR"
    assert not hasattr(metric, "as_loss")
    x = _batch()
    scores = metric(x)
    assert isinstance(scores, torch.Tensor) and scores.dtype == torch.float32 and scores.shape == (3,)
    assert bool(((scores >= 0) & (scores <= 1)).all())
    expected = load_predictor(weights, device="cpu").score(x, pool="center")
    torch.testing.assert_close(scores, expected)
    assert not scores.requires_grad
    # one image -> a batch of one; numpy -> a CPU tensor
    assert metric(x[0:1]).shape == (1,)
    one = metric(x[0].permute(1, 2, 0).numpy())
    assert one.shape == (1,) and one[0] == pytest.approx(float(scores[0]), abs=1e-5)
    # the network is not a registered sub-module (no weights in a training checkpoint)
    assert list(metric.state_dict()) == []


def test_metric_reads_a_file(weights, tmp_path):
    from PIL import Image

    x = _batch(1)[0]
    arr = np.round(x.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    metric = QFMetric(weights, device="cpu")
    torch.testing.assert_close(metric(str(tmp_path / "a.png")), metric(arr))


def test_qfscore_accumulates_the_mean(weights):
    QFScore = metric_mod.QFScore
    m = QFScore(weights, pool="mean", device="cpu")
    assert m.higher_is_better is True and m.is_differentiable is False
    a, b = _batch(3, seed=1), _batch(2, c=1, seed=2)[:, 0]  # [B, 3, H, W] and [B, H, W]
    m.update(a)
    m.update(b)
    single = load_predictor(weights, device="cpu")
    expected = np.concatenate([single.score(a).numpy(), single.score(b).numpy()]).mean()
    value = m.compute()
    assert value.dtype == torch.float32 and value.item() == pytest.approx(expected, abs=1e-6)
    assert int(m.count) == 5
    m.reset()
    assert int(m.count) == 0
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert torch.isnan(m.compute())
    assert not any("features" in k for k in m.state_dict())


def test_qfscore_needs_torchmetrics_only_when_used(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics", None)  # import torchmetrics -> ModuleNotFoundError
    monkeypatch.setattr(metric_mod, "_QFSCORE", None)
    with pytest.raises(ModuleNotFoundError, match=r"QFScore needs torchmetrics: pip install"):
        metric_mod.QFScore
    # the rest of the module works without it
    assert metric_mod.QFMetric.metric_mode == "NR"
