"""QAIRN: shapes, attention range, odd sizes, quality range, 2-step training + exact resume, restore CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from mriqa.cli import main
from recon.errors import InputError
from mriqa.models import qairn as qairn_mod
from mriqa.models.qairn import QAIRN, load_qairn, minkowski_quality, run_qairn
from recon.io.weights import save_weights

TINY = {"channels": [4, 4, 8, 8], "n_res": 1, "att_hidden": 4, "att_depth": 2}


def _tiny(**kw) -> QAIRN:
    torch.manual_seed(0)
    return QAIRN(**{**TINY, **kw})


@pytest.mark.parametrize("size", [(32, 48), (17, 23), (5, 9), (1, 1)])
def test_shapes_gamma_range_and_odd_sizes(size):
    model = _tiny().eval()
    h, w = size
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        out, maps = model(x)
    assert out.shape == x.shape
    assert len(maps) == 3
    for lvl, g in enumerate(maps):
        assert g.shape == (2, 1, math.ceil(h / 2 ** lvl), math.ceil(w / 2 ** lvl))
        assert float(g.min()) >= 0.0 and float(g.max()) <= 1.0
    q = model.quality(maps)
    assert q.shape == (2, 3) and float(q.min()) >= 0.0 and float(q.max()) <= 1.0
    assert model.multiple == 16


def test_output_is_local_to_the_input_and_gradients_flow():
    """Padding and cropping do not mix the two images of a batch; the whole network trains."""
    model = _tiny()
    x = torch.rand(2, 3, 20, 28)
    out, maps = model(x)
    x2 = x.clone()
    x2[1] = torch.rand(3, 20, 28)
    out2, _ = model(x2)
    assert torch.allclose(out[0], out2[0], atol=1e-6)
    (out.mean() + model.quality(maps).mean()).backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="expected"):
        model(torch.rand(1, 1, 16, 16))


def test_minkowski_pooling_values():
    ones = torch.ones(1, 1, 4, 4)
    half = torch.cat([torch.zeros(1, 1, 2, 4), torch.ones(1, 1, 2, 4)], dim=2)
    q = minkowski_quality([ones, half, 0.25 * ones], p=4.0)
    assert q[0, 0] == pytest.approx(1.0)
    assert q[0, 1] == pytest.approx(1 - 0.5 ** 0.25)  # the worst half dominates: well below the mean 0.5
    assert q[0, 2] == pytest.approx(0.25)
    assert minkowski_quality([half], p=1.0)[0, 0] == pytest.approx(0.5)  # p = 1 is the plain mean


def test_weights_round_trip_and_run_qairn(tmp_path):
    model = _tiny(minkowski_p=2.0).eval()
    path = save_weights(model, tmp_path / "q.safetensors", {"note": "random"})
    loaded, meta = load_qairn(path)
    assert meta["arch"] == "qairn" and loaded.minkowski_p == 2.0
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    img = np.random.default_rng(0).random((19, 26, 3)).astype(np.float32)
    restored, q = run_qairn(loaded, img)
    assert restored.shape == img.shape and restored.dtype == np.float32 and 0 <= restored.min() <= restored.max() <= 1
    assert q.shape == (3,) and np.all((q >= 0) & (q <= 1))
    gray, qg = run_qairn(loaded, img[..., 0])
    assert gray.shape == (19, 26) and qg.shape == (3,)
    from mriqa.iqa import get_metric

    m = get_metric(f"qairn:{path}")
    assert m.kind == "NR" and m(img) == pytest.approx(q[1])
    from mriqa.models.qfnet import QFNet

    qf = save_weights(QFNet(in_channels=3, width=2), tmp_path / "qf.safetensors")
    with pytest.raises(InputError, match="not 'qairn'"):
        load_qairn(qf)


# ----------------------------------------------------------------------------------------------- training
def _photos(folder, n=3, size=(40, 44)):
    from scipy import ndimage

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        x = ndimage.gaussian_filter(rng.random((*size, 3)), (1.5, 1.5, 0))
        x = (x - x.min()) / (x.max() - x.min())
        Image.fromarray((x * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


def _cfg(tmp_path, out, **extra):
    from mriqa.train_qairn import load_config
    from recon.config import merge

    data = _photos(tmp_path / "photos")
    cfg = load_config(
        None,
        model=TINY,
        data={"train": [{"type": "images", "path": str(data), "exclude": ["img2"]}],
              "val": [{"type": "images", "path": str(data), "include": ["img2"]}], "held_out": ["img2"]},
        sampler={"patch": 16},
        train={"steps": 2, "batch": 2, "eval_every": 1, "checkpoint_every": 1, "val_crop": 16, "halve_every": 1,
               "threads": 0, "progress": False, "device": "cpu"},
        output_dir=str(out),
    )
    return merge(cfg, extra)


def test_two_step_training_and_resume_equal_an_uninterrupted_run(tmp_path):
    from mriqa.train_qairn import lr_at, train

    quiet = dict(log=lambda *_: None)
    full = train(_cfg(tmp_path, tmp_path / "full"), **quiet)
    assert full["step"] == 2 and not full["stopped_early"]
    first = train(_cfg(tmp_path, tmp_path / "split", train={"stop_at_step": 1}), **quiet)
    assert first["step"] == 1 and first["stopped_early"]
    ck = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 1
    second = train(_cfg(tmp_path, tmp_path / "split"), **quiet)
    assert second["step"] == 2
    a, b = full["model"].state_dict(), second["model"].state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    h1 = json.loads((tmp_path / "full" / "history.json").read_text())
    h2 = json.loads((tmp_path / "split" / "history.json").read_text())
    assert [r["val_loss"] for r in h1] == [r["val_loss"] for r in h2] and len(h1) == 2
    assert {"val_psnr_jpeg", "val_psnr", "val_gain", "val_q2_srcc"} <= set(h1[-1])
    assert (tmp_path / "full" / "curves.png").stat().st_size > 1000
    model, meta = load_qairn(tmp_path / "full" / "best.safetensors")
    assert meta["training"]["steps_done"] == 2 and meta["training"]["val_images"] == ["img2.png"]
    assert "img2.png" not in meta["training"]["train_images"]
    # the schedule halves and floors
    tc = {"lr": 2e-4, "lr_min": 1.25e-5, "halve_every": 10}
    assert lr_at(9, tc) == 2e-4 and lr_at(10, tc) == 1e-4 and lr_at(1000, tc) == 1.25e-5
    # a held-out image in the training list is refused
    bad = _cfg(tmp_path, tmp_path / "bad")
    bad["data"]["train"][0].pop("exclude")
    with pytest.raises(InputError, match="held-out"):
        train(bad, **quiet)


# ----------------------------------------------------------------------------------------------- restore CLI
def _save_inputs(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    rgb = (rng.random((29, 37, 3)) * 255).astype(np.uint8)
    paths = {}
    Image.fromarray(rgb).save(folder / "photo.png")
    Image.fromarray(rgb).save(folder / "photo.jpg", quality=20)
    Image.fromarray(rgb[..., 0]).save(folder / "gray.bmp")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])).save(folder / "alpha.png")
    for name in ("photo.png", "photo.jpg", "gray.bmp", "alpha.png"):
        paths[name] = folder / name
    return paths


def test_restore_cli_without_weights_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(qairn_mod, "SHIPPED_WEIGHTS", tmp_path / "weights" / "qairn.safetensors")
    inputs = _save_inputs(tmp_path / "in")
    out = tmp_path / "out"
    rc = main(["restore", str(inputs["photo.png"]), "--model", "qairn", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("mriqa: error:") and err.count("\n") == 1
    assert "no trained QAIRN weights" in err and "qairn.safetensors" in err
    assert not out.exists()
    assert main(["restore", str(inputs["photo.png"]), "--out", str(out), "--weights", str(tmp_path / "x.st")]) == 2
    assert "not found" in capsys.readouterr().err


def test_restore_cli_writes_same_size_same_format(tmp_path, capsys):
    weights = save_weights(_tiny().eval(), tmp_path / "qairn-random.safetensors")
    inputs = _save_inputs(tmp_path / "in")
    out, rec = tmp_path / "out", tmp_path / "records.json"
    args = [str(p) for p in inputs.values()] + [str(inputs["photo.png"])]  # the same name twice
    rc = main(["restore", *args, "--model", "qairn", "--out", str(out), "--weights", str(weights),
               "--json", str(rec)])
    assert rc == 0, capsys.readouterr().err
    rows = json.loads(rec.read_text())
    assert [r["input"] for r in rows] == args
    for r in rows:
        assert {"input", "q1", "q2", "q3"} <= set(r)
        assert all(0 <= r[k] <= 1 for k in ("q1", "q2", "q3"))
    assert rows[-1]["output"].endswith("photo-2.png")
    for name, src in list(inputs.items()) + [("photo-2.png", inputs["photo.png"])]:
        with Image.open(src) as a, Image.open(out / name) as b:
            assert b.size == a.size and b.format == a.format and b.mode == a.mode, name
    with Image.open(inputs["alpha.png"]) as a, Image.open(out / "alpha.png") as b:
        assert np.array_equal(np.asarray(a)[..., 3], np.asarray(b)[..., 3])  # alpha kept
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no staging left behind
    # an output that would overwrite its input is refused, nothing written
    before = inputs["photo.png"].read_bytes()
    assert main(["restore", str(inputs["photo.png"]), "--out", str(inputs["photo.png"].parent),
                 "--weights", str(weights)]) == 2
    assert "overwrite" in capsys.readouterr().err and inputs["photo.png"].read_bytes() == before
    # a bad input among good ones: error, no outputs, no JSON
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    out2, rec2 = tmp_path / "out2", tmp_path / "r2.json"
    assert main(["restore", str(inputs["photo.png"]), str(tmp_path / "in" / "broken.png"), "--out", str(out2),
                 "--weights", str(weights), "--json", str(rec2)]) == 2
    assert "broken.png" in capsys.readouterr().err and not out2.exists() and not rec2.exists()
    # smaller than one JPEG block (here 4 px high): refused in one line, nothing written
    Image.fromarray(np.zeros((4, 300), np.uint8)).save(tmp_path / "in" / "thin.png")
    out3 = tmp_path / "out3"
    assert main(["restore", str(inputs["photo.png"]), str(tmp_path / "in" / "thin.png"), "--out", str(out3),
                 "--weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "thin.png" in err and "4x300 pixels" in err and err.count("\n") == 1 and not out3.exists()
    # a multi-page TIFF: refused in one line (its output would hold the first page only), nothing written
    pages = [Image.fromarray(np.full((16, 16), v, np.uint8)) for v in (10, 200)]
    pages[0].save(tmp_path / "in" / "pages.tif", save_all=True, append_images=pages[1:])
    out4 = tmp_path / "out4"
    assert main(["restore", str(inputs["photo.png"]), str(tmp_path / "in" / "pages.tif"), "--out", str(out4),
                 "--weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "pages.tif" in err and "2 pages" in err and err.count("\n") == 1 and not out4.exists()


def test_init_and_gate_prior_open_the_gates(tmp_path):
    from mriqa.train_qairn import train

    quiet = dict(log=lambda *_: None)
    base = train(_cfg(tmp_path, tmp_path / "base"), **quiet)
    # init: a run of 0 steps starting from those weights exports them unchanged
    same = train(_cfg(tmp_path, tmp_path / "init", init=str(tmp_path / "base" / "best.safetensors"),
                      train={"steps": 0}), **quiet)
    from recon.io.weights import load_weights

    start, _ = load_weights(tmp_path / "base" / "best.safetensors")
    assert base["step"] == 2 and same["step"] == 0
    for k, v in start.items():
        assert torch.equal(v, same["model"].state_dict()[k]), k
    # the gate prior pushes the attention maps towards the skip path (gamma -> 1)
    x = torch.rand(1, 3, 16, 16)
    runs = {}
    for prior in (0.0, 50.0):
        tc = {"gate_prior": prior, "steps": 8, "halve_every": 100, "lr": 1e-2}
        runs[prior] = train(_cfg(tmp_path, tmp_path / f"prior{prior}", train=tc), **quiet)["model"]
    with torch.no_grad():
        mean_gamma = {p: float(torch.stack([g.mean() for g in m.eval()(x)[1]]).mean()) for p, m in runs.items()}
    assert mean_gamma[50.0] > mean_gamma[0.0] + 0.05
    with pytest.raises(InputError, match="do not match"):
        train(_cfg(tmp_path, tmp_path / "bad", init=str(tmp_path / "base" / "best.safetensors"),
                   model={**TINY, "channels": [8, 8, 8, 8]}), **quiet)


def test_pooling_selection_prefers_the_exponent_that_ranks_by_severity():
    from mriqa.train_qairn import best_exponent, pooling_srcc

    # severity s in 1..6: 10 % of the cells have gamma = s / 10 (the worst cells follow s), the other 90 % fall
    # with s. A high exponent reads the worst cells (Q2 rises with s), a low one the majority (Q2 falls).
    maps, sev = [], []
    for s in range(1, 7):
        g = torch.full((1, 1, 10, 10), 0.95 - 0.05 * s)
        g[..., 0, :] = s / 10
        maps.append([torch.ones_like(g), g, torch.ones_like(g)])
        sev.append(s)
    table = pooling_srcc(maps, sev, grid=(0.25, 1.0, 16.0))
    assert table[16.0] == pytest.approx(1.0) and table[0.25] == pytest.approx(-1.0)
    assert best_exponent(table, default=4.0) == 16.0
    assert best_exponent({0.5: 0.9, 2.0: 0.9}, default=4.0) == 0.5  # ties: the earlier entry
    assert best_exponent({1.0: float("nan")}, default=4.0) == 4.0  # nothing to choose from: keep the default


def test_bf16_channels_last_training_exports_float32_weights(tmp_path):
    from mriqa.train_qairn import train

    quiet = dict(log=lambda *_: None)
    ref = train(_cfg(tmp_path, tmp_path / "fp32"), **quiet)
    fast = train(_cfg(tmp_path, tmp_path / "bf16", train={"precision": "bf16", "channels_last": True}), **quiet)
    assert fast["step"] == 2
    model, meta = load_qairn(tmp_path / "bf16" / "best.safetensors")
    assert meta["training"]["config"]["train"]["precision"] == "bf16"
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())
    # the same batches in bfloat16 move the weights nearly as float32 does, and not identically
    a, b = ref["model"].state_dict(), fast["model"].state_dict()
    diffs = [float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point()]
    assert 0 < max(diffs) < 0.05
    hist = json.loads((tmp_path / "bf16" / "history.json").read_text())
    assert all(np.isfinite(r["val_loss"]) for r in hist)
    with pytest.raises(InputError, match="precision"):
        train(_cfg(tmp_path, tmp_path / "bad", train={"precision": "fp16"}), **quiet)


def test_ema_training_exports_the_moving_average(tmp_path):
    from mriqa.train_qairn import train

    quiet = dict(log=lambda *_: None)
    cfg = _cfg(tmp_path, tmp_path / "ema", train={"steps": 3, "eval_every": 3, "ema": 0.5, "precision": "bf16",
                                                   "channels_last": True})
    run = train(cfg, **quiet)
    ck = torch.load(tmp_path / "ema" / "checkpoint.pt", weights_only=True)
    model, _ = load_qairn(tmp_path / "ema" / "best.safetensors")
    exported, raw = model.state_dict(), run["model"].state_dict()
    # the one validation row is at the last step, so the exported weights are the average then, not the raw ones
    for k in exported:
        assert torch.equal(exported[k], ck["ema"][k].float()), k
    assert any(not torch.equal(exported[k], raw[k]) for k in exported if exported[k].is_floating_point())
    hist = json.loads((tmp_path / "ema" / "history.json").read_text())
    assert len(hist) == 1 and {"val_gain", "raw_val_gain"} <= set(hist[0])
    assert (tmp_path / "ema" / "curves.png").stat().st_size > 1000


# ----------------------------------------------------------------------------------------------- deepening
def test_deepened_network_computes_the_same_function_and_trains_the_new_blocks():
    from mriqa.models.qairn import load_deepened, new_block_names

    small = _tiny().eval()
    with torch.no_grad():  # non-trivial weights everywhere, so that an identity is not an accident
        for p in small.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.manual_seed(1)
    big = QAIRN(**{**TINY, "n_res": 3}).eval()
    load_deepened(big, small.state_dict(), small.config)
    x = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        (a, ga), (b, gb) = small(x), big(x)
    assert torch.equal(a, b) and all(torch.equal(p, q) for p, q in zip(ga, gb))
    names = new_block_names(1, 3)
    assert len(names) == 7 * 2 and "down1.1" in names and "down1.2" in names and "up1.2" in names
    modules = dict(big.named_modules())
    assert float(modules["down1.2"].conv2.weight.detach().abs().sum()) == 0.0
    assert float(modules["down1.2"].conv1.weight.detach().abs().sum()) > 0.0  # random start: gradients reach conv2
    big.train()
    out, _ = big(x)
    out.square().mean().backward()
    assert float(modules["down1.2"].conv2.weight.grad.abs().sum()) > 0.0
    # anything other than the depth must match, and a network cannot be made shallower
    with pytest.raises(ValueError, match="only n_res"):
        load_deepened(QAIRN(**{**TINY, "n_res": 3, "channels": [4, 4, 8, 16]}), small.state_dict(), small.config)
    with pytest.raises(ValueError, match="cannot deepen"):
        load_deepened(QAIRN(**{**TINY, "n_res": 0}), small.state_dict(), small.config)


def test_trainer_init_grows_shallower_weights(tmp_path):
    from mriqa.train_qairn import train

    quiet = dict(log=lambda *_: None)
    train(_cfg(tmp_path, tmp_path / "base"), **quiet)
    small, _ = load_qairn(tmp_path / "base" / "best.safetensors")
    grown = train(_cfg(tmp_path, tmp_path / "deep", init=str(tmp_path / "base" / "best.safetensors"),
                       model={**TINY, "n_res": 2}, train={"steps": 0}), **quiet)["model"].eval()
    assert grown.n_res == 2
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        assert torch.equal(small(x)[0], grown(x)[0])


# ----------------------------------------------------------------------------------------------- self-ensemble
def test_self_ensemble_is_the_mean_of_the_eight_orientations_and_is_equivariant():
    from mriqa.models.qairn import DIHEDRAL, restore_self_ensemble

    model = _tiny().eval()
    x = torch.rand(1, 3, 16, 16)
    se, maps = restore_self_ensemble(model, x)
    with torch.no_grad():
        manual = []
        for k, flip in DIHEDRAL:
            t = torch.rot90(x, k, dims=(-2, -1))
            y = model(t.flip(-1) if flip else t)[0]
            manual.append(torch.rot90(y.flip(-1) if flip else y, -k, dims=(-2, -1)))
    assert len(DIHEDRAL) == 8 and len(set(DIHEDRAL)) == 8
    assert torch.allclose(se, torch.stack(manual).mean(0), atol=1e-6)
    assert not torch.allclose(se, model(x)[0], atol=1e-4)  # the tiny model is not equivariant by itself
    assert all(torch.equal(a, b) for a, b in zip(maps, model(x)[1]))  # the maps of the unrotated pass
    # on a square input of the padding multiple the ensemble commutes with every rotation / flip
    for k, flip in DIHEDRAL:
        t = torch.rot90(x, k, dims=(-2, -1))
        t = t.flip(-1) if flip else t
        s = torch.rot90(se, k, dims=(-2, -1))
        assert torch.allclose(restore_self_ensemble(model, t)[0], s.flip(-1) if flip else s, atol=1e-5)
    # run_qairn: same shape on a non-square gray image, the same Q1..Q3 as without the ensemble
    img = np.random.default_rng(0).random((13, 21)).astype(np.float32)
    r1, q1 = run_qairn(model, img)
    r8, q8 = run_qairn(model, img, self_ensemble=True)
    assert r8.shape == img.shape and np.array_equal(q1, q8) and not np.allclose(r1, r8)


def test_restore_cli_self_ensemble(tmp_path, capsys):
    weights = save_weights(_tiny().eval(), tmp_path / "qairn-random.safetensors")
    inputs = _save_inputs(tmp_path / "in")
    outs = {}
    for flag in ([], ["--self-ensemble"]):
        out = tmp_path / ("se" if flag else "plain")
        assert main(["restore", str(inputs["photo.png"]), "--out", str(out), "--weights", str(weights), *flag]) == 0
        with Image.open(out / "photo.png") as im:
            outs[bool(flag)] = np.asarray(im)
    assert outs[True].shape == outs[False].shape and not np.array_equal(outs[True], outs[False])


def test_half_precision_copy_loads_into_float32_and_restores_alike(tmp_path, capsys):
    from recon.io.weights import load_weights
    from mriqa.weights_io import main as weights_main

    model = _tiny().eval()
    full = save_weights(model, tmp_path / "full.safetensors", {"training": {"steps_done": 3}})
    half = tmp_path / "half.safetensors"
    assert weights_main(["--half", str(full), str(half)]) == 0
    state, meta = load_weights(half)
    assert all(v.dtype == torch.float16 for v in state.values())
    assert meta["stored_dtype"] == "float16" and meta["training"] == {"steps_done": 3}
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_qairn(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        a, b = model(x)[0], loaded(x)[0]
    assert 0 < float((a - b).abs().max()) < 1e-2
    assert weights_main(["--half", str(tmp_path / "missing.safetensors"), str(half)]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
