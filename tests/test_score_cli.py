"""``mriqa score`` through ``mriqa.cli.main``: formats, JSON, maps, default models and bad inputs."""
from __future__ import annotations

import json
import os

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from mriqa import predictor as predictor_mod
from mriqa.cli import main
from mriqa.models import QFNet
from recon.io.weights import save_weights

KEYS = {"input", "slice", "qf", "score", "pool", "model"}


def _net(in_channels, seed):
    torch.manual_seed(seed)
    net = QFNet(in_channels, width=8)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.05, 0.5)
    return net


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """A weights folder laid out like mriqa/weights/ (random-init models)."""
    d = tmp_path_factory.mktemp("weights")
    save_weights(_net(1, 0), d / "qf-gray.safetensors")
    save_weights(_net(3, 1), d / "qf-rgb.safetensors")
    return d


@pytest.fixture
def gray_model(weights_dir):
    return str(weights_dir / "qf-gray.safetensors")


def _anatomy(shape=(64, 64), seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    disk = np.hypot(yy - shape[0] / 2, xx - shape[1] / 2) < min(shape) / 3
    return ((0.02 + 0.7 * disk + 0.1 * rng.random(shape)) * scale).astype(np.float32)


def _h5(path, volume, key="reconstruction_rss"):
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=volume)
        f.create_dataset("kspace", data=np.zeros((volume.shape[0], 4, 4), np.complex64))
    return path


def _run(capsys, *argv):
    rc = main(["score", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mriqa: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------------------ formats
def test_h5_png_dicom_nifti_to_json_and_table(tmp_path, capsys, gray_model):
    from pydicom import examples

    h5 = _h5(tmp_path / "knee.h5", np.stack([_anatomy(seed=i, scale=3e-4) for i in range(3)]))
    png = tmp_path / "slice.png"
    Image.fromarray(np.round(_anatomy() * 255).astype(np.uint8)).save(png)
    dcm = tmp_path / "mr.dcm"
    examples.mr.save_as(dcm)
    nii = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([_anatomy((48, 40), s, 900) for s in range(2)], axis=-1), np.eye(4)), nii)
    out_json = tmp_path / "out" / "scores.json"
    rc, out, err = _run(capsys, h5, png, dcm, nii, "--model", gray_model, "--pool", "foreground",
                        "--json", out_json, "--batch-size", "2")
    assert rc == 0, err
    records = json.loads(out_json.read_text())
    assert [(r["input"], r["slice"]) for r in records] == [
        (str(h5), 0), (str(h5), 1), (str(h5), 2), (str(png), None), (str(dcm), None), (str(nii), 0), (str(nii), 1)
    ]
    for r in records:
        assert set(r) == KEYS and r["pool"] == "foreground" and r["model"] == gray_model
        assert 0.0 <= r["qf"] <= 1.0
    # the table has a header and one row per record, with the same numbers
    lines = out.splitlines()
    assert lines[0].split() == ["input", "slice", "model", "pool", "qf"]
    assert f"{records[0]['qf']:.4f}" in lines[1] and "7 images, mean qf" in out
    # the same numbers as the API (h5 slices: MRI windowing of each slice)
    qf = predictor_mod.load_predictor(gray_model, device="cpu")
    with h5py.File(h5) as f:
        api = qf.score(f["reconstruction_rss"][()], pool="foreground", kind="mri")
    np.testing.assert_allclose([r["qf"] for r in records[:3]], api, atol=1e-5)


def test_default_model_gray_for_mri_rgb_for_colour(tmp_path, capsys, weights_dir, monkeypatch):
    monkeypatch.setattr(predictor_mod, "WEIGHTS_DIR", weights_dir)
    rng = np.random.default_rng(0)
    colour = tmp_path / "photo.png"
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(colour)
    gray_png = tmp_path / "gray.png"
    Image.fromarray((rng.random((40, 48)) * 255).astype(np.uint8)).save(gray_png)
    h5 = _h5(tmp_path / "a.h5", _anatomy(scale=5.0)[None], key="reconstruction")
    gray_as_rgb = tmp_path / "gray-rgb.png"  # a gray image stored as RGB (R = G = B): scored as the gray PNG is
    with Image.open(gray_png) as im:
        im.convert("RGB").save(gray_as_rgb)
    out_json = tmp_path / "s.json"
    rc, out, err = _run(capsys, colour, gray_png, h5, gray_as_rgb, "--json", out_json)
    assert rc == 0, err
    records = json.loads(out_json.read_text())
    assert [r["model"] for r in records] == ["rgb", "gray", "gray", "gray"]
    assert records[3]["qf"] == pytest.approx(records[1]["qf"], abs=1e-6)


def test_maps_are_small_pngs(tmp_path, capsys, gray_model):
    h5 = _h5(tmp_path / "vol.h5", np.stack([_anatomy(seed=i) for i in range(2)]))
    pngs = []
    for sub in ("a", "b"):  # the same file name in two folders: the second map gets "-2"
        (tmp_path / sub).mkdir()
        pngs.append(tmp_path / sub / "vol.png")
        Image.fromarray(np.round(_anatomy((80, 96)) * 255).astype(np.uint8)).save(pngs[-1])
    maps = tmp_path / "maps"
    rc, out, err = _run(capsys, h5, *pngs, "--model", gray_model, "--maps", maps)
    assert rc == 0, err
    files = sorted(p.name for p in maps.iterdir())
    assert files == ["vol-2.png", "vol.png", "vol_s000.png", "vol_s001.png"]
    for name in files:
        p = maps / name
        assert p.stat().st_size < 100_000
        umask = os.umask(0)
        os.umask(umask)
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask  # like any file the user writes, not mkstemp's 0600
        with Image.open(p) as im:
            im.load()
            assert im.width > 256 and im.height >= 256  # small images are enlarged for legibility
            colours = np.asarray(im.convert("RGB")).reshape(-1, 3)
            assert len(np.unique(colours, axis=0)) > 50  # image + colour map + colour bar


def test_overlay_geometry_and_size():
    from mriqa.overlay import display_size, upsample_map
    from mriqa.pooling import MapGeometry

    assert display_size(64, 64) == (256, 256)
    assert display_size(80, 96) == (240, 288)
    assert display_size(2000, 1000) == (512, 256)
    assert display_size(300, 400) == (300, 400)
    g = MapGeometry(image_size=(64, 64), map_size=(10, 10), stride=4, receptive_field=28)
    q = np.tile(np.arange(10, dtype=float), (10, 1)) / 10  # increases along x
    values, covered = upsample_map(q, g, (64, 64))
    # cell centres at 14 + 4 i; covered from 12 to 52 (half a stride beyond the outer centres)
    row = covered[30]
    assert not row[:11].any() and row[13:51].all() and not row[53:].any()
    assert not covered[:11].any() and covered[13:51, 13:51].all()
    assert values[30, 13] == pytest.approx(0.0, abs=1e-9)  # pixel centre 13.5 -> before the first centre
    assert values[30, 15] == pytest.approx(0.1 * (15.5 - 14) / 4)  # linear between cell centres
    assert np.all(np.diff(values[30, 13:51]) >= 0)


def test_all_zero_slice_is_skipped_with_a_note(tmp_path, capsys, gray_model):
    vol = np.stack([np.zeros((64, 64), np.float32), _anatomy(scale=100.0)])
    h5 = _h5(tmp_path / "v.h5", vol)
    out_json = tmp_path / "s.json"
    rc, out, err = _run(capsys, h5, "--model", gray_model, "--json", out_json)
    assert rc == 0
    assert "slice 0" in err and "all-zero slice skipped" in err
    assert [r["slice"] for r in json.loads(out_json.read_text())] == [1]


# ------------------------------------------------------------------------------------------------ awkward inputs
def test_constant_image_gets_a_note_that_its_qf_is_undefined(tmp_path, capsys, gray_model):
    vol = np.stack([np.full((64, 64), 0.4, np.float32), _anatomy()])
    rc, out, err = _run(capsys, _h5(tmp_path / "v.h5", vol), "--model", gray_model, "--json", tmp_path / "s.json")
    assert rc == 0, err
    assert "v.h5 [slice 0]: constant image: it has no JPEG quality factor" in err
    assert "slice 1" not in err
    assert [r["slice"] for r in json.loads((tmp_path / "s.json").read_text())] == [0, 1]


def test_16x16_image_fails_alone_the_others_are_written(tmp_path, capsys, gray_model):
    good = tmp_path / "good.png"
    Image.fromarray(np.round(_anatomy() * 255).astype(np.uint8)).save(good)
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(tiny)
    out_json = tmp_path / "s.json"
    maps = tmp_path / "maps"
    rc, out, err = _run(capsys, good, tiny, "--model", gray_model, "--json", out_json, "--maps", maps)
    assert rc == 2
    line = _one_line_error(err)
    assert "tiny.png" in line and "16x16" in line and "28x28" in line
    records = json.loads(out_json.read_text())
    assert [r["input"] for r in records] == [str(good), str(tiny)]
    assert set(records[0]) == KEYS and "error" not in records[0]
    assert "qf" not in records[1] and "16x16" in records[1]["error"] and records[1]["slice"] is None
    assert sorted(p.name for p in maps.iterdir()) == ["good.png"]  # the good image's map is published
    rc, out, err = _run(capsys, tiny, "--model", gray_model, "--maps", tmp_path / "maps2")
    assert rc == 2 and not (tmp_path / "maps2").exists()  # nothing scored: the folder we made is gone


def test_nan_in_an_h5_slice_fails_that_input(tmp_path, capsys, gray_model):
    vol = np.stack([_anatomy(seed=i, scale=2e-4) for i in range(3)])
    vol[2, 10, 10] = np.nan
    h5 = _h5(tmp_path / "bad.h5", vol)
    out_json = tmp_path / "s.json"
    rc, out, err = _run(capsys, h5, "--model", gray_model, "--json", out_json)
    assert rc == 2
    line = _one_line_error(err)
    assert "bad.h5" in line and "slice 2" in line and "NaN" in line
    assert out == "" and not out_json.exists()  # every input failed: nothing to report
    assert list(tmp_path.glob(".s.json*")) == []


def test_4d_nifti_is_scored_volume_by_volume(tmp_path, capsys, gray_model):
    first = np.stack([_anatomy((40, 44), s, 500) for s in range(3)], axis=-1)  # [X, Y, Z]
    second = np.stack([_anatomy((40, 44), s + 7, 90) for s in range(3)], axis=-1)
    data = np.stack([first, second], axis=-1)  # [X, Y, Z, T=2]
    nii4 = tmp_path / "fmri.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), nii4)
    j4, j3 = tmp_path / "4.json", tmp_path / "3.json"
    assert _run(capsys, nii4, "--model", gray_model, "--json", j4)[0] == 0
    r4 = json.loads(j4.read_text())
    assert [(r["volume"], r["slice"]) for r in r4] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert all(set(r) == KEYS | {"volume"} for r in r4)
    for t, vol in enumerate((first, second)):
        nii3 = tmp_path / f"v{t}.nii.gz"
        nib.save(nib.Nifti1Image(vol, np.eye(4)), nii3)
        assert _run(capsys, nii3, "--model", gray_model, "--json", j3)[0] == 0
        assert [r["qf"] for r in r4 if r["volume"] == t] == [r["qf"] for r in json.loads(j3.read_text())]


def test_16bit_png_is_scored_as_uint16(tmp_path, capsys, gray_model):
    arr = np.round(_anatomy() * 65535).astype(np.uint16)
    png = tmp_path / "deep.png"
    Image.fromarray(arr).save(png)
    with Image.open(png) as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    out_json = tmp_path / "s.json"
    rc, out, err = _run(capsys, png, "--model", gray_model, "--json", out_json)
    assert rc == 0, err
    qf = predictor_mod.load_predictor(gray_model, device="cpu").score(arr)
    assert json.loads(out_json.read_text())[0]["qf"] == pytest.approx(qf, abs=1e-5)


@pytest.mark.parametrize("ext", ["tif", "jpg"])
def test_cmyk_file_is_converted_to_rgb(tmp_path, capsys, weights_dir, monkeypatch, ext):
    monkeypatch.setattr(predictor_mod, "WEIGHTS_DIR", weights_dir)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray((rng.random((48, 48, 3)) * 255).astype(np.uint8))
    path = tmp_path / f"print.{ext}"
    rgb.convert("CMYK").save(path)
    out_json = tmp_path / "s.json"
    rc, out, err = _run(capsys, path, "--json", out_json)
    assert rc == 0, err
    (record,) = json.loads(out_json.read_text())
    assert record["model"] == "rgb" and 0 <= record["qf"] <= 1


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["missing.png"], "file not found"),
        (["{png}", "--model", "grey"], "unknown model 'grey'"),
        (["{png}", "--model", "{png}"], "not a readable safetensors"),
        (["{png}", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["{png}", "--device", "gpu0"], "unknown torch device 'gpu0'"),
    ],
)
def test_user_mistakes_are_one_line_errors(tmp_path, capsys, argv, needle, gray_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    png = tmp_path / "ok.png"
    Image.fromarray(np.round(_anatomy() * 255).astype(np.uint8)).save(png)
    argv = [a.format(png=png) for a in argv]
    if "--model" not in argv:
        argv += ["--model", gray_model]
    rc, out, err = _run(capsys, *argv)
    assert rc == 2
    assert needle in _one_line_error(err)


def test_shipped_model_missing_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(predictor_mod, "WEIGHTS_DIR", tmp_path / "nothing-here")
    png = tmp_path / "ok.png"
    Image.fromarray(np.round(_anatomy() * 255).astype(np.uint8)).save(png)
    rc, out, err = _run(capsys, png)
    assert rc == 2
    assert "shipped 'gray' QF model is not installed" in _one_line_error(err)
