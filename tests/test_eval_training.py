"""scripts/eval_training.py's evaluation (:mod:`mriqa.evaluation.training_modes`, :mod:`recon.evaluation`):
in-support metrics, the held-out volume reader and the issue-6 verdict lines computed from the table."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from mriqa.evaluation import training_modes


def test_support_metrics_ignore_the_background():
    from recon.metrics import support_metrics

    target = np.ones((2, 32, 32))
    support = np.zeros((2, 32, 32), dtype=bool)
    support[:, 8:24, 8:24] = True
    img = target + 0.1 * support + 5.0 * ~support  # 0.1 error inside, a large one outside
    m = support_metrics(target, img, support, maxval=1.0, with_ssim=True)
    assert m["PSNR_in"] == pytest.approx(20.0) and m["NMSE_in"] == pytest.approx(0.01)
    assert "SSIM_in" not in support_metrics(target, img, support, maxval=1.0)
    same = support_metrics(target, target + 5.0 * ~support, support, maxval=1.0, with_ssim=True)
    assert same["PSNR_in"] == float("inf")
    assert same["SSIM_in"] < 1.0  # SSIM windows near the edge of the support still see the background
    assert support_metrics(target, target + 1e-9, support, 1.0, with_ssim=True)["SSIM_in"] == pytest.approx(1.0)


def _row(psnr, ssim, **kw):
    return {"PSNR": psnr, "SSIM": ssim, "NMSE": 0.0, "PSNR_in": psnr - 1, "SSIM_in": ssim - 0.01, "QF": 50.0,
            "RQ": kw.get("rq", 60.0), "DC": kw.get("dc"), "PSNR_to_zf": kw.get("to_zf", 0.0), "PSNR_to_untrained": kw.get("to_u")}


def test_checks_report_met_and_not_met():
    avg = {("zero-filled", 4.0): _row(24.0, 0.67, to_zf=200.0),
           (training_modes.UNTRAINED, 4.0): _row(24.9, 0.77, dc=1e-3),
           ("dc", 4.0): _row(25.0, 0.77, dc=1e-4, to_u=45.0),
           ("supervised", 4.0): _row(30.4, 0.89, dc=1e-3),
           ("ssdu", 4.0): _row(29.3, 0.870, dc=1e-3),
           ("ssdu+qf", 4.0): _row(29.5, 0.875, dc=1e-3),
           ("supervised", 8.0): _row(23.4, 0.73, dc=1e-3),
           ("ssdu", 8.0): _row(22.4, 0.50, dc=1e-3),
           ("ssdu+qf", 8.0): _row(22.2, 0.49, dc=1e-3)}
    lines = training_modes.checks(avg)
    text = "\n".join(lines)
    assert "R = 4, DC only" in text and "+0.10 dB learnt" in text
    assert "fails: it stays at its own starting point" in text
    r4 = [ln for ln in lines if ln.startswith("- R = 4,")]
    r8 = [ln for ln in lines if ln.startswith("- R = 8,")]
    assert "(met" in r4[1] and "0.90 dB below (within 1 dB" in r4[2]
    assert "NOT met" in r8[0] and "1.20 dB below (NOT within 1 dB" in r8[1]
    avg[("dc", 4.0)]["PSNR"] = 26.0  # 1.1 dB above its starting point: no failure claimed
    assert "learns something beyond its starting point" in "\n".join(training_modes.checks(avg))


def test_quality_loss_checks_compare_with_the_mode_alone():
    avg = {("ssdu", 4.0): _row(29.3, 0.870), ("ssdu+rq", 4.0): _row(29.4, 0.869, rq=70.0),
           ("dc", 4.0): _row(25.0, 0.77), ("dc+rq", 4.0): _row(25.0, 0.70)}
    text = "\n".join(training_modes.checks(avg))
    # SSDU + quality must keep PSNR and SSIM; DC + quality only PSNR (blurring would trade SSIM first)
    assert "SSDU+RQ vs SSDU alone: PSNR 29.40 vs 29.30 dB (+0.100), SSIM 0.8690 vs 0.8700 (-0.00100)" in text
    assert "SSIM below (NOT met)" in text and "PSNR and SSIM below" not in text  # only the one that fell is named
    assert "DC+RQ vs DC alone" in text and "PSNR not below (met)" in text


def test_figure_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    ref = rng.random((16, 16))
    examples = {r: {"reference (RSS)": ref, "CG-SENSE": ref + 0.1 * rng.random((16, 16)), "ssdu": ref}
                for r in (4.0, 8.0)}
    training_modes.figure(tmp_path / "f.png", examples)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_read_eval_volume_takes_evenly_spaced_slices_and_names_a_wrong_file(tmp_path):
    from recon.errors import InputError
    from recon.evaluation import psnr_between, read_eval_volume

    rng = np.random.default_rng(0)
    kspace = (rng.standard_normal((5, 2, 8, 8)) + 1j * rng.standard_normal((5, 2, 8, 8))).astype(np.complex64)
    rss = np.arange(5 * 64, dtype=np.float32).reshape(5, 8, 8) + 1
    with h5py.File(tmp_path / "v.h5", "w") as hf:
        hf["kspace"], hf["reconstruction_rss"] = kspace, rss
        hf.attrs["max"], hf.attrs["noise_std"] = 320.0, np.arange(5, dtype=np.float32)
    vol = read_eval_volume(tmp_path / "v.h5", 3)
    assert vol.slices == [0, 2, 4] and np.array_equal(vol.kspace, kspace[[0, 2, 4]])
    assert np.array_equal(vol.target, rss[[0, 2, 4]]) and vol.maxval == 320.0 and len(vol.attrs["noise_std"]) == 5
    assert read_eval_volume(tmp_path / "v.h5").slices == [0, 1, 2, 3, 4]
    with h5py.File(tmp_path / "no_target.h5", "w") as hf:
        hf["kspace"] = kspace
    with pytest.raises(InputError, match="no_target.h5.*reconstruction_rss"):
        read_eval_volume(tmp_path / "no_target.h5")
    a = rss[0]
    assert psnr_between(a, a, 320.0) == float("inf")
    assert psnr_between(a + 1.0, a, 320.0) == pytest.approx(10 * np.log10(320.0 ** 2 / 1.0))


def test_per_subject_mean_groups_orientations_of_a_subject():
    from recon.evaluation import per_subject_mean

    volumes = ["colin27_axial", "colin27_coronal", "ixi-IXI575-HH-2658_axial", "ixi-IXI575-HH-2658_sagittal",
               "plain"]
    means = per_subject_mean([1.0, 2.0, 4.0, 8.0, 3.0], volumes)
    assert list(means) == ["colin27", "ixi-IXI575-HH-2658", "plain"]
    assert means == {"colin27": 1.5, "ixi-IXI575-HH-2658": 6.0, "plain": 3.0}
    with pytest.raises(ValueError, match="2 values for 5 volumes"):
        per_subject_mean([1.0, 2.0], volumes)


def test_publish_heads_the_file_with_its_command(tmp_path, capsys):
    from mriqa.evaluation.tables import publish

    out = tmp_path / "table.md"
    publish("| a |", out, command="python scripts/eval_training.py --out table.md")
    assert out.read_text() == "Printed by `python scripts/eval_training.py --out table.md`.\n\n| a |\n"
    assert capsys.readouterr().out == "| a |\n"  # the console gets the table alone
    publish("| b |", out)
    assert out.read_text() == "| b |\n"
