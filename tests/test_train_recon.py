"""recon.train / mriqa train-recon: resumable training on the shared step loop, the loss call, outputs, config
errors, --set."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import yaml

from recon.errors import InputError
from recon.fft import fft2c_np, ifft2c_np
from recon.io.fastmri_h5 import write_fastmri_h5
from recon.losses import SupervisedLoss
from recon.train import Trainer, build_loss, load_config, train

H = W = 32
C = 1  # single-coil (maps of ones): no ESPIRiT, so the file stays fast; multi-coil maps are tested in test_transforms


def _volume(path, seed: int, slices: int = 2):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1:1:H * 1j, -1:1:W * 1j]
    img = np.stack([((yy / 0.8) ** 2 + (xx / (0.5 + 0.1 * s)) ** 2 < 1) * (1 + 0.3 * np.cos(4 * yy + seed))
                    for s in range(slices)]).astype(np.complex64)
    angles = np.linspace(0, 2 * np.pi, C, endpoint=False)
    maps = np.stack([np.exp(-((yy - np.sin(a)) ** 2 + (xx - np.cos(a)) ** 2)) * np.exp(1j * a) for a in angles])
    maps = maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    k = fft2c_np(img[:, None] * maps[None])
    k = (k + 0.01 * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))).astype(np.complex64)
    write_fastmri_h5(path, k, reconstruction_rss=np.sqrt((np.abs(ifft2c_np(k)) ** 2).sum(1)).astype(np.float32))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    (root / "train").mkdir()
    (root / "val").mkdir()
    _volume(root / "train" / "t1.h5", 0)
    _volume(root / "train" / "t2.h5", 1)
    _volume(root / "val" / "v1.h5", 2)
    return root


def _config(data_root, out_dir, **train_overrides):
    cfg = {
        "name": "tiny",
        "out_dir": str(out_dir),
        "data": {"root": str(data_root), "train_split": "train", "val_split": "val", "accelerations": [2.0, 4.0],
                 "mask_types": ["random", "equispaced"], "calib_width": 16,
                 "cache_dir": str(data_root / "cache"), "val_accelerations": [3.0], "val_max_slices": 1},
        "model": {"num_unrolls": 2, "cg_iters": 3, "channels": 8},
        "train": {"seed": 0, "batch_size": 2, "lr": 1e-3, "stages": [{"num_unrolls": 1, "steps": 1},
                                                                      {"num_unrolls": 2, "steps": 1}],
                  "loss": {"l1": 1.0, "ssim": 0.5}, "val_every": 1, "ckpt_every": 1, "num_threads": None},
    }
    cfg["train"].update(train_overrides)
    return cfg


def test_two_steps_then_resume_equals_uninterrupted(data_root, tmp_path):
    full = train(_config(data_root, tmp_path / "a"), progress=False)
    assert full.step == 2 and (tmp_path / "a" / "final.safetensors").is_file()

    first = train(_config(data_root, tmp_path / "b"), progress=False, stop_after=1)
    assert first.step == 1 and (tmp_path / "b" / "checkpoint.pt").is_file()
    assert not (tmp_path / "b" / "final.safetensors").exists()
    resumed = Trainer(_config(data_root, tmp_path / "b"), progress=False)
    resumed.run()
    assert resumed.step == 2
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert [r["train_loss"] for r in full.history] == [r["train_loss"] for r in resumed.history]
    assert [r["K"] for r in full.history] == [1, 2]  # warm start at K = 1, then K = full
    opt_a, opt_b = full.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for key in opt_a:
        assert torch.equal(opt_a[key]["exp_avg"], opt_b[key]["exp_avg"])
    # the rows: validation against the reference and the CG-SENSE baseline on the same slices
    row = resumed.history[-1]
    for key in ("psnr_R3", "ssim_R3", "nmse_R3", "cg_sense_psnr_R3", "lam", "lr", "wall_s"):
        assert key in row, key
    # outputs: curves, history, weights loadable by name-or-path
    for f in ("curves.png", "history.json", "best.safetensors", "checkpoint.pt"):
        assert (tmp_path / "b" / f).is_file(), f
    from recon.modl import load_modl, weights_metadata

    model = load_modl(tmp_path / "b" / "final.safetensors")
    assert model.num_unrolls == 2 and model.config.channels == 8
    meta = weights_metadata(tmp_path / "b" / "final.safetensors")
    assert meta["extra"]["steps"] == 2 and "psnr_R3" in meta["extra"]["validation"]
    assert weights_metadata(tmp_path / "b" / "best.safetensors")["extra"]["which"] == "best"
    # checkpoints are plain tensors/containers: weights_only loading works
    torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)


def test_loss_call_is_agnostic(data_root, tmp_path):
    seen = []

    class ReferenceFree:
        requires_target = False

        def __call__(self, output, target, **call):
            seen.append((tuple(output.shape), target, call))
            # a consistency-only loss: needs no reference at all
            return (output - output.detach().mean()).abs().mean() / call["data_range"].mean()

    cfg = _config(data_root, tmp_path / "rf", stages=[{"num_unrolls": 1, "steps": 1}])
    trainer = train(cfg, loss=ReferenceFree(), progress=False)
    assert trainer.step == 1
    shape, target, call = seen[0]
    assert shape == (2, 1, H, W) and target is None and tuple(call["data_range"].shape) == (2,)
    assert set(call) == {"physics", "y", "image", "pred_kspace", "data_range"}
    # the physics of the batch: its maps and mask, the same k-space shape as y
    physics = call["physics"]
    assert physics.kspace_shape == tuple(call["y"].shape) == (2, C, H, W) and physics.mask.shape[-1] == W
    assert call["image"].is_complex() and call["pred_kspace"] is None
    # a loss named in the config as a factory
    loss = build_loss({"factory": "recon.losses:SupervisedLoss", "kwargs": {"l1": 0.5, "ssim": 0.5}})
    assert isinstance(loss, SupervisedLoss) and loss.ssim == 0.5
    out = torch.rand(2, 1, H, W)
    assert float(loss(out, out.clone(), data_range=torch.ones(2))) == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(InputError, match="cannot be imported"):
        build_loss({"factory": "no_such_module:thing"})
    with pytest.raises(InputError, match="unknown train.loss"):
        build_loss({"l2": 1.0})
    assert isinstance(build_loss(None), SupervisedLoss)  # the default: l1 = 1


def test_cli_train_recon_and_config_errors(data_root, tmp_path, capsys):
    from mriqa.cli import main

    cfg = _config(data_root, tmp_path / "cli")
    cfg["export"] = str(tmp_path / "exported.safetensors")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train-recon", "--config", str(path), "--no-progress", "--stop-after", "1"]) == 0
    assert "stopped; rerun to resume" in capsys.readouterr().out
    assert main(["train-recon", "--config", str(path), "--no-progress"]) == 0
    assert "done" in capsys.readouterr().out and (tmp_path / "exported.safetensors").is_file()

    # --set reaches the trainer's config, strictly
    assert main(["train-recon", "--config", str(path), "--no-progress", "--set", "train.learning_rate=1"]) == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and len(err.strip().splitlines()) == 1
    cfg_set = load_config(path, ["train.stages.1.steps=3", "model.channels=4"])
    assert cfg_set["train"]["stages"][1]["steps"] == 3 and cfg_set["model"]["channels"] == 4

    bad = copy.deepcopy(cfg)
    bad["train"]["learning_rate"] = 1.0
    path.write_text(yaml.safe_dump(bad))
    assert main(["train-recon", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mriqa: error:") and "learning_rate" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    # a checkpoint from a different model config is not silently resumed
    other = copy.deepcopy(cfg)
    other["model"]["channels"] = 4
    with pytest.raises(InputError, match="different 'model' config"):
        Trainer(other, progress=False).run()


def test_noise_input_model_warm_starts_from_weights_without_it(data_root, tmp_path):
    """recon.modl's noise_input (the denoiser also sees the measured noise level): ``init`` may name weights trained
    without it; they are copied and the new input channel starts at zero weight."""
    from recon.modl import MoDL, save_modl
    from recon.train import Trainer

    torch.manual_seed(0)
    source = MoDL(num_unrolls=2, cg_iters=3, channels=8)
    torch.nn.init.normal_(source.denoiser.net[-1].weight, std=0.05)
    path = save_modl(source, tmp_path / "plain.safetensors")
    cfg = _config(data_root, tmp_path / "run")
    cfg["model"]["noise_input"] = True
    trainer = Trainer(cfg, progress=False)
    trainer.warm_start(str(path))
    first = trainer.model.denoiser.net[0].weight.detach()
    assert first.shape[1] == 3 and not first[:, 2].any()
    assert torch.equal(first[:, :2], source.denoiser.net[0].weight.detach())
    assert torch.equal(trainer.model.denoiser.net[-1].weight, source.denoiser.net[-1].weight)


def test_context_branch_grows_from_weights_without_it(data_root, tmp_path):
    """recon.modl's coarse context branch (``model.context_channels``): ``init`` may name weights trained without
    it; they are copied, the branch's last convolution starts at zero, so the grown denoiser is the old one, and
    the branch is saved and loaded with the architecture."""
    from recon.modl import MoDL, load_modl, save_modl
    from recon.train import Trainer

    torch.manual_seed(0)
    source = MoDL(num_unrolls=2, cg_iters=3, channels=8)
    torch.nn.init.normal_(source.denoiser.net[-1].weight, std=0.05)
    path = save_modl(source, tmp_path / "plain.safetensors")
    cfg = _config(data_root, tmp_path / "run")
    cfg["model"]["context_channels"] = 4
    trainer = Trainer(cfg, progress=False)
    trainer.warm_start(str(path))
    grown = trainer.model.denoiser.eval()
    x = torch.randn(1, 30, 22, dtype=torch.complex64)
    with torch.no_grad():
        torch.testing.assert_close(grown(x), source.denoiser.eval()(x))
        torch.nn.init.normal_(grown.context[-1].weight, std=0.05)  # as after training
        changed = grown(x)
    assert float((changed - source.denoiser(x)).abs().max()) > 1e-4
    saved = load_modl(save_modl(trainer.model, tmp_path / "grown.safetensors"))
    assert saved.config.context_channels == 4
    with torch.no_grad():
        torch.testing.assert_close(saved.denoiser(x), changed)
