"""recon: the bottom layer. MRI data I/O, masks, SENSE operator, CG, coil maps, simulation, classical baselines,
MoDL, the data-consistency loss, the training loop and the config loader.

recon never imports mriqa (``tests/test_layering.py``): quality losses reach its trainer by injection or by a
dotted ``factory`` path in a config. mriqa builds on recon.

Complex images are torch complex64 ``[B, H, W]``, k-space ``[B, C, H, W]``, FFTs centred and orthonormal
(``recon.fft.fft2c``, identical to ``fastmri.fft2c``). See CONTRIBUTING.md for all conventions.
"""
__version__ = "0.1.0"
