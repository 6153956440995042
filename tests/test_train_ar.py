"""The reference-free artifact-removal trainer (``mriqa train-ar``): L1 consistency + QF loss on the shared step
loop; exact resume, the CLI, the undersampling degradation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from test_qairn import _photos  # tests/ is on sys.path under pytest

from mriqa.models.arcnn import load_arcnn
from mriqa.train_ar import load_config, train
from recon.config import merge
from recon.io.weights import load_weights

QUIET = dict(log=lambda *_: None)


def _cfg(tmp_path, out, w=0.5, **extra):
    data = _photos(tmp_path / "photos", n=2, size=(56, 60))
    cfg = load_config(None, model={"in_channels": 3, "variant": "srcnn", "residual": True},
                      data={"train": [{"type": "images", "path": str(data)}]},
                      loss={"qf_weight": w, "qf_model": "rgb"},
                      train={"steps": 4, "batch": 2, "patch": 32, "lr": 1e-3, "eval_every": 1,
                             "checkpoint_every": 1}, output_dir=str(out))
    return merge(cfg, extra)


def test_undersample_full_sampling_is_identity_and_r4_aliases():
    from mriqa.train_ar import undersample

    rng = np.random.default_rng(0)
    img = np.zeros((32, 32), np.float32)
    img[8:24, 10:22] = rng.random((16, 12))
    assert np.allclose(undersample(img, 1.0, seed=0), img, atol=1e-5)
    zf = undersample(img, 4.0, seed=0)
    assert zf.shape == img.shape and zf.min() >= 0 and not np.allclose(zf, img, atol=1e-2)


@pytest.mark.parametrize("w", [0.0, 0.5])
def test_two_steps_of_reference_free_training(tmp_path, w):
    cfg = _cfg(tmp_path, tmp_path / "run", w, train={"steps": 2})
    s = train(cfg, **QUIET)
    assert s["step"] == 2
    model, meta = load_arcnn(tmp_path / "run" / "final.safetensors")
    assert meta["training"]["config"]["loss"]["qf_weight"] == w
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        same = torch.equal(model(x), x)
    # L1 consistency alone keeps the identity (zero subgradient at output == input); the QF term moves it
    assert same == (w == 0.0)
    again = train(cfg, **QUIET)  # resumes at the end: nothing to do
    assert again["step"] == 2


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    full = train(_cfg(tmp_path, tmp_path / "full"), **QUIET)
    first = train(_cfg(tmp_path, tmp_path / "split", train={"stop_at_step": 2}), **QUIET)
    assert first["step"] == 2 and first["stopped_early"]
    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["step"] == 2
    logs = []
    second = train(_cfg(tmp_path, tmp_path / "split"), log=logs.append)
    assert second["step"] == 4 and not second["stopped_early"] and "at step 2" in logs[0] and "resumed from" in logs[0]
    a, b = full["model"].state_dict(), second["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    h1 = json.loads((tmp_path / "full" / "history.json").read_text())
    h2 = json.loads((tmp_path / "split" / "history.json").read_text())
    assert [r["step"] for r in h1] == [r["step"] for r in h2] == [1, 2, 3, 4]
    for r1, r2 in zip(h1, h2):  # the same batches: the same monitoring numbers, row by row
        assert {k: v for k, v in r1.items() if k != "wall_s"} == {k: v for k, v in r2.items() if k != "wall_s"}
        assert {"l1", "qf", "psnr_in", "psnr_out"} <= set(r1)
    wa, _ = load_weights(tmp_path / "full" / "final.safetensors")
    wb, _ = load_weights(tmp_path / "split" / "final.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # a different seed draws other batches (the equalities above are not vacuous)
    other = train(_cfg(tmp_path, tmp_path / "other", seed=1), **QUIET)
    assert not torch.equal(a["body.0.weight"], other["model"].state_dict()["body.0.weight"])


def test_cli_train_ar_output_dir_export_and_strict_config(tmp_path, capsys):
    from mriqa.cli import main

    data = _photos(tmp_path / "photos", n=2, size=(56, 60))
    cfg = {"name": "tiny-ar", "model": {"in_channels": 1, "variant": "srcnn"},
           "data": {"train": [{"type": "images", "path": str(data)}]},
           "degradation": {"type": "undersample", "accel": 4.0},
           "train": {"steps": 2, "batch": 2, "patch": 32, "eval_every": 1}}
    path = tmp_path / "ar.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run, export = tmp_path / "run", tmp_path / "ar.safetensors"
    assert main(["train-ar", "--config", str(path), "--set", "loss.qf_weight=0.1", "--output-dir", str(run),
                 "--export", str(export)]) == 0
    assert "train-ar: tiny-ar step 2" in capsys.readouterr().out
    model, meta = load_arcnn(export)
    assert model.in_channels == 1 and meta["training"]["config"]["loss"]["qf_weight"] == 0.1
    assert (run / "final.safetensors").is_file() and (run / "checkpoint.pt").is_file()
    # the retired spelling of the row interval is an unknown key now: one line, exit 2
    assert main(["train-ar", "--config", str(path), "--set", "train.log_every=5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mriqa: error:") and "train.log_every" in err and "\n" not in err
