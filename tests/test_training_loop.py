"""The shared step loop (recon.training.loop): determinism across resumption, best-row selection, early stops."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recon.training.loop import RunState, ema_decay_at, resume_state, run_steps, update_ema

TARGET = torch.tensor([1.0, -2.0, 0.5])


def _run(out, steps, state=None, maximize=False, select="val_err", **train):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out.mkdir(parents=True, exist_ok=True)
    if state is None:
        ck = out / "checkpoint.pt"
        state = resume_state(ck, model, opt) if ck.is_file() else RunState()
    tc = {"steps": steps, "eval_every": 2, "checkpoint_every": 3, "progress": False, **train}
    cfg = {"seed": 7, "train": tc}
    plots, logs = [], []

    def train_step(rng):
        x = torch.from_numpy(rng.standard_normal((8, 3)).astype(np.float32))
        loss = ((model(x)[:, 0] - x @ TARGET) ** 2).mean()
        return loss, {"train_half": 0.5}

    def evaluate():
        err = float((model.weight[0].detach() - TARGET).norm())
        return {"val_err": err, "val_neg": -err}

    result = run_steps(state, name="toy", model=model, optimizer=opt, cfg=cfg,
                       lr_at=lambda step, tc: 0.1 / (1 + step), train_step=train_step, evaluate=evaluate,
                       select=select, maximize=maximize, keep=(select,), describe=lambda r: f"{r['val_err']:.3f}",
                       plot=plots.append, output_dir=out, log=logs.append)
    return model, state, result, plots, logs


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    full, s_full, r_full, plots, _ = _run(tmp_path / "full", 9)
    assert not r_full.stopped_early and s_full.step == 9
    _, s1, r1, _, logs = _run(tmp_path / "split", 9, stop_at_step=4)
    assert r1.stopped_early and s1.step == 4 and "stop_at_step reached at step 4" in logs[-1]
    resumed, s2, r2, _, _ = _run(tmp_path / "split", 9)
    assert s2.step == 9 and not r2.stopped_early
    assert torch.equal(full.weight, resumed.weight)
    assert [r["step"] for r in s2.history] == [2, 4, 6, 8, 9]
    assert s2.history == json.loads((tmp_path / "split" / "history.json").read_text())
    # the lr of a row is that of its last step; extras are averaged over the steps since the last row
    assert s_full.history[0]["lr"] == pytest.approx(0.1 / 2) and s_full.history[0]["train_half"] == 0.5
    assert [r["val_err"] for r in s_full.history] == [r["val_err"] for r in s2.history]
    assert plots and plots[-1] is s_full.history  # the final plot sees the whole history


def test_best_row_is_the_minimum_or_the_maximum(tmp_path):
    _, low, _, _, _ = _run(tmp_path / "min", 9)
    errs = [r["val_err"] for r in low.history]
    assert low.best["step"] == low.history[int(np.argmin(errs))]["step"]
    assert low.best["val_err"] == min(errs) and set(low.best) == {"step", "val_err", "state"}
    _, high, _, _, _ = _run(tmp_path / "max", 9, maximize=True, select="val_neg")
    assert high.best["val_neg"] == max(r["val_neg"] for r in high.history)
    # the kept weights are the best row's, not the last step's
    ck = torch.load(tmp_path / "min" / "checkpoint.pt", weights_only=True)
    assert ck["best"]["step"] == low.best["step"]
    assert torch.equal(ck["best"]["state"]["weight"], low.best["state"]["weight"])


def test_max_minutes_stops_with_a_checkpoint(tmp_path):
    _, state, result, _, logs = _run(tmp_path / "t", 50, max_minutes=1e-9)
    assert result.stopped_early and state.step == 1
    assert "max_minutes reached at step 1" in logs[-1]
    assert torch.load(tmp_path / "t" / "checkpoint.pt", weights_only=True)["step"] == 1


def test_ema_decay_warms_up_to_the_configured_decay():
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(90, 0.999) == pytest.approx(91 / 100)
    assert ema_decay_at(10**6, 0.999) == 0.999


def test_update_ema_is_the_exponential_average_and_copies_integer_buffers():
    model = torch.nn.BatchNorm1d(2)
    ema = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.fill_(3.0)
    model.num_batches_tracked += 5
    update_ema(ema, model, 0.75)
    assert torch.allclose(ema["weight"], torch.full((2,), 0.75 * 1.0 + 0.25 * 3.0))
    assert int(ema["num_batches_tracked"]) == 5


def test_ema_run_validates_and_keeps_the_average_and_resumes_exactly(tmp_path):
    full, s_full, _, _, _ = _run(tmp_path / "full", 9, ema=0.9)
    # rows carry the average's metrics and the raw weights' under raw_
    row = s_full.history[-1]
    assert set(row) >= {"val_err", "raw_val_err", "val_neg", "raw_val_neg"}
    assert row["raw_val_err"] == pytest.approx(float((full.weight[0].detach() - TARGET).norm()))
    assert row["val_err"] != row["raw_val_err"]
    assert row["val_err"] == pytest.approx(float((s_full.ema["weight"][0] - TARGET).norm()))
    # the best weights are the average's at the best row, and the model is left with its raw weights
    best_row = min(s_full.history, key=lambda r: r["val_err"])
    assert s_full.best["step"] == best_row["step"]
    assert float((s_full.best["state"]["weight"][0] - TARGET).norm()) == pytest.approx(best_row["val_err"])
    assert not torch.equal(full.weight.detach(), s_full.ema["weight"])
    # interrupted and resumed: same raw weights, same average, same history
    _run(tmp_path / "split", 9, ema=0.9, stop_at_step=4)
    ck = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert ck["ema"] is not None and ck["step"] == 4
    resumed, s2, _, _, _ = _run(tmp_path / "split", 9, ema=0.9)
    assert torch.equal(full.weight, resumed.weight)
    assert torch.equal(s_full.ema["weight"], s2.ema["weight"])
    assert [r["val_err"] for r in s_full.history] == [r["val_err"] for r in s2.history]


def test_no_ema_leaves_rows_and_checkpoint_without_it(tmp_path):
    _, state, _, _, _ = _run(tmp_path / "t", 4)
    assert state.ema is None and not any(k.startswith("raw_") for r in state.history for k in r)
    assert torch.load(tmp_path / "t" / "checkpoint.pt", weights_only=True)["ema"] is None


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_ema_decay_outside_0_1_is_refused(tmp_path, decay):
    with pytest.raises(ValueError, match="train.ema"):
        _run(tmp_path / "t", 4, ema=decay)


def test_resolve_device_is_one_rule_for_commands_trainers_and_loaders():
    from recon.device import resolve_device
    from recon.errors import InputError

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == resolve_device("auto").type == expected
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(InputError, match="unknown torch device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")
