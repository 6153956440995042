"""The scoring API: mriqa.load_predictor and QFPredictor (inputs, shapes, dtypes, batching, errors)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import mriqa
from mriqa import predictor as predictor_mod
from recon.errors import InputError
from mriqa.models import QFNet
from mriqa.normalize import to_unit_range
from mriqa.predictor import QFPredictor, load_predictor
from recon.io.weights import save_weights


def _save_model(path, in_channels=1, seed=0):
    torch.manual_seed(seed)
    net = QFNet(in_channels, width=8)
    # non-trivial BatchNorm statistics, so that the map varies with the content
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.05, 0.5)
    save_weights(net, path, {"note": "random init, for tests"})
    return path


@pytest.fixture(scope="module")
def gray_path(tmp_path_factory):
    return _save_model(tmp_path_factory.mktemp("w") / "gray.safetensors", 1)


@pytest.fixture(scope="module")
def rgb_path(tmp_path_factory):
    return _save_model(tmp_path_factory.mktemp("w") / "rgb.safetensors", 3, seed=1)


@pytest.fixture(scope="module")
def gray(gray_path):
    return load_predictor(gray_path, device="cpu")


@pytest.fixture(scope="module")
def rgb(rgb_path):
    return load_predictor(rgb_path, device="cpu")


def _image(seed=0, shape=(64, 72)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    smooth = 0.5 + 0.3 * np.sin(yy / 5.0) * np.cos(xx / 7.0)
    return np.clip(smooth + 0.1 * rng.standard_normal(shape), 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------------------------ loading
def test_load_by_path_and_lazy_attribute(gray_path):
    qf = mriqa.load_predictor(str(gray_path), device="cpu")
    assert isinstance(qf, QFPredictor)
    assert qf.in_channels == 1 and qf.receptive_field == 28 and qf.output_stride == 4 and qf.min_input_size == 28
    assert not qf.model.training
    assert qf.metadata["note"] == "random init, for tests"
    assert qf.name == str(gray_path)
    assert qf.device == torch.device("cpu")


def test_load_unknown_name_and_bad_file(tmp_path):
    with pytest.raises(InputError, match=r"unknown model 'grey'.*'gray', 'rgb'"):
        load_predictor("grey")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(InputError, match="bad.safetensors"):
        load_predictor(bad)
    with pytest.raises(InputError, match=r"missing.safetensors: weights file not found"):
        load_predictor(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("name,channels", [("gray", 1), ("rgb", 3)])
def test_load_shipped_by_name(name, channels):
    path = predictor_mod.shipped_weights(name)
    if path.is_file():
        qf = load_predictor(name, device="cpu")
        assert qf.in_channels == channels and qf.name == name
        assert 0.0 <= qf.score(_image(shape=(64, 64))) <= 1.0
    else:  # a checkout without trained weights: a clear error, not a traceback
        with pytest.raises(InputError, match=f"shipped '{name}' QF model is not installed"):
            load_predictor(name)


# ------------------------------------------------------------------------------------------------ shapes
def test_map_shape_values_and_types(gray):
    img = _image()
    q = gray.qf_map(img)
    assert isinstance(q, np.ndarray) and q.dtype == np.float32
    assert q.shape == gray.model.output_shape(64, 72) == (10, 12)
    assert q.min() >= 0 and q.max() <= 1 and q.std() > 0
    s = gray.score(img)
    assert isinstance(s, float) and s == pytest.approx(float(q.mean()), abs=1e-6)
    t = gray.qf_map(torch.from_numpy(img))
    assert isinstance(t, torch.Tensor) and t.shape == (10, 12)
    np.testing.assert_allclose(t.numpy(), q, atol=1e-6)


def test_batched_inputs_equal_single_images(gray):
    imgs = np.stack([_image(i) for i in range(3)])  # [3, H, W]
    singles = np.stack([gray.qf_map(im) for im in imgs])
    for batch in (imgs, imgs[:, None], torch.from_numpy(imgs), torch.from_numpy(imgs)[:, None], imgs[..., None]):
        maps = gray.qf_map(batch)
        assert tuple(maps.shape) == (3, 10, 12)
        np.testing.assert_allclose(np.asarray(maps), singles, atol=1e-5)
    scores = gray.score(imgs, pool="center")
    assert isinstance(scores, np.ndarray) and scores.shape == (3,)
    np.testing.assert_allclose(scores, [gray.score(im, pool="center") for im in imgs], atol=1e-6)
    tscores = gray.score(torch.from_numpy(imgs))
    assert isinstance(tscores, torch.Tensor) and tscores.shape == (3,)
    # chunking by batch_size gives the same numbers
    small = QFPredictor(gray.model, device="cpu", batch_size=2)
    np.testing.assert_allclose(small.qf_map(imgs), singles, atol=1e-5)


def test_colour_inputs_and_channel_conversion(gray, rgb):
    rng = np.random.default_rng(0)
    photo = (rng.random((48, 56, 3)) * 255).astype(np.uint8)
    # the gray model scores the BT.601 luma; [H, W, 3] and [1, 3, H, W] are the same image
    luma = np.round(photo @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    assert gray.score(photo) == pytest.approx(gray.score(luma), abs=2e-3)
    chw = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255.0
    assert rgb.score(photo) == pytest.approx(float(rgb.score(chw)[0]), abs=1e-5)
    assert rgb.qf_map(photo).shape == (6, 8)
    # a gray image for the RGB model is repeated to three channels
    g = _image()
    assert rgb.score(g) == pytest.approx(rgb.score(np.repeat(g[..., None], 3, axis=-1)), abs=1e-6)
    # RGBA: alpha dropped
    rgba = np.concatenate([photo, np.full((48, 56, 1), 7, np.uint8)], axis=-1)
    assert rgb.score(rgba) == pytest.approx(rgb.score(photo), abs=1e-6)


# ------------------------------------------------------------------------------------------------ value types
def test_dtypes_and_mri_magnitudes(gray):
    img = _image()
    u8 = np.round(img * 255).astype(np.uint8)
    assert gray.score(u8) == pytest.approx(gray.score(u8 / 255.0), abs=1e-6)
    u16 = (u8.astype(np.uint16) * 257).astype(np.uint16)  # 255 * 257 = 65535
    assert gray.score(u16) == pytest.approx(gray.score(u8), abs=1e-6)
    # MRI magnitude on a scanner scale: windowed by to_unit_range(kind="mri"), so the scale does not matter
    mag = img * 1234.5
    expected = gray.score(to_unit_range(mag, kind="mri"))
    assert gray.score(mag) == pytest.approx(expected, abs=1e-6)
    assert gray.score(mag * 20) == pytest.approx(expected, abs=1e-6)
    # fastMRI-scale magnitudes lie inside [0, 1]: auto takes them as a (dark) photo, kind="mri" windows them
    tiny = img * 1e-4
    assert gray.score(tiny, kind="mri") == pytest.approx(expected, abs=1e-6)
    with pytest.warns(predictor_mod.DarkInputWarning, match="pass kind='mri'"):
        assert gray.score(tiny) != pytest.approx(expected, abs=1e-3)
    # complex input: its magnitude
    assert gray.score(mag.astype(np.complex64) * 1j) == pytest.approx(expected, abs=1e-6)
    # the input is not modified
    before = mag.copy()
    gray.score(mag)
    np.testing.assert_array_equal(mag, before)


# ------------------------------------------------------------------------------------------------ errors
def test_too_small_image_names_sizes(gray):
    with pytest.raises(InputError, match=r"16x16 pixels, smaller than the QF model's minimum input 28x28"):
        gray.score(np.ones((16, 16), np.float32))
    with pytest.raises(InputError, match=r"20x64"):
        gray.qf_map(np.ones((2, 20, 64), np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_are_input_errors(gray, bad):
    img = _image()
    img[5, 7] = bad
    with pytest.raises(InputError, match="NaN or Inf"):
        gray.score(img)
    vol = np.stack([_image(), img])
    with pytest.raises(InputError, match=r"batch\[1\]: image contains NaN or Inf"):
        gray.score(vol)


def test_bad_shapes_and_arguments(gray):
    with pytest.raises(InputError, match="unsupported image shape"):
        gray.score(np.zeros((2, 5, 40, 40)))
    with pytest.raises(InputError, match="unsupported image shape"):
        gray.score(np.zeros((40,)))
    with pytest.raises(InputError, match="unknown pooling"):
        gray.score(_image(), pool="max")
    with pytest.raises(InputError, match="kind must be"):
        gray.score(_image(), kind="ct")


def test_foreground_fallback_warns(gray):
    from mriqa.pooling import PoolingFallbackWarning

    with pytest.warns(PoolingFallbackWarning, match="no foreground"):
        s = gray.score(np.zeros((40, 40), np.uint8), pool="foreground")
    assert s == pytest.approx(gray.score(np.zeros((40, 40), np.uint8)), abs=1e-6)


@pytest.mark.gpu
def test_gpu_matches_cpu(gray_path):
    cpu = load_predictor(gray_path, device="cpu")
    gpu = load_predictor(gray_path, device="cuda")
    imgs = np.stack([_image(i) for i in range(4)])
    np.testing.assert_allclose(gpu.qf_map(imgs), cpu.qf_map(imgs), atol=1e-4)
    t = torch.from_numpy(imgs).cuda()
    assert gpu.score(t).device.type == "cuda"


def test_auto_kind_is_decided_for_the_whole_volume(gray):
    vol = np.stack([_image(0) * 800.0, _image(1) * 0.5])  # a dim end slice whose values happen to be <= 1
    expected = gray.score(vol[1], kind="mri")
    assert gray.score(vol)[1] == pytest.approx(expected, abs=1e-6)
    assert gray.score(vol[1]) != pytest.approx(expected, abs=1e-3)  # alone, it is taken as a photo
    half = torch.from_numpy(_image()).to(torch.bfloat16)
    assert gray.score(half) == pytest.approx(gray.score(half.float().numpy()), abs=1e-6)
