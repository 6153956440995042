"""MRI data I/O: fastMRI h5 (``fastmri_h5``, its ISMRMRD header ``ismrmrd``), BART cfl/hdr (``bart``), magnitude
volumes (``volumes``), 2-D image records for the quality models (``images``), output checks (``output``).

Heavy readers (pydicom, nibabel, Pillow) are imported only when used.
"""
from recon.io.bart import cfl_to_kspace, read_cfl, read_cfl_dims, read_cfl_kspace, write_cfl
from recon.io.fastmri_h5 import (
    KspaceVolume,
    Reconstruction,
    ReconstructionAttrs,
    ismrmrd_header,
    read_kspace,
    read_reconstruction,
    read_reconstruction_attrs,
    write_fastmri_h5,
    write_reconstruction_h5,
)
from recon.io.volumes import Volume, read_volume, reslice

__all__ = [
    "KspaceVolume",
    "Reconstruction",
    "ReconstructionAttrs",
    "Volume",
    "cfl_to_kspace",
    "ismrmrd_header",
    "read_cfl",
    "read_cfl_dims",
    "read_cfl_kspace",
    "read_kspace",
    "read_reconstruction",
    "read_reconstruction_attrs",
    "read_volume",
    "reslice",
    "write_cfl",
    "write_fastmri_h5",
    "write_reconstruction_h5",
]
