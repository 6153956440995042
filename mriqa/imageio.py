"""Moved to :mod:`recon.io.images` (2-D records) and :mod:`recon.io.volumes` (volumes). These names stay
importable only until the last callers outside the reader's owner (the reader study, scripts) have switched;
then this module is deleted (issue 18)."""
from recon.io.images import ImageRecord, read_images, read_photo, record_name, records_with_signal  # noqa: F401


def read_volume(path, h5_key=None):
    """Now ``recon.io.volumes.read_volume(path, axes="stored", h5_key=h5_key).data``."""
    from recon.io.volumes import read_volume as _read

    return _read(path, axes="stored", h5_key=h5_key).data


def read_h5(path, key=None):
    """Now ``recon.io.images.read_images(path, h5_key=key)`` (or ``recon.io.fastmri_h5.read_reconstruction``)."""
    return read_images(path, h5_key=key)
