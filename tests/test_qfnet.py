"""QFNet geometry (receptive field, stride, shapes), output range, config round trip, safetensors I/O."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from recon.errors import InputError
from mriqa.models import QFNet
from mriqa.weights_io import load_qfnet
from recon.io.weights import load_weights, save_weights


def _gradient_footprint(model: QFNet, size: int, cell: tuple[int, int]) -> tuple[range, range]:
    """Rows/cols of the input that influence one output cell (bounding box of nonzero gradient)."""
    model = model.double().eval()
    x = torch.rand(1, model.in_channels, size, size, dtype=torch.float64, requires_grad=True)
    model.logits(x)[0, 0, cell[0], cell[1]].backward()
    g = x.grad.abs().sum(dim=(0, 1))
    rows = torch.nonzero(g.sum(dim=1)).flatten()
    cols = torch.nonzero(g.sum(dim=0)).flatten()
    return range(int(rows.min()), int(rows.max()) + 1), range(int(cols.min()), int(cols.max()) + 1)


@pytest.mark.parametrize("blurpool,rf", [(False, 28), (True, 34)])
def test_receptive_field_and_stride_by_gradient(blurpool, rf):
    torch.manual_seed(0)
    model = QFNet(in_channels=1, width=4, blurpool=blurpool)
    assert model.receptive_field == rf
    assert model.output_stride == 4
    assert model.min_input_size == rf
    r0, c0 = _gradient_footprint(model, 80, (0, 0))
    assert len(r0) == rf and len(c0) == rf and r0.start == 0 and c0.start == 0
    r1, c1 = _gradient_footprint(model, 80, (2, 3))
    assert (r1.start, c1.start) == (2 * 4, 3 * 4)
    assert len(r1) == rf and len(c1) == rf
    assert model.output_offset == (rf - 1) / 2


def test_seven_convolutions_two_pools_last_two_pointwise():
    model = QFNet(in_channels=3, width=8)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 7
    assert [c.kernel_size for c in convs[-2:]] == [(1, 1), (1, 1)]
    assert convs[-2].out_channels < convs[-2].in_channels and convs[-1].out_channels == 1
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 6


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("h,w", [(28, 28), (64, 64), (61, 97), (100, 33)])
def test_output_shape_and_sigmoid_range(c, h, w):
    model = QFNet(in_channels=c, width=8).eval()
    x = torch.rand(2, c, h, w)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 1, *model.output_shape(h, w))
    assert y.shape[-1] >= 1 and float(y.min()) >= 0 and float(y.max()) <= 1
    with torch.no_grad():  # extreme logits still in [0, 1]
        y = model(x * 1e4)
    assert float(y.min()) >= 0 and float(y.max()) <= 1


def test_too_small_input_raises():
    model = QFNet(in_channels=1, width=4)
    with pytest.raises(ValueError, match="receptive field"):
        model(torch.rand(1, 1, 27, 64))
    with pytest.raises(ValueError):
        model(torch.rand(1, 3, 64, 64))  # wrong channel count


def test_blurpool_filter_preserves_constants_and_removes_nyquist():
    from mriqa.models.qfnet import BlurPool2d

    bp = BlurPool2d(2)
    const = torch.full((1, 2, 9, 9), 0.7)
    assert torch.allclose(bp(const), torch.full((1, 2, 4, 4), 0.7))
    checker = (torch.arange(9)[:, None] + torch.arange(9)[None, :]) % 2
    out = bp(checker.float().expand(1, 2, 9, 9))
    assert torch.allclose(out, torch.full_like(out, 0.5))  # the Nyquist pattern is averaged out, not aliased


def test_config_round_trip_and_classification_head():
    m = QFNet(in_channels=3, width=6, blurpool=True)
    assert QFNet.from_config(m.config).config == m.config
    c = QFNet(in_channels=1, width=4, num_classes=5, class_qfs=[0, 20, 40, 60, 80]).eval()
    with torch.no_grad():
        z = c.logits(torch.rand(1, 1, 40, 40))
        y = c(torch.rand(1, 1, 40, 40))
    assert z.shape[1] == 5 and y.shape[1] == 1
    assert 0 <= float(y.min()) and float(y.max()) <= 0.8 + 1e-6
    with pytest.raises(ValueError):
        QFNet.from_config({"in_channels": 1, "depth": 3})


def test_weights_round_trip(tmp_path):
    torch.manual_seed(1)
    m = QFNet(in_channels=1, width=4).train()
    m(torch.rand(4, 1, 40, 40))  # move BN running stats away from defaults
    m.eval()
    path = tmp_path / "w.safetensors"
    save_weights(m, path, {"normalization": {"name": "x"}, "training": {"steps": 3}})
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp file left
    m2, meta = load_qfnet(path)
    assert not m2.training
    assert meta["arch"] == "qfnet" and meta["config"] == m.config and meta["training"] == {"steps": 3}
    x = torch.rand(1, 1, 50, 50)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    # raw metadata values are JSON strings
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        raw = f.metadata()
    assert json.loads(raw["arch"]) == "qfnet"
    state, meta2 = load_weights(path)
    assert set(state) == set(m.state_dict())


def test_weights_bad_inputs(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04not a safetensors file at all")
    with pytest.raises(InputError, match="junk.safetensors"):
        load_qfnet(junk)
    with pytest.raises(InputError, match="not found"):
        load_qfnet(tmp_path / "missing.safetensors")

    class Other(nn.Module):
        arch = "qairn"

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)

    other = tmp_path / "other.safetensors"
    save_weights(Other(), other, {})
    with pytest.raises(InputError, match="architecture"):
        load_qfnet(other)
    # right arch, wrong tensors
    m = QFNet(1, 4)
    bad = tmp_path / "bad.safetensors"
    save_weights(m, bad, {})
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(bad))
    from safetensors import safe_open

    with safe_open(str(bad), "pt") as f:
        meta = f.metadata()
    meta["config"] = json.dumps({"in_channels": 1, "width": 8, "blurpool": False})
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(InputError, match="do not match"):
        load_qfnet(bad)


def test_calibration_map_is_monotone_and_saved(tmp_path):
    cal = {"x": [0.0, 0.5, 1.0], "y": [0.0, 0.8, 1.0]}
    m = QFNet(in_channels=1, width=4, calibration=cal).eval()
    x = torch.rand(2, 1, 44, 44)
    with torch.no_grad():
        raw, out = m.raw_map(x), m(x)
    expect = torch.where(raw < 0.5, raw * 1.6, 0.8 + (raw - 0.5) * 0.4)
    assert torch.allclose(out, expect, atol=1e-6)
    save_weights(m, tmp_path / "c.safetensors", {})
    m2, meta = load_qfnet(tmp_path / "c.safetensors")
    assert meta["config"]["calibration"] == cal
    with torch.no_grad():
        assert torch.equal(m2(x), out)
    with pytest.raises(ValueError):
        QFNet(1, 4, calibration={"x": [0.0, 0.5, 0.4], "y": [0, 1, 1]})
    with pytest.raises(ValueError):
        QFNet(1, 4, calibration={"x": [0.0, 1.0], "y": [1.0, 0.0]})
