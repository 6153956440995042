"""scripts/eval_qairn.py: a run on small images writes its JSON, card and doc; --render rewrites them alike.

The script is run as a command (``python scripts/eval_qairn.py ...``); its evaluation is
:mod:`mriqa.evaluation.qairn` (PSNR / SSIM / PSNR-B: :mod:`mriqa.evaluation.photo_metrics`, tested below).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mriqa.evaluation.photo_metrics import blocking_effect_factor, psnr, psnr_b, ssim_rgb
from mriqa.models.qairn import QAIRN
from recon.io.weights import save_weights
from test_qairn import TINY, _photos  # tests/ is on sys.path under pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "eval_qairn.py"), *args], capture_output=True,
                          text=True, timeout=300)


def test_evaluation_then_render_gives_the_same_card_and_doc(tmp_path):
    photos = _photos(tmp_path / "photos", n=2, size=(48, 56))
    torch.manual_seed(0)
    weights = save_weights(QAIRN(**TINY), tmp_path / "w.safetensors",
                           {"training": {"config": {"name": "tiny", "train": {"lr": 1e-4, "ema": 0.999}},
                                         "steps_done": 3, "best_step": 3}})
    notes = tmp_path / "notes.md"
    notes.write_text("## Notes\n\n- by hand\n")
    common = ["--weights", str(weights), "--data", str(photos), "--images", "img0,img1", "--notes", str(notes)]
    out = tmp_path / "first"
    first = _run(*common, "--qfs", "10,20", "--skip-proxy", "--self-ensemble", "--json", str(out / "eval.json"),
                 "--card", str(out / "card.md"), "--doc", str(out / "doc.md"))
    assert first.returncode == 0, first.stderr
    doc = json.loads((out / "eval.json").read_text())
    assert set(doc["restoration"]) == {"10", "20"} and doc["restoration_self_ensemble"] is not None
    assert doc["acceptance"]["psnr_gain_qf10_ok"] is (doc["acceptance"]["psnr_gain_qf10"] >= 1.5)
    card, text = (out / "card.md").read_text(), (out / "doc.md").read_text()
    assert "moving average of the weights (decay 0.999)" in card and card.endswith("- by hand\n")
    assert "--self-ensemble" in text.splitlines()[0] and "QAIRN x8 (ours)" in text and "acceptance:" in first.stdout
    # --render: no model run, the same card and doc from the JSON
    again = tmp_path / "again"
    second = _run("--render", str(out / "eval.json"), "--notes", str(notes), "--card", str(again / "card.md"),
                  "--doc", str(again / "doc.md"))
    assert second.returncode == 0, second.stderr
    assert (again / "card.md").read_text() == card and (again / "doc.md").read_text() == text
    assert second.stdout == first.stdout
    # a file that is not such a JSON, or a missing held-out image, is a clear one-line error
    (tmp_path / "bad.json").write_text("{}")
    bad = _run("--render", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "not an evaluation" in bad.stderr and "Traceback" not in bad.stderr
    missing = _run("--weights", str(weights), "--data", str(photos), "--images", "nope", "--skip-proxy")
    assert missing.returncode == 2 and "held-out image nope not found" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_photo_metrics_conventions():
    rng = np.random.default_rng(0)
    ref = rng.random((32, 40, 3))
    noisy = np.clip(ref + 0.05 * rng.standard_normal(ref.shape), 0, 1)
    mse = float(np.mean((ref - noisy) ** 2))
    assert psnr(ref, noisy) == pytest.approx(10 * np.log10(1 / mse))  # data range 1, not the image max
    assert psnr(ref, ref) == pytest.approx(100.0)  # capped
    from skimage.metrics import structural_similarity

    per_channel = [structural_similarity(ref[..., c], noisy[..., c], data_range=1.0, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False) for c in range(3)]
    assert ssim_rgb(ref, noisy) == pytest.approx(np.mean(per_channel)) and ssim_rgb(ref, ref) == pytest.approx(1.0)
    assert ssim_rgb(ref, noisy) != pytest.approx(structural_similarity(ref, noisy, data_range=1.0, channel_axis=-1))
    # PSNR-B adds the blocking effect factor: a step at every 8th column, nothing elsewhere
    flat = np.full((32, 32, 1), 0.5)
    blocky = flat.copy()
    blocky[:, 8::16] += 0.1
    assert blocking_effect_factor(flat[..., 0]) == 0.0 and blocking_effect_factor(blocky[..., 0]) > 0
    assert psnr_b(flat, blocky) < psnr(flat, blocky)
