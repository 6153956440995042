"""scripts/real_kspace_check.py on the real 16-coil brain (``../shared/data``): one orientation and mask kind, two
calibrations, the counts of issue 19 and the comparison of the two, as the script prints them."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import mriqa


def _script():
    root = Path(mriqa.__file__).parents[1]
    spec = importlib.util.spec_from_file_location("real_kspace_check", root / "scripts" / "real_kspace_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_calibrations_print_both_tables_the_counts_and_the_comparison(shared_data, capsys):
    script = _script()
    assert script.main(["--data", str(shared_data), "--orientation", "as-stored", "--masks", "equispaced",
                        "--no-modl", "--calibration", "auto", "full"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("as-stored")]
    assert len(rows) == 14 and out.count("CG-SENSE >= zero-filled + 1 dB in") == 2
    assert "calibration full against auto, whole-image PSNR difference over 7 rows:" in out
    sense = next(line for line in out.splitlines() if line.strip().startswith("sense ") and "mean" in line)
    assert float(sense.split("mean")[1].split("dB")[0]) > 1.0  # the fully sampled maps bound: measured +2.6 dB
    assert all(" given " not in r for r in rows[:7]) and all("given" in r for r in rows[7:])


def test_small_fov_rows_run_every_method_with_the_guards_map_sets(shared_data, capsys):
    """The second real scan (undersampled when acquired, its field of view smaller than the head), undersampled
    further: each method runs, two map sets where one leaves the fold-over (the guard's fallback, noted)."""
    script = _script()
    rows = script.run_small_fov(shared_data, with_modl=False, masks=("equispaced",), accels=(2,))
    assert len(rows) == 1 and capsys.readouterr().out.startswith("acquired    equispaced   2  3.23")
    row = rows[0]
    assert row["sense_attempt"] == row["l1_attempt"] == "2 map sets" and row["acs"] == 25
    assert row["sense"][0] > row["zf"][0] + 1  # against the proxy reference: measured +1.4 dB
