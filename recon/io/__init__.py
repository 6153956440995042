"""MRI data I/O: fastMRI h5 (``fastmri_h5``), BART cfl/hdr (``bart``), magnitude volumes (``volumes``).

Heavy readers (pydicom, nibabel, Pillow) are imported only when used.
"""
from recon.io.bart import cfl_to_kspace, read_cfl, read_cfl_dims, read_cfl_kspace, write_cfl
from recon.io.fastmri_h5 import (
    KspaceVolume,
    Reconstruction,
    ismrmrd_header,
    read_kspace,
    read_reconstruction,
    write_fastmri_h5,
    write_reconstruction_h5,
)
from recon.io.volumes import Volume, read_volume, reslice

__all__ = [
    "KspaceVolume",
    "Reconstruction",
    "Volume",
    "cfl_to_kspace",
    "ismrmrd_header",
    "read_cfl",
    "read_cfl_dims",
    "read_cfl_kspace",
    "read_kspace",
    "read_reconstruction",
    "read_volume",
    "reslice",
    "write_cfl",
    "write_fastmri_h5",
    "write_reconstruction_h5",
]
