"""recon.training.curves: the trainers' shared learning-curve figure."""
from __future__ import annotations

import matplotlib.image as mpimg

from recon.training.curves import Panel, plot_history


def test_plot_history_draws_the_rows_with_the_required_key(tmp_path):
    history = [{"step": 10, "train_loss": 0.5}, {"step": 20, "train_loss": 0.4, "val_loss": 0.45, "val_mae": 1.0},
               {"step": 30, "train_loss": 0.3, "val_loss": 0.35}]  # no val_mae: drawn as a gap, not an error
    panels = [Panel("loss", (("train_loss", "train"), ("val_loss", "validation")), log_y=True),
              Panel("MAE", (("val_mae", None),), ylim=(0, 2))]
    path = tmp_path / "curves.png"
    assert plot_history(history, path, "run", panels)
    img = mpimg.imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 2 * img.shape[0]  # one row of two panels
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # written atomically: no temp file left behind


def test_plot_history_writes_nothing_without_rows(tmp_path):
    path = tmp_path / "curves.png"
    assert not plot_history([{"step": 1, "train_loss": 1.0}], path, "run", [Panel("loss", (("train_loss", None),))])
    assert not path.exists()
    assert plot_history([{"step": 1, "train_loss": 1.0}], path, "run", [Panel("loss", (("train_loss", None),))],
                        require=None)
    assert path.is_file()
