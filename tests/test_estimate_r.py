"""Acceleration (R) estimation: ``mriqa.restimate`` and ``mriqa estimate-r`` (issue 5).

CPU only, no ``data/`` needed: the inputs are a numerically undersampled phantom, a colour "photo" and noise.
"""
from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from mriqa.cli import main
from mriqa.restimate import intervals, learned, qf_based, volume_estimate


# ------------------------------------------------------------------------------------------------- inputs
def phantom(size: int = 96) -> np.ndarray:
    """A brain-like test image ``[size, size]``: skimage's Shepp-Logan phantom with a little texture."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    img = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
    rng = np.random.default_rng(0)
    return (img + 0.02 * rng.standard_normal(img.shape) * (img > 0.05)).clip(0, None).astype(np.float32)


def zero_filled(img: np.ndarray, r: int) -> np.ndarray:
    """Equispaced line undersampling along the columns (every r-th + 8 centre lines), zero-filled magnitude."""
    k = np.fft.fftshift(np.fft.fft2(img))
    w = img.shape[1]
    mask = np.zeros(w, bool)
    mask[::r] = True
    mask[w // 2 - 4: w // 2 + 4] = True
    return np.abs(np.fft.ifft2(np.fft.ifftshift(k * mask))).astype(np.float32)


@pytest.fixture(scope="module")
def recon_h5(tmp_path_factory):
    path = tmp_path_factory.mktemp("r") / "recon.h5"
    base = phantom()
    vol = np.stack([zero_filled(np.roll(base, s, axis=0), 4) for s in (-2, 0, 2)])
    with h5py.File(path, "w") as hf:
        hf["reconstruction"] = vol
        hf.attrs.update({"acceleration": 4.0, "acceleration_effective": 3.9, "method": "zf",
                         "mask_type": "equispaced"})
    return path


@pytest.fixture(scope="module")
def ood_inputs(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("ood")
    y, x = np.mgrid[0:96, 0:128]
    photo = np.stack([128 + 100 * np.sin(x / 9.0), 128 + 100 * np.cos(y / 7.0), 128 + 60 * np.sin((x + y) / 13.0)],
                     -1).astype(np.uint8)
    Image.fromarray(photo).save(d / "photo.png")
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((96, 96)) * 255).astype(np.uint8)).save(d / "noise.png")
    np.save(d / "noise.npy", (rng.standard_normal((2, 96, 96)) * 100).astype(np.float32))
    return d


def run_cli(args, capsys):
    code = main(["estimate-r", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


# --------------------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("method", ["learned", "qf"])
def test_cli_json_schema_volume_record_and_comparison(recon_h5, tmp_path, capsys, method):
    out = tmp_path / "r.json"
    code, stdout, _ = run_cli([recon_h5, "--method", method, "--json", out], capsys)
    assert code == 0
    records = json.loads(out.read_text())
    assert len(records) == 4  # 3 slices + the volume
    for r in records:
        assert {"input", "slice", "r_est", "r_low", "r_high"} <= set(r)
        assert r["input"] == str(recon_h5)
        assert 1.0 <= r["r_low"] <= r["r_est"] <= r["r_high"] <= 16.0
        assert r["estimator"] == method
    assert [r["slice"] for r in records] == [0, 1, 2, None]
    # the h5 carries acceleration attrs: the comparison is printed
    assert "acquisition R = 4 (nominal, effective 3.90" in stdout
    assert "estimated R =" in stdout and ("inside" in stdout or "OUTSIDE" in stdout)


def test_cli_passes_the_h5_method_to_the_learned_estimator(recon_h5, tmp_path, capsys):
    """The same slices with and without ``method = "zf"``: the estimates differ exactly by the two calibrations."""
    bare = tmp_path / "bare.h5"
    with h5py.File(recon_h5, "r") as src, h5py.File(bare, "w") as dst:
        dst["reconstruction"] = src["reconstruction"][()]
    records = {}
    for path in (recon_h5, bare):
        out = tmp_path / f"{path.stem}.json"
        assert run_cli([path, "--method", "learned", "--json", out], capsys)[0] == 0
        records[path] = json.loads(out.read_text())[0]
    est = learned.LearnedREstimator.load()
    (zf, hw_zf), (pooled, hw_pooled) = est.calibration_for("zf"), est.calibration_for(None)
    raw = (np.log(records[bare]["r_est"]) - pooled["a"]) / pooled["b"]  # the JSON rounds R to 4 decimals
    assert np.log(records[recon_h5]["r_est"]) == pytest.approx(zf["a"] + zf["b"] * raw, abs=1e-3)
    assert abs(np.log(records[recon_h5]["r_est"] / records[bare]["r_est"])) > 0.05  # the two calibrations differ
    assert records[recon_h5]["r_high"] / records[recon_h5]["r_est"] == pytest.approx(np.exp(hw_zf), rel=1e-3)
    assert records[bare]["r_high"] / records[bare]["r_est"] == pytest.approx(np.exp(hw_pooled), rel=1e-3)


def test_cli_single_image_has_one_record(tmp_path, capsys):
    from PIL import Image

    img = zero_filled(phantom(), 4)
    path = tmp_path / "slice.png"
    Image.fromarray((np.clip(img / np.percentile(img, 99.5), 0, 1) * 255).astype(np.uint8)).save(path)
    out = tmp_path / "r.json"
    code, stdout, _ = run_cli([path, "--json", out], capsys)
    assert code == 0
    records = json.loads(out.read_text())
    assert len(records) == 1 and records[0]["slice"] is None
    assert "acquisition R" not in stdout


@pytest.mark.parametrize("method", ["learned", "qf"])
def test_ood_inputs_get_the_widest_interval(ood_inputs, tmp_path, capsys, method):
    out = tmp_path / "ood.json"
    files = [ood_inputs / "photo.png", ood_inputs / "noise.png", ood_inputs / "noise.npy"]
    code, _, _ = run_cli([*files, "--method", method, "--json", out], capsys)
    assert code == 0
    records = json.loads(out.read_text())
    assert len(records) == 5  # photo, noise.png, 2 npy slices + npy volume
    for r in records:
        assert (r["r_low"], r["r_high"]) == intervals.R_BOUNDS, r
        assert r["ood"], r
    assert "colour" in records[0]["ood"] and records[0]["r_est"] is None  # said at once: no network run
    assert "noise-like" in records[1]["ood"]


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    tiny = tmp_path / "tiny.npy"
    np.save(tiny, np.ones((16, 16), np.float32))
    nan = tmp_path / "nan.npy"
    a = np.ones((2, 64, 64), np.float32)
    a[1, 3, 3] = np.nan
    np.save(nan, a)
    zero = tmp_path / "zero.npy"
    np.save(zero, np.zeros((2, 64, 64), np.float32))
    out = tmp_path / "failed.json"
    for bad, words in ((tmp_path / "missing.h5", "missing.h5"), (tiny, "smaller"), (nan, "NaN"),
                       (zero, "all slices are zero")):
        code, stdout, err = run_cli([bad, "--json", out], capsys)
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mriqa: error:") and words in lines[0], err
        # nothing was estimated: no table, no JSON file (a failed input is a record only beside results)
        assert stdout == "" and not out.exists() and list(tmp_path.glob(".failed.json*")) == []
    with pytest.raises(SystemExit) as exc:
        main(["estimate-r", str(tiny), "--method", "nonsense"])
    assert exc.value.code == 2


def test_estimating_r_from_an_image_needs_no_sigpy():
    code = ("import sys, numpy as np; from mriqa.cli import build_parser; build_parser(); "
            "from mriqa.restimate import load_estimator, estimate_images; "
            "e = load_estimator('auto'); estimate_images(e, np.random.default_rng(0).random((64, 64)) * 5); "
            "assert not any(m == 'sigpy' or m.startswith('sigpy.') for m in sys.modules), 'sigpy imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ------------------------------------------------------------------------------------------ calibrations
def test_shipped_qf_calibration_is_monotone():
    est = qf_based.QFREstimator.load(predictor=object())  # predictor unused here
    pools = est.calibration["pools"]
    assert set(pools) == set(qf_based.POOLS)
    for table in pools.values():
        assert "all" in table
        for curve in table.values():
            assert qf_based.is_monotone(curve)
            q = np.linspace(0, 1, 101)
            assert np.all(np.diff(qf_based.apply_monotone(curve, q)) <= 1e-12)  # higher QF -> lower R
            assert 0 < curve["halfwidth"] < 5


def test_fit_monotone_recovers_a_decreasing_relation():
    rng = np.random.default_rng(0)
    r = rng.choice([2.0, 3.0, 4.0, 6.0, 8.0, 12.0], 400)
    qf = 1.0 - 0.05 * r + 0.03 * rng.standard_normal(400)
    curve = qf_based.fit_monotone(qf, r)
    assert qf_based.is_monotone(curve)
    est = np.exp(qf_based.apply_monotone(curve, 1.0 - 0.05 * np.array([2.0, 12.0])))
    assert est[0] < 3 and est[1] > 9


def test_conformal_halfwidth_covers():
    rng = np.random.default_rng(0)
    res = rng.standard_normal(999)
    q = intervals.conformal_halfwidth(res, 0.8)
    assert np.mean(np.abs(rng.standard_normal(20000)) <= q) >= 0.78
    assert intervals.conformal_halfwidth([0.1], 0.9) == float("inf")
    r_est, lo, hi = intervals.interval(np.log([0.5, 4.0, 40.0]), 0.2)
    assert np.all(lo <= r_est) and np.all(r_est <= hi) and lo.min() >= 1 and hi.max() <= 16


def test_volume_estimate_combines_and_flags():
    v = volume_estimate(np.log([4.0, 4.0, 4.0]), [0.3, 0.3, 0.3], [None, None, None])
    assert v["ood"] is None and v["r_est"] == pytest.approx(4.0)
    assert v["r_low"] == pytest.approx(4 * np.exp(-0.3)) and v["r_high"] == pytest.approx(4 * np.exp(0.3))
    v = volume_estimate(np.log([4.0, 4.0, 4.0]), [0.3] * 3, ["noise", "noise", None])
    assert (v["r_low"], v["r_high"]) == intervals.R_BOUNDS and v["ood"]


# ----------------------------------------------------------------------------------------- learned model
def test_learned_weights_are_safetensors_with_r_metadata():
    from safetensors import safe_open

    with safe_open(str(learned.WEIGHTS), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["task"]) == learned.TASK
    info = json.loads(meta["r_estimation"])
    assert {"halfwidth", "max_spread", "min_correlation", "val_mae_r"} <= set(info)
    est = learned.LearnedREstimator.load()
    x = torch.rand(2, 1, 64, 64)
    maps = est.log_r_maps(x)
    assert maps.shape == (2, 10, 10)


def test_learned_uses_the_recon_methods_own_recalibration():
    est = learned.LearnedREstimator.load()
    info = dict(est.info, recalibration={"a": 0.0, "b": 1.0}, halfwidth=0.4,
                recalibration_by_method={"zf": {"a": 0.5, "b": 1.0}}, halfwidth_by_method={"zf": 0.2})
    est = learned.LearnedREstimator(est.predictor.model.net, info)
    assert est.calibration_for("zf") == ({"a": 0.5, "b": 1.0}, 0.2)
    assert est.calibration_for("sense") == ({"a": 0.0, "b": 1.0}, 0.4)  # no pair of its own: the pooled one
    assert est.calibration_for(None) == ({"a": 0.0, "b": 1.0}, 0.4)
    x = torch.from_numpy(zero_filled(phantom(), 4) / zero_filled(phantom(), 4).max())[None, None].clamp(0, 1)
    zf, unknown = est.estimate(x, recon_method="zf"), est.estimate(x, recon_method=None)
    assert zf["log_r"][0] == pytest.approx(unknown["log_r"][0] + 0.5)
    assert zf["halfwidth"][0] == 0.2 and unknown["halfwidth"][0] == 0.4
    assert zf["r_high"][0] / zf["r_low"][0] == pytest.approx(np.exp(0.4))


def test_learned_rejects_a_qf_model(tmp_path):
    from recon.errors import InputError
    from mriqa.predictor import shipped_weights

    with pytest.raises(InputError, match="not an R-estimation model"):
        learned.LearnedREstimator.load(shipped_weights("gray"))


def test_trainer_checkpoint_resume_and_export(tmp_path):
    """Tiny synthetic dataset: two steps, resume to four, export; the checkpoint loads with weights_only."""
    from mriqa.restimate.train import load_config, train

    root = tmp_path / "r128"
    base = phantom(64)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        imgs = np.stack([zero_filled(base, r) for r in (2, 3, 4, 6)])
        with h5py.File(root / split / "zf.h5", "w") as hf:
            hf["images"] = imgs
            hf["accel"] = np.array([2, 3, 4, 6], np.float32)
            hf.create_dataset("mask_kind", data=np.array(["equispaced"] * 4, dtype=object),
                              dtype=h5py.string_dtype())
    cfg = load_config(None, [f"data.root={root}", "data.methods=[zf]", "sampler.crop=32", "train.batch=2",
                             "train.steps=4", "train.eval_every=2", "train.checkpoint_every=2", "train.warmup=1",
                             "train.progress=false", f"output_dir={tmp_path / 'run'}",
                             f"export={tmp_path / 'r.safetensors'}", "train.stop_at_step=2"])
    logs = []
    assert train(cfg, log=logs.append)["stopped_at"] == 2
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ck["step"] == 2
    cfg["train"]["stop_at_step"] = None
    summary = train(cfg, log=logs.append)
    assert any("resumed" in line for line in logs)
    assert summary["export"] == str(tmp_path / "r.safetensors")
    assert (tmp_path / "run" / "curves.png").is_file()
    est = learned.LearnedREstimator.load(tmp_path / "r.safetensors")
    assert set(est.info["recalibration_by_method"]) == {"zf"} and est.info["halfwidth_by_method"]["zf"] >= 0
    out = est.estimate(torch.from_numpy(np.stack([zero_filled(base, 4)]) / zero_filled(base, 4).max())[:, None]
                       .clamp(0, 1).float())
    assert out["r_low"][0] <= out["r_est"][0] <= out["r_high"][0]

    # --recalibrate: the same fit again from the file alone; tensors and training facts untouched
    from mriqa.restimate.train import recalibrate
    from recon.io.weights import load_weights

    before_state, before = load_weights(tmp_path / "r.safetensors")
    recalibrate(cfg, str(tmp_path / "r.safetensors"), log=logs.append)
    after_state, after = load_weights(tmp_path / "r.safetensors")
    assert all(torch.equal(before_state[k], after_state[k]) for k in before_state)
    assert after["training"] == before["training"]
    for key in ("best_step", "steps", "min_correlation", "halfwidth", "recalibration"):
        assert after["r_estimation"][key] == pytest.approx(before["r_estimation"][key])
    assert after["r_estimation"]["recalibration_by_method"]["zf"] == pytest.approx(
        before["r_estimation"]["recalibration_by_method"]["zf"])


def test_cli_reads_nifti_volumes(tmp_path, capsys):
    import nibabel as nib

    vol = np.stack([zero_filled(np.roll(phantom(), s, axis=0), 3) for s in (-1, 1)], axis=-1)  # [H, W, S]
    path = tmp_path / "recon.nii.gz"
    nib.save(nib.Nifti1Image(vol.astype(np.float32), np.eye(4)), str(path))
    out = tmp_path / "r.json"
    code, _, _ = run_cli([path, "--json", out], capsys)
    assert code == 0
    records = json.loads(out.read_text())
    assert [r["slice"] for r in records] == [0, 1, None]
