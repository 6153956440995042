"""The ISMRMRD XML header of fastMRI files: written (:func:`ismrmrd_header`) and read back the way
``fastmri.data.SliceDataset`` reads it (:func:`parse_header`)."""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree

ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"

__all__ = ["ismrmrd_header", "parse_header", "ISMRMRD_NAMESPACE"]


def parse_header(text: str | bytes | None) -> tuple[tuple | None, tuple | None]:
    """(encoding_size, recon_size) from an ismrmrd XML header, the way fastMRI's SliceDataset reads them."""
    if text is None:
        return None, None
    try:
        root = ElementTree.fromstring(text)
        ns = {"i": ISMRMRD_NAMESPACE}

        def size(space: str) -> tuple[int, int, int]:
            base = f".//i:encoding//i:{space}//i:matrixSize//i:"
            return tuple(int(root.find(base + axis, ns).text) for axis in "xyz")  # type: ignore[union-attr]

        return size("encodedSpace"), size("reconSpace")
    except (ElementTree.ParseError, AttributeError, TypeError, ValueError):
        return None, None


def ismrmrd_header(
    encoding_size: tuple[int, int, int],
    recon_size: tuple[int, int, int] | None = None,
    num_slices: int = 1,
    num_coils: int = 1,
    field_of_view_mm: tuple[float, float, float] | None = None,
    larmor_frequency_hz: int = 123_250_000,
) -> str:
    """A minimal valid ISMRMRD XML header for a 2-D Cartesian acquisition.

    ``encoding_size`` / ``recon_size`` are ``(x, y, z)`` = (readout H, phase encode W, 1), as in fastMRI files.
    ``kspace_encoding_step_1`` spans all W phase-encode lines with its centre at W // 2, so fastMRI's
    ``SliceDataset`` computes ``padding_left = 0`` and ``padding_right = W`` (no zero-padded columns).
    The default Larmor frequency is 3 T proton (123.25 MHz).
    """
    recon_size = recon_size or encoding_size
    field_of_view_mm = field_of_view_mm or tuple(float(n) for n in encoding_size)
    width = int(encoding_size[1])

    def space(tag: str, size, fov) -> str:
        return (f"<{tag}><matrixSize><x>{int(size[0])}</x><y>{int(size[1])}</y><z>{int(size[2])}</z></matrixSize>"
                f"<fieldOfView_mm><x>{fov[0]:g}</x><y>{fov[1]:g}</y><z>{fov[2]:g}</z></fieldOfView_mm></{tag}>")

    def limit(tag: str, maximum: int, center: int) -> str:
        return f"<{tag}><minimum>0</minimum><maximum>{maximum}</maximum><center>{center}</center></{tag}>"

    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<ismrmrdHeader xmlns="{ISMRMRD_NAMESPACE}" xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        f"<experimentalConditions><H1resonanceFrequency_Hz>{int(larmor_frequency_hz)}</H1resonanceFrequency_Hz>"
        "</experimentalConditions>"
        f"<acquisitionSystemInformation><receiverChannels>{int(num_coils)}</receiverChannels>"
        "</acquisitionSystemInformation>"
        "<encoding>"
        + space("encodedSpace", encoding_size, field_of_view_mm)
        + space("reconSpace", recon_size, field_of_view_mm)
        + "<encodingLimits>"
        + limit("kspace_encoding_step_1", width - 1, width // 2)
        + limit("kspace_encoding_step_2", 0, 0)
        + limit("slice", max(int(num_slices) - 1, 0), int(num_slices) // 2)
        + "</encodingLimits><trajectory>cartesian</trajectory></encoding></ismrmrdHeader>"
    )
