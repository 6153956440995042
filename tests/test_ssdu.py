"""recon.ssdu: SSDU split of the acquired samples (disjoint, ratio, centre kept in Theta, variable density,
deterministic by seed)."""
from __future__ import annotations

import pytest
import torch

from recon.errors import InputError
from recon.masks import make_mask
from recon.ssdu import split_batch, ssdu_split

H, W = 96, 128


def _line_mask(r=4.0, seed=0):
    return make_mask("random", (H, W), r, seed=seed)


def test_points_split_disjoint_ratio_acs_kept_deterministic():
    sm = _line_mask()
    omega = sm.mask.expand(1, H, W)
    theta, lam = ssdu_split(omega, ratio=0.4, seed=3)
    assert theta.shape == lam.shape == (1, H, W)
    assert torch.equal(theta + lam, omega) and float((theta * lam).sum()) == 0  # a partition of Omega
    assert float(lam.sum()) == pytest.approx(round(0.4 * float(omega.sum())), abs=0)
    # the ACS columns are all in Theta
    n = sm.num_low_frequencies
    col = sm.mask.reshape(-1).numpy() > 0
    lo = W // 2
    while col[lo - 1]:
        lo -= 1
    assert float(lam[..., lo:lo + n].sum()) == 0 and float(theta[..., lo:lo + n].sum()) == H * n
    # deterministic by seed, different for another seed
    assert torch.equal(ssdu_split(omega, 0.4, seed=3)[1], lam)
    assert not torch.equal(ssdu_split(omega, 0.4, seed=4)[1], lam)
    # variable density: Lambda's share of Omega is higher near the centre than in the periphery
    rows = torch.arange(H).reshape(H, 1).float()
    near = ((rows - H / 2).abs() < H / 8).float()
    frac_near = float((lam[0] * near).sum() / (omega[0] * near).sum())
    frac_far = float((lam[0] * (1 - near)).sum() / (omega[0] * (1 - near)).sum())
    assert frac_near > 1.3 * frac_far, (frac_near, frac_far)


def test_lines_split_and_other_ratios_and_blocks():
    sm = _line_mask(8.0, seed=1)
    theta, lam = ssdu_split(sm.mask, ratio=0.25, seed=0, selection="lines")
    assert theta.shape == (1, 1, W)
    assert torch.equal(theta + lam, sm.mask) and set(lam.unique().tolist()) <= {0.0, 1.0}
    assert float(lam.sum()) == round(0.25 * float(sm.mask.sum()))
    # the paper's small centre block instead of the whole ACS
    omega = sm.mask.expand(1, H, W)
    _, lam_b = ssdu_split(omega, ratio=0.4, seed=0, keep_center=(4, 4))
    assert float(lam_b[0, H // 2 - 2:H // 2 + 2, W // 2 - 2:W // 2 + 2].sum()) == 0
    # 2-D (Poisson) masks
    pm = make_mask("poisson", (H, W), 4.0, seed=0)
    t2, l2 = ssdu_split(pm.mask, 0.4, seed=0)
    assert torch.equal(t2 + l2, pm.mask.expand(1, H, W)) and float(l2.sum()) > 0


def test_split_batch_and_errors():
    masks = torch.stack([_line_mask(seed=0).mask, _line_mask(seed=1).mask])  # [2, 1, 1, W]
    theta, lam = split_batch(masks, H, seeds=[1, 2])
    assert theta.shape == (2, 1, H, W)
    assert torch.equal(theta + lam, masks.expand(2, 1, H, W))
    with pytest.raises(InputError, match="ratio"):
        ssdu_split(masks[0], ratio=1.0)
    with pytest.raises(InputError, match="selection"):
        ssdu_split(masks[0], selection="random")
    with pytest.raises(InputError, match="2-D mask"):
        ssdu_split(masks[0], selection="points")
    with pytest.raises(InputError, match="seeds"):
        split_batch(masks, H, seeds=[1])
    with pytest.raises(InputError, match="no acquired"):
        only_acs = torch.zeros(1, 1, W)
        only_acs[..., W // 2 - 4:W // 2 + 4] = 1
        ssdu_split(only_acs.expand(1, H, W), 0.4)


def _consistent_batch(r=4.0, seed=0):
    """Noise-free multi-coil data exactly consistent with (x, S): y = M F S x; maps 0 on a border (no support)."""
    from recon.fft import fft2c

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, H, W, dtype=torch.complex64, generator=g)
    maps = torch.randn(1, 4, H, W, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().square().sum(1, keepdim=True).sqrt()
    maps[..., :8, :] = 0  # outside the maps' support
    sm = _line_mask(r, seed=seed)
    full = fft2c(maps * x[:, None])
    return x, sm, {"masked_kspace": full * sm.mask, "mask": sm.mask[None], "sens_maps": maps,
                   "slice_num": torch.tensor([0])}


def test_ssdu_lambda_loss_is_zero_for_the_true_image_and_one_for_zero():
    """The loss batch of recon.train_step.ssdu_inputs gives the DC loss the acquired y and a physics with a float
    Lambda mask [B, 1, H, W] outside the ACS and the model's maps: the true complex image scores ~0, the zero
    image 1."""
    from recon.losses import dc_loss
    from recon.train_step import batch_physics, ssdu_inputs

    x, sm, batch = _consistent_batch()
    net, lb = ssdu_inputs(batch, [5], ratio=0.4, selection="points", std_scale=4.0, keep_center="acs")
    lam, theta = lb["mask"], net["mask"]
    assert lam.dtype == theta.dtype == torch.float32 and lam.shape == (1, 1, H, W)
    assert torch.equal(lam + theta, batch["mask"].expand(1, 1, H, W))
    assert torch.equal(net["masked_kspace"], batch["masked_kspace"] * theta)
    assert torch.equal(lb["masked_kspace"], batch["masked_kspace"]) and torch.equal(lb["sens_maps"], batch["sens_maps"])
    col = sm.mask.reshape(-1).numpy() > 0
    lo = W // 2
    while col[lo - 1]:
        lo -= 1
    assert float(lam[..., lo:lo + sm.num_low_frequencies].sum()) == 0
    physics = batch_physics(lb)
    assert torch.equal(physics.mask, lam) and physics.sens_maps is lb["sens_maps"]
    kw = dict(physics=physics, y=lb["masked_kspace"])
    assert float(dc_loss(image=x, **kw)) < 1e-10
    assert float(dc_loss(image=torch.zeros_like(x), **kw)) == pytest.approx(1.0)
    # a magnitude-only image (phase lost) is far from consistent
    assert float(dc_loss(image=x.abs().to(x.dtype), **kw)) > 0.5
    # the DC loss is blind outside the maps' support: what MoDL's background fill puts there is unconstrained
    # by a reference-free loss (hence no learned fill in the DC / SSDU configs: 0 or the measured noise floor)
    bump = torch.zeros_like(x)
    bump[:, :8, :] = 10.0
    assert float(dc_loss(image=x + bump, **kw)) < 1e-10


def test_reference_free_configs_turn_off_the_learned_background_fill():
    from recon.modl import MoDL
    from recon.train import load_config

    for name in ("ssdu", "dc", "ssdu-qf", "dc-qf"):
        cfg = load_config(f"configs/modl-{name}.yaml")
        assert MoDL(cfg["model"]).config.background_mode in ("zero", "noise_floor"), name
