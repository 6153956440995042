"""scripts/rgb_figures.py: each figure command runs on a small input and writes its table and PNG.

The script is run as a command; what it computes is :mod:`mriqa.evaluation.qf` and
:mod:`mriqa.evaluation.restoration`.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mriqa.models.arcnn import ARCNN
from mriqa.models.qairn import QAIRN
from recon.io.weights import save_weights

REPO = Path(__file__).resolve().parents[1]


def _figures(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "rgb_figures.py"), *args], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture()
def tiny_qairn(tmp_path):
    torch.manual_seed(0)
    return str(save_weights(QAIRN(channels=[4, 4, 4, 4], n_res=0, att_hidden=2), tmp_path / "qairn.safetensors"))


def test_dataset_quality_on_given_folders(tmp_path, tiny_qairn):
    rng = np.random.default_rng(0)
    for name in ("setA", "setB"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray((rng.random((48, 40, 3)) * 255).astype(np.uint8)).save(tmp_path / name / f"{i}.png")
    out = tmp_path / "doc"
    run = _figures("dataset-quality", "--folders", f"{tmp_path / 'setA'},{tmp_path / 'setB'}", "--qairn", tiny_qairn,
                   "--out", str(out))
    assert run.returncode == 0, run.stderr
    md = (out / "dataset-quality.md").read_text()
    assert "| setA | 2 |" in md and "| setB | 2 |" in md and "QAIRN Q2" in md and "qf-rgb" in md
    assert (out / "dataset-quality.png").stat().st_size > 1000


def test_generalisation_and_artifact_removal_small(tmp_path, shared_data, tiny_qairn):
    out = tmp_path / "doc"
    run = _figures("generalisation", "--max-images", "1", "--crop", "48", "--qairn", tiny_qairn, "--out", str(out))
    assert run.returncode == 0, run.stderr
    md = (out / "generalisation.md").read_text()
    for d in ("blur", "noise", "salt"):
        assert f"| qf-rgb | {d} | 1 |" in md and f"| QAIRN Q2 | {d} | 1 |" in md
    assert (out / "generalisation.png").stat().st_size > 1000
    runs = tmp_path / "runs"
    save_weights(ARCNN(3, "arcnn"), runs / "ar-rgb-w0" / "final.safetensors")
    run = _figures("artifact-removal", "--max-images", "1", "--crop", "48", "--runs", str(runs), "--qairn", "none",
                   "--out", str(out))
    assert run.returncode == 0, run.stderr
    md = (out / "artifact-removal.md").read_text()
    assert "## JPEG QF 10" in md and "## JPEG QF 20" in md and "AR-CNN w=0 (L1 only)" in md
    # the identity network: same numbers as the input row
    rows = [line.split("|") for line in md.splitlines() if line.startswith("| input") or line.startswith("| AR-CNN")]
    assert rows[0][2] == rows[1][2]
    assert (out / "artifact-removal.png").stat().st_size > 1000


def test_artifact_removal_without_ar_runs_is_a_clear_error(tmp_path, shared_data):
    run = _figures("artifact-removal", "--max-images", "1", "--crop", "48", "--runs", str(tmp_path / "none"),
                   "--qairn", "none", "--out", str(tmp_path / "doc"))
    assert run.returncode != 0 and "no AR-CNN runs" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "doc" / "artifact-removal.md").exists()


def test_generalisation_and_blockiness_measure_what_they_say():
    from mriqa.evaluation.qf import LEVELS, blockiness, degrade, generalisation
    from mriqa.jpeg import jpeg_compress

    from scipy import ndimage

    rng = np.random.default_rng(0)
    smooth = ndimage.gaussian_filter(rng.random((128, 128, 3)), (2, 2, 0))
    unit = np.round((smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255) / 255
    assert abs(blockiness(unit) - 1.0) < 0.1  # no 8 x 8 grid
    assert blockiness(jpeg_compress(unit, 20)) > 1.2  # JPEG's block boundaries

    class Sharpness:  # a score that falls with blur and noise: high-frequency energy, inverted
        def score(self, u):
            return -float(np.abs(np.diff(ndimage.gaussian_filter(u, (3, 3, 0)) - u, axis=0)).mean())

    g = generalisation(Sharpness(), [("a", unit)])
    assert g["blur"]["levels"] == LEVELS["blur"] and len(g["blur"]["curves"][0]) == len(LEVELS["blur"])
    assert g["blur"]["median_spearman"] > 0.9  # blur removes the high frequencies the score penalises
    assert g["noise"]["median_spearman"] < -0.9
    assert np.array_equal(degrade(unit, "salt", 0.0, seed=1), unit)
    with pytest.raises(ValueError, match="unknown distortion"):
        degrade(unit, "jpeg", 0.1, seed=1)
