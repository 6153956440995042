"""AR-CNN / SR-CNN backbones (their reference-free trainer: tests/test_train_ar.py)."""
from __future__ import annotations

import pytest
import torch

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


def test_every_weights_failure_is_one_line_naming_the_file(tmp_path):
    """recon.io.weights.load_network, which the ARCNN, QAIRN and scoring-model loaders share."""
    from safetensors.torch import save_file

    m = ARCNN(1, "srcnn", residual=False)
    path = save_weights(m, tmp_path / "w.safetensors")
    state = {k: v.contiguous() for k, v in m.state_dict().items()}
    cases = {
        "no config": ({"arch": '"arcnn"', "config": '"none"'}, state, "has no ARCNN 'config'"),
        "bad config": ({"arch": '"arcnn"', "config": '{"in_channels": 2}'}, state, "bad ARCNN config in metadata"),
        "other tensors": ({"arch": '"arcnn"', "config": '{"in_channels": 3}'}, state,
                          "tensors do not match the ARCNN config"),
    }
    for name, (meta, tensors, message) in cases.items():
        bad = tmp_path / f"{name.replace(' ', '-')}.safetensors"
        save_file(tensors, str(bad), metadata=meta)
        with pytest.raises(InputError, match=message) as info:
            load_arcnn(bad)
        assert str(info.value).startswith(str(bad)) and "\n" not in str(info.value)
    assert load_arcnn(path)[0].config == m.config
