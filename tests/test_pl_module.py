"""recon.pl_module: fastMRI's VarNet trained through the Lightning module with QFLoss + DataConsistencyLoss on
small fastMRI-format h5 files (read by fastmri.data.SliceDataset + our transform)."""
from __future__ import annotations

import math

import pytest
import torch

L = pytest.importorskip("lightning", reason="the lightning extra (in the test extra: pip install -e '.[test]')")

from examples.tiny_data import make_tiny_dataset  # noqa: E402
from mriqa.losses import CombinedLoss, QFLoss  # noqa: E402
from recon.errors import InputError  # noqa: E402
from recon.pl_module import QualityAwareModule, fastmri_dataloader  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), size=32, coils=4)


def test_varnet_lightning_dc_plus_qf(tiny):
    from fastmri.models import VarNet

    torch.manual_seed(0)
    model = VarNet(num_cascades=2, chans=4, pools=2, sens_chans=2, sens_pools=2)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    qf = QFLoss("gray")
    qf_init = {k: v.clone() for k, v in qf.net.state_dict().items()}
    module = QualityAwareModule(model, CombinedLoss({"dc": 1.0, "qf": 0.05}, losses={"qf": qf}), mode="dc+qf",
                                lr=1e-3)
    train = fastmri_dataloader(tiny / "train", accelerations=[4.0], train=True, calib_width=16)
    val = fastmri_dataloader(tiny / "val", accelerations=[4.0], train=False, calib_width=16)
    assert len(train.dataset) == 4  # 2 files x 2 slices, read by fastmri.data.SliceDataset
    trainer = L.Trainer(max_steps=4, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, train, val)
    assert trainer.global_step == 4
    m = {k: float(v) for k, v in trainer.callback_metrics.items()}
    for key in ("train/loss", "train/dc", "train/qf", "val/psnr", "val/ssim", "val/dc"):
        assert key in m and math.isfinite(m[key]), (key, m)
    assert m["train/loss"] == pytest.approx(m["train/dc"] + 0.05 * m["train/qf"], rel=1e-4)
    assert 0 < m["train/qf"] < 1 and m["val/psnr"] > 5
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, init[k])]
    assert len(changed) > 10  # the cascades and the sensitivity U-Net were trained
    # the QF predictor: frozen, no gradient, eval mode, weights untouched
    assert not qf.net.training and all(not p.requires_grad and p.grad is None for p in qf.net.parameters())
    for k, v in qf.net.state_dict().items():
        assert torch.equal(v, qf_init[k]), k
    # the optimiser only holds the reconstruction network's parameters
    opt = trainer.optimizers[0]
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in model.parameters())


def test_module_rejects_unknown_mode():
    with pytest.raises(InputError, match="mode must be one of"):
        QualityAwareModule(torch.nn.Linear(1, 1), lambda *a, **k: 0, mode="gan")
