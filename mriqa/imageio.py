"""Moved to :mod:`recon.io.images` (2-D records) and :mod:`recon.io.volumes` (volumes); this name stays
importable until the scripts and trainers have switched (issue 18), then it is deleted."""
from recon.io.images import ImageRecord, read_images, read_photo, record_name, records_with_signal  # noqa: F401


def read_volume(path, h5_key=None):
    """``recon.io.volumes.read_volume(path, axes="stored", h5_key=h5_key).data`` (the old mriqa call)."""
    from recon.io.volumes import read_volume as _read

    return _read(path, axes="stored", h5_key=h5_key).data
