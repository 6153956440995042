"""The one config loader (recon.config): strict about unknown keys, open below named keys, --set overrides."""
from __future__ import annotations

import pytest

from recon.config import apply_overrides, load_config, merge
from recon.errors import InputError

DEFAULTS = {"train": {"steps": 10, "lr": 1e-3}, "model": {"depth": 3}, "data": {"train": [{"path": "a"}]}}


def test_yaml_extra_and_set_layer_in_order(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("train:\n  steps: 20\nmodel:\n  width: 8\n")
    cfg = load_config(DEFAULTS, cfg_file, ["train.lr=1e-4", "data.train.0.path=/x"], {"train": {"steps": 30}},
                      open_keys=("model",))
    assert cfg["train"] == {"steps": 30, "lr": 1e-4}
    assert cfg["model"] == {"depth": 3, "width": 8}
    assert cfg["data"]["train"][0]["path"] == "/x"
    assert DEFAULTS["train"]["steps"] == 10  # defaults never modified


def test_unknown_keys_are_errors_naming_file_and_key(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("train:\n  stpes: 20\n")
    with pytest.raises(InputError, match=r"c.yaml: unknown config key 'train.stpes'"):
        load_config(DEFAULTS, cfg_file)
    with pytest.raises(InputError, match=r"--set: unknown config key 'train.sptes'"):
        apply_overrides(DEFAULTS, ["train.sptes=3"])
    with pytest.raises(InputError, match="KEY=VALUE"):
        apply_overrides(DEFAULTS, ["train.steps"])
    with pytest.raises(InputError, match="not an index"):
        apply_overrides(DEFAULTS, ["data.train.5.path=/x"])
    assert apply_overrides(DEFAULTS, ["model.anything=1"], open_keys=("model",))["model"]["anything"] == 1
    assert merge(DEFAULTS, {"model": {"x": {"y": 1}}}, open_keys=("model",))["model"]["x"] == {"y": 1}


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="config file not found"):
        load_config(DEFAULTS, tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1,\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(DEFAULTS, tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(InputError, match="mapping"):
        load_config(DEFAULTS, tmp_path / "list.yaml")
