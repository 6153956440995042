"""Training: 2-step runs, exact resume, classification mode, the fastMRI config on tiny fastMRI-format files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_qairn import _photos  # tests/ is on sys.path under pytest

from mriqa.train_qf import load_config, lr_at, train
from mriqa.weights_io import load_qfnet
from recon.config import merge

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
TINY = {
    "model": {"width": 4},
    "sampler": {"patch": 32},
    "train": {"steps": 3, "batch": 4, "val_patches": 8, "eval_every": 1, "checkpoint_every": 1,
              "warmup": 1, "threads": 0, "progress": False, "device": "cpu"},
}


def _photo_cfg(tmp_path, out, **extra):
    data = _photos(tmp_path / "photos", size=(60, 70))
    cfg = load_config(
        None,
        name="tiny-rgb",
        model={"in_channels": 3},
        data={"kind": "photo", "train": [{"type": "images", "path": str(data)}],
              "val": [{"type": "images", "path": str(data), "include": ["img0"]}]},
        output_dir=str(out),
    )
    return merge(merge(cfg, TINY), extra)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    full = train(_photo_cfg(tmp_path, tmp_path / "full"), log=lambda *_: None)
    assert full["step"] == 3 and not full["stopped_early"]

    part_cfg = _photo_cfg(tmp_path, tmp_path / "split", train={"stop_at_step": 1})
    first = train(part_cfg, log=lambda *_: None)
    assert first["step"] == 1 and first["stopped_early"]
    ck = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 1
    second = train(_photo_cfg(tmp_path, tmp_path / "split"), log=lambda *_: None)  # resumes automatically
    assert second["step"] == 3
    a, b = full["model"].state_dict(), second["model"].state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    h1 = json.loads((tmp_path / "full" / "history.json").read_text())
    h2 = json.loads((tmp_path / "split" / "history.json").read_text())
    assert [r["val_loss"] for r in h1] == [r["val_loss"] for r in h2]
    assert (tmp_path / "full" / "curves.png").stat().st_size > 1000
    model, meta = load_qfnet(tmp_path / "full" / "best.safetensors")
    assert model.in_channels == 3 and meta["training"]["steps_done"] == 3
    assert meta["normalization"]["name"] == "mriqa-unit-range-v1"
    # a different seed gives different weights (the equality above is not vacuous)
    other = train(_photo_cfg(tmp_path, tmp_path / "other", seed=1, train={"steps": 1}), log=lambda *_: None)
    assert not torch.equal(a["features.0.weight"], other["model"].state_dict()["features.0.weight"])


def test_isotonic_blocks():
    from mriqa.train_qf import isotonic_blocks

    x = np.array([0.5, 0.1, 0.2, 0.3, 0.4])
    y = np.array([0.45, 0.1, 0.3, 0.2, 0.5])
    bx, by = isotonic_blocks(x, y)
    np.testing.assert_allclose(bx, [0.1, 0.25, 0.45])
    np.testing.assert_allclose(by, [0.1, 0.25, 0.475])


def test_classification_mode_and_uniform_distribution(tmp_path):
    cfg = _photo_cfg(tmp_path, tmp_path / "cls", mode="classification", train={"steps": 2})
    res = train(cfg, log=lambda *_: None)
    model, meta = load_qfnet(tmp_path / "cls" / "best.safetensors")
    assert model.num_classes == 5 and meta["mode"] == "classification"
    with torch.no_grad():
        y = model(torch.rand(1, 3, 40, 40))
    assert y.shape[1] == 1 and 0 <= float(y.min()) <= float(y.max()) <= 0.8 + 1e-6
    cfg = _photo_cfg(tmp_path, tmp_path / "uni", sampler={"distribution": "uniform", "noise": {"p": 0.5}},
                     train={"steps": 2}, calibrate={"max_images": 2, "qfs": [20, 60, 90]})
    assert train(cfg, log=lambda *_: None)["step"] == 2 and res["step"] == 2
    calibrated, meta = load_qfnet(tmp_path / "uni" / "best.safetensors")
    cal = calibrated.calibration
    assert cal is not None and meta["calibration"] == cal
    assert cal["x"][0] == 0.0 and cal["x"][-1] == 1.0 and all(b > a for a, b in zip(cal["x"], cal["x"][1:]))


def test_lr_schedule():
    tc = {"lr": 1e-3, "lr_min": 1e-5, "warmup": 10, "steps": 110}
    assert lr_at(0, tc) == pytest.approx(1e-4)
    assert lr_at(10, tc) == pytest.approx(1e-3)
    assert lr_at(110, tc) == pytest.approx(1e-5)
    assert lr_at(60, tc) == pytest.approx(0.5 * (1e-3 + 1e-5))


def _fastmri_file(path, key_extra=None, slices=5, size=80, seed=0):
    """A tiny file in the fastMRI knee layout: kspace, reconstruction_rss (+ esc), ismrmrd_header, attrs."""
    import h5py
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    obj = ((yy - size / 2) ** 2 / (0.35 * size) ** 2 + (xx - size / 2) ** 2 / (0.3 * size) ** 2) < 1
    vol = []
    for s in range(slices):
        tex = ndimage.gaussian_filter(rng.random((size, size)), 1.2)
        vol.append((obj * (0.5 + tex) + 0.02 * rng.random((size, size))) * 1e-4)
    vol = np.stack(vol).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=np.fft.fft2(vol).astype(np.complex64)[:, None])
        f.create_dataset("reconstruction_rss", data=vol)
        if key_extra:
            f.create_dataset(key_extra, data=vol * 0.9)
        f.create_dataset("ismrmrd_header", data=np.bytes_(b"<ismrmrdHeader/>"))
        f.attrs["acquisition"] = "CORPDFS_FBK"
        f.attrs["max"] = float(vol.max())
        f.attrs["norm"] = float(np.linalg.norm(vol))
        f.attrs["patient_id"] = "tiny"


def test_fastmri_config_reads_tiny_fastmri_files(tmp_path, monkeypatch):
    root = tmp_path / "knee"
    for sub, n in (("singlecoil_train", 2), ("singlecoil_val", 1)):
        (root / sub).mkdir(parents=True)
        for i in range(n):
            _fastmri_file(root / sub / f"file{i}.h5", key_extra="reconstruction_esc", seed=i)
    monkeypatch.setenv("FASTMRI_ROOT", str(root))
    monkeypatch.setenv("MRIQA_CACHE", str(tmp_path / "cache"))
    overrides = ["train.steps=2", "train.batch=4", "train.val_patches=8", "train.eval_every=1",
                 "train.progress=false", "train.threads=0", "train.device=cpu", "model.width=4",
                 "sampler.patch=32", f"output_dir={tmp_path / 'run'}", f"export={tmp_path / 'fm.safetensors'}"]
    cfg = load_config(REPO / "configs" / "qf-fastmri.yaml", overrides)
    assert cfg["data"]["train"][0]["key"] == "reconstruction_rss"
    res = train(cfg, log=lambda *_: None)
    assert res["step"] == 2
    model, meta = load_qfnet(tmp_path / "fm.safetensors")
    assert model.in_channels == 1 and meta["kind"] == "mri" and meta["training"]["train_images"] == 10
    # the ESC target of the singlecoil files
    from mriqa.qf_data import load_pools

    cfg = load_config(REPO / "configs" / "qf-fastmri.yaml", overrides + ["data.train.0.key=reconstruction_esc"])
    pool = load_pools(cfg["data"]["train"], 1)
    assert len(pool) == 10 and pool.images[0].dtype == np.uint8 and pool.masks[0].any()
    assert pool.noisy[0] is not None and pool.noisy[0].shape == pool.images[0].shape  # denoised pristine + acquired
    assert len(list((tmp_path / "cache" / "qf-denoise").glob("*.npy"))) == 4  # one per file and key (rss, esc)
    cfg = load_config(REPO / "configs" / "qf-fastmri.yaml", overrides + ["data.train.0.key=kspace_missing"])
    from recon.errors import InputError

    with pytest.raises(InputError, match="kspace_missing"):
        load_pools(cfg["data"]["train"], 1)


def test_cli_train_qf_bad_config(tmp_path, capsys):
    from mriqa.cli import main

    rc = main(["train-qf", "--config", str(tmp_path / "missing.yaml")])
    assert rc == 2 and "missing.yaml" in capsys.readouterr().err
    # settings that used to end in a traceback (int('abc'), QFNet's ValueError, a data entry that is a bare path)
    config = str(REPO / "configs" / "qf-gray.yaml")
    for setting, problem in [("train.steps=abc", "'train.steps' must be a number"),
                             ("model.width=0", "config section 'model': width must be >= 1"),
                             ("data.train=[/data/x.h5]", "a data entry must be a mapping")]:
        rc = main(["train-qf", "--config", config, "--set", setting, "--output-dir", str(tmp_path / "run")])
        err = capsys.readouterr().err
        assert rc == 2 and problem in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_overrides_parse_numbers_yaml_reads_as_strings():
    from recon.config import apply_overrides

    base = {"train": {"lr": 0.1, "steps": 1, "tag": None, "flag": False, "sizes": None}}
    cfg = apply_overrides(base, ["train.lr=1e-3", "train.steps=7", "train.tag=abc", "train.flag=true",
                                 "train.sizes=[1, 2]"])
    assert cfg["train"] == {"lr": 1e-3, "steps": 7, "tag": "abc", "flag": True, "sizes": [1, 2]}
    assert isinstance(cfg["train"]["steps"], int)


def test_qf_config_is_strict_except_below_the_optional_blocks(tmp_path):
    from recon.errors import InputError

    with pytest.raises(InputError, match="unknown config key 'train.stpes'"):
        load_config(None, ["train.stpes=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampler:\n  pacth: 32\n")
    with pytest.raises(InputError, match="bad.yaml: unknown config key 'sampler.pacth'"):
        load_config(bad)
    cfg = load_config(None, sampler={"noise": {"p": 0.5, "sigma_max": 0.05}}, calibrate={"max_images": 3})
    assert cfg["sampler"]["noise"] == {"p": 0.5, "sigma_max": 0.05} and cfg["calibrate"] == {"max_images": 3}
    # classification: the paper's five classes unless the config names others
    from mriqa.train_qf import build_model

    assert build_model(load_config(None, mode="classification", model={"width": 4})).num_classes == 5
    custom = load_config(None, mode="classification", model={"width": 4, "num_classes": 3, "class_qfs": [0, 40, 80]})
    assert build_model(custom).num_classes == 3


def test_init_starts_from_earlier_weights_and_rejects_other_architectures(tmp_path):
    from recon.errors import InputError

    first = train(_photo_cfg(tmp_path, tmp_path / "a", train={"steps": 1}), log=lambda *_: None)
    w0 = first["model"].state_dict()["features.0.weight"]
    # zero steps after init: the exported weights are exactly the init weights
    cfg = _photo_cfg(tmp_path, tmp_path / "b", train={"steps": 0}, seed=5)
    cfg["init"] = str(tmp_path / "a" / "best.safetensors")
    second = train(cfg, log=lambda *_: None)
    assert torch.equal(second["model"].state_dict()["features.0.weight"], w0)
    bad = _photo_cfg(tmp_path, tmp_path / "c", model={"width": 8})
    bad["init"] = str(tmp_path / "a" / "best.safetensors")
    with pytest.raises(InputError, match="do not fit"):
        train(bad, log=lambda *_: None)
    missing = _photo_cfg(tmp_path, tmp_path / "d")
    missing["init"] = str(tmp_path / "nope.safetensors")
    with pytest.raises(InputError, match="not found"):
        train(missing, log=lambda *_: None)


def test_blur_schedule_is_monotone_and_free_below_tolerance():
    from mriqa.qf_data import blur_schedule_qf

    spec = {"tolerance": 0.6, "sigma_max": 4.0, "qf_at_max": 20}
    sig = [0.1, 0.3, 0.6, 0.7, 1.0, 2.0, 4.0, 6.0]
    q = [blur_schedule_qf(s, spec) for s in sig]
    assert q[:3] == [100.0, 100.0, 100.0]
    assert all(a > b for a, b in zip(q[2:6], q[3:7]))
    assert q[6] == pytest.approx(20.0) and q[7] == pytest.approx(20.0)


def test_scheduled_blur_targets_fall_with_sigma():
    """Sampler with ``blur.target: schedule``: lossless blurred patches get the schedule's QF, not a PSNR match."""
    from mriqa.qf_data import Pool, PatchSampler, blur_schedule_qf

    rng = np.random.default_rng(0)
    from scipy import ndimage

    img = ndimage.gaussian_filter(rng.random((96, 96)), 1.0)
    img = ((img - img.min()) / (img.max() - img.min()) * 255).astype(np.uint8)[..., None]
    pool = Pool(images=[img], masks=[None], names=["x"])
    spec = {"p": 1.0, "sigma_min": 0.3, "sigma_max": 3.0, "target": "schedule", "tolerance": 0.5, "qf_at_max": 20}
    s = PatchSampler(pool, patch=32, p_clean=1.0, blur=spec)
    targets = [s.sample_one(np.random.default_rng(i))[1] for i in range(20)]
    assert min(targets) < 0.6 and max(targets) <= 1.0
    # the same draws without the schedule (PSNR-matched) are far lower: MSE punishes blur on edges
    s_psnr = PatchSampler(pool, patch=32, p_clean=1.0, blur={k: v for k, v in spec.items() if k != "target"})
    t_psnr = [s_psnr.sample_one(np.random.default_rng(i))[1] for i in range(20)]
    assert np.mean(t_psnr) < np.mean(targets)
    assert blur_schedule_qf(0.4, spec) == 100.0
