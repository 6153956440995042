"""``mriqa iqa-bench`` end to end through ``mriqa.cli.main``: PSNR, a random-init QF model by path, a
user-registered metric and a plugin module; JSON contents against scipy; clean errors."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from mriqa.cli import main
from mriqa.iqa import register_metric
from mriqa.iqa.metrics_registry import unregister_metric
from mriqa.models.qfnet import QFNet
from recon.io.weights import save_weights

SIGMAS = (0.0, 0.02, 0.05, 0.1, 0.2)


def _tid_like(root, n_refs=2, size=32):
    """A miniature TID2013 layout: noise of growing sigma, MOS falling with it (plus a little disorder)."""
    rng = np.random.default_rng(0)
    (root / "reference_images").mkdir(parents=True)
    (root / "distorted_images").mkdir()
    lines = []
    for r in range(1, n_refs + 1):
        yy, xx = np.mgrid[:size, :size] / size
        ref = np.stack([yy, xx, 0.5 + 0.3 * np.sin(6 * (xx + yy) + r)], -1)
        Image.fromarray((ref * 255).round().astype(np.uint8)).save(root / "reference_images" / f"I{r:02d}.BMP")
        for level, s in enumerate(SIGMAS, 1):
            dist = np.clip(ref + s * rng.standard_normal(ref.shape), 0, 1)
            name = f"i{r:02d}_{1 if level % 2 else 8:02d}_{level}.bmp"
            Image.fromarray((dist * 255).round().astype(np.uint8)).save(root / "distorted_images" / name)
            lines.append(f"{7.0 - level + 0.3 * rng.random():.4f} {name}")
    (root / "mos_with_names.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture()
def tid(tmp_path):
    return _tid_like(tmp_path / "tid2013")


def test_psnr_and_qf_by_path(tid, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    qf_path = save_weights(QFNet(in_channels=3, width=4), tmp_path / "qf-random.safetensors")
    out = tmp_path / "res.json"
    rc = main(["iqa-bench", "--dataset", f"tid2013:{tid}", "--metric", "psnr", "--metric", f"qf:{qf_path}",
               "--json", str(out), "--bootstrap", "50", "--seed", "3"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "TID2013" in printed and "metric psnr (FR" in printed and "NTIRE" in printed and "ci" in printed
    doc = json.loads(out.read_text())
    assert doc["dataset"]["kind"] == "tid2013" and doc["dataset"]["n"] == 10 and doc["dataset"]["higher_better"]
    assert doc["protocol"]["bootstrap"] == {"n": 50, "seed": 3, "level": 0.95}
    psnr, qf = doc["metrics"]
    assert psnr["name"] == "psnr" and psnr["kind"] == "FR" and qf["kind"] == "NR"
    scores = np.array([r["score"] for r in psnr["images"]])
    mos = np.array([r["subjective"] for r in psnr["images"]])
    ov = psnr["overall"]
    assert ov["srcc"] == pytest.approx(stats.spearmanr(scores, mos).statistic)
    assert ov["krcc"] == pytest.approx(stats.kendalltau(scores, mos).statistic)
    assert ov["plcc"] == pytest.approx(stats.pearsonr(scores, mos).statistic)
    assert ov["srcc"] > 0.8  # PSNR tracks the noise level
    assert ov["ntire"] == pytest.approx(ov["srcc"] + ov["plcc_poly3"])
    assert ov["ci"]["srcc"][0] <= ov["srcc"] <= ov["ci"]["srcc"][1]
    assert set(psnr["per_distortion"]) == {"01-additive-gaussian-noise", "08-gaussian-blur"}
    assert psnr["per_distortion"]["08-gaussian-blur"]["n"] == 4
    assert scores[0] == 100.0  # level 1 has sigma 0: identical to its reference, PSNR capped
    qs = np.array([r["score"] for r in qf["images"]])
    assert np.all((qs >= 0) & (qs <= 1))


def test_user_registered_metric_and_plugin(tid, tmp_path, monkeypatch, capsys):
    def neg_std(image):  # an NR metric where lower is better: image noise
        return float(np.std(np.diff(image, axis=1)))

    register_metric("roughness", neg_std, kind="NR", higher_better=False)
    try:
        out = tmp_path / "r.json"
        assert main(["iqa-bench", "--dataset", f"tid2013:{tid}", "--metric", "roughness", "--bootstrap", "0",
                     "--json", str(out)]) == 0
        m = json.loads(out.read_text())["metrics"][0]
        assert m["name"] == "roughness" and m["higher_better"] is False
        # oriented: the negated roughness against MOS is what the statistics see
        s = -np.array([r["score"] for r in m["images"]])
        mos = np.array([r["subjective"] for r in m["images"]])
        assert m["overall"]["srcc"] == pytest.approx(stats.spearmanr(s, mos).statistic) and m["overall"]["srcc"] > 0.5
        assert "ci" not in m["overall"]
    finally:
        unregister_metric("roughness")

    plugin = tmp_path / "plugins" / "my_iqa_plugin.py"
    plugin.parent.mkdir()
    plugin.write_text(textwrap.dedent("""
        import numpy as np
        from mriqa.iqa import register_metric
        register_metric("mse-fr", lambda img, ref: float(np.mean((img - ref) ** 2)), kind="FR", higher_better=False)
        register_metric("broken", lambda img: float("nan"))
    """))
    monkeypatch.syspath_prepend(str(plugin.parent))
    assert main(["iqa-bench", "--dataset", f"tid2013:{tid}", "--metric", "mse-fr", "--plugin", "my_iqa_plugin",
                 "--bootstrap", "0", "--limit", "6"]) == 0
    assert "mse-fr" in capsys.readouterr().out
    out = tmp_path / "never.json"
    assert main(["iqa-bench", "--dataset", f"tid2013:{tid}", "--metric", "broken", "--json", str(out),
                 "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert "non-finite" in err and "i01_01_1.bmp" in err and not out.exists()
    for name in ("mse-fr", "broken"):
        unregister_metric(name)


def test_csv_dataset_and_errors(tid, tmp_path, capsys):
    # a generic CSV without references: NR works, FR is refused
    csv_path = tmp_path / "nr.csv"
    lines = ["image,mos"] + [f"{p},{i}" for i, p in enumerate(sorted((tid / "distorted_images").iterdir()))]
    csv_path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "x.json"
    assert main(["iqa-bench", "--dataset", f"csv:{csv_path}", "--metric", "psnr", "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mriqa: error:") and "full-reference" in err and err.count("\n") == 1
    assert not out.exists()
    assert main(["iqa-bench", "--dataset", f"tid2013:{tid}", "--metric", "no-such-metric"]) == 2
    assert "unknown metric 'no-such-metric'" in capsys.readouterr().err
    assert main(["iqa-bench", "--dataset", f"nope:{tid}", "--metric", "psnr"]) == 2
    assert "unknown dataset kind" in capsys.readouterr().err
    (tid / "distorted_images" / "i02_08_4.bmp").unlink()
    assert main(["iqa-bench", "--dataset", f"tid2013:{tid}", "--metric", "psnr"]) == 2
    err = capsys.readouterr().err
    assert "mos_with_names.txt" in err and "line 9" in err
    assert main(["iqa-bench", "--dataset", f"tid2013:{tid}", "--metric", f"qf:{tmp_path / 'none.safetensors'}"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["iqa-bench", "--dataset", f"csv:{csv_path}", "--metric", "qairn:/nonexistent.safetensors"]) == 2
    assert main(["iqa-bench", "--dataset", f"csv:{csv_path}", "--metric", "ssim", "--bootstrap", "-1"]) == 2
