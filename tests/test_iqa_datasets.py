"""Readers of the published IQA layouts, on miniature copies written in each layout (tiny images)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from recon.errors import InputError
from mriqa.iqa.databases import load_dataset, parse_spec
from mriqa.iqa.datasets import IQADataset


def _img(path: Path, seed: int = 0, size=(8, 10), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path, format=fmt)
    return path


# ------------------------------------------------------------------------------------------------- layouts
def make_live(root: Path, realigned: bool = False) -> Path:
    """databaserelease2 in miniature: 11 entries (jp2k 3, jpeg 2, wn 2, gblur 2, fastfading 2), one an
    undistorted copy (orgs = 1)."""
    counts = {"jp2k": 3, "jpeg": 2, "wn": 2, "gblur": 2, "fastfading": 2}
    refs, dmos, orgs = [], [], []
    for r in ("bikes.bmp", "parrots.bmp"):
        _img(root / "refimgs" / r, seed=len(r))
    i = 0
    for folder, n in counts.items():
        lines = []
        for k in range(1, n + 1):
            ref = "bikes.bmp" if (i % 2 == 0) else "parrots.bmp"
            refs.append(ref)
            dmos.append(10.0 + 3 * i)
            orgs.append(1 if (folder == "jpeg" and k == 2) else 0)
            _img(root / folder / f"img{k}.bmp", seed=i)
            lines.append(f"{ref} img{k}.bmp {0.5 * k:.3f}")
            i += 1
        (root / folder / "info.txt").write_text("\n".join(reversed(lines)) + "\n")  # order need not follow k
    key = "dmos_new" if realigned else "dmos"
    scipy.io.savemat(root / ("dmos_realigned.mat" if realigned else "dmos.mat"),
                     {key: np.array(dmos)[None], "orgs": np.array(orgs, dtype=float)[None]})
    scipy.io.savemat(root / "refnames_all.mat", {"refnames_all": np.array(refs, dtype=object)[None]})
    return root


CSIQ_CSV = """\
,CSIQ subjective ratings (all_by_image),,,,,
,image,dst_idx,dst_type,dst_lev,dmos_std,dmos
,1600,1,noise,1,0.0231,0.062
,1600,1,noise,2,0.0315,0.206
,1600,3,jpeg,1,0.0111,0.034
,1600,5,jpeg 2000,3,0.0411,0.288
,aerial_city,2,blur,1,0.0286,0.109
,aerial_city,4,fnoise,2,0.0215,0.113
,aerial_city,6,contrast,1,0.0174,0.056
,,,,,,
"""


def make_csiq(root: Path, text: str = CSIQ_CSV) -> Path:
    (root).mkdir(parents=True, exist_ok=True)
    (root / "csiq.DMOS.csv").write_text(text)
    for name in ("1600", "aerial_city"):
        _img(root / "src_imgs" / f"{name}.png", seed=len(name))
    for rel in ("awgn/1600.AWGN.1.png", "awgn/1600.AWGN.2.png", "jpeg/1600.JPEG.1.png",
                "jpeg2000/1600.jpeg2000.3.png", "blur/aerial_city.BLUR.1.png",
                "fnoise/aerial_city.fnoise.2.png", "contrast/aerial_city.contrast.1.png"):
        _img(root / "dst_imgs" / rel, seed=len(rel))
    return root


def make_tid2013(root: Path) -> Path:
    lines = ["5.51429 i01_01_1.bmp", "4.01235 i01_10_4.bmp", "6.12000 i02_08_1.bmp", "3.50000 i02_24_5.bmp",
             "5.00000 i25_17_2.bmp"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "mos_with_names.txt").write_text("\n".join(lines) + "\n")
    _img(root / "reference_images" / "I01.BMP", 1, fmt="BMP")
    _img(root / "reference_images" / "I02.BMP", 2, fmt="BMP")
    _img(root / "reference_images" / "i25.bmp", 25, fmt="BMP")  # the published copy has this one in lower case
    for i, line in enumerate(lines):
        name = line.split()[1]
        disk = name.upper().replace(".BMP", ".bmp") if i == 2 else name  # case differs on disk
        _img(root / "distorted_images" / disk, 10 + i, fmt="BMP")
    return root


def make_kadid(root: Path) -> Path:
    rows = ["dist_img,ref_img,dmos,var", "I01_01_01.png,I01.png,4.57,0.496", "I01_10_05.png,I01.png,1.23,0.42",
            "I02_25_03.png,I02.png,3.10,0.8", "I02_11_02.png,I02.png,2.95,0.61"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "dmos.csv").write_text("\n".join(rows) + "\n")
    for r in rows[1:]:
        d, ref = r.split(",")[:2]
        _img(root / "images" / d, len(d))
        _img(root / "images" / ref, len(ref))
    return root


def make_pipal(root: Path) -> Path:
    labels = {"A0001": ["A0001_00_00.bmp,1491.8922", "A0001_01_05.bmp,1380.25"],
              "A0002": ["A0002_00_01.bmp,1602.5", "A0002_10_02.bmp,1288.0"]}
    for ref, lines in labels.items():
        (root / "Train_Label").mkdir(parents=True, exist_ok=True)
        (root / "Train_Label" / f"{ref}.txt").write_text("\n".join(lines) + "\n")
        _img(root / "Train_Ref" / f"{ref}.bmp", 3, fmt="BMP")
        for line in lines:
            _img(root / "Train_Dis" / line.split(",")[0], len(line), fmt="BMP")
    return root


def make_csv(root: Path, header: bool = True, reference: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(4):
        _img(root / "dis" / f"d{i}.png", i)
        _img(root / "ref" / f"r{i % 2}.png", 50 + i % 2)
        rows.append([f"dis/d{i}.png"] + ([f"ref/r{i % 2}.png"] if reference else []) + [f"{i * 0.5:.2f}",
                                                                                        "jpeg" if i % 2 else "blur"])
    lines = ([",".join(["image"] + (["reference"] if reference else []) + ["mos", "distortion"])] if header else [])
    lines += ["# a comment", ""] + [",".join(r) for r in rows]
    path = root / "scores.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------------------------- reading
def test_live(tmp_path):
    root = make_live(tmp_path / "databaserelease2")
    ds = load_dataset(f"live:{root}")
    assert isinstance(ds, IQADataset) and ds.kind == "live" and not ds.higher_better and ds.score_name == "DMOS"
    assert len(ds) == 10  # 11 entries minus the one undistorted copy
    assert [it.distortion for it in ds.items][:4] == ["jp2k", "jp2k", "jp2k", "jpeg"]
    first = ds.items[0]
    assert first.image == root / "jp2k" / "img1.bmp" and first.reference == root / "refimgs" / "bikes.bmp"
    assert first.score == 10.0 and first.level == "0.500"
    assert all(it.image.name != "img2.bmp" or it.distortion != "jpeg" for it in ds.items)  # orgs = 1 left out
    assert ds.items[-1].image == root / "fastfading" / "img2.bmp" and ds.items[-1].score == 40.0
    assert ds.has_reference
    re = load_dataset(f"live-realigned:{make_live(tmp_path / 'realigned', realigned=True)}")
    assert len(re) == 10 and re.kind == "live-realigned"


def test_live_full_size_uses_the_published_counts(tmp_path):
    """982 entries (the real release): folders of 227 / 233 / 174 / 174 / 174, no info.txt needed."""
    root = tmp_path / "full"
    root.mkdir()
    orgs = np.zeros(982)
    orgs[[0, 300, 981]] = 1
    scipy.io.savemat(root / "dmos.mat", {"dmos": np.arange(982.0)[None], "orgs": orgs[None]})
    scipy.io.savemat(root / "refnames_all.mat", {"refnames_all": np.array(["bikes.bmp"] * 982, dtype=object)[None]})
    ds = load_dataset(f"live:{root}", check_files=False)
    assert len(ds) == 979
    counts = {f: sum(d == f for d in ds.distortions) for f in ("jp2k", "jpeg", "wn", "gblur", "fastfading")}
    assert counts == {"jp2k": 226, "jpeg": 232, "wn": 174, "gblur": 174, "fastfading": 173}
    assert ds.items[226].image == root / "jpeg" / "img1.bmp" and ds.items[226].score == 227.0
    assert ds.items[-1].image == root / "fastfading" / "img173.bmp"
    assert "not found" in _error(f"live:{root}")  # with the image check on


def test_csiq(tmp_path):
    root = make_csiq(tmp_path / "CSIQ")
    ds = load_dataset(f"csiq:{root}")
    assert len(ds) == 7 and not ds.higher_better
    assert ds.items[0].image == root / "dst_imgs" / "awgn" / "1600.AWGN.1.png"
    assert ds.items[0].reference == root / "src_imgs" / "1600.png"
    assert ds.items[3].image.name == "1600.jpeg2000.3.png" and ds.items[3].distortion == "jpeg2000"
    assert [it.score for it in ds.items][:2] == [0.062, 0.206]
    assert sorted(set(ds.distortions)) == ["awgn", "blur", "contrast", "fnoise", "jpeg", "jpeg2000"]
    # the score file itself may be given, and "1600.0" (a number exported by a spreadsheet) is the image 1600
    (root / "other.csv").write_text("image,dst_type,dst_lev,dmos\n1600.0,noise,1.0,0.5\n1600,blur,1,0.1\n"
                                    .replace("1600,blur,1,0.1", "aerial_city,blur,1,0.1"))
    one = load_dataset(f"csiq:{root / 'other.csv'}")
    assert [it.image.name for it in one.items] == ["1600.AWGN.1.png", "aerial_city.BLUR.1.png"]
    with pytest.raises(InputError, match="openpyxl|not a readable"):
        (root / "x.xlsx").write_bytes(b"not a workbook")
        load_dataset(f"csiq:{root / 'x.xlsx'}")


def test_csiq_flat_layout(tmp_path):
    """Folders directly in the database folder (no src_imgs / dst_imgs), as some copies are unpacked."""
    root = make_csiq(tmp_path / "c")
    for p in sorted((root / "dst_imgs").iterdir()):
        p.rename(root / p.name)
    for p in sorted((root / "src_imgs").iterdir()):
        p.rename(root / p.name)
    ds = load_dataset(f"csiq:{root}")
    assert ds.items[0].image == root / "awgn" / "1600.AWGN.1.png" and ds.items[0].reference == root / "1600.png"


def test_tid2013(tmp_path):
    root = make_tid2013(tmp_path / "tid2013")
    ds = load_dataset(f"tid2013:{root}")
    assert len(ds) == 5 and ds.higher_better and ds.score_name == "MOS"
    assert ds.items[0].score == pytest.approx(5.51429)
    assert ds.items[0].distortion == "01-additive-gaussian-noise" and ds.items[0].level == "1"
    assert ds.items[1].distortion == "10-jpeg"
    assert ds.items[2].image.name == "I02_08_1.bmp"  # found although the case differs
    assert ds.items[3].distortion == "24-sparse-sampling-and-reconstruction"
    assert ds.items[4].reference.name == "i25.bmp"
    assert ds.items[0].reference.name == "I01.BMP"


def test_kadid10k(tmp_path):
    root = make_kadid(tmp_path / "kadid10k")
    ds = load_dataset(f"kadid:{root}")
    assert ds.kind == "kadid10k" and len(ds) == 4 and ds.higher_better
    assert ds.items[0].image == root / "images" / "I01_01_01.png" and ds.items[0].reference.name == "I01.png"
    assert [it.distortion for it in ds.items] == ["01-gaussian-blur", "10-jpeg", "25-contrast-change", "11-white-noise"]
    assert ds.items[1].score == 1.23 and ds.items[1].level == "05"


def test_pipal(tmp_path):
    root = make_pipal(tmp_path / "PIPAL")
    ds = load_dataset(f"pipal:{root}")
    assert len(ds) == 4 and ds.higher_better and ds.score_name == "Elo"
    assert ds.items[0].image == root / "Train_Dis" / "A0001_00_00.bmp"
    assert ds.items[0].reference == root / "Train_Ref" / "A0001.bmp" and ds.items[0].score == 1491.8922
    assert ds.items[3].distortion == "group-10" and ds.items[3].reference.name == "A0002.bmp"
    # copies that split Train_Dis into Distortion_1..4
    (root / "Distortion_2").mkdir()
    (root / "Train_Dis" / "A0002_10_02.bmp").rename(root / "Distortion_2" / "A0002_10_02.bmp")
    assert load_dataset(f"pipal:{root}").items[3].image == root / "Distortion_2" / "A0002_10_02.bmp"


def test_generic_csv_header_and_positional(tmp_path):
    path = make_csv(tmp_path / "a")
    ds = load_dataset(f"csv:{path}")
    assert len(ds) == 4 and ds.higher_better and ds.score_name == "MOS"
    assert ds.items[1].image == path.parent / "dis" / "d1.png"
    assert ds.items[1].reference == path.parent / "ref" / "r1.png"
    assert ds.items[1].score == 0.5 and ds.items[1].distortion == "jpeg"
    # positional: image,reference,score,distortion
    pos = load_dataset(f"csv:{make_csv(tmp_path / 'b', header=False)}")
    assert [it.score for it in pos.items] == [it.score for it in ds.items] and pos.items[0].reference is not None
    # positional: image,score,distortion (no reference)
    nr = load_dataset(f"csv:{make_csv(tmp_path / 'c', header=False, reference=False)}")
    assert nr.items[2].reference is None and nr.items[2].distortion == "blur" and not nr.has_reference
    # a dmos column is lower-is-better; image,score only
    (tmp_path / "a" / "d.csv").write_text("image,dmos\ndis/d0.png,3\ndis/d1.png,4\n")
    d = load_dataset(f"csv:{tmp_path / 'a' / 'd.csv'}")
    assert not d.higher_better and d.score_name == "DMOS"
    (tmp_path / "a" / "two.csv").write_text("dis/d0.png,3\ndis/d1.png,4\n")
    assert len(load_dataset(f"csv:{tmp_path / 'a' / 'two.csv'}")) == 2
    assert len(ds.subset(2)) == 2 and ds.subset(10) is ds


# ------------------------------------------------------------------------------------------------- errors
def _error(spec) -> str:
    with pytest.raises(InputError) as exc:
        load_dataset(spec)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_images_name_the_score_file_and_line(tmp_path):
    live = make_live(tmp_path / "live")
    (live / "wn" / "img2.bmp").unlink()
    msg = _error(f"live:{live}")
    assert "dmos.mat" in msg and "entry 7" in msg and "wn/img2.bmp" in msg

    csiq = make_csiq(tmp_path / "csiq")
    (csiq / "dst_imgs" / "blur" / "aerial_city.BLUR.1.png").unlink()
    msg = _error(f"csiq:{csiq}")
    assert "csiq.DMOS.csv" in msg and "line 7" in msg and "aerial_city.BLUR.1.png" in msg

    tid = make_tid2013(tmp_path / "tid")
    (tid / "reference_images" / "I02.BMP").unlink()
    msg = _error(f"tid2013:{tid}")
    assert "mos_with_names.txt" in msg and "line 3" in msg and "I02.BMP" in msg

    kadid = make_kadid(tmp_path / "kadid")
    (kadid / "images" / "I02_11_02.png").unlink()
    msg = _error(f"kadid10k:{kadid}")
    assert "dmos.csv" in msg and "line 5" in msg and "I02_11_02.png" in msg

    pipal = make_pipal(tmp_path / "pipal")
    (pipal / "Train_Dis" / "A0002_00_01.bmp").unlink()
    msg = _error(f"pipal:{pipal}")
    assert "A0002.txt" in msg and "line 1" in msg and "A0002_00_01.bmp" in msg

    path = make_csv(tmp_path / "csv")
    (path.parent / "ref" / "r1.png").unlink()
    msg = _error(f"csv:{path}")
    assert "scores.csv" in msg and "line 5" in msg and "r1.png" in msg


def test_malformed_score_files(tmp_path):
    live = make_live(tmp_path / "live")
    with open(live / "gblur" / "info.txt", "a") as f:
        f.write("bikes.bmp img3.bmp\n")
    msg = _error(f"live:{live}")
    assert "gblur/info.txt" in msg.replace("\\", "/") and "line 3" in msg
    live2 = make_live(tmp_path / "live2")
    (live2 / "dmos.mat").write_bytes(b"garbage")
    assert "dmos.mat" in _error(f"live:{live2}")
    scipy.io.savemat(live2 / "dmos.mat", {"dmos": np.ones((1, 11))})
    assert "'orgs'" in _error(f"live:{live2}")
    scipy.io.savemat(live2 / "dmos.mat", {"dmos": np.ones((1, 12)), "orgs": np.zeros((1, 12))})
    assert "refnames_all" in _error(f"live:{live2}")

    csiq = make_csiq(tmp_path / "csiq", CSIQ_CSV.replace("fnoise", "sharpen"))
    msg = _error(f"csiq:{csiq}")
    assert "line 8" in msg and "sharpen" in msg
    csiq2 = make_csiq(tmp_path / "csiq2", CSIQ_CSV.replace("0.113", "n/a"))
    assert "line 8" in _error(f"csiq:{csiq2}") and "n/a" in _error(f"csiq:{csiq2}")
    csiq3 = make_csiq(tmp_path / "csiq3", "a,b,c\n1,2,3\n")
    assert "header" in _error(f"csiq:{csiq3}")

    tid = make_tid2013(tmp_path / "tid")
    with open(tid / "mos_with_names.txt", "a") as f:
        f.write("4.2\n")
    msg = _error(f"tid2013:{tid}")
    assert "mos_with_names.txt" in msg and "line 6" in msg
    (tid / "mos_with_names.txt").write_text("five i01_01_1.bmp\n")
    assert "line 1" in _error(f"tid2013:{tid}") and "'five'" in _error(f"tid2013:{tid}")
    (tid / "mos_with_names.txt").write_text("5.0 picture.bmp\n")
    assert "iXX_YY_Z" in _error(f"tid2013:{tid}")

    kadid = make_kadid(tmp_path / "kadid")
    (kadid / "dmos.csv").write_text("name,score\nI01_01_01.png,3\n")
    assert "header" in _error(f"kadid10k:{kadid}")
    (kadid / "dmos.csv").write_text("dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,nan,0\n")
    assert "line 2" in _error(f"kadid10k:{kadid}")

    pipal = make_pipal(tmp_path / "pipal")
    (pipal / "Train_Label" / "A0001.txt").write_text("A0001_00_00.bmp;1491.9\n")
    msg = _error(f"pipal:{pipal}")
    assert "A0001.txt" in msg and "line 1" in msg and "NAME,ELO" in msg

    path = make_csv(tmp_path / "csv")
    path.write_text("image,reference\ndis/d0.png,ref/r0.png\n")
    assert "score column" in _error(f"csv:{path}")
    path.write_text("dis/d0.png,ref/r0.png,x\n")
    assert "line 1" in _error(f"csv:{path}")


def test_dataset_specs(tmp_path):
    assert parse_spec("TID2013:/x") == ("tid2013", Path("/x"))
    assert parse_spec("kadid-10k:/x")[0] == "kadid10k"
    assert "KIND:PATH" in _error("tid2013")
    assert "unknown dataset kind" in _error("mystery:/x")
    assert "not found" in _error(f"tid2013:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    assert "mos_with_names.txt" in _error(f"tid2013:{tmp_path / 'empty'}")
    assert "Train_Label" in _error(f"pipal:{tmp_path / 'empty'}")
    assert "csiq.DMOS.csv" in _error(f"csiq:{tmp_path / 'empty'}")
    assert "dmos.mat" in _error(f"live:{tmp_path / 'empty'}")
