"""Two-process DDP on CPU (gloo) through the Lightning module: both ranks end with identical weights, the
frozen QF predictor is replicated unchanged, and training did change the reconstruction network."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning", reason="the lightning extra (in the test extra: pip install -e '.[test]')")

REPO = Path(__file__).resolve().parents[1]


def test_two_process_ddp_identical_weights(tmp_path):
    from safetensors.torch import load_file

    from examples.tiny_data import make_tiny_dataset
    from examples.train_lightning import build, parse_args
    from mriqa.losses import QFLoss

    make_tiny_dataset(tmp_path / "data", size=32, coils=4)
    argv = ["--data", str(tmp_path / "data"), "--arch", "modl", "--mode", "dc+qf", "--qf-weight", "0.05",
            "--tiny-model", "--calib-width", "16", "--max-steps", "3", "--devices", "2", "--strategy", "ddp",
            "--accelerator", "cpu", "--save-weights", str(tmp_path / "w")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "train_lightning.py"), *argv], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"global_step": 3' in proc.stdout, proc.stdout
    a = load_file(str(tmp_path / "w.rank0.safetensors"))
    b = load_file(str(tmp_path / "w.rank1.safetensors"))
    assert a.keys() == b.keys() and len(a) > 0
    for k in a:
        assert torch.equal(a[k], b[k]), k  # gradients were all-reduced: the two replicas never diverged
    # the frozen QF predictor travels with the module, unchanged
    qf = QFLoss("gray").net.state_dict()
    qf_keys = [k for k in a if k.startswith("loss.terms.qf.net.")]
    assert len(qf_keys) == len(qf)
    for k in qf_keys:
        assert torch.equal(a[k], qf[k[len("loss.terms.qf.net."):]]), k
    # and the reconstruction network did train (same seed -> same init as in the script)
    torch.manual_seed(0)
    model, _ = build(parse_args(argv))
    init = model.state_dict()
    assert any(not torch.equal(a[f"model.{k}"], v) for k, v in init.items())
