"""recon.train_step: model adapters (MoDL / VarNet), the SSDU split as the loss sees it, the plain-PyTorch
example."""
from __future__ import annotations

import pytest
import torch

from examples.tiny_data import make_tiny_dataset
from recon.errors import InputError
from recon.train_step import build_model, forward_model, load_model, save_model, train_step
from recon.transforms import ModlDataTransform, collate, slice_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), size=32, coils=4, train_files=1, val_files=0)


@pytest.fixture(scope="module")
def batch(tiny):
    ds = slice_dataset(tiny / "train", ModlDataTransform(accelerations=[4.0], calib_width=16, fixed=True))
    return collate([ds[0], ds[1]])


def test_varnet_adapter_matches_varnet_forward(batch):
    from mriqa.losses import dc_loss

    torch.manual_seed(0)
    net = build_model("varnet", {"num_cascades": 2, "chans": 4, "pools": 2, "sens_chans": 2, "sens_pools": 2}).eval()
    with torch.no_grad():
        pred = forward_model(net, batch)
        k = torch.view_as_real(batch["masked_kspace"])
        ref = net(k, batch["mask"].unsqueeze(-1).bool(), int(batch["num_low_frequencies"].min()))
    assert pred["output"].shape == (2, 1, 32, 32) and pred["image"] is None
    assert torch.allclose(pred["output"][:, 0], ref, atol=1e-6)
    # the predicted k-space is VarNet's: its RSS is the output, and it agrees with y where sampled up to the
    # soft DC step (a finite relative residual)
    assert pred["pred_kspace"].shape == batch["masked_kspace"].shape
    assert float(dc_loss(batch["masked_kspace"], batch["mask"], pred_kspace=pred["pred_kspace"])) < 1.0


def test_modl_adapter_gives_the_complex_image(batch):
    from mriqa.losses import dc_loss

    net = build_model("modl", {"num_unrolls": 2, "cg_iters": 5, "channels": 4})
    with torch.no_grad():
        pred = forward_model(net, batch)
        ref = net(batch["masked_kspace"], batch["mask"], sens_maps=batch["sens_maps"])
    assert torch.allclose(pred["output"][:, 0], ref, atol=1e-5)
    assert pred["image"].is_complex() and pred["image"].shape == (2, 32, 32)
    # untrained MoDL = regularised CG-SENSE: close to the data where sampled
    assert float(dc_loss(batch["masked_kspace"], batch["mask"], image=pred["image"],
                         sens_maps=batch["sens_maps"])) < 0.05


def test_ssdu_step_network_sees_theta_loss_sees_lambda(batch):
    seen = {}

    class Spy:
        requires_target = False

        def __call__(self, output, target, data_range=None, **rest):
            seen.update(rest, target=target)
            return output.mean() * 0 + rest["image"].abs().mean()

    net = build_model("modl", {"num_unrolls": 1, "cg_iters": 2, "channels": 4})
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    stats = train_step(net, batch, Spy(), opt, mode="ssdu", seeds=[1, 2])
    assert set(stats) == {"loss"} and seen["target"] is None
    lam, theta, omega = seen["mask"], seen["input_mask"], batch["mask"].expand(2, 1, 32, 32)
    assert torch.equal(lam + theta, omega) and float((lam * theta).sum()) == 0
    assert torch.equal(seen["masked_kspace"], batch["masked_kspace"])  # the loss compares with all acquired data
    assert float(lam.sum()) == pytest.approx(0.4 * float(omega.sum()), abs=2)
    with pytest.raises(InputError, match="mode must be one of"):
        train_step(net, batch, Spy(), opt, mode="gan")
    with pytest.raises(InputError, match="needs the reference"):
        train_step(net, {**batch, "target": None}, lambda o, t, **k: o.mean(), opt, mode="supervised")


def test_save_load_varnet_and_modl(tmp_path):
    cfg = {"num_cascades": 1, "chans": 2, "pools": 1, "sens_chans": 2, "sens_pools": 1}
    net = build_model("varnet", cfg)
    save_model(net, tmp_path / "v.safetensors", "varnet", cfg, extra={"mode": "dc"})
    arch, back = load_model(tmp_path / "v.safetensors")
    assert arch == "varnet"
    for (k, a), (_, b) in zip(net.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    m = build_model("modl", {"channels": 4, "num_unrolls": 1})
    save_model(m, tmp_path / "m.safetensors", "modl")
    assert load_model(tmp_path / "m.safetensors")[0] == "modl"
    with pytest.raises(InputError, match="unknown VarNet settings"):
        build_model("varnet", {"cascades": 2})
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "none.safetensors")


def test_plain_pytorch_example_runs(tiny):
    from examples.train_step_example import main

    hist = main(["--data", str(tiny), "--tiny-model", "--calib-width", "16", "--steps", "3", "--mode", "ssdu+qf"])
    assert len(hist) == 3 and all(set(h) == {"loss", "dc", "qf"} for h in hist)
    assert all(h["loss"] == pytest.approx(h["dc"] + 0.01 * h["qf"], rel=1e-4) for h in hist)
