"""``mriqa train-qairn``: the CLI trains a tiny QAIRN for two steps and exports loadable weights."""
from __future__ import annotations

import yaml
from test_qairn import _photos  # tests/ is on sys.path under pytest

from mriqa.cli import build_parser, main
from mriqa.models.qairn import load_qairn


def test_train_qairn_cli_two_steps_and_export(tmp_path, capsys):
    data = _photos(tmp_path / "photos")
    cfg = {"name": "tiny", "model": {"channels": [4, 4, 4, 4], "n_res": 0, "att_hidden": 2},
           "data": {"train": [{"type": "images", "path": str(data), "exclude": ["img2"]}],
                    "val": [{"type": "images", "path": str(data), "include": ["img2"]}], "held_out": ["img2"]},
           "sampler": {"patch": 16},
           "train": {"steps": 2, "batch": 2, "eval_every": 2, "checkpoint_every": 1, "val_crop": 16,
                     "threads": 0, "progress": False, "device": "cpu"},
           "output_dir": str(tmp_path / "run"), "export": str(tmp_path / "qairn.safetensors")}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train-qairn", "--config", str(path), "--set", "train.lr=0.001"]) == 0
    out = capsys.readouterr().out
    assert "train-qairn: tiny step 2" in out
    model, meta = load_qairn(tmp_path / "qairn.safetensors")
    assert model.channels == [4, 4, 4, 4] and meta["training"]["steps_done"] == 2
    assert meta["training"]["config"]["train"]["lr"] == 0.001


def test_train_qairn_cli_missing_config_is_a_one_line_error(tmp_path, capsys):
    assert main(["train-qairn", "--config", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mriqa: error:") and "nope.yaml" in err and "\n" not in err
    assert "train-qairn" in build_parser().format_help()


def test_select_pooling_rewrites_the_exponent_only(tmp_path, capsys):
    import torch

    data = _photos(tmp_path / "photos")
    cfg = {"name": "tiny", "model": {"channels": [4, 4, 4, 4], "n_res": 0, "att_hidden": 2},
           "data": {"train": [{"type": "images", "path": str(data), "exclude": ["img2"]}],
                    "val": [{"type": "images", "path": str(data), "include": ["img2"]}]},
           "sampler": {"patch": 16},
           "train": {"steps": 2, "batch": 2, "eval_every": 2, "checkpoint_every": 1, "val_crop": 16,
                     "threads": 0, "progress": False, "device": "cpu"},
           "pooling": {"grid": [0.5, 4.0]},
           "output_dir": str(tmp_path / "run"), "export": str(tmp_path / "qairn.safetensors")}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train-qairn", "--config", str(path)]) == 0
    before, meta0 = load_qairn(tmp_path / "qairn.safetensors")
    assert "pooling_selection" not in meta0  # pooling.select is off by default
    assert main(["train-qairn", "--config", str(path), "--select-pooling"]) == 0
    assert "pooling selection on 1 validation images" in capsys.readouterr().out
    after, meta = load_qairn(tmp_path / "qairn.safetensors")
    sel = meta["pooling_selection"]
    assert after.minkowski_p == sel["p"] and sel["p"] in (0.5, 4.0) and sel["val_images"] == ["img2.png"]
    assert set(sel["srcc_q2_qf"]) == {"0.5", "4.0"} and meta["training"] == meta0["training"]
    for a, b in zip(before.state_dict().values(), after.state_dict().values()):
        assert torch.equal(a, b)
