"""recon.train modes (issue 6): dc, ssdu, dc+qf, ssdu+qf with MoDL, VarNet through the trainer, config errors.
The supervised mode is covered by test_train_recon.py (unchanged behaviour)."""
from __future__ import annotations

import pytest
import torch

from examples.tiny_data import make_tiny_dataset
from recon.errors import InputError
from recon.losses import dc_loss
from recon.train import Trainer, load_config, train


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), size=32, coils=4, train_files=1, val_files=1)


QF_LOSS = {"factory": "mriqa.losses:QFLoss", "kwargs": {"model": "gray", "pool": "mean"}}


def _cfg(root, out, mode, arch="modl", val=True, **train):
    if mode.endswith("+qf"):
        train.setdefault("qf_loss", QF_LOSS)  # recon names no quality loss of its own
    cfg = {"name": f"t-{mode}", "out_dir": str(out), "arch": arch,
           "data": {"root": str(root), "train_split": "train", "val_split": "val", "accelerations": [4.0, 6.0],
                    "mask_types": ["random"], "calib_width": 16, "cache_dir": str(root / "cache"),
                    "val_accelerations": [4.0] if val else [], "val_max_slices": 1},
           "model": ({"num_unrolls": 2, "cg_iters": 3, "channels": 4} if arch == "modl" else
                     {"num_cascades": 1, "chans": 2, "pools": 1, "sens_chans": 2, "sens_pools": 1}),
           "train": {"mode": mode, "batch_size": 1, "stages": [{"num_unrolls": 1, "steps": 2}],
                     "val_every": 2, "ckpt_every": 1, "num_threads": None, **train}}
    return cfg


def _terms(row):
    return {k for k in row if k.startswith("loss_")}


def test_reference_free_modes_log_terms_and_never_see_the_target(root, tmp_path):
    dc = train(_cfg(root, tmp_path / "dc", "dc", val=False, val_every=1), progress=False)
    assert [_terms(r) for r in dc.history] == [{"loss_dc"}, {"loss_dc"}]
    qf = train(_cfg(root, tmp_path / "dcqf", "dc+qf", val=False, qf_weight=0.5, val_every=1), progress=False)
    for r in qf.history:
        assert _terms(r) == {"loss_dc", "loss_qf"}
        assert r["train_loss"] == pytest.approx(r["loss_dc"] + 0.5 * r["loss_qf"], rel=1e-5)
    assert qf.loss.requires_target is False
    # the same first step of dc and dc+qf: identical DC term (same data, same init)
    assert qf.history[0]["loss_dc"] == pytest.approx(dc.history[0]["loss_dc"], rel=1e-5)
    assert (tmp_path / "dcqf" / "final.safetensors").is_file()
    from recon.modl import weights_metadata

    assert weights_metadata(tmp_path / "dcqf" / "final.safetensors")["extra"]["mode"] == "dc+qf"
    zero = Trainer(_cfg(root, tmp_path / "z", "dc+qf", qf_weight=0.0), progress=False)
    assert set(zero.loss.weights) == {"dc"}  # weight 0: the QF term is not even built
    # the quality term injected instead of named (recon names none of its own)
    from mriqa.losses import QFLoss

    qf_term = QFLoss("gray")
    injected = Trainer(_cfg(root, tmp_path / "inj", "dc+qf", qf_loss=None), qf_loss=qf_term, progress=False)
    assert injected.loss.term("qf") is qf_term


def test_ssdu_mode_splits_per_step_and_resumes_identically(root, tmp_path):
    seen = []

    class Spy:
        requires_target = False

        def __call__(self, output, target, *, physics, y, image, **_):
            seen.append((target, physics.mask.clone()))
            return dc_loss(physics, y, image=image)

    t = train(_cfg(root, tmp_path / "s", "ssdu"), loss=Spy(), progress=False)
    assert t.step == 2 and all(s[0] is None for s in seen)
    l0, l1 = seen[0][1], seen[1][1]
    assert not torch.equal(l0, l1)  # a new split each step (Lambda and Theta disjoint: test_train_step.py)
    # the split is a function of (seed, step, slice): a fresh trainer makes the same first split
    seen.clear()
    train(_cfg(root, tmp_path / "s2", "ssdu"), loss=Spy(), progress=False, stop_after=1)
    assert torch.equal(seen[0][1], l0)
    # the configured ssdu+qf loss runs
    sq = train(_cfg(root, tmp_path / "sq", "ssdu+qf", qf_weight=0.1), progress=False)
    assert _terms(sq.history[-1]) == {"loss_dc", "loss_qf"}


def test_varnet_through_the_trainer(root, tmp_path):
    from recon.train_step import load_model

    t = train(_cfg(root, tmp_path / "v", "dc+qf", arch="varnet"), progress=False)
    assert t.step == 2 and "psnr_R4" in t.history[-1]
    arch, model = load_model(tmp_path / "v" / "final.safetensors")
    assert arch == "varnet" and len(model.cascades) == 1


def test_mode_config_errors(root, tmp_path):
    with pytest.raises(InputError, match="train.mode must be one of"):
        load_config(_cfg(root, tmp_path, "gan"))
    with pytest.raises(InputError, match="arch must be"):
        load_config(_cfg(root, tmp_path, "dc", arch="unet"))
    with pytest.raises(InputError, match="qf_weight"):
        load_config(_cfg(root, tmp_path, "dc+qf", qf_weight=-1))
    with pytest.raises(InputError, match="needs train.qf_loss"):
        Trainer(_cfg(root, tmp_path, "dc+qf", qf_loss=None), progress=False)
    with pytest.raises(InputError, match="must be reference-free"):
        Trainer(_cfg(root, tmp_path, "dc", dc_loss={"factory": "recon.losses:SupervisedLoss"}), progress=False)
    for name in ("dc", "ssdu", "dc-qf", "ssdu-qf"):  # the shipped configs parse
        cfg = load_config(f"configs/modl-{name}.yaml")
        assert cfg["train"]["mode"] == name.replace("-", "+") and cfg["init"] is None
