"""The RQNet-backbone R estimator (issue 21): spectral features, the trainer (smoke, resume, export), the
estimator through the public API and ``mriqa estimate-r``, the out-of-distribution rules, and the shipped
weights on the real 16-coil k-space (shared data)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mriqa
from mriqa.models.reconq import SPECTRAL_LAGS, RQNet, normalize_magnitude, spectral_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _aliased(size: int, period: int, seed: int = 0) -> np.ndarray:
    """A smooth random object zero-filled with every ``period``-th column line kept (k-space of the magnitude):
    an equispaced mask at R = ``period`` along the image's columns."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    obj = gaussian_filter(rng.random((size, size)), 3) * (np.hypot(*np.mgrid[-1:1:size * 1j, -1:1:size * 1j]) < 0.7)
    k = np.fft.fftshift(np.fft.fft2(obj))
    keep = np.zeros(size, bool)
    keep[::period] = True
    keep[size // 2 - 4: size // 2 + 4] = True
    return np.abs(np.fft.ifft2(np.fft.ifftshift(k * keep[None, :]))).astype(np.float32)


def test_spectral_features_see_an_equispaced_comb_along_its_axis():
    f = torch.cat([spectral_features(normalize_magnitude(torch.from_numpy(_aliased(n, 4))[None]), 16)
                   for n in (128, 96)])
    n_lag = len(SPECTRAL_LAGS)
    assert f.shape == (2, 2 * (16 + n_lag)) and torch.isfinite(f).all()
    col_acf = f[:, 16 + n_lag + 16:]          # autocorrelation of the profile along the columns (the comb's axis)
    row_acf = f[:, 16:16 + n_lag]
    lag4 = SPECTRAL_LAGS.index(4)
    # a peak at lag 4 along the sampled axis, none along the other; the same at 96 and 128 px
    assert torch.all(col_acf[:, lag4] > 0.3) and torch.all(col_acf[:, lag4] > row_acf[:, lag4] + 0.2)
    # transposing the image swaps the two halves
    x = normalize_magnitude(torch.from_numpy(_aliased(128, 4))[None])
    ft = spectral_features(x.transpose(-1, -2), 16)
    half = 16 + n_lag
    assert torch.allclose(ft[:, :half], f[:1, half:], atol=1e-5)


def test_rqnet_logits_are_the_map_before_the_sigmoid_and_spectral_starts_off():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 64, 64)
    plain = RQNet(width=8).eval()
    assert torch.allclose(plain(x), torch.sigmoid(plain.logits(x)))
    spec = RQNet(width=8, spectral=8).eval()
    assert spec.logits(x).shape == (2, 1, 8, 8)


def test_without_the_whole_image_vector_a_map_cell_sees_only_its_receptive_field():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 256, 256)
    far = x.clone()
    far[..., :32, :32] = 0  # a corner more than the receptive field (119 px) from the opposite corner's cell
    for whole_image, changed in ((True, True), (False, False)):
        net = RQNet(width=8, spectral=8, whole_image=whole_image).eval()
        with torch.no_grad():
            a, b = net.logits(x)[0, 0, -1, -1], net.logits(far)[0, 0, -1, -1]
        assert bool(a != b) is changed


def test_initial_model_starts_as_a_quality_model_or_fine_tunes_an_r_estimator():
    from mriqa.predictor import load_predictor
    from mriqa.restimate.train_rq import initial_model

    cfg = {"name": "t", "model": {"width": 32, "spectral": 16, "fine": 16}}
    fresh = initial_model({**cfg, "init": "recon"}, 1.5, log=lambda s: None)
    assert fresh.spec[-1].weight.abs().sum() == 0 and fresh.fine[-1].weight.abs().sum() == 0  # start silent
    assert float(fresh.head[-1].bias.detach()) == 1.5  # the quality head's SSIM logit replaced by the mean log R
    weights = str(Path(mriqa.__file__).parent / "weights" / "r-rq.safetensors")
    shipped = load_predictor(weights, device="cpu").model.state_dict()
    tuned = initial_model({**cfg, "init": weights}, 1.5, log=lambda s: None).state_dict()
    assert tuned.keys() == shipped.keys()
    assert all(torch.equal(tuned[k], shipped[k]) for k in shipped)  # every branch and the head kept as trained


@pytest.fixture(scope="module")
def rq_split(tmp_path_factory, phantom_kspace):
    """A 4-coil phantom volume built into a quality set: zero-filled and CG-SENSE at R = 2 and 6."""
    from mriqa.recon_quality.data import build_quality_split
    from recon.io.fastmri_h5 import write_fastmri_h5

    root = tmp_path_factory.mktemp("rdata")
    kspace, rss = phantom_kspace(slices=2, size=64, coils=4)
    write_fastmri_h5(root / "multicoil_test" / "phantom.h5", kspace, reconstruction_rss=rss)
    return build_quality_split(root, "test", root / "q.h5", methods=("zf", "sense"), accels=(2.0, 6.0),
                               masks=("equispaced",), slices=1, log=lambda s: None)


@pytest.mark.parametrize("spectral", [0, 8])
def test_training_smoke_resume_and_estimator(rq_split, tmp_path, spectral):
    from mriqa.recon_quality.data import read_quality_set
    from mriqa.restimate import estimate_images
    from mriqa.restimate.rq_based import RQREstimator
    from mriqa.restimate.train_rq import load_config, train

    cfg = load_config(None, [f"data.train=[{rq_split}]", f"data.val=[{rq_split}]", f"output_dir={tmp_path / 'run'}",
                             f"model.spectral={spectral}", "train.steps=4", "train.batch=4", "train.eval_every=2",
                             "train.checkpoint_every=2", "train.progress=false", "data.crop_min=48",
                             "ood.photos=null", "ood.synthetic=12"])
    first = train(cfg, log=lambda s: None)
    assert first["r_estimation"]["best_step"] in (2, 4)
    cfg["train"]["steps"] = 6
    again = train(cfg, log=lambda s: None)  # resumes at step 4
    assert again["r_estimation"]["steps"] == 6
    est = RQREstimator.load(again["weights"])
    images = read_quality_set([rq_split])["images"]
    res = estimate_images(est, images, recon_method="sense")
    assert res["r_est"].shape == (4,) and np.all((res["r_low"] <= res["r_est"]) & (res["r_est"] <= res["r_high"]))
    assert set(est.info) >= {"halfwidth", "recalibration", "recalibration_by_method", "max_spread", "min_correlation",
                             "outlier_head"}
    # weights written before the outlier head existed still estimate
    est.info.pop("outlier_head")
    assert estimate_images(est, images)["r_est"].shape == (4,)
    # the predictor prepares the magnitude normalisation (not the QF models' 8-bit window)
    x = est.predictor.prepare(images[:1] * 1000.0, kind="mri")[0]
    assert torch.allclose(x, normalize_magnitude(torch.from_numpy(images[:1])), atol=1e-5)


def test_a_fine_tune_records_its_earlier_stages_and_calibrates_on_calibrate_data(rq_split, tmp_path):
    from mriqa.restimate.rq_based import RQREstimator
    from mriqa.restimate.train_rq import calibration_sets, load_config, train

    common = ["train.steps=2", "train.batch=4", "train.eval_every=2", "train.checkpoint_every=2",
              "train.progress=false", "data.crop_min=48", "ood.photos=null", "ood.synthetic=12",
              "model.spectral=0", "model.fine=0"]
    base = load_config(None, [f"data.train=[{rq_split}]", f"data.val=[{rq_split}]", "name=stage1",
                              f"output_dir={tmp_path / 'one'}", *common])
    first = train(base, log=lambda s: None)
    lines = []
    tuned = load_config(None, [f"data.train=[{rq_split}]", f"data.val=[{rq_split}]", "name=stage2",
                               f"init={first['weights']}", f"output_dir={tmp_path / 'two'}", *common,
                               f"calibrate.data={{train: [{rq_split}], val: [{rq_split}]}}"])
    second = train(tuned, log=lines.append)
    assert any("calibrating on calibrate.data: 4 / 4 images" in line for line in lines)
    record = RQREstimator.load(second["weights"]).training
    assert [s["config"]["name"] for s in record["earlier_stages"]] == ["stage1"]
    assert record["config"]["init"] == first["weights"] and "earlier_stages" not in record["earlier_stages"][0]
    # without calibrate.data the sets given (or data's) are used; with it, data's are never read
    given = ({"images": np.zeros(1)}, {"images": np.zeros(2)})
    out = calibration_sets(base, *given)
    assert out[0] is given[0] and out[1] is given[1]
    missing = {**tuned, "data": {"train": [str(tmp_path / "none.h5")], "val": [str(tmp_path / "none.h5")]}}
    tr, va = calibration_sets(missing, log=lambda s: None)
    assert len(tr["images"]) == len(va["images"]) == 4
    # --recalibrate with other outlier negatives: tensors kept, the record names the negatives now used
    from mriqa.restimate.train_rq import recalibrate
    from recon.io.weights import load_weights

    before = load_weights(second["weights"])[0]
    tuned["ood"] = {**tuned["ood"], "synthetic": 18, "windows": [64, 96]}
    recalibrate(tuned, second["weights"], log=lambda s: None)
    after = RQREstimator.load(second["weights"])
    assert all(torch.equal(before[k], v) for k, v in load_weights(second["weights"])[0].items())
    assert after.training["config"]["ood"]["synthetic"] == 18 and after.training["config"]["ood"]["windows"] == [64, 96]
    assert [s["config"]["name"] for s in after.training["earlier_stages"]] == ["stage1"]


def test_outlier_head_separates_and_keeps_its_validation_quantile():
    from mriqa.restimate.ood import fit_outlier_head, outlier_logits, synthetic_pictures

    rng = np.random.default_rng(0)
    inliers, val = rng.normal(0, 1, (400, 6)), rng.normal(0, 1, (400, 6))
    outliers = rng.normal(0, 1, (200, 6)) + np.array([4.0, 0, 0, 0, 0, 0])
    head = fit_outlier_head(inliers, outliers, val, keep=0.99)
    assert np.mean(outlier_logits(val, head) > head["threshold"]) <= 0.011
    assert head["train_outlier_recall"] > 0.9
    pics = synthetic_pictures(rng, 12, size=64)
    assert len(pics) == 12 and all(p.shape == (64, 64) and p.min() >= 0 and p.max() <= 1 for p in pics)


def test_loader_refuses_other_weights(tmp_path):
    from mriqa.restimate.rq_based import RQREstimator
    from recon.errors import InputError
    from recon.io.weights import save_weights

    path = tmp_path / "quality.safetensors"
    save_weights(RQNet(width=8), path, {"task": "quality"})
    with pytest.raises(InputError, match="not an RQNet R-estimation model"):
        RQREstimator.load(path)
    with pytest.raises(InputError, match="not found"):
        RQREstimator.load(tmp_path / "missing.safetensors")


shipped = pytest.mark.skipif(not __import__("mriqa.restimate.rq_based", fromlist=["WEIGHTS"]).WEIGHTS.is_file(),
                             reason="rq R estimator weights not shipped")


@shipped
def test_shipped_estimator_flags_noise_and_photo_like_inputs():
    from mriqa.restimate import estimate_images, load_estimator

    est = load_estimator("rq")
    rng = np.random.default_rng(0)
    noise = np.abs(rng.standard_normal((4, 128, 128)) + 1j * rng.standard_normal((4, 128, 128))).astype(np.float32)
    res = estimate_images(est, noise)
    assert all(o is not None for o in res["ood"]) and np.allclose(res["r_high"] / res["r_low"], 16.0)
    checker = ((np.indices((128, 128)).sum(0) // 16) % 2).astype(np.float32)
    assert estimate_images(est, checker)["ood"][0] is not None


@shipped
def test_point_estimates_are_the_estimates_without_their_checks(phantom_kspace):
    from mriqa.restimate import estimate_images, load_estimator, point_estimates

    est = load_estimator("rq")
    _, rss = phantom_kspace(slices=2, size=64, coils=4)  # fully sampled [S, H, W]
    rng = np.random.default_rng(0)
    noise = np.abs(rng.standard_normal((2, 64, 64)) + 1j * rng.standard_normal((2, 64, 64))).astype(np.float32)
    for images in (rss, noise):  # in distribution and flagged alike: the same point estimate
        for method in (None, "modl"):
            full = estimate_images(est, images, recon_method=method)
            np.testing.assert_allclose(point_estimates(est, images, recon_method=method), full["r_est"], rtol=1e-9)


@shipped
def test_estimate_r_cli_uses_rq_and_the_files_method(tmp_path, capsys, phantom_kspace):
    from mriqa.cli import main
    from recon.io.fastmri_h5 import ReconstructionAttrs, write_reconstruction_h5

    _, rss = phantom_kspace(slices=2, size=96, coils=4)
    path = tmp_path / "recon.h5"
    write_reconstruction_h5(path, rss, attrs=ReconstructionAttrs(method="sense", acceleration=4.0))
    out = tmp_path / "r.json"
    assert main(["estimate-r", str(path), "--method", "rq", "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [r["estimator"] for r in records] == ["rq"] * 3 and records[-1]["slice"] is None
    assert "acquisition R = 4" in capsys.readouterr().out


@shipped
def test_shipped_estimator_orders_real_zero_filled_by_r(shared_data):
    """On the real 16-coil k-space (never seen in training), both orientations: zero-filled R = 2 is estimated
    below R = 8."""
    from mriqa.recon_quality.data import real_kspace_set
    from mriqa.restimate import estimate_images, load_estimator

    real = real_kspace_set(shared_data, methods=("zf",), accels=(2, 8), masks=("equispaced",), log=lambda s: None)
    res = estimate_images(load_estimator("rq"), real["images"], recon_method="zf")
    for vol in set(real["volume"]):
        r = {a: e for a, e, v in zip(real["accel"], res["r_est"], real["volume"]) if v == vol}
        assert r[2.0] < r[8.0], (vol, r)


@shipped
def test_shipped_estimator_flags_held_out_photos(shared_data):
    """Every Kodak24 and Set14 photo in gray (held out from the outlier head, which saw BSD100 and CBSD68) is
    flagged, with the interval [1, 16]."""
    from PIL import Image

    from mriqa.restimate import estimate_images, load_estimator

    est = load_estimator("rq")
    paths = [p for name in ("Kodak24", "Set14") for p in sorted((shared_data / "rgb" / name).glob("*.png"))]
    assert len(paths) == 38
    missed = []
    for path in paths:
        res = estimate_images(est, np.asarray(Image.open(path).convert("L"), np.float32) / 255.0)
        if res["ood"][0] is None or res["r_high"][0] / res["r_low"][0] != pytest.approx(16.0):
            missed.append(f"{path.parent.name}/{path.name}")
    assert not missed, missed


def test_photo_negatives_are_the_photo_and_windows_of_each_side():
    from mriqa.restimate.train_rq import photo_negatives

    img = np.random.default_rng(0).uniform(0, 1, (321, 481)).astype(np.float32)
    plain = photo_negatives(img, np.random.default_rng(1))
    assert [p.shape for p in plain] == [(321, 481), (128, 128), (128, 128)]
    more = photo_negatives(img, np.random.default_rng(1), windows=(128, 192), count=3)
    assert all((a == b).all() for a, b in zip(plain, more[:3]))  # the default set is the start of the longer one
    assert [p.shape for p in more[1:]] == [(128, 128)] * 3 + [(192, 192)] * 3
    assert any((w == img[y:y + 192, x:x + 192]).all() for w in more[4:5] for y in range(130) for x in range(290))


def test_batches_keep_the_normalisation_range_with_a_gamma():
    from mriqa.restimate.train_rq import draw_batch

    rng = np.random.default_rng(0)
    images = rng.random((6, 64, 64)).astype(np.float32) * 50
    log_r = np.log(np.arange(2, 8, dtype=np.float32))
    plain, y = draw_batch(np.random.default_rng(1), images, log_r, 4, 0.0, 48)
    bent, y2 = draw_batch(np.random.default_rng(1), images, log_r, 4, 0.0, 48, gamma_range=(0.5, 2.0))
    assert plain.shape == bent.shape == (4, 1, 64, 64) and torch.equal(y, y2)
    assert float(bent.min()) >= 0 and float(bent.max()) <= 2.0 and not torch.allclose(plain, bent)



def test_bias_fields_are_smooth_bounded_and_shade_the_batches():
    from mriqa.restimate.train_rq import bias_fields, draw_batch

    f = bias_fields(np.random.default_rng(0), 32, 64, 1.0)
    log_f = f.log()
    assert f.shape == (32, 1, 64, 64) and float(log_f.abs().max()) <= 1.0 + 1e-5
    assert float(log_f.flatten(1).abs().amax(1).max()) > 0.5  # strengths reach up the range, not all ~0
    # smooth: neighbouring pixels differ by a small part of the field's range
    step = (log_f[..., 1:, :] - log_f[..., :-1, :]).abs().amax()
    assert float(step) < 0.1
    assert torch.equal(bias_fields(np.random.default_rng(0), 2, 16, 0.0), torch.ones(2, 1, 16, 16))
    rng = np.random.default_rng(0)
    images = rng.random((6, 64, 64)).astype(np.float32) * 50
    log_r = np.log(np.arange(2, 8, dtype=np.float32))
    plain, y = draw_batch(np.random.default_rng(1), images, log_r, 4, 0.0, 48)
    shaded, y2 = draw_batch(np.random.default_rng(1), images, log_r, 4, 0.0, 48, bias_field=1.0)
    assert torch.equal(y, y2) and float(shaded.min()) >= 0 and float(shaded.max()) <= 2.0
    assert not torch.allclose(plain, shaded)

def test_r_tables_read_perfect_and_volume_estimates():
    from mriqa.evaluation.r_heldout import format_table, r_table, volume_table

    accel = np.repeat([2.0, 4.0, 8.0, 16.0], 6)
    data = {"accel": accel, "method": np.tile(np.repeat(["zf", "modl"], 3), 4),
            "mask_kind": np.array(["random"] * len(accel)), "volume": np.tile(["a", "a", "b"], 8)}
    noise = np.tile([0.1, -0.1, 0.0], 8)  # log-errors that cancel over the two slices of volume "a"
    res = {"r_est": accel * np.exp(noise), "log_r": np.log(accel) + noise, "halfwidth": np.full(len(accel), 0.2),
           "r_low": accel * 0.8, "r_high": accel * 1.25, "ood": [None] * len(accel)}
    rows = r_table(data, res)
    assert rows["all/all"]["n"] == 18 and rows["all/all"]["coverage"] == 1.0  # R = 16 left out
    assert rows["all/all"]["mae"] > 0 and rows["all/all"]["srcc"] > 0.9
    vol = volume_table(data, res)
    # 3 R values x 2 methods x 2 volumes; volume "a"'s two slices average to the true R exactly
    assert vol["all/all"]["n"] == 12 and vol["all/all"]["mae"] == pytest.approx(0.0, abs=1e-9)
    assert vol["_slices_per_volume"]["median"] == 1.5
    assert "| zero-filled | random | 9 |" in format_table(rows, "method")


def test_diagnose_r_real_prints_the_readings_and_refuses_a_missing_set(shared_data, tmp_path, capsys):
    import importlib.util

    from recon.simulate import SimulationConfig, make_dataset

    spec = importlib.util.spec_from_file_location(
        "diagnose_r_real", Path(mriqa.__file__).parents[1] / "scripts" / "diagnose_r_real.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    make_dataset(tmp_path / "sim", shared_data, SimulationConfig(size=64, coils=2, splits={"test": ["colin27"]},
                                                                 orientations=("axial",), max_slices_per_file=1),
                 progress=False)
    argv = ["--data-root", str(shared_data), "--count", "1"]
    assert script.main([*argv, "--sim", str(tmp_path / "sim" / "multicoil_test")]) == 0
    out = capsys.readouterr().out
    readings = [line for line in out.splitlines() if line.startswith("| as they are (96 x 96) |")]
    assert len(readings) == 1 and all(1.0 <= float(v) <= 16.0 for v in readings[0].split("|")[2].split("/"))
    assert "| real | a simulated one: both |" in out and "Foreground median" in out
    assert script.main([*argv, "--sim", str(tmp_path / "none")]) == 2
    assert "no simulated .h5 files" in capsys.readouterr().err


@shipped
def test_model_card_lists_every_training_stage_and_the_refused_inputs(tmp_path):
    """``scripts/eval_r_heldout.py --card-from``: the shipped card, rewritten from the committed tables."""
    import importlib.util

    root = Path(mriqa.__file__).parents[1]
    spec = importlib.util.spec_from_file_location("eval_r_heldout", root / "scripts" / "eval_r_heldout.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    card = tmp_path / "card.md"
    assert script.main(["--card-from", str(root / "docs" / "r" / "heldout.json"), "--card", str(card)]) == 0
    text = card.read_text()
    stages = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| r-rq-")]
    assert stages == ["r-rq-fine", "r-rq-look"]  # the first stage, then the look fine-tune from its weights
    assert "| real 16-coil k-space (method known) | 168 |" in text and "Inputs to refuse, flagged:" in text
    assert "fitted on `data/rq128-snr400/val.h5`" in text  # calibrate.data, not the fine-tune's own sets
