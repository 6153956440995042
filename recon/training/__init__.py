"""Training machinery shared by every trainer: the step loop (:mod:`recon.training.loop`: ``run_steps``,
``RunState``, ``resume_state``, ``export_weights``, the moving average, checkpoint on Ctrl-C / SIGTERM), the
checkpoint format (:mod:`recon.training.checkpoints`) and the learning-curve figure
(:mod:`recon.training.curves`). Import the submodules; this package imports nothing itself.
"""
