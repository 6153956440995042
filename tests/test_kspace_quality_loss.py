"""ReconQualityLoss(kspace_check=True): the combined score as a training loss (issue 20), the trainers' ``refit``
(recon.train_step.Refit) and how WeightedSum hands it only to the terms that ask for it.

A random-init RQNet stands in for the shipped model; the k-space part is checked against exact numbers (a
network that predicts zeros gets the zero-filled estimate of recon.crossval, one that predicts the truth gets 0).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from examples.tiny_data import make_tiny_dataset
from mriqa.losses import ReconQualityLoss
from mriqa.losses.recon_quality_loss import heldout_nmse
from mriqa.models.reconq import RQNet
from recon.calibration import heldout_layout
from recon.crossval import unmeasured_energy
from recon.errors import InputError
from recon.io.weights import save_weights
from recon.losses import DataConsistencyLoss, WeightedSum
from recon.physics import SenseOperator
from recon.train_step import Refit, build_model, compute_loss
from recon.transforms import ModlDataTransform, collate, slice_dataset


@pytest.fixture(scope="module")
def rq_path(tmp_path_factory):
    torch.manual_seed(0)
    return save_weights(RQNet(width=8).eval(), tmp_path_factory.mktemp("w") / "rq.safetensors")


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = make_tiny_dataset(tmp_path_factory.mktemp("tiny"), size=48, coils=4, train_files=1, val_files=0)
    ds = slice_dataset(root / "train", ModlDataTransform(accelerations=[3.0], calib_width=16, fixed=True))
    return collate([ds[0], ds[1]])


class _Fixed:
    """A Refit stand-in whose network returns a fixed complex image whatever it is given (records its input)."""

    def __init__(self, y, mask, maps, image, seeds=(3, 4)):
        self.y, self.mask, self.sens_maps, self.image, self.seeds = y, mask, maps, image, list(seeds)
        self.kept = None

    def __call__(self, keep):
        self.kept = keep
        return {"output": self.image.abs()[:, None], "image": self.image, "pred_kspace": None}


def _problem(batch):
    """``(y, mask, maps, truth)``: the batch's reference, zero-padded to the k-space size, measured through its maps
    and mask (so ``truth`` predicts every held-out sample exactly)."""
    maps = batch["sens_maps"].to(torch.complex64)
    mask = batch["mask"].float()
    target = batch["target"].to(torch.complex64)
    pad_h, pad_w = maps.shape[-2] - target.shape[-2], maps.shape[-1] - target.shape[-1]
    truth = torch.nn.functional.pad(target, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    return SenseOperator(maps, mask)(truth), mask, maps, truth


def test_heldout_nmse_is_exact_for_zeros_and_for_the_truth(batch):
    y, mask, maps, truth = _problem(batch)
    zeros = _Fixed(y, mask, maps, torch.zeros_like(truth))
    nmse = heldout_nmse(zeros)
    for i in range(y.shape[0]):  # predicting zeros: the relative error is 1, the estimate the missing energy
        k = y[i].numpy()
        points = heldout_layout(k, mask[i].numpy()).points
        energy = np.sum(np.abs(k) ** 2, axis=0)
        missing = unmeasured_energy(k, points).sum()
        assert float(nmse[i]) == pytest.approx(missing / (energy[points].sum() + missing), rel=1e-4)
    # the network was re-run without one fold of the lines outside the centre, and only those
    dropped = (mask - zeros.kept).amax(dim=-2)[:, 0]  # [B, W]
    assert bool((zeros.kept <= mask).all()) and bool((dropped.sum(-1) > 0).all())
    centre = mask.shape[-1] // 2
    assert float(dropped[:, centre - 2:centre + 2].sum()) == 0
    assert np.allclose(heldout_nmse(_Fixed(y, mask, maps, truth)).numpy(), 0, atol=1e-6)
    # the fold is a pure function of the seeds
    again = _Fixed(y, mask, maps, torch.zeros_like(truth))
    heldout_nmse(again)
    assert torch.equal(again.kept, zeros.kept)
    other = _Fixed(y, mask, maps, torch.zeros_like(truth), seeds=(5, 6))
    heldout_nmse(other)
    assert not torch.equal(other.kept, zeros.kept)
    # without seeds (a loop of your own) the fold changes from call to call
    unseeded = _Fixed(y, mask, maps, torch.zeros_like(truth), seeds=())
    kept = []
    for call in (1, 2):
        heldout_nmse(unseeded, call=call)
        kept.append(unseeded.kept)
    assert not torch.equal(kept[0], kept[1])


def test_heldout_nmse_is_the_kspace_checks_estimate_on_the_fold_it_held_out(batch):
    """One formula (recon.crossval.nmse_estimate, per radial band) for the loss and the check: a prediction whose
    relative error grows with the k-space radius (the truth shifted by a pixel: a linear phase) gives the library's
    estimate on the same fold, with the default bands and with one, and the two differ."""
    from recon.crossval import NMSE_BANDS, coil_kspace, nmse_estimate

    y, mask, maps, truth = _problem(batch)
    shifted = torch.roll(truth, 1, dims=-1)
    moved = _Fixed(y, mask, maps, shifted)
    got = {b: heldout_nmse(moved, bands=b).numpy() for b in (1, NMSE_BANDS)}
    assert not np.allclose(got[1], got[NMSE_BANDS], rtol=1e-3)
    for i in range(y.shape[0]):
        k = y[i].numpy()
        points = heldout_layout(k, mask[i].numpy()).points
        held = np.broadcast_to((mask - moved.kept)[i, 0].numpy() > 0, points.shape)
        predicted = coil_kspace(maps[i].numpy(), shifted[i].numpy())
        errors = np.where(held, np.sum(np.abs(predicted - k) ** 2, axis=0), 0.0)
        for b in (1, NMSE_BANDS):
            assert float(got[b][i]) == pytest.approx(nmse_estimate(k, points, errors, held, b)[0], rel=1e-4)


def test_kspace_loss_is_one_minus_the_combined_score(batch, rq_path):
    from mriqa.losses.recon_quality_loss import LOSS_POWER, LOSS_TAU
    from mriqa.recon_quality.kspace import COMBINED_POWER, combined_score

    y, mask, maps, truth = _problem(batch)
    half = _Fixed(y, mask, maps, 0.5 * truth)
    plain = ReconQualityLoss(rq_path, reduction="none")
    loss = ReconQualityLoss(rq_path, reduction="none", kspace_check=True)
    assert loss.needs_refit and not plain.needs_refit
    output = truth.abs()[:, None]
    got = loss(output, refit=half)
    # a training loss's own tau and power (0.02, 0.5), not the ranking's power (0.1): that lets the term be gamed
    assert (loss.tau, loss.power) == (LOSS_TAU, LOSS_POWER) == (0.02, 0.5) and LOSS_POWER != COMBINED_POWER
    want = 1 - combined_score(plain.scores(output).detach().numpy(), heldout_nmse(half).numpy(), tau=LOSS_TAU,
                              power=LOSS_POWER)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-5, atol=1e-6)
    assert set(loss.last) == {"image", "kspace_nmse"} and loss.last["kspace_nmse"] > 0
    pinned = ReconQualityLoss(rq_path, reduction="none", kspace_check=True, tau=0.05, power=1.0)  # a config's own
    want = 1 - combined_score(plain.scores(output).detach().numpy(), heldout_nmse(half).numpy(), tau=0.05, power=1.0)
    np.testing.assert_allclose(pinned(output, refit=half).detach().numpy(), want, rtol=1e-5, atol=1e-6)
    one_band = ReconQualityLoss(rq_path, reduction="none", kspace_check=True, bands=1)  # the rqk configs' estimate
    want = 1 - combined_score(plain.scores(output).detach().numpy(), heldout_nmse(half, bands=1).numpy(),
                              tau=LOSS_TAU, power=LOSS_POWER)
    np.testing.assert_allclose(one_band(output, refit=half).detach().numpy(), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="must be > 0"):
        ReconQualityLoss(rq_path, kspace_check=True, tau=0)
    with pytest.raises(InputError, match="needs refit="):
        loss(output)
    with pytest.raises(InputError, match="not both"):
        ReconQualityLoss(rq_path, data_consistent=True, kspace_check=True)


def test_compute_loss_hands_refit_to_the_term_that_asks_and_trains_through_it(batch, rq_path):
    seen = {}

    def strict_dc(output, target=None, *, physics, y, image, pred_kspace, data_range):  # no **kwargs: no refit
        seen["dc"] = True
        return DataConsistencyLoss()(output, physics=physics, y=y, image=image)

    strict_dc.requires_target = False
    rq = ReconQualityLoss(rq_path, kspace_check=True)
    loss = WeightedSum({"dc": (1.0, strict_dc), "qf": (0.5, rq)})
    assert loss.needs_refit
    torch.manual_seed(0)
    model = build_model("modl", {"num_unrolls": 2, "cg_iters": 3, "channels": 8, "num_layers": 3})
    total, parts = compute_loss(model, batch, loss, mode="dc+qf", seeds=[11, 12])
    assert seen["dc"] and {"dc", "qf", "qf.image", "qf.kspace_nmse"} <= set(parts)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    # the same seeds give the same fold, hence the same loss; the k-space term alone moves the network too
    model.zero_grad()
    again, _ = compute_loss(model, batch, loss, mode="dc+qf", seeds=[11, 12])
    assert float(again.detach()) == pytest.approx(float(total.detach()), rel=1e-6)
    model.zero_grad()
    kspace_only = compute_loss(model, batch, WeightedSum({"qf": rq}), mode="dc+qf", seeds=[11, 12])[0]
    kspace_only.backward()
    assert sum(float(p.grad.abs().sum()) for p in model.parameters() if p.grad is not None) > 0


def test_refit_reconstructs_from_the_samples_it_keeps(batch):
    torch.manual_seed(0)
    model = build_model("modl", {"num_unrolls": 1, "cg_iters": 3, "channels": 8, "num_layers": 3}).eval()
    from recon.train_step import as_batch, forward_model

    b = as_batch(batch)
    refit = Refit(model, b, num_unrolls=1, seeds=[1, 2])
    with torch.no_grad():
        full = refit(b["mask"])["image"]
        direct = forward_model(model, b, num_unrolls=1)["image"]
        keep = b["mask"].clone()
        keep[..., :4] = 0
        keep[..., -4:] = 0
        fewer = refit(keep)["image"]
    torch.testing.assert_close(full, direct)
    assert not torch.allclose(fewer, full)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_lightning_module_gives_the_kspace_term_its_refit(batch, rq_path):
    pytest.importorskip("lightning")
    from recon.pl_module import QualityAwareModule

    torch.manual_seed(0)
    model = build_model("modl", {"num_unrolls": 1, "cg_iters": 3, "channels": 8, "num_layers": 3})
    rq = ReconQualityLoss(rq_path, kspace_check=True)
    module = QualityAwareModule(model, {"dc": (1.0, DataConsistencyLoss()), "qf": (0.1, rq)}, mode="dc+qf")
    total = module.training_step(batch, 0)
    total.backward()
    assert rq.last["kspace_nmse"] > 0 and any(p.grad is not None for p in model.parameters())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lightning_example_trains_varnet_with_the_kspace_checked_term(tmp_path):
    pytest.importorskip("lightning")
    from examples.train_lightning import build, main, parse_args

    argv = ["--make-tiny-data", str(tmp_path / "data"), "--arch", "varnet", "--tiny-model", "--mode", "dc+qf",
            "--qf-model", "recon", "--kspace-check", "--calib-width", "16", "--max-steps", "2"]
    _, loss = build(parse_args(argv))
    assert loss.needs_refit and loss.term("recon").kspace_check
    metrics = main(argv)  # VarNet: the held-out samples are predicted by its own k-space output
    assert metrics["global_step"] == 2 and np.isfinite(metrics["train/loss"])
    assert "train/recon.kspace_nmse" in metrics
    with pytest.raises(SystemExit, match="needs --qf-model recon"):
        main(["--make-tiny-data", str(tmp_path / "d2"), "--kspace-check"])


def test_bench_quality_loss_script_runs(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_quality_loss.py"
    spec = importlib.util.spec_from_file_location("bench_quality_loss", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        results = bench.main(["--size", "48", "--coils", "4", "--unrolls", "1", "--reps", "1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert len(results) == 3 and all(v > 0 for v in results.values())
    assert capsys.readouterr().out.count("x |") == 3
