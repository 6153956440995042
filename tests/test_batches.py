"""Batches survive bad files (issue 23): ``score`` / ``estimate-r`` write records for every input that works,
one error line and one error record per input that does not, and exit 2 at the end; folders of photos are
images, folders of DICOMs a series; 4-D NIfTI volume by volume; ``--max-pixels``; colour at once."""
from __future__ import annotations

import json
import time

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from mriqa.cli import main
from mriqa.models import QFNet
from recon.io.images import read_images
from recon.io.weights import save_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def gray_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "gray.safetensors"
    save_weights(QFNet(1, width=8), path)
    return str(path)


def _anatomy(shape=(64, 64), seed=0, scale=255.0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    disk = np.hypot(yy - shape[0] / 2, xx - shape[1] / 2) < min(shape) / 3
    return (0.02 + 0.7 * disk + 0.1 * rng.random(shape)) * scale


def _png(path, seed=0, shape=(64, 64)):
    Image.fromarray(np.round(_anatomy(shape, seed)).astype(np.uint8)).save(path)
    return path


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _errors(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.strip().splitlines() if line.startswith("mriqa: error: ")]


@pytest.mark.parametrize("command", ["score", "estimate-r"])
def test_one_corrupt_file_among_good_ones(tmp_path, capsys, gray_model, command):
    good = [_png(tmp_path / f"good{i}.png", seed=i) for i in range(2)]
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 10)
    out = tmp_path / "out.json"
    extra = ["--model", gray_model] if command == "score" else ["--method", "qf"]
    code, stdout, err = _cli(capsys, command, good[0], bad, good[1], "--json", out, *extra)
    assert code == 2
    (line,) = _errors(err)
    assert "corrupt.png" in line and "cannot read" in line
    records = json.loads(out.read_text())
    assert [r["input"] for r in records] == [str(good[0]), str(bad), str(good[1])]
    value = "qf" if command == "score" else "r_est"
    assert all(value in r and "error" not in r for r in (records[0], records[2]))
    assert value not in records[1] and "cannot read" in records[1]["error"]
    assert "1 of 3 inputs failed" in stdout


def test_a_folder_of_photos_is_read_as_images(tmp_path, capsys, gray_model):
    folder = tmp_path / "photos"
    folder.mkdir()
    _png(folder / "b.png", 1)
    Image.fromarray(np.round(_anatomy(seed=2)).astype(np.uint8)).convert("RGB").save(folder / "a.jpg")
    (folder / "notes.txt").write_text("not an image")
    records = read_images(folder)
    assert [r.source for r in records] == [str(folder / "a.jpg"), str(folder / "b.png")]
    assert all(r.kind == "photo" and r.slice is None for r in records)
    (folder / "c.png").write_bytes(b"broken")
    out = tmp_path / "s.json"
    code, _, err = _cli(capsys, "score", folder, "--model", gray_model, "--json", out)
    assert code == 2 and "c.png" in _errors(err)[0]  # each photo of the folder is an input of its own
    assert [("qf" in r, r["input"].rsplit("/", 1)[1]) for r in json.loads(out.read_text())] == \
        [(True, "a.jpg"), (True, "b.png"), (False, "c.png")]


def test_a_folder_of_dicoms_stays_a_series(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    template = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    folder = tmp_path / "series"
    folder.mkdir()
    for k in (2, 0, 1):
        ds = template.copy()
        ds.ImagePositionPatient = [0, 0, float(k)]
        ds.InstanceNumber = k + 1
        ds.save_as(folder / f"im{k}.dcm")
    _png(folder / "preview.png")  # a stray preview next to the series does not make it an image folder
    records = read_images(folder)
    assert [r.slice for r in records] == [0, 1, 2] and all(r.kind == "mri" for r in records)
    assert [r.source.rsplit("/", 1)[1] for r in records] == ["im0.dcm", "im1.dcm", "im2.dcm"]


def test_4d_nifti_estimate_r_per_volume(tmp_path, capsys):
    vols = [np.stack([_anatomy((80, 72), seed=t + 2 * s, scale=900.0) for s in (0, 1)], axis=-1) for t in (0, 1)]
    path = tmp_path / "series.nii.gz"
    nib.save(nib.Nifti1Image(np.stack(vols, axis=-1).astype(np.float32), np.eye(4)), path)
    out = tmp_path / "r.json"
    code, stdout, _ = _cli(capsys, "estimate-r", path, "--method", "qf", "--json", out)
    assert code == 0
    records = json.loads(out.read_text())
    assert [(r["volume"], r["slice"]) for r in records] == [(0, 0), (0, 1), (0, None), (1, 0), (1, 1), (1, None)]


def test_max_pixels_refuses_before_decoding(tmp_path, capsys, gray_model):
    huge = tmp_path / "huge.png"
    Image.new("1", (10000, 10000)).save(huge)  # 100 Mpx, a few kB on disk
    small = _png(tmp_path / "small.png")
    out = tmp_path / "s.json"
    start = time.perf_counter()
    code, _, err = _cli(capsys, "score", huge, small, "--model", gray_model, "--json", out)
    assert time.perf_counter() - start < 20  # decoding 100 Mpx and running the network would take far longer
    assert code == 2
    (line,) = _errors(err)
    assert "huge.png" in line and "100.0 megapixels" in line and "--max-pixels" in line
    assert ["qf" in r for r in json.loads(out.read_text())] == [False, True]
    code, _, err = _cli(capsys, "score", small, "--model", gray_model, "--max-pixels", "1000")
    assert code == 2 and "64x64" in _errors(err)[0]
    code, _, err = _cli(capsys, "estimate-r", small, "--max-pixels", "1000")
    assert code == 2 and "megapixels" in _errors(err)[0]
    with pytest.raises(SystemExit):
        main(["score", str(small), "--max-pixels", "zero"])


def test_estimate_r_says_colour_image_without_running_a_network(tmp_path, capsys, monkeypatch):
    from mriqa.predictor import QFPredictor
    from mriqa.restimate import learned, qf_based

    rng = np.random.default_rng(0)
    photo = tmp_path / "photo.png"
    Image.fromarray((rng.random((300, 400, 3)) * 255).astype(np.uint8)).save(photo)

    def no_network(*args, **kwargs):
        raise AssertionError("a network ran on a colour image")

    monkeypatch.setattr(QFPredictor, "predict_input", no_network)
    monkeypatch.setattr(QFPredictor, "prepare", no_network)
    for est in (learned.LearnedREstimator, qf_based.QFREstimator):
        monkeypatch.setattr(est, "estimate", no_network)
    out = tmp_path / "r.json"
    for method in ("learned", "qf"):
        code, stdout, _ = _cli(capsys, "estimate-r", photo, "--method", method, "--json", out)
        assert code == 0
        (record,) = json.loads(out.read_text())
        assert record["ood"].startswith("colour image") and record["r_est"] is None
        assert (record["r_low"], record["r_high"]) == (1.0, 16.0)
        assert "OOD: colour image" in stdout


def test_library_apis_return_typed_records(tmp_path, gray_model):
    """The commands' libraries: files in, dataclass records with to_json() out (no CLI, no printing)."""
    from mriqa.restimate import REstimator, load_estimator
    from mriqa.restimate.records import RRecord, estimate_r_files
    from mriqa.scoring import ScoreRecord, score_files

    good, bad = _png(tmp_path / "good.png"), tmp_path / "missing.png"
    notes: list[str] = []
    scores = score_files([good, bad], model=gray_model, pool="center", notes=notes)
    assert all(isinstance(r, ScoreRecord) for r in scores)
    assert scores[0].to_json() == {"input": str(good), "slice": None, "qf": scores[0].qf, "score": scores[0].qf,
                                   "pool": "center", "model": gray_model}
    assert scores[1].error == "file not found" and scores[1].error_message() == f"{bad}: file not found"
    est = load_estimator("qf")
    assert isinstance(est, REstimator) and isinstance(load_estimator("learned"), REstimator)
    records = estimate_r_files([good], method=est)
    assert [type(r) for r in records] == [RRecord] and records[0].estimator == "qf"
    assert set(records[0].to_json()) == {"input", "slice", "r_est", "r_low", "r_high", "estimator", "ood"}
