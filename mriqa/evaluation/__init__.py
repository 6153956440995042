"""Evaluation helpers that the scripts in ``scripts/`` share (each script parses, calls these and prints).

One module per evaluation; reconstruction-only helpers (held-out volumes, calibration maps) are in
:mod:`recon.evaluation`, the metrics in :mod:`recon.metrics` (fastMRI's conventions) and
:mod:`mriqa.iqa.correlation` (SRCC / KRCC / PLCC).

- :mod:`~mriqa.evaluation.tables`: markdown tables.
- :mod:`~mriqa.evaluation.heldout`: the held-out images (Kodak24 test, Colin27 slices) and their crops.
- :mod:`~mriqa.evaluation.qf`: QF predictor accuracy, generalisation to blur / noise / salt-and-pepper,
  blockiness, shift robustness (``scripts/eval_qf.py``, ``scripts/rgb_figures.py``).
- :mod:`~mriqa.evaluation.photo_metrics`: PSNR, colour SSIM and PSNR-B with the JPEG-restoration literature's
  conventions (``scripts/eval_qairn.py``, ``scripts/eval_ar.py``).
- :mod:`~mriqa.evaluation.restoration`: artifact removal by the AR-CNNs of ``mriqa.train_ar``
  (``scripts/eval_ar.py``, ``scripts/rgb_figures.py``).
- :mod:`~mriqa.evaluation.qairn`: QAIRN's restoration table, proxy correlations and model card
  (``scripts/eval_qairn.py``).
- :mod:`~mriqa.evaluation.training_modes`: the reconstruction training modes of issue 6 on held-out volumes
  (``scripts/eval_training.py``, ``scripts/sweep_qf_weight.py``).
- :mod:`~mriqa.evaluation.r_estimation`: the R-estimation data set (acquisition variation, pooled QF scores)
  and its error / coverage measures (``scripts/make_r_dataset.py``, ``scripts/eval_r.py``).

Heavy imports (torch models, matplotlib, h5py) stay inside the functions.
"""
