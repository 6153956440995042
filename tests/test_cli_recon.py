"""`mriqa recon`, `mriqa evaluate` and `mriqa demo` end to end, and their handling of bad input."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from mriqa.cli import main
from recon.io.fastmri_h5 import read_reconstruction, write_fastmri_h5
from test_behaviour_unchanged import _phantom_kspace  # the textured disc with Gaussian coils

SIZE = 64
COILS = 4


@pytest.fixture()
def raw_file(tmp_path):
    kspace, rss = _phantom_kspace()
    return write_fastmri_h5(tmp_path / "raw.h5", kspace, reconstruction_rss=rss, acquisition="AXT1")


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("method", ["zf", "sense", "l1"])
def test_recon_retrospective_writes_reconstruction_and_attrs(tmp_path, raw_file, capsys, method):
    out = tmp_path / f"{method}.h5"
    code, stdout, _ = _run(capsys, "recon", raw_file, "--method", method, "--accel", 2, "--mask", "equispaced",
                           "--center-fraction", 0.25, "--seed", 3, "--out", out)
    assert code == 0, stdout
    rec = read_reconstruction(out, key="reconstruction")
    assert rec.image.shape == (2, SIZE, SIZE) and rec.image.dtype == np.float32
    assert rec.attrs["method"] == method
    assert rec.attrs["acceleration"] == 2.0
    assert rec.attrs["acceleration_effective"] == pytest.approx(SIZE / rec.mask.sum())
    assert rec.attrs["mask_type"] == "equispaced" and rec.attrs["seed"] == 3
    assert rec.attrs["center_fraction"] == pytest.approx(0.25)


def test_sense_beats_zero_filled_on_the_rss_scale(tmp_path, raw_file, capsys):
    for method in ("zf", "sense"):
        assert _run(capsys, "recon", raw_file, "--method", method, "--accel", 2, "--mask", "equispaced",
                    "--center-fraction", 0.125, "--out", tmp_path / f"{method}.h5")[0] == 0
        assert _run(capsys, "evaluate", "--target", raw_file, "--recon", tmp_path / f"{method}.h5",
                    "--json", tmp_path / f"{method}.json")[0] == 0
    zf = json.loads((tmp_path / "zf.json").read_text())
    sense = json.loads((tmp_path / "sense.json").read_text())
    assert sense["psnr"] > zf["psnr"] + 5
    assert sense["ssim"] > 0.85  # 0.873 measured: the phantom carries 1 % noise, which SSIM sees
    # SENSE with normalised maps lands on the scale of the fully sampled RSS.
    target = read_reconstruction(raw_file).image
    image = read_reconstruction(tmp_path / "sense.h5").image
    assert np.median(image[target > 0.5] / target[target > 0.5]) == pytest.approx(1.0, abs=0.05)


def test_recon_calibration_select_says_which_maps_and_writes_them(tmp_path, raw_file, capsys):
    out = tmp_path / "sense.h5"
    code, stdout, stderr = _run(capsys, "recon", raw_file, "--method", "sense", "--accel", 3, "--mask", "random",
                                "--calibration", "select", "--out", out)
    assert code == 0, stdout + stderr
    assert "mriqa: note: calibration chosen by held-out lines:" in stderr
    assert read_reconstruction(out, key="reconstruction").attrs["calibration"].startswith("espirit")
    with pytest.raises(SystemExit) as exit_:
        _run(capsys, "recon", raw_file, "--calibration", "best", "--out", tmp_path / "x.h5")
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("flag, recorded, refusal", [
    (["--self-ensemble"], lambda a: bool(a["self_ensemble"]),
     "self-ensemble is a MoDL option; method 'sense' has no denoiser to average"),
    (["--adapt", "2"], lambda a: int(a["adapt_steps"]) == 2 and "of 1 slices adapted" in a["adapt"]
     and float(a["adapt_lr"]) == 5e-4,
     "scan-specific adaptation is a MoDL option; method 'sense' has no network to adapt"),
])
def test_recon_modl_options_are_recorded_and_refused_for_other_methods(tmp_path, raw_file, capsys, flag, recorded,
                                                                        refusal):
    out = tmp_path / "modl.h5"
    code, stdout, stderr = _run(capsys, "recon", raw_file, "--method", "modl", "--accel", 3, "--mask", "equispaced",
                                *flag, "--slices", "0", "--out", out)
    assert code == 0, stdout + stderr
    assert recorded(read_reconstruction(out, key="reconstruction").attrs)
    if flag[0] == "--adapt":
        assert "ZS-SSL" in stderr or "not adapted" in stderr
    code, stdout, stderr = _run(capsys, "recon", raw_file, "--method", "sense", "--accel", 3, flag[0],
                                "--out", tmp_path / "x.h5")
    assert code == 2 and stderr.strip() == f"mriqa: error: {refusal}"
    assert not (tmp_path / "x.h5").exists()


def test_recon_adapt_lr_is_recorded_and_needs_adapt(tmp_path, raw_file, capsys):
    out = tmp_path / "modl.h5"
    code, stdout, stderr = _run(capsys, "recon", raw_file, "--method", "modl", "--accel", 3, "--mask", "equispaced",
                                "--adapt", "2", "--adapt-lr", "1e-3", "--slices", "0", "--out", out)
    assert code == 0, stdout + stderr
    assert float(read_reconstruction(out, key="reconstruction").attrs["adapt_lr"]) == 1e-3
    code, stdout, stderr = _run(capsys, "recon", raw_file, "--method", "modl", "--accel", 3, "--adapt-lr", "1e-3",
                                "--out", tmp_path / "x.h5")
    assert code == 2 and stderr.strip().startswith("mriqa: error: a learning rate for the adaptation (0.001) needs")
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "x.h5").exists()


def test_recon_quality_prints_and_stores_the_reference_free_figures(tmp_path, raw_file, capsys):
    """``--quality``: per slice the recon score, the k-space check's NMSE estimate and their combination, in the
    file's attributes; CG-SENSE gets a lower NMSE estimate than zero-filled (the combined score is checked on the
    real scan, tests/test_kspace_quality.py: this disc phantom is no brain for the recon model)."""
    quality = {}
    for method in ("zf", "sense"):
        out = tmp_path / f"{method}.h5"
        code, stdout, stderr = _run(capsys, "recon", raw_file, "--method", method, "--accel", 3, "--mask",
                                    "equispaced", "--quality", "--out", out)
        assert code == 0, stdout + stderr
        assert "quality (mean over slices, reference-free): recon score" in stdout
        attrs = read_reconstruction(out, key="reconstruction").attrs
        quality[method] = {k: np.asarray(attrs[f"quality_{k}"]) for k in ("image_score", "kspace_nmse", "combined")}
        assert all(v.shape == (2,) and np.all(np.isfinite(v)) for v in quality[method].values())
    assert np.all(quality["sense"]["kspace_nmse"] < quality["zf"]["kspace_nmse"])
    # fully sampled: nothing outside the centre to hold out, so no estimate, and the combined score is the recon score
    code, stdout, _ = _run(capsys, "recon", raw_file, "--method", "sense", "--quality", "--out", tmp_path / "full.h5")
    assert code == 0 and "k-space NMSE estimate n/a" in stdout
    attrs = read_reconstruction(tmp_path / "full.h5", key="reconstruction").attrs
    assert np.all(np.isnan(attrs["quality_kspace_nmse"]))
    assert np.allclose(attrs["quality_combined"], attrs["quality_image_score"])


def test_recon_without_accel_uses_the_zeros_of_the_kspace(tmp_path, capsys):
    kspace, rss = _phantom_kspace(slices=1)
    kspace[..., 1::2] = 0  # every other column missing, centre kept below
    kspace[..., SIZE // 2 - 6:SIZE // 2 + 6] = _phantom_kspace(slices=1)[0][..., SIZE // 2 - 6:SIZE // 2 + 6]
    path = write_fastmri_h5(tmp_path / "under.h5", kspace, reconstruction_rss=rss)
    out = tmp_path / "out.h5"
    assert _run(capsys, "recon", path, "--method", "sense", "--out", out)[0] == 0
    rec = read_reconstruction(out)
    sampled = SIZE // 2 + 6
    assert rec.attrs["acceleration_effective"] == pytest.approx(SIZE / sampled)
    assert rec.attrs["retrospective"] in (False, 0)


def test_recon_with_accel_on_undersampled_kspace_says_so_and_counts_what_it_keeps(tmp_path, capsys):
    kspace, rss = _phantom_kspace(slices=1)
    kspace[..., 1::2] = 0  # acquired with every other column (and the centre, below)
    kspace[..., SIZE // 2 - 6:SIZE // 2 + 6] = _phantom_kspace(slices=1)[0][..., SIZE // 2 - 6:SIZE // 2 + 6]
    path = write_fastmri_h5(tmp_path / "under.h5", kspace, reconstruction_rss=rss)
    out = tmp_path / "out.h5"
    code, _, err = _run(capsys, "recon", path, "--method", "zf", "--accel", "2", "--mask", "random", "--out", out)
    acquired = SIZE / (SIZE // 2 + 6)
    assert code == 0 and f"was already undersampled (effective R {acquired:.2f})" in err
    attrs = read_reconstruction(out).attrs
    lines = int(np.sum(np.any(kspace != 0, axis=(0, 1, 2)) & (read_reconstruction(out).mask.reshape(-1) > 0)))
    assert attrs["acceleration"] == 2.0 and attrs["acceleration_effective"] == pytest.approx(SIZE / lines)
    assert attrs["acceleration_effective"] > 1.5 * acquired  # not the mask's own ~2


def _sense_tutorial_mat(path, kspace):
    """``kspace`` [C, H, W] written as the real 16-coil scan's raw_data.mat is: MATLAB v7.3 (HDF5), dataset ``raw``
    [C, 1, H, W] of a compound (real, imag) type."""
    raw = np.empty((kspace.shape[0], 1, *kspace.shape[1:]), dtype=[("real", "<f8"), ("imag", "<f8")])
    raw["real"][:, 0], raw["imag"][:, 0] = kspace.real, kspace.imag
    with h5py.File(path, "w") as hf:
        hf.create_dataset("raw", data=raw)
    return path


def test_recon_reads_the_sense_tutorial_mat_layout_as_the_same_kspace_in_h5(tmp_path, capsys):
    kspace, _ = _phantom_kspace(slices=1)
    mat = _sense_tutorial_mat(tmp_path / "raw_data.mat", kspace[0])
    h5 = write_fastmri_h5(tmp_path / "raw.h5", kspace)
    images = []
    for path in (mat, h5):
        out = tmp_path / f"{path.suffix[1:]}-sense.h5"
        code, stdout, _ = _run(capsys, "recon", path, "--method", "sense", "--accel", 2, "--mask", "equispaced",
                               "--out", out)
        assert code == 0, stdout
        images.append(read_reconstruction(out, key="reconstruction").image)
    assert images[0].shape == (1, SIZE, SIZE)
    np.testing.assert_allclose(images[0], images[1], rtol=1e-5, atol=1e-6 * float(images[1].max()))


def _bad_h5(tmp_path, name, **datasets):
    path = tmp_path / name
    with h5py.File(path, "w") as hf:
        for key, value in datasets.items():
            hf.create_dataset(key, data=value)
    return path


def _bad_inputs(tmp_path):
    good, _ = _phantom_kspace(slices=1)
    nan = good.copy()
    nan[0, 0, 3, 3] = np.nan
    not_h5 = tmp_path / "text.h5"
    not_h5.write_text("this is not HDF5")
    truncated = tmp_path / "truncated.h5"
    write_fastmri_h5(tmp_path / "whole.h5", good)
    truncated.write_bytes((tmp_path / "whole.h5").read_bytes()[:700])
    return {
        "not HDF5": (not_h5, []),
        "truncated": (truncated, []),
        "missing kspace": (_bad_h5(tmp_path, "nokspace.h5", reconstruction_rss=np.zeros((1, 8, 8))), []),
        "wrong rank": (_bad_h5(tmp_path, "rank.h5", kspace=good[0, 0, 0]), []),
        "NaN": (_bad_h5(tmp_path, "nan.h5", kspace=nan), []),
        "all-zero k-space": (_bad_h5(tmp_path, "zeros.h5", kspace=np.zeros_like(good)), []),
        "all-zero mask": (_bad_h5(tmp_path, "zeromask.h5", kspace=good, mask=np.zeros(SIZE, np.float32)), []),
        "R < 1": (write_fastmri_h5(tmp_path / "ok.h5", good), ["--accel", "0.5"]),
        "R not a number": (write_fastmri_h5(tmp_path / "ok4.h5", good), ["--accel", "nan"]),
        "no ACS for coil maps": (write_fastmri_h5(tmp_path / "ok2.h5", good),
                                 ["--accel", "4", "--center-fraction", "0.03"]),
        "missing file": (tmp_path / "does-not-exist.h5", []),
        "not SENSE-tutorial .mat": (_bad_h5(tmp_path, "other.mat", kspace=good), []),
        "unknown device": (write_fastmri_h5(tmp_path / "ok3.h5", good), ["--device", "gpu0"]),
    }


@pytest.mark.parametrize("case", ["not HDF5", "truncated", "missing kspace", "wrong rank", "NaN", "all-zero k-space",
                                  "all-zero mask", "R < 1", "R not a number", "no ACS for coil maps", "missing file",
                                  "not SENSE-tutorial .mat", "unknown device"])
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, case):
    path, extra = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out" / "rec.h5"
    code, _, err = _run(capsys, "recon", path, "--method", "sense", *extra, "--out", out)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mriqa: error: ")
    assert "Traceback" not in err
    assert str(path.name) in lines[0] or case in ("R < 1", "R not a number", "unknown device")
    assert not out.exists()
    assert not list(out.parent.glob("*")) if out.parent.exists() else True


def test_mismatched_coil_maps_are_a_clear_error():
    from recon import baselines
    from recon.errors import InputError

    kspace, _ = _phantom_kspace(slices=1)
    mask = np.ones((1, 1, SIZE), np.float32)
    with pytest.raises(InputError, match="map"):
        baselines.cg_sense(kspace, mask, np.ones((1, COILS + 1, SIZE, SIZE), np.complex64))


def test_evaluate_shape_mismatch_is_a_clear_error(tmp_path, raw_file, capsys):
    other = write_fastmri_h5(tmp_path / "other.h5", _phantom_kspace(slices=1, size=32)[0],
                             reconstruction_rss=_phantom_kspace(slices=1, size=32)[1])
    assert _run(capsys, "recon", other, "--method", "zf", "--out", tmp_path / "small.h5")[0] == 0
    code, _, err = _run(capsys, "evaluate", "--target", raw_file, "--recon", tmp_path / "small.h5")
    assert code == 2 and "shape" in err


def test_demo_runs_on_a_users_file_and_writes_the_report(tmp_path, raw_file, capsys):
    out = tmp_path / "demo"
    code, stdout, _ = _run(capsys, "demo", "--input", raw_file, "--accels", "2,3", "--methods", "zf,sense",
                           "--out", out)
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    assert {(r["acceleration"], r["method"]) for r in result["rows"]} == {(2.0, "zf"), (2.0, "sense"),
                                                                          (3.0, "zf"), (3.0, "sense")}
    assert all(np.isfinite(r["psnr"]) and np.isfinite(r["psnr_in"]) and 0 < r["ssim_in"] <= 1
               for r in result["rows"])
    assert 0 < result["object_fraction"] < 1
    for name in ("report.html", "panels.png", "errors.png", "quality_maps.png"):
        assert (out / name).stat().st_size > 0
    assert "PSNR" in stdout and "in object" in stdout and "recon score" in stdout
    # the reference-free recon score sits beside PSNR / SSIM, with its maps
    assert all(0 <= r["recon_score"] <= 1 for r in result["rows"])
    report = (out / "report.html").read_text()
    for column in ("PSNR in obj.", "SSIM in obj.", "R eff.", "What the columns mean", "higher is better",
                   "recon score", "quality_maps.png", "k-space NMSE est.", "combined"):
        assert column in report
    # the k-space check: zero-filled predicts nothing it did not measure, so it gets the highest NMSE estimate
    for accel in (2.0, 3.0):
        nmse = {r["method"]: r["kspace_nmse"] for r in result["rows"] if r["acceleration"] == accel}
        assert 0 < nmse["sense"] < nmse["zf"]
    assert "k-space NMSE est." in stdout and all(0 <= r["combined"] <= r["recon_score"] for r in result["rows"])
    code, _, _ = _run(capsys, "demo", "--input", raw_file, "--accels", "2", "--methods", "zf,sense",
                      "--no-kspace-check", "--out", tmp_path / "plain")
    assert code == 0 and "k-space NMSE est." not in (tmp_path / "plain" / "report.html").read_text()


def test_demo_snr_sets_the_built_in_slices_noise_and_is_refused_for_a_file(tmp_path, raw_file, capsys):
    rows = {}
    for snr in ("40", "400"):
        code, _, _ = _run(capsys, "demo", "--snr", snr, "--accels", "2", "--methods", "sense",
                          "--out", tmp_path / snr)
        assert code == 0
        result = json.loads((tmp_path / snr / "results.json").read_text())
        rows[snr] = result["rows"][0]
    # CG-SENSE at R = 2 is noise-limited on this slice: ten times less noise shows inside the object
    assert rows["400"]["psnr_in"] > rows["40"]["psnr_in"] + 10
    code, _, err = _run(capsys, "demo", "--input", raw_file, "--snr", "100", "--out", tmp_path / "file")
    assert code == 2 and "--snr applies to the built-in slice only" in err and not (tmp_path / "file").exists()
    code, _, err = _run(capsys, "demo", "--snr", "-1", "--out", tmp_path / "neg")
    assert code == 2 and "--snr must be a positive number" in err
    # an R refused after the slice was loaded leaves no report folder either
    code, _, err = _run(capsys, "demo", "--input", raw_file, "--accels", "2,0", "--methods", "zf",
                        "--out", tmp_path / "bad-r")
    assert code == 2 and "R must be >= 1" in err and not (tmp_path / "bad-r").exists()


def test_demo_refuses_k_space_that_is_already_undersampled(tmp_path, capsys):
    """The demo scores every method against the RSS of the input's k-space: an undersampled file (every other line,
    as BART's small-FOV example) has no such reference and is refused in one line, exit 2, no report; zero columns at
    the edges (fastMRI's padding) are not undersampling."""
    kspace, rss = _phantom_kspace()
    padded = kspace.copy()
    padded[..., :3] = 0
    padded[..., -2:] = 0
    gappy = padded.copy()
    gappy[..., 10:-10:2] = 0
    for name, k, ok in (("padded", padded, True), ("gappy", gappy, False)):
        path = write_fastmri_h5(tmp_path / f"{name}.h5", k, reconstruction_rss=rss, acquisition="AXT1")
        code, _, err = _run(capsys, "demo", "--input", path, "--accels", "2", "--methods", "zf",
                            "--no-kspace-check", "--out", tmp_path / name)
        assert (code == 0) == ok and (tmp_path / name).exists() == ok
        if not ok:
            assert "already undersampled" in err and "mriqa recon" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["recon", "in.h5", "--out", "o.h5"], ["demo"], ["make-dataset", "--out", "ds"],
                                  ["iqa-bench", "--dataset", "csv:x.csv", "--metric", "psnr"],
                                  ["reader-study", "scores", "study.db"]])
@pytest.mark.parametrize("seed", ["-1", "2147483648", "1.5"])
def test_every_seed_option_refuses_what_numpy_would_not_take(tmp_path, capsys, monkeypatch, argv, seed):
    """`mriqa demo --seed -1` and `make-dataset --seed -1` ended in NumPy's traceback (make-dataset after creating
    its output folder): now the parser refuses the value, exit 2, before anything runs."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as excinfo:
        main([*argv, "--seed", seed])
    err = capsys.readouterr().err
    assert excinfo.value.code == 2 and "--seed: must be an integer from 0 to 2147483647" in err
    assert "Traceback" not in err and not list(tmp_path.iterdir())
