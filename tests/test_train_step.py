"""recon.train_step: model adapters (MoDL / VarNet), the physics handed to the loss, the SSDU split as the loss
sees it, fastMRI's batch layouts, the plain-PyTorch example."""
from __future__ import annotations

import pytest
import torch

from examples.tiny_data import make_tiny_dataset
from recon.errors import InputError
from recon.losses import dc_loss
from recon.physics import Sampling, SenseOperator
from recon.train_step import as_batch, batch_physics, build_model, forward_model, load_model, save_model, train_step
from recon.transforms import ModlDataTransform, collate, slice_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), size=32, coils=4, train_files=1, val_files=0)


@pytest.fixture(scope="module")
def batch(tiny):
    ds = slice_dataset(tiny / "train", ModlDataTransform(accelerations=[4.0], calib_width=16, fixed=True))
    return collate([ds[0], ds[1]])


def test_varnet_adapter_matches_varnet_forward(batch):
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
    assert float(dc_loss(batch_physics(batch), batch["masked_kspace"], pred_kspace=pred["pred_kspace"])) < 1.0
    # fastMRI's own layout (VarNetDataTransform: real-view k-space, bool [B, 1, 1, W, 1] mask, no maps): the same
    fm = {"masked_kspace": k, "mask": batch["mask"].unsqueeze(-1).bool(), "target": batch["target"],
          "num_low_frequencies": batch["num_low_frequencies"], "max_value": batch["max_value"].double(),
          "crop_size": [torch.tensor([32, 32]), torch.tensor([32, 32])], "fname": batch["fname"],
          "slice_num": batch["slice_num"]}
    with torch.no_grad():
        again = forward_model(net, fm)
    assert torch.equal(again["output"], pred["output"]) and torch.equal(again["pred_kspace"], pred["pred_kspace"])
    nb = as_batch(fm)
    assert nb["masked_kspace"].is_complex() and nb["mask"].shape == (2, 1, 1, 32) and nb["crop_size"] == (32, 32)
    assert isinstance(batch_physics(nb), Sampling) and isinstance(batch_physics(batch), SenseOperator)


def test_modl_adapter_gives_the_complex_image(batch):
    net = build_model("modl", {"num_unrolls": 2, "cg_iters": 5, "channels": 4})
    with torch.no_grad():
        pred = forward_model(net, batch)
        ref = net(batch["masked_kspace"], batch["mask"], sens_maps=batch["sens_maps"])
    assert torch.allclose(pred["output"][:, 0], ref, atol=1e-5)
    assert pred["image"].is_complex() and pred["image"].shape == (2, 32, 32)
    # untrained MoDL = regularised CG-SENSE: close to the data where sampled
    assert float(dc_loss(batch_physics(batch), batch["masked_kspace"], image=pred["image"])) < 0.05
    # a magnitude-only model on a batch: the DC loss names what it needs instead of failing deep inside
    magnitude_only = torch.nn.Module()
    magnitude_only.forward = lambda k, m, nlf: k.square().sum((1, -1)).sqrt()
    pred = forward_model(magnitude_only, batch)
    assert pred["image"] is None and pred["pred_kspace"] is None and pred["output"].shape == (2, 1, 32, 32)
    with pytest.raises(InputError, match="needs the complex reconstruction"):
        dc_loss(batch_physics(batch), batch["masked_kspace"], image=pred["image"], pred_kspace=pred["pred_kspace"])


def test_ssdu_step_network_sees_theta_loss_sees_lambda(batch):
    seen = {}

    class Spy:
        requires_target = False

        def __call__(self, output, target, **call):
            seen.update(call, target=target)
            return output.mean() * 0 + call["image"].abs().mean()

    net = build_model("modl", {"num_unrolls": 1, "cg_iters": 2, "channels": 4})
    unroll = net.unroll
    net.unroll = lambda y, physics, num_unrolls=None: seen.setdefault("net_physics", physics) and \
        unroll(y, physics, num_unrolls)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    stats = train_step(net, batch, Spy(), opt, mode="ssdu", seeds=[1, 2])
    assert set(stats) == {"loss"} and seen["target"] is None
    assert set(seen) >= {"physics", "y", "image", "pred_kspace", "data_range"}
    lam, theta, omega = seen["physics"].mask, seen["net_physics"].mask, batch["mask"].expand(2, 1, 32, 32)
    assert torch.equal(lam + theta, omega) and float((lam * theta).sum()) == 0
    assert seen["physics"].sens_maps is seen["net_physics"].sens_maps  # the same maps, the two masks
    assert torch.equal(seen["y"], batch["masked_kspace"])  # the loss compares with all acquired data
    assert float(lam.sum()) == pytest.approx(0.4 * float(omega.sum()), abs=2)
    # without SSDU the network and the loss share one physics object, built once for the batch
    seen.clear()
    train_step(net, batch, Spy(), opt, mode="dc")
    assert seen["physics"] is seen["net_physics"] and torch.equal(seen["physics"].mask, batch["mask"])
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
    # issue 20's term in a plain loop: the recon quality model with the k-space check (train_step hands it refit)
    hist = main(["--data", str(tiny), "--tiny-model", "--calib-width", "16", "--steps", "2", "--mode", "dc+qf",
                 "--qf-model", "recon", "--kspace-check"])
    assert len(hist) == 2 and all(set(h) == {"loss", "dc", "qf", "qf.image", "qf.kspace_nmse"} for h in hist)
    assert all(0 < h["qf"] <= 1 and h["qf.kspace_nmse"] > 0 for h in hist)
    assert all(h["loss"] == pytest.approx(h["dc"] + 0.01 * h["qf"], rel=1e-4) for h in hist)
    with pytest.raises(SystemExit, match="--kspace-check needs --qf-model recon"):
        main(["--data", str(tiny), "--kspace-check"])
