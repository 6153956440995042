"""IQA databases: the rated-image list every reader returns, the generic CSV reader and ``KIND:PATH`` dispatch.

Every reader returns an :class:`IQADataset`: a list of :class:`IQAItem` (distorted image, subjective score,
reference image, distortion label, level) plus the score's name and direction. Every image named by a score
file must exist: a missing image, or a score file that is missing or malformed, raises
:class:`recon.errors.InputError` naming the score file and the line (``entry N`` for MATLAB files). Nothing is
downloaded; point a reader at your own copy. :func:`mriqa.iqa.databases.load_dataset` takes ``"KIND:PATH"``: the
published databases (``live``, ``live-realigned``, ``csiq``, ``tid2013``, ``kadid10k``, ``pipal``) are read by
:mod:`mriqa.iqa.databases`, whose docstring gives each layout, and (read here, :func:`read_csv`):

``csv`` — a generic CSV file (``PATH`` is the file; image paths are relative to its folder). With a header
row the columns are found by name: ``image`` and one of ``score`` / ``mos`` (higher = better) / ``dmos``
(lower = better), optional ``reference`` and ``distortion``. Without a header the columns are positional
``image,[reference,]score[,distortion]``: 2 columns = image, score; 4 = image, reference, score,
distortion; 3 = image, score, distortion when the 2nd column is a number, else image, reference, score.
Blank lines and lines starting with ``#`` are skipped.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from recon.errors import InputError


@dataclass(frozen=True)
class IQAItem:
    """One rated image: ``image`` path, subjective ``score``, ``reference`` path (None without one),
    ``distortion`` label, ``level`` (the database's level or parameter, as text), ``where`` (score file and
    line, for messages)."""

    image: Path
    score: float
    reference: Path | None = None
    distortion: str | None = None
    level: str | None = None
    where: str = ""


@dataclass
class IQADataset:
    """A database read by one of the readers: its items and how to read its scores."""

    kind: str
    name: str
    root: Path
    items: list[IQAItem]
    score_name: str  # "DMOS", "MOS", "Elo", "score"
    higher_better: bool
    score_files: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def scores(self) -> np.ndarray:
        return np.array([it.score for it in self.items], dtype=np.float64)

    @property
    def distortions(self) -> list[str | None]:
        return [it.distortion for it in self.items]

    @property
    def has_reference(self) -> bool:
        return bool(self.items) and all(it.reference is not None for it in self.items)

    def subset(self, n: int) -> "IQADataset":
        """``n`` items evenly spaced over the list (all when ``n`` >= len): a quick, deterministic sample."""
        if n >= len(self.items):
            return self
        idx = np.unique(np.linspace(0, len(self.items) - 1, int(n)).round().astype(int))
        return IQADataset(self.kind, self.name, self.root, [self.items[i] for i in idx], self.score_name,
                          self.higher_better, self.score_files)


# ----------------------------------------------------------------------------------------------- helpers
def _folder_index(folder: Path) -> dict[str, Path]:
    """lower-case file name -> path of the files in ``folder`` (empty if it does not exist)."""
    if not folder.is_dir():
        return {}
    return {p.name.lower(): p for p in folder.iterdir() if p.is_file()}


class _Finder:
    """Case-insensitive lookup of file names in a few candidate folders (indexed once)."""

    def __init__(self, folders: Sequence[Path]):
        self.folders = list(folders)
        self._index: dict[Path, dict[str, Path]] = {}

    def find(self, name: str) -> Path | None:
        for folder in self.folders:
            exact = folder / name
            if exact.is_file():
                return exact
            if folder not in self._index:
                self._index[folder] = _folder_index(folder)
            hit = self._index[folder].get(name.lower())
            if hit is not None:
                return hit
        return None


def _need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(path, f"{what} not found")
    return path


def _number(text: str, source, where: str, what: str) -> float:
    try:
        v = float(str(text).strip())
    except (TypeError, ValueError):
        raise InputError(source, f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(v):
        raise InputError(source, f"{where}: {what} is not a finite number ({text!r})")
    return v


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        return path.read_text(encoding="latin-1")
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or type(exc).__name__})") from None


def _missing(score_file: Path, where: str, what: str, name: str, folders: Sequence[Path]) -> InputError:
    places = " or ".join(str(f) for f in folders)
    return InputError(score_file, f"{where}: {what} {name} not found (looked in {places})")


def _loadmat(path: Path, keys: Sequence[str]) -> dict:
    import scipy.io

    _need_file(path, "score file")
    try:
        data = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a corrupt / non-MATLAB file
        raise InputError(path, f"not a readable MATLAB .mat file ({type(exc).__name__})") from None
    for k in keys:
        if k not in data:
            found = sorted(k2 for k2 in data if not k2.startswith("__"))
            raise InputError(path, f"no variable {k!r} in the file (found {found})")
    return data


def _mat_strings(arr) -> list[str]:
    """A MATLAB cell array of strings (as scipy reads it) -> list of str."""
    out = []
    for item in np.asarray(arr, dtype=object).ravel():
        while isinstance(item, np.ndarray):
            if item.size != 1:
                item = "".join(str(c) for c in item.ravel()) if item.dtype.kind in "US" else item.ravel()[0]
                break
            item = item.ravel()[0]
        out.append(str(item).strip())
    return out


# ----------------------------------------------------------------------------------------------- CSV
_SCORE_COLUMNS = {"score": True, "mos": True, "dmos": False}


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def read_csv(path, check_files: bool = True) -> IQADataset:
    """A generic CSV ``image,[reference,]score[,distortion]`` (see the module docstring)."""
    path = _need_file(Path(path), "CSV score file")
    base = path.parent
    reader = csv.reader(io.StringIO(_read_text(path)))
    rows = []
    for row in reader:
        if not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        rows.append((reader.line_num, [c.strip() for c in row]))
    if not rows:
        raise InputError(path, "empty CSV file")
    first = [c.lower() for c in rows[0][1]]
    higher_better, score_name = True, "score"
    if "image" in first:
        cols = {n: j for j, n in enumerate(first)}
        score_col = next((c for c in _SCORE_COLUMNS if c in cols), None)
        if score_col is None:
            raise InputError(path, f"line {rows[0][0]}: the header names no score column (score, mos or dmos)")
        higher_better, score_name = _SCORE_COLUMNS[score_col], score_col.upper() if score_col != "score" else "score"
        layout = {"image": cols["image"], "score": cols[score_col], "reference": cols.get("reference"),
                  "distortion": cols.get("distortion")}
        rows = rows[1:]
    else:
        n = len(rows[0][1])
        if n == 2:
            layout = {"image": 0, "score": 1, "reference": None, "distortion": None}
        elif n == 3 and _is_number(rows[0][1][1]):
            layout = {"image": 0, "score": 1, "reference": None, "distortion": 2}
        elif n == 3:
            layout = {"image": 0, "reference": 1, "score": 2, "distortion": None}
        elif n == 4:
            layout = {"image": 0, "reference": 1, "score": 2, "distortion": 3}
        else:
            raise InputError(path, f"line {rows[0][0]}: expected 2 to 4 columns image,[reference,]score[,distortion] "
                             f"(or a header row), got {n}")
    width = 1 + max(v for v in layout.values() if v is not None)
    items = []
    for lineno, row in rows:
        where = f"line {lineno}"
        if len(row) < width:
            raise InputError(path, f"{where}: expected at least {width} columns, got {len(row)}")
        name = row[layout["image"]]
        if not name:
            raise InputError(path, f"{where}: empty image name")
        value = _number(row[layout["score"]], path, where, "score")
        img = base / name
        ref = base / row[layout["reference"]] if layout["reference"] is not None and row[layout["reference"]] else None
        dist = row[layout["distortion"]] or None if layout["distortion"] is not None else None
        if check_files and not img.is_file():
            raise InputError(path, f"{where}: image {img} not found")
        if check_files and ref is not None and not ref.is_file():
            raise InputError(path, f"{where}: reference {ref} not found")
        items.append(IQAItem(img, value, ref, dist, None, f"{path} {where}"))
    if not items:
        raise InputError(path, "no rated images in the file")
    if any(it.reference is not None for it in items) and not all(it.reference is not None for it in items):
        lineno = next(n for (n, _), it in zip(rows, items) if it.reference is None)
        raise InputError(path, f"line {lineno}: no reference, but other rows have one (give every row a "
                         "reference or none)")
    return IQADataset("csv", f"CSV {path.name}", base, items, score_name, higher_better, [path])
