"""The fastMRI plug-in (issue 23): fastMRI's VarNet on fastMRI's own batches (SliceDataset + VarNetDataTransform +
default collate) with QFLoss + the DC loss, in a plain loop and in Lightning 2 (examples/fastmri_varnet.py); the
losses take fastMRI's layouts as they come and never raise on legitimate tensors."""
from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("lightning", reason="the lightning extra (in the test extra: pip install -e '.[test]')")

from examples import fastmri_varnet  # noqa: E402
from examples.tiny_data import make_tiny_dataset  # noqa: E402
from recon.errors import InputError  # noqa: E402
from recon.losses import dc_loss  # noqa: E402
from recon.train_step import as_batch, batch_physics, forward_model, train_step  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("fastmri"), size=32, coils=4)


@pytest.fixture(scope="module")
def fastmri_batch(root):
    train, _ = fastmri_varnet.loaders(root, batch_size=2, seed=0)
    return next(iter(train))


def test_fastmri_batch_layout_goes_in_as_it_comes(fastmri_batch):
    from fastmri.data.transforms import VarNetSample

    b = fastmri_batch
    assert isinstance(b, VarNetSample) and b.masked_kspace.shape == (2, 4, 32, 32, 2)
    assert b.mask.dtype == torch.bool and b.mask.shape == (2, 1, 1, 32, 1)
    args = fastmri_varnet.parse_args([])
    model, loss = fastmri_varnet.build(args)
    with torch.no_grad():
        pred = forward_model(model, b)
        # VarNet's own forward (RSS magnitude only; it takes one num_low_frequencies, the adapter its batch min)
        ref = model(b.masked_kspace, b.mask, int(b.num_low_frequencies.min()))
    assert torch.allclose(pred["output"][:, 0], ref, atol=1e-6)
    physics = batch_physics(as_batch(b))
    assert physics.mask.shape == (2, 1, 1, 32) and physics.in_shape == (2, 4, 32, 32)
    # the DC loss on VarNet's own k-space, y and mask as fastMRI made them
    value = dc_loss(physics, b.masked_kspace, pred_kspace=pred["pred_kspace"])
    assert math.isfinite(float(value)) and float(value) < 1.0
    # legitimate tensors never raise: an all-zero network output scores finite values in every term
    zero = {"output": torch.zeros_like(pred["output"]), "pred_kspace": torch.zeros_like(pred["pred_kspace"])}
    total = loss(zero["output"], None, physics=physics, y=b.masked_kspace, image=None,
                 pred_kspace=zero["pred_kspace"], data_range=b.max_value)
    assert math.isfinite(float(total)) and loss.last["dc"] == pytest.approx(1.0)
    # a magnitude-only model: a clear InputError naming what to pass, not a RuntimeError from deep inside
    only_rss = torch.nn.Module()
    only_rss.forward = lambda k, m, nlf: k.square().sum((1, -1)).sqrt()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with pytest.raises(InputError, match="needs the complex reconstruction"):
        train_step(only_rss, b, loss, opt, mode="dc+qf")


def test_example_trains_varnet_plain_and_lightning(root, tmp_path):
    result = fastmri_varnet.main(["--size", "0", "--data", str(root), "--steps", "3", "--qf-weight", "0.05"])
    plain, lightning = result["plain"], result["lightning"]
    assert len(plain) == 3
    for stats in plain:
        assert set(stats) == {"loss", "dc", "qf"} and all(math.isfinite(v) for v in stats.values())
        assert stats["loss"] == pytest.approx(stats["dc"] + 0.05 * stats["qf"], rel=1e-4)
        assert 0 < stats["qf"] < 1
    assert lightning["global_step"] == 3
    for key in ("train/loss", "train/dc", "train/qf", "val/dc", "val/psnr", "val/ssim"):
        assert key in lightning and math.isfinite(lightning[key]), (key, lightning)
    assert lightning["train/loss"] == pytest.approx(lightning["train/dc"] + 0.05 * lightning["train/qf"], rel=1e-4)
    # the plain loop's calls are train_step's: the same first step gives the same loss
    args = fastmri_varnet.parse_args(["--size", "0", "--data", str(root)])
    train, _ = fastmri_varnet.loaders(root, 2, 0)
    model, loss = fastmri_varnet.build(args)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = train_step(model, next(iter(train)), loss, opt, mode="dc+qf")
    assert first["loss"] == pytest.approx(plain[0]["loss"], rel=1e-5)
