"""recon: MRI data I/O, masks, SENSE operator, CG, coil maps, simulation, classical baselines, MoDL, trainers.

Complex images are torch complex64 ``[B, H, W]``, k-space ``[B, C, H, W]``, FFTs centred and orthonormal
(``recon.fft.fft2c``, identical to ``fastmri.fft2c``). See CONTRIBUTING.md for all conventions.
"""
__version__ = "0.1.0"
