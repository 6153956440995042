"""Every config in configs/ loads with its trainer's strict loader (recon.config: unknown keys are errors) and
builds its network, so a key that a trainer does not know cannot hide in a shipped config."""
from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FAMILIES = {"qf-*.yaml": "qf", "qairn*.yaml": "qairn", "ar-*.yaml": "ar", "r-learned*.yaml": "r",
            "modl-*.yaml": "recon", "rq*.yaml": "rq", "r-rq*.yaml": "r-rq"}


def _configs(pattern: str) -> list[Path]:
    found = sorted(CONFIGS.glob(pattern))
    assert found, pattern
    return found


def test_every_config_belongs_to_a_trainer():
    covered = {p for pattern in FAMILIES for p in CONFIGS.glob(pattern)}
    assert covered == set(CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("path", _configs("qf-*.yaml"), ids=lambda p: p.name)
def test_qf_configs(path):
    from mriqa.train_qf import build_model, load_config

    cfg = load_config(path)
    assert cfg["name"] == path.stem
    assert build_model(cfg).in_channels == cfg["model"]["in_channels"]


@pytest.mark.parametrize("path", _configs("qairn*.yaml"), ids=lambda p: p.name)
def test_qairn_configs(path):
    from mriqa.models.qairn import QAIRN
    from mriqa.train_qairn import load_config

    cfg = load_config(path)
    assert cfg["name"] == path.stem and int(cfg["sampler"]["patch"]) % 8 == 0
    held_out = set(cfg["data"]["held_out"])  # refused by the trainer if in the training set
    assert held_out and held_out <= set(cfg["data"]["train"][0]["exclude"])
    QAIRN.from_config({"in_channels": 3, **cfg["model"]})


@pytest.mark.parametrize("path", _configs("ar-*.yaml"), ids=lambda p: p.name)
def test_ar_configs(path):
    from mriqa.models.arcnn import ARCNN
    from mriqa.train_ar import load_config

    cfg = load_config(path)
    assert cfg["degradation"]["type"] in ("jpeg", "undersample") and cfg["train"]["eval_every"] == 25
    ARCNN.from_config(cfg["model"])


@pytest.mark.parametrize("path", _configs("r-learned*.yaml"), ids=lambda p: p.name)
def test_r_configs(path):
    from mriqa.restimate.train import load_config

    cfg = load_config(path)
    assert cfg["calibrate"]["linear"] is True and cfg["data"]["methods"] == ["zf", "sense", "modl"]


@pytest.mark.parametrize("path", _configs("modl-*.yaml"), ids=lambda p: p.name)
def test_recon_configs(path):
    from recon.train import load_config

    assert load_config(path)["name"]


@pytest.mark.parametrize("command,config", [("train-qf", "qf-gray.yaml"), ("train-qairn", "qairn.yaml"),
                                            ("train-ar", "ar-rgb.yaml"), ("train-r", "r-learned-aug.yaml"),
                                            ("train-r", "r-rq.yaml")])
def test_every_mriqa_trainer_has_the_same_flags_and_refuses_unknown_keys(command, config, capsys):
    from mriqa.cli import build_parser, main

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    flags = {s for a in sub._actions for s in a.option_strings}
    assert {"--config", "--set", "--output-dir", "--export", "--no-resume"} <= flags and "--out-dir" not in flags
    assert main([command, "--config", str(CONFIGS / config), "--set", "train.stpes=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mriqa: error:") and "unknown config key 'train.stpes'" in err and "\n" not in err


@pytest.mark.parametrize("path", _configs("rq*.yaml"), ids=lambda p: p.name)
def test_rq_configs(path):
    from mriqa.models.reconq import RQNet
    from mriqa.train_rq import load_config

    cfg = load_config(path)
    assert cfg["name"] == path.stem and cfg["data"]["train"] and cfg["data"]["val"]
    # split by subject: no file is both a training and a validation file
    assert not set(cfg["data"]["train"]) & set(cfg["data"]["val"])
    RQNet(cfg["model"])


@pytest.mark.parametrize("path", _configs("r-rq*.yaml"), ids=lambda p: p.name)
def test_r_rq_configs(path):
    from mriqa.models.reconq import RQNet
    from mriqa.restimate.train_rq import load_config

    cfg = load_config(path)
    assert cfg["arch"] == "rqnet" and not set(cfg["data"]["train"]) & set(cfg["data"]["val"])
    RQNet(cfg["model"])


@pytest.mark.parametrize("command,config,data", [
    ("train-qf", "qf-gray.yaml", "data.train=[{type: volume, path: MISSING}]"),
    ("train-qairn", "qairn.yaml", "data.train=[{type: images, path: MISSING}]"),
    ("train-ar", "ar-rgb.yaml", "data.train=[{type: images, path: MISSING}]"),
    ("train-r", "r-learned-aug.yaml", "data.root=MISSING"),
    ("train-r", "r-rq.yaml", "data.train=[MISSING/a.h5]"),
    ("train-rq", "rq.yaml", "data.train=[MISSING/a.h5]"),
    ("train-recon", "modl-cpu.yaml", "data.root=MISSING")])
def test_every_trainer_refuses_missing_data_in_one_line_and_leaves_no_output_folder(command, config, data, tmp_path,
                                                                                    capsys):
    from mriqa.cli import main

    missing, out = tmp_path / "nowhere", tmp_path / "run"
    code = main([command, "--config", str(CONFIGS / config), "--set", data.replace("MISSING", str(missing)),
                 "--output-dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("mriqa: error:") and str(missing) in err and "\n" not in err
    assert not out.exists()
