"""scripts/eval_qairn.py: a run on small images writes its JSON, card and doc; --render rewrites them alike."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import eval_qairn  # noqa: E402
from test_qairn import TINY, _photos  # noqa: E402  (tests/ is on sys.path under pytest)

from mriqa.models.qairn import QAIRN  # noqa: E402
from recon.io.weights import save_weights  # noqa: E402


def test_evaluation_then_render_gives_the_same_card_and_doc(tmp_path, capsys):
    photos = _photos(tmp_path / "photos", n=2, size=(48, 56))
    torch.manual_seed(0)
    weights = save_weights(QAIRN(**TINY), tmp_path / "w.safetensors",
                           {"training": {"config": {"name": "tiny", "train": {"lr": 1e-4, "ema": 0.999}},
                                         "steps_done": 3, "best_step": 3}})
    notes = tmp_path / "notes.md"
    notes.write_text("## Notes\n\n- by hand\n")
    common = ["--weights", str(weights), "--data", str(photos), "--images", "img0,img1", "--notes", str(notes)]
    out = tmp_path / "first"
    assert eval_qairn.main(common + ["--qfs", "10,20", "--skip-proxy", "--self-ensemble", "--json",
                                     str(out / "eval.json"), "--card", str(out / "card.md"), "--doc",
                                     str(out / "doc.md")]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "eval.json").read_text())
    assert set(doc["restoration"]) == {"10", "20"} and doc["restoration_self_ensemble"] is not None
    assert doc["acceptance"]["psnr_gain_qf10_ok"] is (doc["acceptance"]["psnr_gain_qf10"] >= 1.5)
    card, text = (out / "card.md").read_text(), (out / "doc.md").read_text()
    assert "moving average of the weights (decay 0.999)" in card and card.endswith("- by hand\n")
    assert "--self-ensemble" in text.splitlines()[0] and "QAIRN x8 (ours)" in text and "acceptance:" in printed
    # --render: no model run, the same card and doc from the JSON
    again = tmp_path / "again"
    assert eval_qairn.main(["--render", str(out / "eval.json"), "--notes", str(notes), "--card",
                            str(again / "card.md"), "--doc", str(again / "doc.md")]) == 0
    assert (again / "card.md").read_text() == card and (again / "doc.md").read_text() == text
    assert capsys.readouterr().out == printed
    # a file that is not such a JSON is a clear error
    (tmp_path / "bad.json").write_text("{}")
    assert eval_qairn.main(["--render", str(tmp_path / "bad.json")]) == 2
    assert "not an evaluation" in capsys.readouterr().err
