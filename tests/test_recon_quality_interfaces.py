"""The reconstruction-quality model's interfaces (issue 20): ``load_predictor("recon")`` and rqnet weights paths,
``mriqa score --model recon``, the metrics (QFMetric / QFScore / iqa-bench registry) and ReconQualityLoss.

Random-init RQNets (saved to tmp_path) stand in for the trained model, so no test asserts a score's value other
than against another route to the same number; the shipped name is used where noted (how well the shipped model
ranks is tested in tests/test_recon_quality.py and measured by scripts/eval_rq.py)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import mriqa
from mriqa import predictor as predictor_mod
from mriqa.cli import main
from mriqa.losses import CombinedLoss, ReconQualityLoss, recon_quality_loss
from mriqa.models import QFNet
from mriqa.models.reconq import RQNet, normalize_magnitude
from mriqa.predictor import QFPredictor, load_predictor
from recon.errors import InputError
from recon.io.weights import save_weights


def _rqnet(seed=0, width=8):
    torch.manual_seed(seed)
    return RQNet(width=width).eval()


@pytest.fixture(scope="module")
def rq_path(tmp_path_factory):
    return save_weights(_rqnet(), tmp_path_factory.mktemp("w") / "rq-random.safetensors")


@pytest.fixture(scope="module")
def rq(rq_path):
    return load_predictor(rq_path, device="cpu")


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """A weights folder laid out like mriqa/weights/ (random-init models), for the shipped names."""
    d = tmp_path_factory.mktemp("weights")
    save_weights(_rqnet(1), d / "rq-recon.safetensors")
    torch.manual_seed(0)
    save_weights(QFNet(1, width=8), d / "qf-gray.safetensors")
    return d


def _slice(shape=(70, 64), seed=0, scale=100.0):
    """A magnitude-like image: a textured disc on a noisy background, on a scanner-like scale."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    disk = np.hypot(yy - shape[0] / 2, xx - shape[1] / 2) < min(shape) / 3
    img = 0.05 + disk * (0.6 + 0.2 * np.sin(xx / 3.0)) + 0.05 * rng.random(shape)
    return (img * scale).astype(np.float32)


def _direct_score(img: np.ndarray) -> float:
    """The score by hand: RQNet.score(RQNet(normalize_magnitude(|img|)))."""
    net = _rqnet()
    with torch.no_grad():
        return float(RQNet.score(net(normalize_magnitude(torch.from_numpy(np.abs(img))[None])))[0])


# ------------------------------------------------------------------------------------------------- predictor
def test_load_by_path_one_image(rq, rq_path):
    assert isinstance(rq, QFPredictor) and rq.uses_magnitude and not rq.is_qf
    assert rq.metadata["arch"] == "rqnet" and rq.name == str(rq_path) and not rq.model.training
    assert rq.in_channels == 1 and rq.output_stride == 8 and rq.min_input_size == 32
    img = _slice()
    before = img.copy()
    q = rq.qf_map(img)
    assert isinstance(q, np.ndarray) and q.dtype == np.float32 and q.shape == (9, 8)
    assert q.min() >= 0 and q.max() <= 1
    s = rq.score(img)
    assert isinstance(s, float) and 0 <= s <= 1
    assert s == pytest.approx(float(q.mean()), abs=1e-6)
    assert s == pytest.approx(_direct_score(img), abs=1e-6)  # normalize_magnitude, not mriqa.normalize
    np.testing.assert_array_equal(img, before)  # the input is not modified
    assert rq.score(img * 1e-4) == pytest.approx(s, abs=1e-5)  # scale-free: fastMRI's ~1e-4 scale needs no kind
    assert rq.score(img, kind="photo") == s  # kind is ignored


def test_batch_complex_and_torch_inputs(rq):
    vol = np.stack([_slice(seed=i) for i in range(3)])
    maps = rq.qf_map(vol)
    assert maps.shape == (3, 9, 8)
    scores = rq.score(vol)
    assert scores.shape == (3,) and scores.dtype == np.float64
    np.testing.assert_allclose(scores, [rq.score(v) for v in vol], atol=1e-6)
    phase = np.exp(1j * np.random.default_rng(0).uniform(-np.pi, np.pi, vol.shape)).astype(np.complex64)
    np.testing.assert_allclose(rq.score(vol * phase), scores, atol=1e-5)  # complex -> its magnitude
    t = torch.from_numpy(vol)
    ts = rq.score(t)
    assert isinstance(ts, torch.Tensor) and ts.dtype == torch.float32 and ts.shape == (3,)
    np.testing.assert_allclose(ts.numpy(), scores, atol=1e-6)
    np.testing.assert_allclose(rq.score(t[:, None]).numpy(), scores, atol=1e-6)  # [N, 1, H, W]
    np.testing.assert_allclose(rq.score(torch.from_numpy(vol * phase)).numpy(), scores, atol=1e-5)
    tm = rq.qf_map(t[0])
    assert isinstance(tm, torch.Tensor) and tm.shape == (9, 8)
    np.testing.assert_allclose(tm.numpy(), maps[0], atol=1e-6)


@pytest.mark.parametrize("shape,cells", [((32, 32), (4, 4)), ((33, 47), (5, 6)), ((64, 72), (8, 9))])
def test_map_is_an_eighth_of_the_input_rounded_up(rq, shape, cells):
    assert rq.qf_map(_slice(shape)).shape == cells


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_colour_small_nan_and_zero_inputs_are_input_errors(rq):
    rng = np.random.default_rng(0)
    with pytest.raises(InputError) as e:
        rq.score((rng.random((48, 40, 3)) * 255).astype(np.uint8))
    assert "the recon model scores gray MRI magnitudes" in _one_line(e)
    with pytest.raises(InputError, match="scores gray MRI magnitudes"):
        rq.score(torch.rand(1, 3, 48, 40))
    with pytest.raises(InputError) as e:
        rq.score(_slice((20, 64)))
    assert "20x64 pixels, smaller than the recon model's minimum input 32x32" in _one_line(e)
    bad = _slice()
    bad[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN or Inf"):
        rq.score(bad)
    with pytest.raises(InputError, match="all zero"):
        rq.score(np.zeros((40, 40), np.float32))


def test_shipped_name_recon():
    path = predictor_mod.shipped_weights("recon")
    assert path.name == "rq-recon.safetensors"
    if not path.is_file():  # a checkout without the weights: a clear error, not a traceback
        with pytest.raises(InputError, match="shipped 'recon' reconstruction-quality model is not installed"):
            load_predictor("recon")
        return
    qf = mriqa.load_predictor("recon", device="cpu")
    assert qf.name == "recon" and qf.uses_magnitude and qf.metadata["arch"] == "rqnet"
    img = _slice((64, 56))
    assert qf.qf_map(img).shape == (8, 7)
    assert 0.0 <= qf.score(img) <= 1.0


def _white_noise(n=4, size=128, seed=0):
    rng = np.random.default_rng(seed)
    return np.abs(rng.standard_normal((n, size, size)) + 1j * rng.standard_normal((n, size, size))).astype(np.float32)


def test_noise_gate_zeroes_white_noise_and_nothing_else(rq, tmp_path, capsys, weights_dir, monkeypatch):
    """The recon predictor's noise gate (mriqa.predictor.NOISE_GATE_CORRELATION): white noise gets a zero map and
    score, whatever the network says; an image with structure, even under heavy noise, is the network's; QF models
    are never gated."""
    noise = _white_noise()
    pred = rq.evaluate(noise, pool="mean", kind="mri")
    assert pred.noise_like.all() and not pred.scores.any() and not pred.maps.any()
    assert not np.asarray(rq.qf_map(noise)).any()
    with torch.no_grad():  # the network alone does not score it 0
        raw = rq.predict_input(rq.prepare(noise, kind="mri")[0])
    assert raw.abs().sum() > 0
    rng = np.random.default_rng(1)
    img = _slice((96, 96))
    noisy = np.abs(img + img.mean() * (rng.standard_normal(img.shape) + 1j * rng.standard_normal(img.shape)))
    pred = rq.evaluate(np.stack([img, noisy.astype(np.float32)]), pool="mean", kind="mri")
    assert not pred.noise_like.any() and (pred.scores > 0).all()
    np.testing.assert_allclose(pred.scores, rq.score(np.stack([img, noisy.astype(np.float32)])), atol=1e-7)
    gray = QFPredictor(QFNet(1, width=4).eval(), device="cpu")
    assert not gray.evaluate(noise[:1], kind="mri").noise_like.any()
    # mriqa score says why a noise image scored 0
    monkeypatch.setattr(predictor_mod, "WEIGHTS_DIR", weights_dir)
    npy = tmp_path / "noise.npy"
    np.save(npy, np.concatenate([noise[:1, :96, :96], img[None]]))
    rc, out, err = _score_cli(capsys, "--model", "recon", npy, "--json", tmp_path / "s.json")
    assert rc == 0, err
    assert [r["score"] for r in json.loads((tmp_path / "s.json").read_text())][0] == 0.0
    assert "noise.npy [slice 0]: no spatial structure (constant or white-noise-like), scored 0" in err


def test_shipped_recon_scores_pure_noise_below_a_reconstruction():
    """A diverged reconstruction can be all noise: the shipped predictor must not take it for a sharp image (a
    model trained on spectra that run to the matrix edge did, 0.84: configs/rq-ksp0-noise.yaml; the shipped network
    alone scores white noise 0.3-0.5, and the noise gate scores it 0)."""
    from recon.demo_data import demo_slice

    if not predictor_mod.shipped_weights("recon").is_file():
        pytest.skip("the shipped recon weights are not installed in this checkout")
    rq = load_predictor("recon", device="cpu")
    noise = _white_noise()
    noise_scores = np.asarray(rq.score(noise, pool="mean", kind="mri"))
    slice_score = float(rq.score(np.asarray(demo_slice()[1][0], np.float32)))
    assert noise_scores.max() < 0.4 < slice_score


def test_weights_dispatch_by_arch(tmp_path, rq_path):
    from mriqa.weights_io import load_qfnet, load_rqnet, load_scoring_model

    qf_path = save_weights(QFNet(1, width=4), tmp_path / "qf.safetensors")
    assert isinstance(load_scoring_model(qf_path)[0], QFNet)
    assert isinstance(load_scoring_model(rq_path)[0], RQNet)
    assert isinstance(load_rqnet(rq_path)[0], RQNet)
    with pytest.raises(InputError, match="architecture 'rqnet', not 'qfnet'"):
        load_qfnet(rq_path)
    with pytest.raises(InputError, match="architecture 'qfnet', not 'rqnet'"):
        load_rqnet(qf_path)
    other = save_weights(torch.nn.Conv2d(1, 1, 3), tmp_path / "conv.safetensors")
    with pytest.raises(InputError, match="'conv2d', not a scoring model"):
        load_predictor(other)
    with pytest.raises(InputError, match="unknown model 'recn'.*'recon'"):
        load_predictor("recn")


def test_missing_shipped_recon_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(predictor_mod, "WEIGHTS_DIR", tmp_path / "nothing-here")
    with pytest.raises(InputError) as e:
        load_predictor("recon")
    assert "shipped 'recon' reconstruction-quality model is not installed" in _one_line(e)
    assert "mriqa train-rq" in str(e.value)


# ------------------------------------------------------------------------------------------------------- CLI
def _score_cli(capsys, *argv):
    rc = main(["score", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_score_cli_recon_has_score_and_no_qf(tmp_path, capsys, weights_dir, monkeypatch):
    monkeypatch.setattr(predictor_mod, "WEIGHTS_DIR", weights_dir)
    vol = np.stack([_slice((64, 64), seed=i) for i in range(2)])
    npy = tmp_path / "recon.npy"
    np.save(npy, vol)
    out_json = tmp_path / "out.json"
    rc, out, err = _score_cli(capsys, "--model", "recon", npy, "--json", out_json, "--maps", tmp_path / "maps")
    assert rc == 0, err
    records = json.loads(out_json.read_text())
    assert [set(r) for r in records] == [{"input", "slice", "score", "pool", "model"}] * 2
    assert [r["slice"] for r in records] == [0, 1] and {r["model"] for r in records} == {"recon"}
    api = load_predictor("recon", device="cpu").score(vol)
    np.testing.assert_allclose([r["score"] for r in records], api, atol=1e-6)
    lines = out.splitlines()
    assert lines[0].split() == ["input", "slice", "model", "pool", "score"]
    assert "2 images, mean score" in out and "wrote 2 quality-map overlays" in out
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["recon_s000.png", "recon_s001.png"]
    # the gray QF model on the same file keeps qf, and score is the same value
    rc, out, err = _score_cli(capsys, "--model", "gray", npy, "--json", out_json)
    assert rc == 0, err
    for r in json.loads(out_json.read_text()):
        assert set(r) == {"input", "slice", "qf", "score", "pool", "model"} and r["score"] == r["qf"]
    assert out.splitlines()[0].split()[-1] == "qf"


def test_score_cli_recon_colour_and_small_inputs_fail_alone(tmp_path, capsys, rq_path):
    rng = np.random.default_rng(0)
    colour = tmp_path / "photo.png"
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(colour)
    tiny = tmp_path / "tiny.npy"
    np.save(tiny, _slice((16, 40)))
    good = tmp_path / "good.npy"
    np.save(good, _slice((40, 40)))
    out_json = tmp_path / "s.json"
    rc, out, err = _score_cli(capsys, "--model", rq_path, colour, tiny, good, "--json", out_json)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("mriqa: error: ") for line in lines)
    assert "the recon model scores gray MRI magnitudes" in lines[0] and "16x40" in lines[1]
    records = json.loads(out_json.read_text())
    assert ["error" in r for r in records] == [True, True, False]
    assert "score" not in records[0] and "qf" not in records[2] and 0 <= records[2]["score"] <= 1


def test_r_aware_score_falls_with_r_and_leaves_unestimated_images_alone():
    from mriqa.recon_quality.r_aware import R_AWARE_POWER, r_aware_score

    got = r_aware_score([0.8, 0.8, 0.8, 0.8], [1.0, 4.0, 0.5, np.nan])
    np.testing.assert_allclose(got, [0.8, 0.8 * 4.0 ** -R_AWARE_POWER, 0.8, 0.8])  # R < 1 reads as fully sampled
    assert np.all(np.diff(r_aware_score(np.full(5, 0.9), [2, 3, 4, 8, 12])) < 0)


def test_score_cli_r_aware_adds_the_estimated_r_and_the_joined_score(tmp_path, capsys):
    from mriqa.recon_quality.r_aware import r_aware_scores

    vol = np.stack([_slice((64, 64), seed=i) for i in range(2)])
    npy = tmp_path / "recon.npy"
    np.save(npy, vol)
    out_json = tmp_path / "out.json"
    rc, out, err = _score_cli(capsys, "--model", "recon", "--r-aware", npy, "--json", out_json)
    assert rc == 0, err
    records = json.loads(out_json.read_text())
    assert [set(r) for r in records] == [{"input", "slice", "score", "r_est", "r_aware", "r_ood", "pool",
                                          "model"}] * 2
    api = r_aware_scores(vol)  # the library: the shipped recon model and rq estimator
    np.testing.assert_allclose([r["score"] for r in records], api["score"], atol=1e-6)
    np.testing.assert_allclose([r["r_est"] for r in records], api["r_est"], atol=1e-4)
    np.testing.assert_allclose([r["r_aware"] for r in records], api["r_aware"], atol=1e-5)
    assert all(r["r_aware"] < r["score"] for r in records)  # every estimate is above 1 here
    assert out.splitlines()[0].split()[-3:] == ["score", "r_est", "r_aware"]
    # the estimator's checks: the synthetic slices above are unlike its training reconstructions (flagged, with a
    # note); a simulated MRI slice (the demo's RSS) is not; pure noise is
    assert all(isinstance(r["r_ood"], str) for r in records) and "the R estimator flags" in out + err
    from recon.demo_data import demo_slice

    for image, flagged in ((demo_slice()[1][0], False), (np.random.default_rng(0).random((64, 64)), True)):
        np.save(npy, image.astype(np.float32))
        rc, out, err = _score_cli(capsys, "--model", "recon", "--r-aware", npy, "--json", out_json)
        (record,) = json.loads(out_json.read_text())
        assert rc == 0 and record["r_aware"] is not None and (record["r_ood"] is not None) == flagged
        assert ("the R estimator flags this image" in out + err) == flagged
    # another model: refused before any input is read, one line, nothing written
    rc, out, err = _score_cli(capsys, "--model", "gray", "--r-aware", npy, "--json", tmp_path / "no.json")
    assert rc == 2 and out == "" and err.count("\n") == 1 and "--r-aware needs --model recon" in err
    assert not (tmp_path / "no.json").exists()


# --------------------------------------------------------------------------------------------------- metrics
def test_qfmetric_and_qfscore_accept_recon(rq_path, rq, weights_dir, monkeypatch):
    from mriqa.metric import QFMetric, QFScore

    monkeypatch.setattr(predictor_mod, "WEIGHTS_DIR", weights_dir)
    x = torch.from_numpy(np.stack([_slice((48, 40), seed=i) for i in range(3)]))[:, None]
    metric = QFMetric("recon", device="cpu")
    assert metric.metric_name == "recon" and metric.lower_better is False and metric.score_range == (0, 1)
    scores = metric(x)
    assert scores.shape == (3,) and scores.dtype == torch.float32 and bool(((scores >= 0) & (scores <= 1)).all())
    torch.testing.assert_close(scores, load_predictor("recon", device="cpu").score(x))
    by_path = QFMetric(str(rq_path), device="cpu")
    assert by_path.metric_name == "recon"
    torch.testing.assert_close(by_path(x), rq.score(x))
    pytest.importorskip("torchmetrics")
    m = QFScore(rq, kind="mri")
    m.update(x[:2])
    m.update(x[2:])
    assert float(m.compute()) == pytest.approx(float(rq.score(x).mean()), abs=1e-6)


def test_registry_and_iqa_bench_recon(tmp_path, capsys, rq_path, rq, weights_dir, monkeypatch):
    from mriqa.iqa import metrics_registry as reg
    from test_iqa_bench_cli import _tid_like

    monkeypatch.setattr(predictor_mod, "WEIGHTS_DIR", weights_dir)
    monkeypatch.setattr(reg, "_CACHE", {})
    assert "recon" in reg.list_metrics() and "recon:PATH" in reg.list_metrics()
    m = reg.get_metric(f"recon:{rq_path}")
    assert m.kind == "NR" and m.higher_better
    img = np.random.default_rng(0).random((40, 36, 3)).astype(np.float32)
    assert m(img[..., 0]) == pytest.approx(rq.score(img[..., 0]), abs=1e-9)
    assert m(img) == pytest.approx(rq.score(reg.luma(img).astype(np.float32)), abs=1e-9)  # colour: its luma
    with pytest.raises(InputError, match="needs a QF model"):
        reg.get_metric(f"qf:{rq_path}")
    tid = _tid_like(tmp_path / "tid2013")
    out = tmp_path / "res.json"
    rc = main(["iqa-bench", "--dataset", f"tid2013:{tid}", "--metric", "recon", "--json", str(out),
               "--bootstrap", "0"])
    assert rc == 0, capsys.readouterr().err
    (result,) = json.loads(out.read_text())["metrics"]
    assert result["name"] == "recon" and result["kind"] == "NR" and result["higher_better"] is True
    scores = [r["score"] for r in result["images"]]
    assert len(scores) == 10 and all(0 <= s <= 1 for s in scores)


# ------------------------------------------------------------------------------------------------------ loss
def test_loss_is_one_minus_the_predictor_score(rq_path, rq):
    loss = ReconQualityLoss(str(rq_path))
    x = torch.from_numpy(np.stack([_slice((48, 40), seed=i) for i in range(3)]))[:, None]
    want = 1.0 - rq.score(x.numpy()[:, 0])
    assert float(loss(x)) == pytest.approx(float(np.mean(want)), abs=1e-5)
    per = ReconQualityLoss(rq, reduction="none")(x)
    np.testing.assert_allclose(per.numpy(), want, atol=1e-5)
    np.testing.assert_allclose(loss.scores(x).numpy(), 1 - want, atol=1e-5)
    # [B, H, W], complex and the functional form give the same number
    assert float(loss(x[:, 0])) == pytest.approx(float(loss(x)), abs=1e-6)
    phase = torch.exp(1j * torch.rand(x[:, 0].shape, generator=torch.Generator().manual_seed(0)))
    assert float(loss(x[:, 0] * phase)) == pytest.approx(float(loss(x)), abs=1e-5)
    assert float(recon_quality_loss(x, model=str(rq_path))) == pytest.approx(float(loss(x)), abs=1e-6)
    assert loss.requires_target is False and float(loss(x, None, physics=None, y=None)) == float(loss(x))


def test_loss_gradient_reaches_the_image_not_the_model(rq_path):
    loss = ReconQualityLoss(rq_path)
    x = torch.from_numpy(_slice((48, 40)))[None, None].requires_grad_(True)
    value = loss(x)
    value.backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0
    assert all(not p.requires_grad and p.grad is None for p in loss.net.parameters())
    parent = torch.nn.ModuleDict({"loss": loss}).train()
    assert parent.training and not loss.net.training  # frozen: stays in eval mode
    zeros = torch.zeros(2, 1, 40, 40, requires_grad=True)
    z = loss(zeros)
    z.backward()
    assert math.isfinite(float(z.detach())) and 0 <= float(z.detach()) <= 1
    assert bool(torch.isfinite(zeros.grad).all())


def test_loss_errors(rq_path, tmp_path):
    loss = ReconQualityLoss(rq_path)
    with pytest.raises(InputError, match="smaller than the recon model's minimum input 32x32"):
        loss(torch.rand(1, 1, 24, 40))
    with pytest.raises(InputError, match=r"\[B, 1, H, W\] or \[B, H, W\]"):
        loss(torch.rand(1, 3, 40, 40))
    with pytest.raises(InputError, match="NaN/Inf"):
        loss(torch.full((1, 1, 40, 40), float("nan")))
    qf_path = save_weights(QFNet(1, width=4), tmp_path / "qf.safetensors")
    with pytest.raises(InputError, match="needs a reconstruction-quality model"):
        ReconQualityLoss(qf_path)
    with pytest.raises(InputError, match="reduction"):
        ReconQualityLoss(rq_path, reduction="sum")


def _sense_problem(seed=0, b=2, coils=4, size=48):
    from recon.physics import SenseOperator

    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    centres = torch.linspace(-1.0, 1.0, coils)
    maps = torch.stack([torch.exp(-((yy - c) ** 2 + xx ** 2)) * torch.exp(1j * c * xx) for c in centres])
    maps = (maps / maps.abs().square().sum(0).sqrt()).to(torch.complex64)[None].repeat(b, 1, 1, 1)
    mask = (torch.rand(b, 1, 1, size, generator=g) < 0.4).float()
    mask[..., size // 2 - 3: size // 2 + 3] = 1.0
    truth = torch.from_numpy(np.stack([_slice((size, size), seed=i) for i in range(b)])).to(torch.complex64)
    return SenseOperator(maps, mask), truth


def test_data_consistent_loss_scores_the_image_with_the_measured_samples_put_back(rq_path):
    from mriqa.losses.recon_quality_loss import data_consistent_magnitude

    physics, truth = _sense_problem()
    y = physics(truth)
    # a data-consistent image is its own data-consistent image
    np.testing.assert_allclose(data_consistent_magnitude(truth, physics, y)[:, 0].numpy(), truth.abs().numpy(),
                               rtol=1e-4, atol=1e-3)
    plain, dc = ReconQualityLoss(rq_path), ReconQualityLoss(rq_path, data_consistent=True)
    assert float(dc(truth.abs()[:, None], physics=physics, y=y, image=truth)) == \
        pytest.approx(float(plain(truth.abs()[:, None])), abs=1e-4)
    # what was measured is the data's: blurring the network's image changes the scored image only where nothing
    # was measured, and the quality gradient has (almost) no component the measurement sees
    blurred = torch.fft.ifft2(torch.fft.fft2(truth) * torch.exp(-torch.fft.fftfreq(48).square()[None, :] * 200))
    diff_plain = (blurred.abs() - truth.abs()).abs().mean()
    diff_dc = (data_consistent_magnitude(blurred, physics, y)[:, 0] - truth.abs()).abs().mean()
    assert float(diff_dc) < 0.75 * float(diff_plain)  # ~45 % of the lines are measured: that much blur is undone
    x = blurred.clone().requires_grad_(True)
    dc(x.abs()[:, None], physics=physics, y=y, image=x).backward()
    seen = physics(x.grad).abs().square().sum()
    assert float(x.grad.abs().square().sum()) > 0 and float(seen) < 0.05 * float(x.grad.abs().square().sum())
    # centre crop to the output's size
    assert tuple(data_consistent_magnitude(truth, physics, y, (40, 32)).shape) == (2, 1, 40, 32)
    with pytest.raises(InputError, match="needs physics= a recon.physics.SenseOperator"):
        dc(truth.abs()[:, None], physics=None, y=y, image=truth)
    with pytest.raises(InputError, match="complex reconstruction"):
        dc(truth.abs()[:, None], physics=physics, y=y, image=truth.abs())


def test_loss_by_factory_path_and_combined(rq_path):
    from recon.training.recon_config import build_loss, build_mode_loss

    spec = {"factory": "mriqa.losses:ReconQualityLoss", "kwargs": {"model": str(rq_path)}}
    loss = build_loss(spec)
    assert isinstance(loss, ReconQualityLoss)
    mode_loss = build_mode_loss({"mode": "dc+qf", "dc_loss": {"factory": "recon.losses:DataConsistencyLoss"},
                                 "qf_weight": 0.05, "qf_loss": spec})
    assert isinstance(mode_loss.term("qf"), ReconQualityLoss) and mode_loss.requires_target is False
    combined = CombinedLoss({"recon": 1.0}, options={"recon": {"model": str(rq_path)}})
    x = torch.from_numpy(_slice((48, 40)))[None, None]
    assert float(combined(x)) == pytest.approx(float(loss(x)), abs=1e-6)


def test_loss_in_the_lightning_module(rq_path):
    pytest.importorskip("lightning")
    from recon.pl_module import QualityAwareModule

    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    rq_loss = ReconQualityLoss(rq_path)
    module = QualityAwareModule(model, {"qf": (1.0, rq_loss)}, mode="dc+qf")
    module.train()
    assert not rq_loss.net.training
    assert any(m is rq_loss for m in module.modules())  # a submodule: moved with the model, replicated by DDP
    opt = module.configure_optimizers()
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in model.parameters())
