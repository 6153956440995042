"""Build a reader study: a folder with 8-bit PNGs, a JSON manifest and an SQLite database.

::

    STUDY/
      manifest.json        what is compared (below)
      study.sqlite         judgments (:mod:`mriqa.reader_study.db`; WAL mode)
      images/img0001.png   one 8-bit PNG per compared image (IDs img0001, img0002, ...)
      references/<group>.png   the reference of a content group (``--reference``), rendered with its window

**Content groups.** Only images of the same group are ever shown side by side. From ``mriqa recon`` h5
files (``reconstruction`` float32 ``[slices, H, W]``, attrs ``method``, ``acceleration``): one group per slice
(``slice-000``, ...), one image per file (a method at an R), labelled ``"<method> R=<acceleration>"``; every
file must have the same number of slices and the same H x W. From images (PNG / JPEG / TIFF / BMP, DICOM,
NIfTI, read by :func:`recon.io.images.read_images`): a slice ``k`` of a volume (NIfTI 3-D, DICOM folder or multi-frame
file) goes to group ``slice-<k>``; a single 2-D image goes to group ``all``, or, with ``group_regex``, to the
group named by the regex's first match on the file stem (its first capture group when it has one).
Groups with fewer than two images, or whose images are all constant, are skipped with a note.

**Display window** (fixed per group, the same for all its images): when every image of the group is 8-bit
(uint8) it is copied unchanged (RGBA -> RGB, LA -> L); otherwise ``lo``, ``hi`` = the ``percentiles``
(default 0.5 and 99.5) of all pixels of all the group's images and its reference pooled, and each pixel
becomes ``round(255 * clip((x - lo) / (hi - lo), 0, 1))``. The window is written into the manifest.

**Manifest** ``manifest.json``: ``{"format": "mriqa-reader-study", "version": 1, "name", "created",
"source": "h5" | "images", "window": {"rule", "percentiles"}, "target_per_reader", "groups": [{"id",
"window": [lo, hi] | null, "reference": "references/<id>.png" | null, "images": [ids]}], "images": [{"id",
"file": "images/<id>.png", "group", "label", "method", "acceleration", "source", "slice", "shape"}]}``.
The study folder is built beside ``out`` under a temporary name and renamed into place only when complete.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.files import atomic_path

MANIFEST = "manifest.json"
DATABASE = "study.sqlite"
IMAGE_DIR = "images"
REFERENCE_DIR = "references"
FORMAT = "mriqa-reader-study"


@dataclass
class _Entry:
    """One image to compare: ``array`` as read (``[H, W]`` or ``[H, W, C]``)."""

    group: str
    label: str
    method: str
    acceleration: float | None
    source: str
    slice: int | None
    array: np.ndarray


@dataclass
class Study:
    """An opened study: ``root`` folder and its ``manifest`` (dict, as in the module doc)."""

    root: Path
    manifest: dict = field(repr=False)

    @property
    def db_path(self) -> Path:
        return self.root / DATABASE

    @property
    def images(self) -> list[dict]:
        return self.manifest["images"]

    def image_index(self) -> dict[str, int]:
        """image id -> index 0..n-1 (manifest order)."""
        return {im["id"]: i for i, im in enumerate(self.images)}

    def group_index(self) -> np.ndarray:
        """int ``[n]``: group number of each image (the order of ``manifest["groups"]``)."""
        gid = {g["id"]: k for k, g in enumerate(self.manifest["groups"])}
        return np.array([gid[im["group"]] for im in self.images], dtype=np.int64)


# ------------------------------------------------------------------------------------------------ reading
def _is_h5(path: Path) -> bool:
    if path.suffix.lower() in (".h5", ".hdf5"):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def parse_slices(text: str | None, n: int, source: str) -> list[int]:
    """``"3,5-7"`` -> [3, 5, 6, 7] (all ``n`` slices when None); InputError when out of range."""
    if text is None:
        return list(range(n))
    out: list[int] = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise InputError(None, f"--slices: cannot read {part!r} (expected e.g. 3,5-7)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo or hi >= n:
            raise InputError(source, f"--slices {part.strip()} outside the {n} slices of the file")
        out.extend(range(lo, hi + 1))
    return sorted(set(out))


def _read_h5_volume(path: Path) -> tuple[np.ndarray, dict]:
    """``reconstruction`` (or the first fastMRI image key) float32 ``[S, H, W]`` and the file's attrs
    (plain Python values), read by :func:`recon.io.fastmri_h5.read_reconstruction`."""
    from recon.io.fastmri_h5 import read_reconstruction

    rec = read_reconstruction(path, with_mask=False)
    return rec.image, rec.attrs


def collect_h5(paths: list[Path], reference: Path | None = None, slices: str | None = None):
    """Entries from ``mriqa recon`` files (see the module doc) and ``{group: reference [H, W]}``."""
    from recon.io.fastmri_h5 import ReconstructionAttrs

    entries: list[_Entry] = []
    shape = None
    chosen: list[int] = []
    for p in paths:
        vol, attrs = _read_h5_volume(p)
        if shape is None:
            shape = vol.shape
            chosen = parse_slices(slices, vol.shape[0], str(p))
        elif vol.shape != shape:
            raise InputError(p, f"reconstruction has shape {list(vol.shape)}, but {paths[0]} has {list(shape)} "
                             "(all files of a study must show the same slices)")
        info = ReconstructionAttrs.from_attrs(attrs)
        method = info.method or p.stem
        acc = info.acceleration
        label = method if acc is None else f"{method} R={acc:g}"
        for k in chosen:
            entries.append(_Entry(f"slice-{k:03d}", label, method, acc, str(p), k, vol[k]))
    labels = [e.label for e in entries if e.slice == chosen[0]]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        for e in entries:  # same method and R twice (e.g. two seeds): tell them apart by file name
            if e.label in dup:
                e.label = f"{e.label} ({Path(e.source).stem})"
    refs: dict[str, np.ndarray] = {}
    if reference is not None:
        ref = _read_h5_volume(reference)[0]
        if ref.shape != shape:
            raise InputError(reference, f"reference has shape {list(ref.shape)}, the reconstructions "
                             f"{list(shape)} (it must be the fully sampled image of the same slices)")
        refs = {f"slice-{k:03d}": ref[k] for k in chosen}
    return entries, refs


def collect_images(paths: list[Path], group_regex: str | None = None) -> list[_Entry]:
    """Entries from image files, DICOM and NIfTI (see the module doc for the groups)."""
    from recon.io.images import read_images

    pattern = None
    if group_regex:
        try:
            pattern = re.compile(group_regex)
        except re.error as exc:
            raise InputError(None, f"--group-regex {group_regex!r}: {exc}") from None
    entries = []
    for p in paths:
        for rec in read_images(p):
            # a volume (NIfTI, DICOM folder) is named by its path; a single image by its file (also when it
            # came from a folder of images)
            named = p if rec.slice is not None else Path(rec.source)
            label = named.name if named.is_dir() else re.sub(r"\.nii$", "", named.stem)
            if rec.slice is not None:
                group = f"slice-{rec.slice:03d}"
            elif pattern is not None:
                m = pattern.search(label)
                if m is None:
                    raise InputError(p, f"--group-regex {group_regex!r} does not match the name {label!r}")
                group = m.group(1) if m.groups() else m.group(0)
            else:
                group = "all"
            entries.append(_Entry(group, label, label, None, rec.source, rec.slice, rec.image))
    return entries


# ------------------------------------------------------------------------------------------------ rendering
def _eight_bit(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[-1] in (2, 4):
        arr = arr[..., :-1]
    return arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr


def render_group(arrays: list[np.ndarray], percentiles=(0.5, 99.5)):
    """One group's images -> (``[lo, hi]`` or None for 8-bit copies, list of uint8 arrays) (module doc)."""
    if all(a.dtype == np.uint8 for a in arrays):
        return None, [np.ascontiguousarray(_eight_bit(a)) for a in arrays]
    pooled = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
    lo, hi = (float(v) for v in np.percentile(pooled, percentiles))
    if not hi > lo:
        return [lo, hi], None
    out = []
    for a in arrays:
        x = _eight_bit(np.asarray(a, dtype=np.float64))
        out.append(np.round(255.0 * np.clip((x - lo) / (hi - lo), 0.0, 1.0)).astype(np.uint8))
    return [lo, hi], out


def _save_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(arr).save(path, format="PNG")


# ------------------------------------------------------------------------------------------------ building
def build_study(out, inputs, *, reference=None, slices: str | None = None, group_regex: str | None = None,
                percentiles=(0.5, 99.5), name: str | None = None, target_per_reader: int | None = None,
                notes: list[str] | None = None) -> Study:
    """Build the study folder ``out`` from ``inputs`` (h5 files, or images; not both). See the module doc.

    ``target_per_reader``: judgments per reader the progress bar counts to (default 5 per image, at most
    the number of distinct pairs x 3). ``notes`` collects skipped groups. Returns the opened :class:`Study`.
    """
    from mriqa.reader_study import db

    out = Path(out)
    notes = [] if notes is None else notes
    if out.exists():
        raise InputError(out, "already exists (a new study needs a new folder)")
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError(None, "no input given")
    seen: dict[Path, Path] = {}
    for p in paths:
        if not p.exists():
            raise InputError(p, "file not found")
        if p.resolve() in seen:  # every pair of its images would compare an image with itself
            raise InputError(p, f"given twice (also as {seen[p.resolve()]}); each input is one candidate")
        seen[p.resolve()] = p
    if target_per_reader is not None and not int(target_per_reader) >= 1:
        raise InputError(None, f"--target must be >= 1 judgment per reader, got {target_per_reader}")
    if not (len(percentiles) == 2 and 0 <= percentiles[0] < percentiles[1] <= 100):
        raise InputError(None, f"--percentiles must be two numbers 0 <= lo < hi <= 100, got {list(percentiles)}")
    kinds = {p.is_file() and _is_h5(p) for p in paths}
    if kinds == {True, False}:
        raise InputError(paths[0], "mixes h5 reconstructions and images; give one kind")
    is_h5 = kinds == {True}
    if reference is not None and not is_h5:
        raise InputError(reference, "--reference is for studies built from mriqa recon h5 files")
    if is_h5:
        entries, refs = collect_h5(paths, None if reference is None else Path(reference), slices)
    else:
        if slices is not None:
            raise InputError(None, "--slices is for studies built from h5 files")
        entries, refs = collect_images(paths, group_regex), {}

    by_group: dict[str, list[_Entry]] = {}
    for e in entries:
        by_group.setdefault(e.group, []).append(e)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / IMAGE_DIR).mkdir()
        groups, images = [], []
        for gname in sorted(by_group):
            members = by_group[gname]
            if len(members) < 2:
                notes.append(f"group {gname}: only one image ({members[0].source}); skipped")
                continue
            arrays = [e.array for e in members] + ([refs[gname]] if gname in refs else [])
            window, rendered = render_group(arrays, percentiles)
            if rendered is None:
                notes.append(f"group {gname}: all images constant ({window[0]:g}); skipped")
                continue
            ids = []
            for e, img in zip(members, rendered):
                iid = f"img{len(images) + 1:04d}"
                _save_png(img, tmp / IMAGE_DIR / f"{iid}.png")
                ids.append(iid)
                images.append({"id": iid, "file": f"{IMAGE_DIR}/{iid}.png", "group": gname, "label": e.label,
                               "method": e.method, "acceleration": e.acceleration, "source": e.source,
                               "slice": e.slice, "shape": list(img.shape[:2])})
            ref_file = None
            if gname in refs:
                (tmp / REFERENCE_DIR).mkdir(exist_ok=True)
                ref_file = f"{REFERENCE_DIR}/{gname}.png"
                _save_png(rendered[-1], tmp / ref_file)
            groups.append({"id": gname, "window": window, "reference": ref_file, "images": ids})
        if not groups:
            single = sum(len(m) < 2 for m in by_group.values())
            why = (f"{single} of {len(by_group)} groups have one image (images are compared within a group: "
                   "the same slice across files, or --group-regex)" if single else "every group is constant")
            raise InputError(paths[0], f"no content group with two or more non-constant images to compare; {why}")
        pairs = sum(len(g["images"]) * (len(g["images"]) - 1) // 2 for g in groups)
        target = int(target_per_reader) if target_per_reader else min(5 * len(images), 3 * pairs)
        manifest = {
            "format": FORMAT, "version": 1, "name": name or out.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "source": "h5" if is_h5 else "images",
            "window": {"rule": "8-bit groups copied unchanged; otherwise per group: percentiles of all the "
                       "group's pixels (images and reference) mapped linearly to 0..255, clipped",
                       "percentiles": [float(v) for v in percentiles]},
            "target_per_reader": target, "groups": groups, "images": images,
        }
        with atomic_path(tmp / MANIFEST) as mtmp:
            mtmp.write_text(json.dumps(manifest, indent=1) + "\n")
        db.create(tmp / DATABASE, [(im["id"], im["group"]) for im in images])
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_study(out)


def open_study(path) -> Study:
    """Open a study folder (InputError naming the folder when it is not one)."""
    root = Path(path)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise InputError(root, "study folder not found")
    if not mpath.is_file():
        raise InputError(root, f"not a reader study (no {MANIFEST})")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(mpath, f"unreadable manifest ({type(exc).__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(mpath, f"not a {FORMAT} manifest")
    if not (root / DATABASE).is_file():
        raise InputError(root, f"study database {DATABASE} is missing")
    return Study(root, manifest)
