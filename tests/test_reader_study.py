"""The reader study (mriqa.reader_study, ``mriqa reader-study``): building, storage, pairing, scores, CLI.

Fast and CPU-only: tiny studies (3 x 3 images of 32 x 32), the Flask test client, no browser (that is
tests/test_reader_study_browser.py).
"""
from __future__ import annotations

import csv
import json
import math
import sqlite3
import threading
import uuid

import numpy as np
import pytest
from PIL import Image

from mriqa.cli import main
from mriqa.reader_study import db, rating
from mriqa.reader_study.pairing import PairingState
from mriqa.reader_study.study import build_study
from recon.errors import InputError
from recon.io.fastmri_h5 import write_reconstruction_h5

NOISE = {"zf": 0.3, "sense": 0.1, "modl": 0.03}  # noise sd of the fake methods (modl is best)


def _h5_inputs(tmp_path, slices: int = 3):
    """Fake ``mriqa recon`` files: one per method, ``[slices, 32, 32]``, plus the reference."""
    rng = np.random.default_rng(0)
    base = rng.random((slices, 32, 32)).astype(np.float32) + 0.5
    ref = tmp_path / "ref.h5"
    write_reconstruction_h5(ref, base)
    files = []
    for method, sd in NOISE.items():
        f = tmp_path / f"{method}.h5"
        write_reconstruction_h5(f, base + sd * rng.standard_normal(base.shape).astype(np.float32),
                                attrs={"method": method, "acceleration": 4.0})
        files.append(f)
    return files, ref

@pytest.fixture
def h5_study(tmp_path):
    files, ref = _h5_inputs(tmp_path)
    return build_study(tmp_path / "study", files, reference=ref)

def _judge_by_noise(study, n: int, reader: str = "ann", seed: int = 0):
    """``n`` judgments from the test client: the reader prefers the less noisy image (always)."""
    from mriqa.reader_study.server import create_app

    client = create_app(study, seed=seed).test_client()
    label = {im["id"]: im["method"] for im in study.images}
    pairs = []
    for _ in range(n):
        nxt = client.get(f"/api/next?reader={reader}").get_json()
        left, right = nxt["left"]["id"], nxt["right"]["id"]
        choice = "left" if NOISE[label[left]] < NOISE[label[right]] else "right"
        r = client.post("/api/judgments", json={"id": str(uuid.uuid4()), "reader": reader, "left": left,
                                                 "right": right, "choice": choice, "response_ms": 500})
        assert r.status_code == 200 and r.get_json()["stored"] is True
        pairs.append(tuple(sorted((left, right))))
    return client, pairs

# ------------------------------------------------------------------------------------------------ building
def test_study_from_h5_groups_by_slice_with_fixed_window(h5_study):
    m = h5_study.manifest
    assert m["source"] == "h5" and len(m["images"]) == 9 and len(m["groups"]) == 3
    assert [g["id"] for g in m["groups"]] == ["slice-000", "slice-001", "slice-002"]
    assert {im["label"] for im in m["images"]} == {"zf R=4", "sense R=4", "modl R=4"}
    for g in m["groups"]:
        lo, hi = g["window"]
        assert hi > lo and (h5_study.root / g["reference"]).is_file()
        for iid in g["images"]:
            png = np.asarray(Image.open(h5_study.root / "images" / f"{iid}.png"))
            assert png.dtype == np.uint8 and png.shape == (32, 32)
    # the window is the group's, not the image's: the noisiest image clips, the cleanest does not reach 0/255
    by_label = {im["label"]: im["id"] for im in m["images"] if im["group"] == "slice-000"}
    zf = np.asarray(Image.open(h5_study.root / "images" / f"{by_label['zf R=4']}.png"))
    modl = np.asarray(Image.open(h5_study.root / "images" / f"{by_label['modl R=4']}.png"))
    assert (zf == 0).sum() > (modl == 0).sum()
    conn = db.connect(h5_study.db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.images(conn) == {im["id"]: im["group"] for im in m["images"]}
    conn.close()

def test_study_from_pngs_with_group_regex(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for case in ("a", "b"):
        for k in range(3):
            Image.fromarray(rng.integers(0, 256, (24, 20), dtype=np.uint8)).save(folder / f"{case}_m{k}.png")
    inputs = sorted(folder.glob("*.png"))
    study = build_study(tmp_path / "s", inputs, group_regex=r"^(\w)_")
    groups = {g["id"]: g for g in study.manifest["groups"]}
    assert sorted(groups) == ["a", "b"] and all(len(g["images"]) == 3 for g in groups.values())
    assert all(g["window"] is None for g in groups.values())  # 8-bit images are copied unchanged
    first = study.images[0]
    src = np.asarray(Image.open(first["source"]))
    np.testing.assert_array_equal(np.asarray(Image.open(study.root / first["file"])), src)
    notes = []
    one = build_study(tmp_path / "s2", inputs, notes=notes)  # no regex: one group "all"
    assert [g["id"] for g in one.manifest["groups"]] == ["all"] and not notes
    whole = build_study(tmp_path / "s3", [folder])  # a folder of images: one image per file, named by it
    assert [im["label"] for im in whole.images] == [p.stem for p in inputs]

def test_build_refuses_bad_input_and_leaves_nothing(tmp_path):
    files, ref = _h5_inputs(tmp_path)
    other = tmp_path / "other.h5"
    write_reconstruction_h5(other, np.ones((2, 32, 32), np.float32))
    with pytest.raises(InputError, match="same slices"):
        build_study(tmp_path / "x", files + [other])
    with pytest.raises(InputError, match="outside"):
        build_study(tmp_path / "x", files, slices="1-7")
    png = tmp_path / "p.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    with pytest.raises(InputError, match="mixes"):
        build_study(tmp_path / "x", [files[0], png])
    with pytest.raises(InputError, match="3 of 3 groups have one image"):  # one file: nothing to compare
        build_study(tmp_path / "x", [files[0]])
    with pytest.raises(InputError, match="--target must be >= 1"):
        build_study(tmp_path / "x", files, target_per_reader=0)
    with pytest.raises(InputError, match="given twice"):  # an image against itself in every pair
        build_study(tmp_path / "x", [files[0], files[1], tmp_path / ".." / tmp_path.name / files[0].name])
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))

# ------------------------------------------------------------------------------------------------ Elo / BT
def test_elo_matches_hand_computed_pipal_updates():
    # PIPAL Eq. (1)-(2): 1500 vs 1600, A chosen: P(A) = 1 / (1 + 10^(100/400)) = 0.359935
    assert rating.elo_expected(1500, 1600) == pytest.approx(0.3599350, abs=1e-6)
    # two images from 1400, A wins twice (chronological, one pass):
    # step 1: P = 0.5, A = 1408, B = 1392; step 2: P(A) = 1 / (1 + 10^(-16/400)) = 0.5230096,
    # A = 1408 + 16 * 0.4769904 = 1415.631847, B = 1384.368153; score = mean of the last 2 ratings
    elo = rating.elo_scores([0, 0], [1, 1], [1.0, 1.0], 2, passes=1, last=2, shuffle=False)
    assert elo == pytest.approx([(1408 + 1415.631847) / 2, (1392 + 1384.368153) / 2], abs=1e-5)
    last1 = rating.elo_scores([0, 0], [1, 1], [1.0, 1.0], 2, passes=1, last=1, shuffle=False)
    assert last1 == pytest.approx([1415.631847, 1384.368153], abs=1e-5)
    # a tie between equals moves nothing; an unjudged image stays at 1400
    assert rating.elo_scores([0], [1], [0.5], 3, passes=1, last=1, shuffle=False) == pytest.approx([1400] * 3)

def test_bt_recovers_ordering_and_intervals_cover():
    rng = np.random.default_rng(3)
    truth = np.linspace(-2, 2, 8)
    a = rng.integers(0, 8, 600)
    b = (a + rng.integers(1, 8, 600)) % 8
    p = 1 / (1 + np.exp(-(truth[a] - truth[b])))
    s = (rng.random(600) < p).astype(float)
    fit = rating.fit_bt(a, b, s, 8)
    assert list(np.argsort(fit.theta)) == list(range(8))
    assert abs(fit.theta.mean()) < 1e-9 and np.max(np.abs(fit.theta - truth)) < 0.5
    boot = rating.bootstrap_bt(a, b, s, 8, n_boot=100, fit=fit)
    assert np.all(boot.lo < fit.theta) and np.all(fit.theta < boot.hi)
    assert np.mean((boot.lo <= truth) & (truth <= boot.hi)) >= 0.75
    elo = rating.elo_scores(a, b, s, 8)
    assert np.corrcoef(np.argsort(np.argsort(elo)), np.arange(8))[0, 1] > 0.95
    # a clean sweep stays finite (Firth), and the Davidson tie parameter is estimated from the ties
    sweep = rating.fit_bt([0, 0, 0], [1, 1, 1], [1.0, 1.0, 1.0], 2)
    assert np.all(np.isfinite(sweep.theta)) and sweep.theta[0] > sweep.theta[1]
    ties = rating.fit_bt([0, 0, 0, 0], [1, 1, 1, 1], [0.5, 0.5, 1.0, 0.0], 2)
    assert ties.nu > 0.5 and abs(ties.theta[0] - ties.theta[1]) < 1e-6

# ------------------------------------------------------------------------------------------------ pairing
@pytest.mark.parametrize("mode", ["active", "random"])
def test_pairing_never_repeats_previous_pair(mode):
    rng = np.random.default_rng(0)
    state = PairingState([0, 0, 0, 1, 1])  # groups of 3 and 2 images: 4 pairs in all
    prev = None
    for _ in range(60):
        i, j = state.choose(rng, exclude=prev, mode=mode)
        assert (i, j) != prev and state.groups[i] == state.groups[j] and i < j
        state.add(i, j, float(rng.random() < 0.5))
        prev = (i, j)
    only = PairingState([0, 0])
    assert only.choose(rng, exclude=(0, 1), mode=mode) is None

def test_server_never_serves_a_reader_the_same_pair_twice_in_a_row(h5_study):
    client, pairs = _judge_by_noise(h5_study, 40, "ann")
    assert all(p != q for p, q in zip(pairs, pairs[1:]))
    _, pairs_b = _judge_by_noise(h5_study, 20, "bob", seed=1)
    assert all(p != q for p, q in zip(pairs_b, pairs_b[1:]))
    info = client.get("/api/study").get_json()
    assert info["judgments"] == 60 and info["images"] == 9
    # the page never learns the labels (blind reading)
    nxt = client.get("/api/next?reader=ann").get_json()
    assert "label" not in json.dumps(nxt) and "zf" not in json.dumps(nxt)
    assert client.get("/api/next").status_code == 400  # no reader name

# ------------------------------------------------------------------------------------------------ database
def test_judgments_idempotent_atomic_and_concurrent(h5_study):
    from mriqa.reader_study.server import create_app

    client = create_app(h5_study, seed=0).test_client()
    a, b = h5_study.images[0]["id"], h5_study.images[1]["id"]
    body = {"id": str(uuid.uuid4()), "reader": "ann", "left": a, "right": b, "choice": "left"}
    assert client.post("/api/judgments", json=body).get_json()["stored"] is True
    again = client.post("/api/judgments", json=body)  # a retried POST (answer lost): stored once
    assert again.status_code == 200 and again.get_json()["stored"] is False
    assert client.post("/api/judgments", json={**body, "choice": "right"}).status_code == 409
    for bad in ({**body, "id": "nope"}, {**body, "id": str(uuid.uuid4()), "choice": "up"},
                {**body, "id": str(uuid.uuid4()), "right": a}, {**body, "id": str(uuid.uuid4()), "left": "x"},
                {**body, "id": str(uuid.uuid4()), "right": h5_study.images[3]["id"]}):  # other group
        assert client.post("/api/judgments", json=bad).status_code == 400
    conn = db.connect(h5_study.db_path)
    assert db.count(conn) == 1
    # two writers at once (threads, own connections): every judgment stored exactly once
    def writer(name):
        c = db.connect(h5_study.db_path)
        for k in range(25):
            jid = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{name}{k}"))
            db.add_judgment(c, jid, name, a, b, "tie")
            db.add_judgment(c, jid, name, a, b, "tie")  # the retry
        c.close()
    threads = [threading.Thread(target=writer, args=(n,)) for n in ("r1", "r2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.count(conn) == 51 and db.count(conn, "r1") == 25
    with pytest.raises(sqlite3.IntegrityError):  # the schema itself refuses a judgment of one image
        conn.execute("INSERT INTO judgments (uuid, reader, left_id, right_id, choice, created_at) "
                     "VALUES ('u', 'x', ?, ?, 'left', 0)", (a, a))
    assert db.count(conn) == 51
    conn.close()

def test_images_only_by_id_no_path_traversal(h5_study):
    from mriqa.reader_study.server import create_app

    (h5_study.root / "images" / "secret.png").write_bytes(b"not in the manifest")
    client = create_app(h5_study).test_client()
    iid = h5_study.images[0]["id"]
    with client.get(f"/images/{iid}.png") as r:  # a file response: close it
        assert r.status_code == 200 and r.data[:8] == b"\x89PNG\r\n\x1a\n"
    for url in ("/images/../manifest.json", "/images/..%2fstudy.sqlite", "/images/..%2f..%2fetc%2fpasswd.png",
                "/images/%2e%2e%2fmanifest.json.png", "/images/secret.png", "/manifest.json", "/study.sqlite",
                "/images/../references/slice-000.png", f"/images/{iid}.png/..", "/images/img0001"):
        assert client.get(url).status_code == 404, url
    page = client.get("/")
    assert page.status_code == 200 and b"/app.js" in page.data
    assert client.get("/app.js").status_code == 200

# ------------------------------------------------------------------------------------------------ CLI
def _one_error_line(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mriqa: error: ") and "Traceback" not in err[0]
    return err[0]

def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    files, _ = _h5_inputs(tmp_path)
    assert str(tmp_path / "missing.h5") in _one_error_line(
        capsys, ["reader-study", "new", str(tmp_path / "s"), str(tmp_path / "missing.h5")])
    nan = tmp_path / "nan.h5"
    write_reconstruction_h5(nan, np.ones((3, 32, 32), np.float32))
    import h5py
    with h5py.File(nan, "a") as f:
        f["reconstruction"][1, 0, 0] = np.nan
    assert "nan.h5" in _one_error_line(capsys, ["reader-study", "new", str(tmp_path / "s"), *map(str, files),
                                                str(nan)])
    assert not (tmp_path / "s").exists()
    assert "not a reader study" in _one_error_line(capsys, ["reader-study", "scores", str(tmp_path)])
    assert main(["reader-study", "new", str(tmp_path / "s"), *map(str, files)]) == 0
    assert "already exists" in _one_error_line(capsys, ["reader-study", "new", str(tmp_path / "s"), str(files[0])])
    out_csv = tmp_path / "out.csv"
    assert "no judgments" in _one_error_line(capsys, ["reader-study", "scores", str(tmp_path / "s"),
                                                      "--csv", str(out_csv)])
    assert not out_csv.exists()
    assert "--level" in _one_error_line(capsys, ["reader-study", "scores", str(tmp_path / "s"), "--level", "2"])
    import socket
    with socket.socket() as busy:  # a port another program listens on
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert "in use" in _one_error_line(capsys, ["reader-study", "serve", str(tmp_path / "s"), "--port", str(port)])

def test_scores_cli_and_iqa_bench_on_the_export(h5_study, tmp_path, capsys):
    _judge_by_noise(h5_study, 30, "ann")
    _judge_by_noise(h5_study, 20, "bob", seed=5)
    out_csv, out_json = tmp_path / "export" / "study.csv", tmp_path / "scores.json"
    assert main(["reader-study", "scores", str(h5_study.root), "--bootstrap", "50", "--csv", str(out_csv),
                 "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "elo" in text and "bt 95%" in text and "agreement" in text
    res = json.loads(out_json.read_text())
    assert res["judgments"] == 50 and res["readers"] == ["ann", "bob"]
    assert res["agreement"]["readers"]["ann"]["agreement"] == 1.0  # both always prefer the less noisy image
    best = {m["label"]: m["bt"] for m in res["methods"]}
    assert best["modl R=4"] > best["sense R=4"] > best["zf R=4"]
    for im in res["images"]:
        assert im["bt_lo"] <= im["bt"] <= im["bt_hi"] and math.isfinite(im["elo"])
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9 and (out_csv.parent / rows[0]["image"]).is_file()
    assert (out_csv.parent / rows[0]["reference"]).is_file()
    bench_json = tmp_path / "bench.json"
    assert main(["iqa-bench", "--dataset", f"csv:{out_csv}", "--metric", "psnr", "--bootstrap", "0",
                 "--json", str(bench_json)]) == 0
    bench = json.loads(bench_json.read_text())
    metric = bench["metrics"][0]
    assert len(metric["images"]) == 9
    assert metric["overall"]["srcc"] > 0.6  # PSNR agrees with readers who prefer the less noisy image
