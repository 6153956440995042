"""scripts/rgb_figures.py: each figure command runs on a small input and writes its table and PNG."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import rgb_figures  # noqa: E402

from mriqa.models.arcnn import ARCNN  # noqa: E402
from mriqa.models.qairn import QAIRN  # noqa: E402
from recon.io.weights import save_weights  # noqa: E402


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
    assert rgb_figures.main(["dataset-quality", "--folders", f"{tmp_path / 'setA'},{tmp_path / 'setB'}",
                             "--qairn", tiny_qairn, "--out", str(out)]) == 0
    md = (out / "dataset-quality.md").read_text()
    assert "| setA | 2 |" in md and "| setB | 2 |" in md and "QAIRN Q2" in md and "qf-rgb" in md
    assert (out / "dataset-quality.png").stat().st_size > 1000


@pytest.mark.filterwarnings("ignore:All-NaN slice")  # the untrained tiny QAIRN gives a constant Q2
def test_generalisation_and_artifact_removal_small(tmp_path, shared_data, tiny_qairn):
    out = tmp_path / "doc"
    assert rgb_figures.main(["generalisation", "--max-images", "1", "--crop", "48", "--qairn", tiny_qairn,
                             "--out", str(out)]) == 0
    md = (out / "generalisation.md").read_text()
    for d in ("blur", "noise", "salt"):
        assert f"| qf-rgb | {d} | 1 |" in md and f"| QAIRN Q2 | {d} | 1 |" in md
    assert (out / "generalisation.png").stat().st_size > 1000
    runs = tmp_path / "runs"
    save_weights(ARCNN(3, "arcnn"), runs / "ar-rgb-w0" / "final.safetensors")
    assert rgb_figures.main(["artifact-removal", "--max-images", "1", "--crop", "48", "--runs", str(runs),
                             "--qairn", "none", "--out", str(out)]) == 0
    md = (out / "artifact-removal.md").read_text()
    assert "## JPEG QF 10" in md and "## JPEG QF 20" in md and "AR-CNN w=0 (L1 only)" in md
    # the identity network: same numbers as the input row
    rows = [line.split("|") for line in md.splitlines() if line.startswith("| input") or line.startswith("| AR-CNN")]
    assert rows[0][2] == rows[1][2]
    assert (out / "artifact-removal.png").stat().st_size > 1000


def test_artifact_removal_without_ar_runs_is_a_clear_error(tmp_path, shared_data):
    with pytest.raises(SystemExit, match="no AR-CNN runs"):
        rgb_figures.main(["artifact-removal", "--max-images", "1", "--crop", "48", "--runs", str(tmp_path / "none"),
                          "--qairn", "none", "--out", str(tmp_path / "doc")])
    assert not (tmp_path / "doc" / "artifact-removal.md").exists()
