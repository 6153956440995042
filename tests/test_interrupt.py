"""Ctrl-C / SIGTERM during training: a checkpoint at the last completed step, exit 130, an exact resume; stale
temp files of writes killed half-way are removed at the start of a run."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_qairn import _photos  # tests/ is on sys.path under pytest

from recon.files import TEMP_PATTERN, atomic_path, process_start_time, remove_stale_temps
from recon.training.loop import RunState, resume_state, run_steps

REPO = Path(__file__).resolve().parents[1]
TARGET = torch.tensor([1.0, -2.0, 0.5])


# ----------------------------------------------------------------------------------------------- the step loop
def _toy_run(out: Path, steps: int, on_step=None, on_eval=None):
    """A linear regression trained by run_steps; ``on_step(step)`` is called inside train_step (before the
    optimiser step of that 0-based step), ``on_eval(step)`` inside the validation after ``step`` steps."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, bias=False)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    out.mkdir(parents=True, exist_ok=True)
    ck = out / "checkpoint.pt"
    state = resume_state(ck, model, opt) if ck.is_file() else RunState()
    cfg = {"seed": 3, "train": {"steps": steps, "eval_every": 1, "checkpoint_every": 100, "progress": False}}
    logs = []

    def train_step(rng):
        if on_step is not None:
            on_step(state.step)
        x = torch.from_numpy(rng.standard_normal((8, 3)).astype(np.float32))
        return ((model(x)[:, 0] - x @ TARGET) ** 2).mean(), {}

    def evaluate():
        if on_eval is not None:
            on_eval(state.step)
        return {"val_err": float((model.weight[0].detach() - TARGET).norm())}

    run_steps(state, name="toy", model=model, optimizer=opt, cfg=cfg, lr_at=lambda step, tc: 0.05,
              train_step=train_step, evaluate=evaluate, select="val_err", keep=("val_err",), output_dir=out,
              log=logs.append)
    return model, state, logs


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_finishes_the_step_checkpoints_it_and_the_rerun_resumes_exactly(tmp_path, sig):
    full, _, _ = _toy_run(tmp_path / "full", 8)
    before = signal.getsignal(sig)

    def send(step):
        if step == 3:
            os.kill(os.getpid(), sig)

    with pytest.raises(KeyboardInterrupt):
        _toy_run(tmp_path / "split", 8, on_step=send)
    assert signal.getsignal(sig) is before  # the loop's handler is gone again
    ck = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 4  # step index 3 was under way: it finished, and is the fourth completed step
    assert [r["step"] for r in json.loads(ck["history"])] == [1, 2, 3, 4]
    resumed, state, logs = _toy_run(tmp_path / "split", 8)
    assert state.step == 8 and torch.equal(full.weight, resumed.weight)
    assert [r["step"] for r in state.history] == list(range(1, 9))


def test_a_second_signal_or_a_plain_keyboardinterrupt_stops_at_once(tmp_path):
    def twice(step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # raises here, before the optimiser step: step 3 is clean

    with pytest.raises(KeyboardInterrupt):
        _toy_run(tmp_path / "twice", 8, on_step=twice)
    assert torch.load(tmp_path / "twice" / "checkpoint.pt", weights_only=True)["step"] == 3

    def raise_plain(step):  # e.g. a Ctrl-C in a thread where no handler could be installed
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _toy_run(tmp_path / "plain", 8, on_step=raise_plain)
    assert torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=True)["step"] == 5

    def raise_in_validation(step):  # after the optimiser step, before the row is kept: half a step
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _toy_run(tmp_path / "mid", 8, on_eval=raise_in_validation)
    assert not (tmp_path / "mid" / "checkpoint.pt").exists()  # no periodic one yet, and none of half a step


# ----------------------------------------------------------------------------------------------- stale temp files
def test_temp_files_have_a_recognisable_name_and_stale_ones_are_removed(tmp_path):
    with atomic_path(tmp_path / "checkpoint.pt") as tmp:
        match = TEMP_PATTERN.match(tmp.name)
        assert match and match["name"] == "checkpoint.pt" and tmp.suffix == ".pt"
        tmp.write_bytes(b"x")
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"x"
    old = time.time() - 3600
    killed = tmp_path / ".checkpoint.pt.abcd1234.partial.pt"  # what SIGKILL inside torch.save leaves
    other_run_file = tmp_path / ".notes.txt.abcd1234.partial.txt"
    not_ours = tmp_path / ".checkpoint.pt.swp"
    for p in (killed, other_run_file, not_ours):
        p.write_bytes(b"")
        os.utime(p, (old, old))
    young = tmp_path / ".history.json.zzzz9999.partial.json"  # written after this process started: in use
    young.write_bytes(b"")
    future = process_start_time() + 3600
    os.utime(young, (future, future))
    assert remove_stale_temps(tmp_path, ("checkpoint.pt", "history.json")) == [killed]
    assert other_run_file.exists() and not_ours.exists() and young.exists()
    assert remove_stale_temps(tmp_path) == [other_run_file]
    assert remove_stale_temps(tmp_path / "missing") == []
    assert process_start_time() <= time.time()


def test_a_run_removes_stale_temps_of_its_files_at_the_start(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".checkpoint.pt.k1ll3d00.partial.pt"
    stale.write_bytes(b"")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    _toy_run(out, 2)
    assert not stale.exists()
    assert not [p for p in out.iterdir() if TEMP_PATTERN.match(p.name)]


# ----------------------------------------------------------------------------------------------- the command line
def test_ctrl_c_during_mriqa_train_qf_exits_130_with_a_checkpoint_and_the_rerun_resumes(tmp_path):
    photos, out, steps = _photos(tmp_path / "photos", n=2, size=(64, 64)), tmp_path / "run", 80
    cmd = [sys.executable, "-m", "mriqa", "train-qf", "--config", str(REPO / "configs" / "qf-gray.yaml"),
           "--set", f"data.train=[{{type: images, path: {photos}}}]",
           "--set", f"data.val=[{{type: images, path: {photos}, include: [img0]}}]",
           "--set", f"train.steps={steps}", "--set", "train.batch=4", "--set", "train.val_patches=8",
           "--set", "train.eval_every=1", "--set", "train.checkpoint_every=1000", "--set", "train.warmup=1",
           "--set", "train.progress=false", "--set", "train.device=cpu", "--set", "train.max_minutes=null",
           "--set", "model.width=4", "--set", "sampler.patch=32", "--output-dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    history = out / "history.json"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                if len(json.loads(history.read_text())) >= 3:
                    break
            except (OSError, ValueError):  # not written yet
                pass
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be interrupted:\n" + proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "mriqa: interrupted" and "Traceback" not in stderr
    logged = [int(m) for m in re.findall(r"\] step (\d+)/%d" % steps, stdout)]
    last = logged[-1]
    assert 3 <= last < steps and logged == list(range(1, last + 1))
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["step"] == last and f"interrupted (SIGINT) after step {last}" in stdout
    assert not (out / "best.safetensors").exists()  # an interrupted run exports nothing

    rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed from {out / 'checkpoint.pt'} at step {last}" in rerun.stdout
    assert f"train-qf: qf-gray step {steps}" in rerun.stdout
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == steps
    assert [r["step"] for r in json.loads(history.read_text())] == list(range(1, steps + 1))
    assert (out / "best.safetensors").is_file()
