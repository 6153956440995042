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


def test_numbers_where_the_defaults_have_numbers(tmp_path):
    """`--set train.steps=abc` met int() deep in a trainer (a traceback) and steps -5 trained nothing with exit 0:
    every numeric default must get a number, the common training keys a sensible one, before any work."""
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("train:\n  lr: 1e-3\n  steps: '20'\n")  # YAML 1.1 reads 1e-3 as a string
    cfg = load_config(DEFAULTS, cfg_file)
    assert cfg["train"] == {"steps": 20, "lr": 1e-3} and isinstance(cfg["train"]["steps"], int)
    cfg_file.write_text("train:\n  steps: many\n")
    with pytest.raises(InputError, match=r"c.yaml: config key 'train.steps' must be a number, got 'many'"):
        load_config(DEFAULTS, cfg_file)
    for bad, problem in [("train.steps=abc", "must be a number"), ("train.steps=-5", "must be >= 0"),
                         ("train.lr=-1", "must be >= 0"), ("model.depth=[1]", "must be a number"),
                         ("train.lr=true", "must be a number")]:
        with pytest.raises(InputError, match=problem):
            load_config(DEFAULTS, None, [bad])
    with pytest.raises(InputError, match="'train.batch' must be >= 1"):
        load_config({"train": {"batch": 8}}, None, ["train.batch=0"])
    assert load_config(DEFAULTS, None, ["train.steps=0", "train.lr=0"])["train"] == {"steps": 0, "lr": 0}
    assert load_config({"train": {"max_minutes": None}}, None,  # no number as default: not checked
                       ["train.max_minutes=abc"])["train"]["max_minutes"] == "abc"


def test_a_model_refusing_its_settings_is_one_line():
    from recon.config import build_from_config

    def factory(config):
        if config["width"] < 1:
            raise ValueError(f"width must be >= 1, got {config['width']}")
        return config

    assert build_from_config(factory, {"width": 4}) == {"width": 4}
    with pytest.raises(InputError, match="config section 'model': width must be >= 1, got 0"):
        build_from_config(factory, {"width": 0})
