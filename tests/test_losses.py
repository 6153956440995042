"""The losses: mriqa.losses.QFLoss (normalisation = the predictor's, sign, frozen predictor, gradients, all-zero
input), recon.losses.DataConsistencyLoss on the physics of the call (fastMRI's layouts), recon.losses.WeightedSum
and mriqa's CombinedLoss on it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mriqa.losses import CombinedLoss, QFLoss, dc_plus_qf, qf_loss
from recon.errors import InputError
from recon.fft import fft2c
from recon.losses import DataConsistencyLoss, SupervisedLoss, WeightedSum, dc_loss
from recon.physics import Sampling, SenseOperator


@pytest.fixture(scope="module")
def t1_slice():
    """dipy's real T1 slice (a 2-D magnitude on the scanner's scale), 96 x 96 crop around the head."""
    from recon.demo_data import dipy_t1_slice_path

    img = np.load(dipy_t1_slice_path()).astype(np.float32)
    h, w = img.shape
    return img[h // 2 - 48:h // 2 + 48, w // 2 - 48:w // 2 + 48].copy()


@pytest.fixture(scope="module")
def gray_loss():
    return QFLoss("gray")


def test_qf_loss_equals_one_minus_predictor_score(t1_slice, gray_loss):
    import mriqa

    pred = mriqa.load_predictor("gray", device="cpu")
    rng = np.random.default_rng(0)
    batch = np.stack([t1_slice, t1_slice * 7.5 + rng.normal(0, 20, t1_slice.shape).astype(np.float32)])
    for pool in ("mean", "foreground"):
        expected = pred.score(batch, pool=pool, kind="mri")
        loss = QFLoss(pred, pool=pool, reduction="none")(torch.from_numpy(batch).unsqueeze(1))
        np.testing.assert_allclose(1 - loss.detach().numpy(), expected, atol=2e-5)
    # [B, H, W] real, [B, H, W] complex (magnitude) and [B, 1, H, W] are the same input
    x = torch.from_numpy(batch)
    phase = 1j  # exact: |1j * x| == |x| in float32 (the QF network notices 1/255 rounding flips)
    a = float(gray_loss(x.unsqueeze(1)))
    assert float(gray_loss(x)) == pytest.approx(a, abs=1e-6)
    pos = x.clamp_min(0)  # a complex image's magnitude is never negative (a real one is clipped at 0)
    assert float(gray_loss((pos * phase).to(torch.complex64))) == pytest.approx(a, abs=1e-6)
    # scale-free: the MRI window divides by the 99.5th percentile
    assert float(gray_loss(x.unsqueeze(1) * 1e-4)) == pytest.approx(a, abs=1e-5)
    assert float(qf_loss(x.unsqueeze(1))) == pytest.approx(a, abs=1e-6)


def test_qf_loss_sign_jpeg_worse_and_descent_raises_qf(t1_slice, gray_loss):
    from mriqa.jpeg import jpeg_compress
    from mriqa.normalize import to_unit_range

    unit = to_unit_range(t1_slice, kind="mri")
    low = jpeg_compress(unit, 10)
    clean = float(gray_loss(torch.from_numpy(unit)[None, None]))
    jpeg = float(gray_loss(torch.from_numpy(low.astype(np.float32))[None, None]))
    assert jpeg > clean + 0.05, (jpeg, clean)  # lower is better: the JPEG QF 10 image has the larger loss
    # a few gradient steps on the loss raise the predictor's QF (the sign is handled inside)
    x = torch.from_numpy(low.astype(np.float32))[None, None].clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.01)
    start = float(gray_loss(x).detach())
    for _ in range(5):
        opt.zero_grad()
        gray_loss(x).backward()
        opt.step()
    assert float(gray_loss(x).detach()) < start - 0.01


def test_qf_predictor_frozen_no_grad_eval_mode(t1_slice):
    loss = QFLoss("gray")
    parent = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.ReLU())
    holder = torch.nn.ModuleDict({"net": parent, "loss": loss})
    holder.train()  # must not switch the predictor's batch norm to batch statistics
    assert not loss.net.training and parent.training
    before = {k: v.clone() for k, v in loss.net.state_dict().items()}
    x = torch.from_numpy(t1_slice)[None, None].repeat(2, 1, 1, 1)
    out = parent(x)
    value = loss(out)
    value.backward()
    assert all(not p.requires_grad and p.grad is None for p in loss.net.parameters())
    assert parent[0].weight.grad is not None and float(parent[0].weight.grad.abs().sum()) > 0
    for k, v in loss.net.state_dict().items():
        assert torch.equal(v, before[k]), k  # running stats untouched
    assert loss.requires_target is False
    # target / data_range are ignored (fastMRI-style call)
    assert float(loss(out, out, data_range=torch.ones(2)).detach()) == pytest.approx(float(value.detach()), abs=1e-6)


def test_qf_loss_errors_and_rgb():
    loss = QFLoss("gray")
    with pytest.raises(InputError, match="smaller than the QF model's minimum input 28x28"):
        loss(torch.rand(1, 1, 20, 64))
    with pytest.raises(InputError, match="expects"):
        loss(torch.rand(2, 2, 64, 64))
    zeros = torch.zeros(2, 1, 32, 32, requires_grad=True)  # a network's first steps: legitimate, never raises
    value = loss(zeros)
    value.backward()
    assert torch.isfinite(value) and 0 <= float(value) <= 1 and torch.isfinite(zeros.grad).all()
    mixed = torch.cat([torch.zeros(1, 1, 32, 32), torch.rand(1, 1, 32, 32)])
    assert torch.isfinite(QFLoss("gray", reduction="none")(mixed)).all()
    with pytest.raises(InputError, match="NaN"):
        loss(torch.full((1, 1, 32, 32), float("nan")))
    with pytest.raises(InputError, match="pool"):
        QFLoss("gray", pool="median")
    rgb = QFLoss("rgb")
    img = torch.rand(2, 3, 40, 40, requires_grad=True)
    v = rgb(img)
    v.backward()
    assert v.ndim == 0 and 0 <= float(v) <= 1 and img.grad is not None
    # the gray model on an RGB photo: BT.601 luma, the predictor's own rule
    import mriqa

    pred = mriqa.load_predictor("gray", device="cpu")
    photo = (np.random.default_rng(1).random((40, 40, 3)) * 255).astype(np.uint8)
    expected = pred.score(photo, kind="photo")
    got = 1 - float(loss(torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255))
    assert got == pytest.approx(expected, abs=2e-5)


def _sense_data(b=2, c=4, h=24, w=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, h, w, generator=g, dtype=torch.complex64)
    s = torch.randn(b, c, h, w, generator=g, dtype=torch.complex64)
    mask = (torch.rand(b, 1, 1, w, generator=g) < 0.5).float()
    mask[..., w // 2] = 1
    y = fft2c(s * x.unsqueeze(1)) * mask
    return x, s, mask, y


def test_dc_loss_zero_for_consistent_image_and_normalised():
    x, s, mask, y = _sense_data()
    physics = SenseOperator(s, mask)
    loss = DataConsistencyLoss()
    assert float(loss(x.abs().unsqueeze(1), None, physics=physics, y=y, image=x)) < 1e-10
    # value: residual energy on the acquired samples / energy of the data, per sample
    x2 = x + 0.1 * torch.randn_like(x)
    per = dc_loss(physics, y, image=x2, reduction="none")
    k2 = fft2c(s * x2.unsqueeze(1))
    manual = (((k2 - y) * mask).abs() ** 2).sum((1, 2, 3)) / (y.abs() ** 2).sum((1, 2, 3))
    assert torch.allclose(per, manual, rtol=1e-5)
    # scale invariance (per-sample normalisation); pred_kspace = the same thing in k-space, on a Sampling physics
    # (no maps) and on fastMRI's layouts: real-view k-space, bool [B, 1, 1, W, 1] mask
    assert torch.allclose(dc_loss(physics, y * 1e3, image=x2 * 1e3, reduction="none"), per, rtol=1e-4)
    assert torch.allclose(dc_loss(physics, y, pred_kspace=k2, reduction="none"), per, rtol=1e-5)
    fastmri_mask = mask.bool().unsqueeze(-1)
    sampling = Sampling(fastmri_mask, y.shape)
    got = dc_loss(sampling, torch.view_as_real(y), pred_kspace=torch.view_as_real(k2), reduction="none")
    assert torch.allclose(got, per, rtol=1e-5)
    # unsampled k-space does not count: changing the prediction only there leaves the loss at 0
    hole = fft2c(s * x.unsqueeze(1)) + 5.0 * (1 - mask)
    assert float(dc_loss(sampling, y, pred_kspace=hole)) < 1e-10
    # gradient reaches the image
    x3 = x2.clone().requires_grad_(True)
    dc_loss(physics, y, image=x3).backward()
    assert x3.grad is not None and float(x3.grad.abs().sum()) > 0
    # SSDU's normalised l1-l2 variant
    assert float(DataConsistencyLoss(norm="l1l2")(None, physics=physics, y=y, image=x)) < 1e-4
    # legitimate all-zero tensors never raise: a zero prediction scores 1, an empty mask 0 (nothing to compare)
    assert float(dc_loss(physics, y, image=torch.zeros_like(x))) == pytest.approx(1.0)
    empty = SenseOperator(s, torch.zeros_like(mask))
    assert float(dc_loss(empty, y, image=x2)) == 0.0
    assert float(dc_loss(physics, torch.zeros_like(y), image=torch.zeros_like(x))) == 0.0


def test_dc_loss_errors():
    x, s, mask, y = _sense_data()
    physics = SenseOperator(s, mask)
    loss = DataConsistencyLoss()
    with pytest.raises(InputError, match="needs the complex reconstruction"):
        loss(x.abs().unsqueeze(1), physics=physics, y=y)
    with pytest.raises(InputError, match="needs physics"):
        loss(x.abs().unsqueeze(1), y=y, image=x)
    with pytest.raises(InputError, match="does not match"):
        loss(None, physics=physics, y=y[:, :2], image=x)
    with pytest.raises(InputError, match="a magnitude has no phase"):
        loss(None, physics=physics, y=y, image=x.abs())
    with pytest.raises(InputError, match="needs coil maps"):
        loss(None, physics=Sampling(mask, y.shape), y=y, image=x)
    with pytest.raises(InputError, match="expected shape"):
        loss(None, physics=physics, y=y, image=x[:, :-1])


def test_weighted_sum_and_combined_loss(t1_slice):
    x, s, mask, y = _sense_data(b=2, h=40, w=40)
    x = x + 3  # non-zero mean, so the magnitude window is defined
    physics = SenseOperator(s, mask)
    combo = dc_plus_qf(qf_weight=0.5)
    noisy = x + 0.2 * torch.randn_like(x)
    call = dict(physics=physics, y=y, image=noisy, pred_kspace=None, data_range=None)
    total = combo(noisy.abs().unsqueeze(1), None, **call)
    dc = DataConsistencyLoss()(None, **call)
    qf = QFLoss("gray")(noisy.abs().unsqueeze(1))
    assert float(total) == pytest.approx(float(dc) + 0.5 * float(qf), rel=1e-5)
    assert combo.last == pytest.approx({"dc": float(dc), "qf": float(qf)}, rel=1e-5)
    assert combo.requires_target is False and isinstance(combo, WeightedSum)
    # the supervised term gets the target, the reference-free ones do not
    seen = {}

    def spy(output, target=None, **kw):
        seen["target"] = target
        return output.mean()

    spy.requires_target = False
    both = WeightedSum({"l1": (2.0, SupervisedLoss(1.0, 0.0)), "spy": spy})
    out, tgt = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    value = both(out, tgt, **call)
    assert seen["target"] is None and both.requires_target is True
    assert float(value) == pytest.approx(2 * float((out - tgt).abs().mean()) + float(out.mean()), rel=1e-6)
    assert CombinedLoss({"l1": 1.0, "dc": 1.0}).requires_target is True
    assert set(CombinedLoss({"dc": 1.0, "qf": 0.0}).weights) == {"dc"}  # weight 0: not built
    with pytest.raises(InputError, match="unknown loss term"):
        CombinedLoss({"lpips": 1.0})
    with pytest.raises(InputError, match="not all 0"):
        CombinedLoss({"dc": 0.0})
    with pytest.raises(InputError, match="scalar tensor"):
        WeightedSum({"bad": lambda o, t=None, **k: o})(out, None, **call)
