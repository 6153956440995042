"""AR-CNN / SR-CNN backbones and the reference-free artifact-removal trainer (L1 consistency + QF loss)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_qairn import _photos  # tests/ is on sys.path under pytest

from recon.errors import InputError
from mriqa.models.arcnn import ARCNN, load_arcnn
from recon.io.weights import save_weights


@pytest.mark.parametrize("variant,kernels,widths,rf", [("arcnn", [9, 7, 1, 5], [64, 32, 16], 19),
                                                        ("srcnn", [9, 1, 5], [64, 32], 13)])
@pytest.mark.parametrize("c", [1, 3])
def test_layouts_shapes_and_identity_at_init(variant, kernels, widths, rf, c):
    m = ARCNN(c, variant)
    convs = [l for l in m.body if isinstance(l, torch.nn.Conv2d)]
    assert [v.kernel_size[0] for v in convs] == kernels
    assert [v.out_channels for v in convs] == widths + [c]
    assert m.receptive_field == rf
    x = torch.rand(2, c, 23, 30)
    y = m(x)
    assert y.shape == x.shape and torch.equal(y, x)  # residual, zero-initialised last layer
    plain = ARCNN(c, variant, residual=False)
    assert plain(x).shape == x.shape and not torch.allclose(plain(x), x)
    with pytest.raises(ValueError):
        m(torch.rand(2, 4 - c if c == 3 else 3, 20, 20))


def test_bad_config_and_weights_round_trip(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        ARCNN(3, "vdsr")
    with pytest.raises(ValueError, match="in_channels"):
        ARCNN(2)
    torch.manual_seed(0)
    m = ARCNN(1, "srcnn", residual=False)
    p = save_weights(m, tmp_path / "w.safetensors", {"note": "x"})
    m2, meta = load_arcnn(p)
    assert meta["config"] == {"in_channels": 1, "variant": "srcnn", "residual": False}
    x = torch.rand(1, 1, 16, 16)
    assert torch.equal(m2(x), m.eval()(x))
    from mriqa.models.qairn import QAIRN

    save_weights(QAIRN(channels=[4, 4, 4, 4], n_res=0, att_hidden=2), tmp_path / "q.safetensors")
    with pytest.raises(InputError, match="architecture"):
        load_arcnn(tmp_path / "q.safetensors")


def test_undersample_full_sampling_is_identity_and_r4_aliases():
    from mriqa.train_ar import undersample

    rng = np.random.default_rng(0)
    img = np.zeros((32, 32), np.float32)
    img[8:24, 10:22] = rng.random((16, 12))
    assert np.allclose(undersample(img, 1.0, seed=0), img, atol=1e-5)
    zf = undersample(img, 4.0, seed=0)
    assert zf.shape == img.shape and zf.min() >= 0 and not np.allclose(zf, img, atol=1e-2)




@pytest.mark.parametrize("w", [0.0, 0.5])
def test_two_steps_of_reference_free_training(tmp_path, w):
    from mriqa.train_ar import load_config, train

    data = _photos(tmp_path / "photos", n=2, size=(56, 60))
    cfg = load_config(None, model={"in_channels": 3, "variant": "srcnn", "residual": True},
                      data={"train": [{"type": "images", "path": str(data)}]},
                      loss={"qf_weight": w, "qf_model": "rgb"},
                      train={"steps": 2, "batch": 2, "patch": 32, "lr": 1e-3, "log_every": 1,
                             "checkpoint_every": 1}, output_dir=str(tmp_path / "run"))
    s = train(cfg, log=lambda *_: None)
    assert s["step"] == 2
    model, meta = load_arcnn(tmp_path / "run" / "final.safetensors")
    assert meta["training"]["config"]["loss"]["qf_weight"] == w
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        same = torch.equal(model(x), x)
    # L1 consistency alone keeps the identity (zero subgradient at output == input); the QF term moves it
    assert same == (w == 0.0)
    again = train(cfg, log=lambda *_: None)  # resumes at the end: nothing to do
    assert again["step"] == 2
