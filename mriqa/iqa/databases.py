"""Readers for the published layouts and score files of the standard IQA databases, and :func:`load_dataset`, the
``KIND:PATH`` dispatch of ``mriqa iqa-bench --dataset``. Each returns an :class:`~mriqa.iqa.datasets.IQADataset`;
the rules for missing images and malformed score files are those of :mod:`mriqa.iqa.datasets`.

``live`` (LIVE Image Quality Assessment Database, release 2; Sheikh et al. 2006) — ``PATH`` is the
``databaserelease2`` folder::

    dmos.mat            MATLAB: dmos [1 x 982] (DMOS, lower = better), orgs [1 x 982] (1 = the entry is an
                        undistorted copy of its reference; those 203 entries are left out -> 779 images)
    refnames_all.mat    MATLAB: refnames_all {1 x 982} reference file name of every entry
    refimgs/            the 29 references (bikes.bmp, ...)
    jp2k/ jpeg/ wn/ gblur/ fastfading/   img1.bmp ... imgN.bmp and info.txt
                        (info.txt lines: "REFERENCE DISTORTED PARAMETER", e.g. "bikes.bmp img1.bmp 0.2")

  Entries are in folder order jp2k (227), jpeg (233), wn (174), gblur (174), fastfading (174); entry ``k``
  of a folder is ``img{k}.bmp`` (k from 1). With the full 982 entries the published counts are used; a
  copy with another number of entries (a miniature one, a subset) must have the five ``info.txt`` files, whose
  line counts give the per-folder counts. ``info.txt`` also gives each image's distortion parameter
  (``level``, looked up by the distorted file name). ``live-realigned`` reads ``dmos_realigned.mat``
  (``dmos_new``, ``orgs``) instead,
  the realigned DMOS released later. This is the layout read by pyiqa's ``scripts/process_live.py``
  (chaofengc/IQA-PyTorch: ``dmos.mat`` keys ``dmos`` / ``orgs``, ``refnames_all``, folder counts 227 / 233 /
  174 / 174 / 174, ``img{k}.bmp``), by VTAMIQ's LIVE loader (``dmos_realigned.mat``, ``refimgs/``) and by
  RankIQA's ``data/rename_image_names.py`` (the ``info.txt`` columns).

``csiq`` (CSIQ; Larson & Chandler 2010) — ``PATH`` is the database folder (or the score file). The scores are
published as a spreadsheet, ``csiq.DMOS.xlsx``; its ``all_by_image`` sheet has the columns ``image, dst_idx,
dst_type, dst_lev, dmos_std, dmos``. Read: **the CSV export of that sheet**, ``csiq.DMOS.csv`` (or any
``*.csv`` given as PATH): rows above the header row (the one naming ``image``, ``dst_type``, ``dst_lev`` and
``dmos``) and empty leading columns are skipped, as are all-empty padding rows; ``.xlsx`` itself is read
when ``openpyxl`` is installed. Images::

    src_imgs/<image>.png                                 the 30 references
    dst_imgs/<folder>/<image>.<TOKEN>.<dst_lev>.png      866 distorted images

  with ``dst_type`` -> (folder, TOKEN): noise -> (awgn, AWGN), jpeg -> (jpeg, JPEG), jpeg 2000 ->
  (jpeg2000, jpeg2000), fnoise -> (fnoise, fnoise), blur -> (blur, BLUR), contrast -> (contrast,
  contrast). The folders may also sit directly in ``PATH`` (no ``src_imgs`` / ``dst_imgs``), file names
  are matched case-insensitively. DMOS in [0, 1], lower = better. Column names and the type -> file-name map
  follow public CSIQ loaders that read the xlsx (``calamine`` / ``openpyxl`` on the ``all_by_image`` sheet).

``tid2013`` (TID2013; Ponomarenko et al. 2015) — ``PATH`` is the database folder::

    mos_with_names.txt   3000 lines "MOS NAME", e.g. "5.51429 i01_01_1.bmp" (MOS 0..9, higher = better)
    reference_images/    I01.BMP ... I25.BMP
    distorted_images/    iXX_YY_Z.bmp: reference XX, distortion type YY (01..24), level Z (1..5)

  File-name case varies between copies (``I25.BMP`` / ``i25.bmp``): matched case-insensitively. As read by
  pyiqa's ``scripts/process_tid.py`` (MOS first, then the name; reference ``I{XX}.BMP``).

``kadid10k`` (KADID-10k; Lin, Hosu & Saupe 2019) — ``PATH`` is the database folder::

    dmos.csv     header "dist_img,ref_img,dmos,var", then 10125 rows, e.g. "I01_01_01.png,I01.png,4.57,0.496"
    images/      I01.png ... I81.png and IXX_YY_ZZ.png (distortion type YY 01..25, level ZZ 01..05)

  Despite its name the ``dmos`` column is quality-oriented (1..5, higher = better), as pyiqa treats it.
  As read by pyiqa's ``scripts/process_kadid10k.py``.

``pipal`` (PIPAL training set, NTIRE 2021 perceptual IQA challenge; Jinjin et al. 2020) — ``PATH`` is the
folder holding::

    Train_Label/A0001.txt ...   lines "NAME,ELO", e.g. "A0001_00_00.bmp,1491.89" (Elo score, higher = better)
    Train_Ref/A0001.bmp ...     200 references (288 x 288)
    Train_Dis/A0001_00_00.bmp   116 distorted images per reference; the second field of the name is the
                                distortion group (``Distortion_1`` ... ``Distortion_4`` folders are also
                                searched, as some copies split ``Train_Dis``)

  The reference of ``A0001_xx_yy.bmp`` is ``A0001.bmp``. As read by pyiqa's ``scripts/process_pipal.py``.
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np

from recon.errors import InputError
from mriqa.iqa.datasets import (IQADataset, IQAItem, _Finder, _loadmat, _mat_strings, _missing, _need_file, _number,
                                _read_text, read_csv)

LIVE_FOLDERS = ("jp2k", "jpeg", "wn", "gblur", "fastfading")
LIVE_COUNTS = (227, 233, 174, 174, 174)
CSIQ_TYPES = {
    "noise": ("awgn", "AWGN"),
    "jpeg": ("jpeg", "JPEG"),
    "jpeg 2000": ("jpeg2000", "jpeg2000"),
    "fnoise": ("fnoise", "fnoise"),
    "blur": ("blur", "BLUR"),
    "contrast": ("contrast", "contrast"),
}
TID2013_TYPES = (
    "additive-gaussian-noise", "additive-noise-in-color-components", "spatially-correlated-noise",
    "masked-noise", "high-frequency-noise", "impulse-noise", "quantization-noise", "gaussian-blur",
    "image-denoising", "jpeg", "jpeg2000", "jpeg-transmission-errors", "jpeg2000-transmission-errors",
    "non-eccentricity-pattern-noise", "local-block-wise-distortions", "mean-shift", "contrast-change",
    "change-of-color-saturation", "multiplicative-gaussian-noise", "comfort-noise",
    "lossy-compression-of-noisy-images", "color-quantization-with-dither", "chromatic-aberrations",
    "sparse-sampling-and-reconstruction",
)
KADID_TYPES = (
    "gaussian-blur", "lens-blur", "motion-blur", "color-diffusion", "color-shift", "color-quantization",
    "color-saturation-1", "color-saturation-2", "jpeg2000", "jpeg", "white-noise",
    "white-noise-in-color-component", "impulse-noise", "multiplicative-noise", "denoise", "brighten",
    "darken", "mean-shift", "jitter", "non-eccentricity-patch", "pixelate", "quantization", "color-block",
    "high-sharpen", "contrast-change",
)


# ----------------------------------------------------------------------------------------------- LIVE
def read_live(root, realigned: bool = False, check_files: bool = True) -> IQADataset:
    """LIVE release 2 (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "LIVE folder not found (expected the databaserelease2 folder)")
    score_path = root / ("dmos_realigned.mat" if realigned else "dmos.mat")
    key = "dmos_new" if realigned else "dmos"
    data = _loadmat(score_path, (key, "orgs"))
    dmos = np.asarray(data[key], dtype=np.float64).ravel()
    orgs = np.asarray(data["orgs"]).ravel()
    names_path = root / "refnames_all.mat"
    refnames = _mat_strings(_loadmat(names_path, ("refnames_all",))["refnames_all"])
    if len(orgs) != len(dmos):
        raise InputError(score_path, f"{key} has {len(dmos)} entries but orgs has {len(orgs)}")
    if len(refnames) != len(dmos):
        raise InputError(names_path, f"refnames_all has {len(refnames)} entries, {score_path.name} has {len(dmos)}")

    # per-folder counts and distortion parameters from info.txt
    infos: dict[str, dict[str, str]] = {}
    counts = []
    have_info = all((root / f / "info.txt").is_file() for f in LIVE_FOLDERS)
    for folder in LIVE_FOLDERS:
        info_path = root / folder / "info.txt"
        if not have_info:
            break
        params: dict[str, str] = {}
        n = 0
        for lineno, line in enumerate(_read_text(info_path).splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) < 3:
                raise InputError(info_path, f"line {lineno}: expected 'REFERENCE DISTORTED PARAMETER', "
                                 f"got {line.strip()!r}")
            _number(parts[2], info_path, f"line {lineno}", "distortion parameter")
            params[parts[1].lower()] = parts[2]
            n += 1
        infos[folder] = params
        counts.append(n)
    if len(dmos) == sum(LIVE_COUNTS):
        counts = list(LIVE_COUNTS)  # the real database: the published counts, whatever info.txt holds
    elif have_info:
        if sum(counts) != len(dmos):
            detail = ", ".join(f"{f} {c}" for f, c in zip(LIVE_FOLDERS, counts))
            raise InputError(score_path, f"{len(dmos)} entries, but the info.txt files list {sum(counts)} images "
                             f"({detail})")
    else:
        missing = [f for f in LIVE_FOLDERS if not (root / f / "info.txt").is_file()]
        raise InputError(
            score_path,
            f"{len(dmos)} entries, not the 982 of release 2, and no info.txt in {', '.join(missing)} to count "
            "the images of each distortion folder",
        )

    ref_finder = _Finder([root / "refimgs"])
    items = []
    i = 0
    for folder, count in zip(LIVE_FOLDERS, counts):
        finder = _Finder([root / folder])
        for k in range(1, count + 1):
            where = f"entry {i + 1}"
            org = orgs[i]
            value = dmos[i]
            ref_name = refnames[i]
            i += 1
            if org not in (0, 1):
                raise InputError(score_path, f"{where}: orgs must be 0 or 1, got {org!r}")
            if org == 1:
                continue  # the reference itself, shown as a "distorted" image
            if not math.isfinite(value):
                raise InputError(score_path, f"{where}: {key} is not a finite number")
            name = f"img{k}.bmp"
            img = finder.find(name)
            ref = ref_finder.find(ref_name)
            if check_files and img is None:
                raise _missing(score_path, where, "image", f"{folder}/{name}", [root / folder])
            if check_files and ref is None:
                raise _missing(names_path, where, "reference", ref_name, [root / "refimgs"])
            items.append(IQAItem(
                img or root / folder / name, float(value), ref or root / "refimgs" / ref_name, folder,
                infos.get(folder, {}).get(name.lower()), f"{score_path} {where}",
            ))
    return IQADataset("live-realigned" if realigned else "live", "LIVE release 2", root, items, "DMOS", False,
                      [score_path, names_path])


# ----------------------------------------------------------------------------------------------- CSIQ
def _csiq_rows_csv(path: Path) -> list[tuple[int, list[str]]]:
    text = _read_text(path)
    return [(n, row) for n, row in enumerate(csv.reader(io.StringIO(text)), 1)]


def _csiq_rows_xlsx(path: Path) -> list[tuple[int, list[str]]]:
    try:
        import openpyxl
    except ModuleNotFoundError:
        raise InputError(path, "reading .xlsx needs openpyxl (pip install openpyxl); or export the "
                         "'all_by_image' sheet as CSV to csiq.DMOS.csv") from None
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise InputError(path, f"not a readable .xlsx workbook ({type(exc).__name__})") from None
    try:
        if "all_by_image" not in wb.sheetnames:
            raise InputError(path, f"no 'all_by_image' sheet (sheets: {wb.sheetnames})")
        rows = []
        for n, values in enumerate(wb["all_by_image"].iter_rows(values_only=True), 1):
            rows.append((n, ["" if v is None else str(v) for v in values]))
        return rows
    finally:
        wb.close()


def _csiq_name(text: str) -> str:
    t = text.strip()
    try:  # a numeric image name exported from Excel as 1600.0
        f = float(t)
        if f.is_integer():
            return str(int(f))
    except ValueError:
        pass
    return t


def read_csiq(path, check_files: bool = True) -> IQADataset:
    """CSIQ (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        root = path
        candidates = [root / "csiq.DMOS.csv", root / "csiq.DMOS.xlsx"]
        score_path = next((c for c in candidates if c.is_file()), None)
        if score_path is None:
            csvs = sorted(root.glob("*.csv"))
            if len(csvs) == 1:
                score_path = csvs[0]
            else:
                raise InputError(root / "csiq.DMOS.csv", "CSIQ score file not found (the CSV export of the "
                                 "'all_by_image' sheet of csiq.DMOS.xlsx, or the .xlsx with openpyxl installed)")
    else:
        score_path = _need_file(path, "score file")
        root = path.parent
    xlsx = score_path.suffix.lower() in (".xlsx", ".xlsm")
    rows = _csiq_rows_xlsx(score_path) if xlsx else _csiq_rows_csv(score_path)
    header_at, cols = None, {}
    for k, (lineno, row) in enumerate(rows):
        names = [c.strip().lower() for c in row]
        if {"image", "dst_type", "dst_lev", "dmos"} <= set(names):
            header_at, cols = k, {n: j for j, n in enumerate(names) if n}
            break
    if header_at is None:
        raise InputError(score_path, "no header row naming the columns image, dst_type, dst_lev and dmos "
                         "(export the 'all_by_image' sheet of csiq.DMOS.xlsx)")

    src = [root / "src_imgs", root]
    ref_finder = _Finder(src)
    finders: dict[str, _Finder] = {}
    items = []
    for lineno, row in rows[header_at + 1:]:
        where = f"line {lineno}"

        def cell(name):
            j = cols.get(name)
            return row[j].strip() if j is not None and j < len(row) else ""

        image, dtype, lev, dmos = cell("image"), cell("dst_type"), cell("dst_lev"), cell("dmos")
        if not image:
            if any((dtype, lev, dmos)):
                raise InputError(score_path, f"{where}: row has no image name but other values")
            continue  # spreadsheet padding
        if not (dtype and lev and dmos):
            raise InputError(score_path, f"{where}: expected image, dst_type, dst_lev and dmos, got {row!r}")
        t = dtype.lower()
        if t not in CSIQ_TYPES:
            raise InputError(score_path, f"{where}: unknown dst_type {dtype!r} (expected one of {sorted(CSIQ_TYPES)})")
        level = _number(lev, score_path, where, "dst_lev")
        if not level.is_integer() or level < 1:
            raise InputError(score_path, f"{where}: dst_lev must be a positive integer, got {lev!r}")
        value = _number(dmos, score_path, where, "dmos")
        folder, token = CSIQ_TYPES[t]
        name = _csiq_name(image)
        fname = f"{name}.{token}.{int(level)}.png"
        if folder not in finders:
            finders[folder] = _Finder([root / "dst_imgs" / folder, root / folder])
        img = finders[folder].find(fname)
        ref = ref_finder.find(f"{name}.png")
        if check_files and img is None:
            raise _missing(score_path, where, "image", fname, finders[folder].folders)
        if check_files and ref is None:
            raise _missing(score_path, where, "reference", f"{name}.png", src)
        items.append(IQAItem(img or root / "dst_imgs" / folder / fname, value, ref or root / "src_imgs" / f"{name}.png",
                             folder, str(int(level)), f"{score_path} {where}"))
    if not items:
        raise InputError(score_path, "no rated images below the header row")
    return IQADataset("csiq", "CSIQ", root, items, "DMOS", False, [score_path])


# ----------------------------------------------------------------------------------------------- TID2013
_TID_NAME = re.compile(r"^i(\d\d)_(\d\d)_(\d)\.bmp$", re.IGNORECASE)


def read_tid2013(root, check_files: bool = True) -> IQADataset:
    """TID2013 (see the module docstring)."""
    root = Path(root)
    score_path = _need_file(root / "mos_with_names.txt", "TID2013 score file")
    dist_dir, ref_dir = root / "distorted_images", root / "reference_images"
    finder, ref_finder = _Finder([dist_dir]), _Finder([ref_dir])
    items = []
    for lineno, line in enumerate(_read_text(score_path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        parts = line.split()
        if len(parts) != 2:
            raise InputError(score_path, f"{where}: expected 'MOS NAME', got {line.strip()!r}")
        mos = _number(parts[0], score_path, where, "MOS")
        name = parts[1]
        m = _TID_NAME.match(name)
        if not m:
            raise InputError(score_path, f"{where}: image name {name!r} is not of the form iXX_YY_Z.bmp")
        ref_name = f"I{m.group(1)}.BMP"
        dtype = int(m.group(2))
        label = f"{dtype:02d}-{TID2013_TYPES[dtype - 1]}" if 1 <= dtype <= len(TID2013_TYPES) else f"{dtype:02d}"
        img, ref = finder.find(name), ref_finder.find(ref_name)
        if check_files and img is None:
            raise _missing(score_path, where, "image", name, [dist_dir])
        if check_files and ref is None:
            raise _missing(score_path, where, "reference", ref_name, [ref_dir])
        items.append(IQAItem(img or dist_dir / name, mos, ref or ref_dir / ref_name, label, m.group(3),
                             f"{score_path} {where}"))
    if not items:
        raise InputError(score_path, "no rated images in the file")
    return IQADataset("tid2013", "TID2013", root, items, "MOS", True, [score_path])


# ----------------------------------------------------------------------------------------------- KADID-10k
_KADID_NAME = re.compile(r"^i(\d\d)_(\d\d)_(\d\d)\.png$", re.IGNORECASE)


def read_kadid10k(root, check_files: bool = True) -> IQADataset:
    """KADID-10k (see the module docstring)."""
    root = Path(root)
    score_path = _need_file(root / "dmos.csv", "KADID-10k score file")
    img_dir = root / "images"
    finder = _Finder([img_dir])
    reader = csv.reader(io.StringIO(_read_text(score_path)))
    header = None
    items = []
    for row in reader:
        lineno = reader.line_num
        if not any(c.strip() for c in row):
            continue
        where = f"line {lineno}"
        if header is None:
            header = [c.strip().lower() for c in row]
            if not {"dist_img", "ref_img", "dmos"} <= set(header):
                raise InputError(score_path, f"{where}: expected the header 'dist_img,ref_img,dmos,var', got {row!r}")
            cols = {n: j for j, n in enumerate(header)}
            continue
        if len(row) < len(header):
            raise InputError(score_path, f"{where}: expected {len(header)} columns ({','.join(header)}), got {row!r}")
        dist, ref_name = row[cols["dist_img"]].strip(), row[cols["ref_img"]].strip()
        value = _number(row[cols["dmos"]], score_path, where, "dmos")
        m = _KADID_NAME.match(dist)
        label = level = None
        if m:
            t = int(m.group(2))
            label = f"{t:02d}-{KADID_TYPES[t - 1]}" if 1 <= t <= len(KADID_TYPES) else f"{t:02d}"
            level = m.group(3)
        img, ref = finder.find(dist), finder.find(ref_name)
        if check_files and img is None:
            raise _missing(score_path, where, "image", dist, [img_dir])
        if check_files and ref is None:
            raise _missing(score_path, where, "reference", ref_name, [img_dir])
        items.append(IQAItem(img or img_dir / dist, value, ref or img_dir / ref_name, label, level,
                             f"{score_path} {where}"))
    if header is None:
        raise InputError(score_path, "empty score file (expected the header 'dist_img,ref_img,dmos,var')")
    if not items:
        raise InputError(score_path, "no rated images below the header")
    return IQADataset("kadid10k", "KADID-10k", root, items, "DMOS (quality-oriented)", True, [score_path])


# ----------------------------------------------------------------------------------------------- PIPAL
def read_pipal(root, check_files: bool = True) -> IQADataset:
    """PIPAL training set (see the module docstring)."""
    root = Path(root)
    label_dir = root / "Train_Label"
    if not label_dir.is_dir():
        raise InputError(label_dir, "PIPAL label folder not found (expected Train_Label/ with A0001.txt ...)")
    label_files = sorted(p for p in label_dir.iterdir() if p.suffix.lower() == ".txt")
    if not label_files:
        raise InputError(label_dir, "no label files (*.txt) in the folder")
    dis_dirs = [root / "Train_Dis"] + sorted(p for p in root.glob("Distortion_*") if p.is_dir())
    ref_dir = root / "Train_Ref"
    finder, ref_finder = _Finder(dis_dirs), _Finder([ref_dir])
    items = []
    for lf in label_files:
        for lineno, line in enumerate(_read_text(lf).splitlines(), 1):
            if not line.strip():
                continue
            where = f"line {lineno}"
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 2 or not parts[0]:
                raise InputError(lf, f"{where}: expected 'NAME,ELO', got {line.strip()!r}")
            name = parts[0]
            elo = _number(parts[1], lf, where, "Elo score")
            fields = Path(name).stem.split("_")
            ref_name = f"{fields[0]}.bmp"
            group = f"group-{fields[1]}" if len(fields) >= 3 else None
            img, ref = finder.find(name), ref_finder.find(ref_name)
            if check_files and img is None:
                raise _missing(lf, where, "image", name, dis_dirs)
            if check_files and ref is None:
                raise _missing(lf, where, "reference", ref_name, [ref_dir])
            items.append(IQAItem(img or dis_dirs[0] / name, elo, ref or ref_dir / ref_name, group,
                                 fields[2] if len(fields) >= 3 else None, f"{lf} {where}"))
    if not items:
        raise InputError(label_dir, "the label files list no images")
    return IQADataset("pipal", "PIPAL (training)", root, items, "Elo", True, label_files)


# ----------------------------------------------------------------------------------------------- dispatch
KINDS = ("live", "live-realigned", "csiq", "tid2013", "kadid10k", "pipal", "csv")


def reader(kind: str) -> Callable[..., IQADataset]:
    """The reader of a database kind (:data:`KINDS`): ``reader(kind)(path, check_files=True)``."""
    if kind == "csv":
        return read_csv
    if kind == "live-realigned":
        return lambda p, **kw: read_live(p, realigned=True, **kw)
    return {"live": read_live, "csiq": read_csiq, "tid2013": read_tid2013, "kadid10k": read_kadid10k,
            "pipal": read_pipal}[kind]
ALIASES = {"kadid": "kadid10k", "kadid-10k": "kadid10k", "tid": "tid2013", "live2": "live", "generic": "csv"}


def parse_spec(spec: str) -> tuple[str, Path]:
    """``"KIND:PATH"`` -> ``(kind, path)`` (kind lower-cased, aliases resolved); InputError otherwise."""
    if ":" not in str(spec):
        raise InputError(None, f"--dataset expects KIND:PATH (KIND one of {', '.join(KINDS)}), got {spec!r}")
    kind, path = str(spec).split(":", 1)
    kind = ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if kind not in KINDS:
        raise InputError(None, f"unknown dataset kind {kind!r}: expected one of {', '.join(KINDS)}")
    if not path:
        raise InputError(None, f"--dataset {spec!r}: empty path")
    return kind, Path(os.path.expanduser(path))


def load_dataset(spec: str | tuple[str, str | os.PathLike], check_files: bool = True) -> IQADataset:
    """Read a database from ``"KIND:PATH"`` (or ``(kind, path)``); see the module docstring for the layouts."""
    if isinstance(spec, tuple):
        kind, path = parse_spec(f"{spec[0]}:{os.fspath(spec[1])}")
    else:
        kind, path = parse_spec(spec)
    if not path.exists():
        raise InputError(path, f"{kind} dataset path not found")
    return reader(kind)(path, check_files=check_files)
