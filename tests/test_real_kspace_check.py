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
