"""The one image reader (recon.io.images: PNG/TIFF/JPEG/DICOM/NIfTI/h5/npy records; recon.io.volumes with
``axes="stored"``) and the one normalisation (mriqa.normalize)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from recon.errors import InputError
from recon.io.images import read_images
from recon.io.volumes import read_volume as _read_volume
from mriqa.normalize import as_model_input, quantize_8bit, to_unit_range


# ----------------------------------------------------------------------------------------------- helpers
def read_volume(path):
    """The file's own array order (``axes="stored"``), as the QF training pools read volumes."""
    return _read_volume(path, axes="stored").data


def _write_dicom(path, pixels: np.ndarray, z: float, instance: int, slope: float = 1.0, intercept: float = 0.0):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def _write_h5(path, data: np.ndarray, key="reconstruction_rss"):
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=data)
        f.create_dataset("kspace", data=np.zeros((data.shape[0], 4, 4), np.complex64))
        f.attrs["max"] = float(np.nanmax(data)) if np.isfinite(data).any() else 0.0


# ----------------------------------------------------------------------------------------------- photos
def test_png_8bit_16bit_palette_la_cmyk(tmp_path):
    rng = np.random.default_rng(0)
    rgb = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    (r,) = read_images(tmp_path / "rgb.png")
    assert r.kind == "photo" and r.slice is None and r.image.dtype == np.uint8
    np.testing.assert_array_equal(r.image, rgb)

    g16 = (rng.random((20, 30)) * 65535).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    (r16,) = read_images(tmp_path / "g16.png")
    assert r16.image.dtype == np.uint16
    np.testing.assert_array_equal(r16.image, g16)
    u = to_unit_range(r16.image, "photo")
    np.testing.assert_allclose(u, quantize_8bit(g16 / 65535.0))

    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    (rp,) = read_images(tmp_path / "pal.png")
    assert rp.image.shape == (20, 30, 3)
    gray = rgb[..., 0]
    Image.fromarray(gray).convert("P").save(tmp_path / "gray-pal.png")  # was read as RGB, so scored by the RGB model
    (rg,) = read_images(tmp_path / "gray-pal.png")
    assert rg.image.dtype == np.uint8
    np.testing.assert_array_equal(rg.image, gray)

    Image.fromarray(rgb).convert("LA").save(tmp_path / "la.png")
    (rla,) = read_images(tmp_path / "la.png")
    assert rla.image.shape == (20, 30, 2)
    assert as_model_input(rla.image, 3).shape == (1, 3, 20, 30)

    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")
    for name in ("cmyk.jpg", "cmyk.tif"):
        (rc,) = read_images(tmp_path / name)
        assert rc.image.shape == (20, 30, 3) and rc.image.dtype == np.uint8

    Image.fromarray(rgb).save(tmp_path / "x.bmp")
    assert read_images(tmp_path / "x.bmp")[0].image.shape == (20, 30, 3)


def test_tiff_stack_is_one_record_per_page(tmp_path):
    """A multi-page TIFF (an exported series) was scored by its first page alone, silently; every page is a slice
    now, as read_volume reads it."""
    rng = np.random.default_rng(1)
    pages = [(rng.random((20, 30)) * 65535).astype(np.uint16) for _ in range(3)]
    Image.fromarray(pages[0]).save(tmp_path / "stack.tif", save_all=True,
                                   append_images=[Image.fromarray(p) for p in pages[1:]])
    records = read_images(tmp_path / "stack.tif")
    assert [r.slice for r in records] == [0, 1, 2]
    for r, page in zip(records, pages):
        np.testing.assert_array_equal(r.image, page)
    Image.fromarray(pages[0]).save(tmp_path / "one.tif")
    assert [r.slice for r in read_images(tmp_path / "one.tif")] == [None]


def test_bad_and_unknown_files(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"definitely not a png")
    (tmp_path / "notes.xyz").write_text("hello")
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b broken")
    (tmp_path / "bad.h5").write_bytes(b"no hdf5 here")
    for name in ("junk.png", "notes.xyz", "bad.nii.gz", "bad.h5", "missing.png"):
        with pytest.raises(InputError, match=name.replace(".", r"\.")):
            read_images(tmp_path / name)
    empty = tmp_path / "emptydir"
    empty.mkdir()
    with pytest.raises(InputError, match="no readable DICOM"):
        read_images(empty)


# ----------------------------------------------------------------------------------------------- DICOM
def test_dicom_file_and_folder(tmp_path):
    rng = np.random.default_rng(1)
    series = tmp_path / "series"
    series.mkdir()
    slices = [(rng.random((12, 10)) * 1000).astype(np.uint16) for _ in range(3)]
    # written in scrambled order; positions define the order
    for name, (z, k) in zip(("b.dcm", "c.dcm", "a.dcm"), ((2.0, 2), (0.0, 0), (1.0, 1))):
        _write_dicom(series / name, slices[k], z=z, instance=10 - k, slope=2.0, intercept=-5.0)
    (series / "README.txt").write_text("not dicom")
    recs = read_images(series)
    assert [r.slice for r in recs] == [0, 1, 2] and all(r.kind == "mri" for r in recs)
    for r, s in zip(recs, slices):
        np.testing.assert_allclose(r.image, s * 2.0 - 5.0)
    vol = read_volume(series)
    assert vol.shape == (3, 12, 10) and vol.dtype == np.float32
    (one,) = read_images(series / "a.dcm")
    np.testing.assert_allclose(one.image, slices[1] * 2.0 - 5.0)
    # extension-less DICOM is sniffed
    (series / "a.dcm").rename(tmp_path / "IM0001")
    assert read_images(tmp_path / "IM0001")[0].image.shape == (12, 10)


def test_dicom_real_series(shared_data):
    vol = read_volume(shared_data / "mri/volumes/trio-mprage-t1")
    assert vol.shape == (176, 256, 256) and float(vol.max()) > 100


# ----------------------------------------------------------------------------------------------- NIfTI / h5 / npy
def test_nifti_3d_4d(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(2)
    v3 = rng.random((8, 9, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(v3, np.eye(4)), tmp_path / "v3.nii.gz")
    recs = read_images(tmp_path / "v3.nii.gz")
    assert len(recs) == 5 and recs[0].image.shape == (9, 8)
    np.testing.assert_array_equal(recs[2].image, np.flipud(v3[:, :, 2].T))
    assert read_volume(tmp_path / "v3.nii.gz").shape == (5, 8, 9)

    v4 = rng.random((8, 9, 5, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(v4, np.eye(4)), tmp_path / "v4.nii")
    recs4 = read_images(tmp_path / "v4.nii")
    assert len(recs4) == 15  # every slice of every volume (documented)
    assert [(r.volume, r.slice) for r in recs4[:6]] == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 0)]
    np.testing.assert_array_equal(recs4[1].image, np.flipud(v4[:, :, 1, 0].T))
    np.testing.assert_array_equal(recs4[7].image, np.flipud(v4[:, :, 2, 1].T))
    with pytest.warns(UserWarning, match="first volume"):
        assert read_volume(tmp_path / "v4.nii").shape == (5, 8, 9)  # a training volume: the first

    bad = v3.copy()
    bad[2, 3, 4] = np.nan
    nib.save(nib.Nifti1Image(bad, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(InputError, match=r"nan\.nii\.gz: slice 4 contains NaN"):
        read_images(tmp_path / "nan.nii.gz")


def test_h5_fastmri_layout_and_nan(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.random((4, 16, 16)).astype(np.float32) * 1e-4
    _write_h5(tmp_path / "file1.h5", data)
    recs = read_images(tmp_path / "file1.h5")
    assert [r.slice for r in recs] == [0, 1, 2, 3] and recs[0].kind == "mri"
    np.testing.assert_array_equal(recs[3].image, data[3])
    _write_h5(tmp_path / "esc.h5", data, key="reconstruction_esc")
    assert len(read_images(tmp_path / "esc.h5")) == 4
    _write_h5(tmp_path / "plain.h5", data, key="reconstruction")
    assert len(read_images(tmp_path / "plain.h5")) == 4
    bad = data.copy()
    bad[2, 5, 5] = np.inf
    _write_h5(tmp_path / "bad.h5", bad)
    with pytest.raises(InputError, match=r"bad\.h5: slice 2 contains NaN or Inf"):
        read_images(tmp_path / "bad.h5")
    _write_h5(tmp_path / "wrongkey.h5", data, key="image")
    with pytest.raises(InputError, match="no 'reconstruction"):
        read_images(tmp_path / "wrongkey.h5")


def test_npy(tmp_path):
    rng = np.random.default_rng(4)
    np.save(tmp_path / "s.npy", rng.random((3, 10, 11)))
    assert len(read_images(tmp_path / "s.npy")) == 3
    np.save(tmp_path / "rgb.npy", (rng.random((10, 11, 3)) * 255).astype(np.uint8))
    (r,) = read_images(tmp_path / "rgb.npy")
    assert r.kind == "photo" and r.image.shape == (10, 11, 3)
    np.save(tmp_path / "c.npy", (rng.random((10, 11)) + 1j).astype(np.complex64))
    assert read_images(tmp_path / "c.npy")[0].image.dtype == np.float32
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="obj.npy"):
        read_images(tmp_path / "obj.npy")



def test_npz_reads_every_array_as_slices_in_stored_order_or_the_one_named(tmp_path):
    rng = np.random.default_rng(5)
    first, stack = rng.random((10, 11)), rng.random((2, 10, 11))
    np.savez(tmp_path / "a.npz", first, stack)  # arr_0, arr_1
    records = read_images(tmp_path / "a.npz")
    assert [r.slice for r in records] == [0, 1, 2] and all(r.kind == "mri" for r in records)
    np.testing.assert_array_equal(records[0].image, first)
    np.testing.assert_array_equal(records[2].image, stack[1])
    (one,) = read_images(tmp_path / "a.npz", h5_key="arr_0")
    assert one.slice is None
    np.testing.assert_array_equal(one.image, first)
    with pytest.raises(InputError, match=r"a\.npz: no array 'image' in the archive \(found: arr_0, arr_1\)"):
        read_images(tmp_path / "a.npz", h5_key="image")
    np.savez(tmp_path / "nan.npz", ok=first, bad=np.full((10, 11), np.nan))
    with pytest.raises(InputError, match=r"nan\.npz.*NaN"):
        read_images(tmp_path / "nan.npz")
    np.savez(tmp_path / "vec.npz", v=np.zeros(5))
    with pytest.raises(InputError, match=r"array 'v': expected a 2-D image"):
        read_images(tmp_path / "vec.npz")
    np.savez(tmp_path / "obj.npz", o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match=r"obj\.npz: cannot read as \.npz"):
        read_images(tmp_path / "obj.npz")
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(InputError, match="holds no array"):
        read_images(tmp_path / "empty.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"junk\.npz: cannot read as \.npz"):
        read_images(tmp_path / "junk.npz")


# ----------------------------------------------------------------------------------------------- normalisation
def test_to_unit_range_rules():
    u8 = np.array([[0, 128, 255]], np.uint8)
    np.testing.assert_allclose(to_unit_range(u8, "photo"), u8 / 255.0, atol=1e-7)
    u16 = np.array([[0, 65535]], np.uint16)
    np.testing.assert_allclose(to_unit_range(u16, "photo"), [[0.0, 1.0]])
    mri = np.linspace(0, 1000, 1000, dtype=np.float64).reshape(25, 40)
    out = to_unit_range(mri, "mri")
    assert out.dtype == np.float32 and out.max() == 1.0 and out.min() == 0.0
    p = np.percentile(mri, 99.5)
    np.testing.assert_allclose(out, quantize_8bit(np.clip(mri / p, 0, 1)))
    np.testing.assert_array_equal(out, quantize_8bit(out))  # on the 1/255 grid
    # scale invariance of the MRI normalisation
    np.testing.assert_array_equal(to_unit_range(mri * 37.0, "mri"), out)
    with pytest.raises(InputError, match="all zero"):
        to_unit_range(np.zeros((8, 8)), "mri", source="zeros.nii")
    with pytest.raises(InputError, match="NaN"):
        to_unit_range(np.array([[np.nan, 1.0]]), "mri")
    with pytest.raises(InputError, match="kind='mri'"):
        to_unit_range(np.array([[0.0, 3.0]]), "photo")
    complex_img = (mri + 1j * mri).astype(np.complex64)
    np.testing.assert_array_equal(to_unit_range(complex_img, "mri"), out)


def test_as_model_input_channels():
    rng = np.random.default_rng(5)
    rgb = (rng.random((30, 31, 3)) * 255).astype(np.uint8)
    g = as_model_input(rgb, 1)
    assert g.shape == (1, 1, 30, 31) and g.dtype == torch.float32
    luma = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    np.testing.assert_allclose(g[0, 0].numpy(), np.round(luma) / 255.0, atol=1e-6)
    pil = np.asarray(Image.fromarray(rgb).convert("L"), np.float32) / 255.0
    assert np.abs(g[0, 0].numpy() - pil).max() <= 1 / 255 + 1e-6  # Pillow uses fixed-point, +-1 level
    gray = (rng.random((30, 31)) * 255).astype(np.uint8)
    c3 = as_model_input(gray, 3)
    assert c3.shape == (1, 3, 30, 31) and torch.equal(c3[0, 0], c3[0, 2])
    rgba = np.concatenate([rgb, np.zeros((30, 31, 1), np.uint8)], axis=-1)
    assert torch.equal(as_model_input(rgba, 3), as_model_input(rgb, 3))
    assert as_model_input(torch.from_numpy(rgb), 3).shape == (1, 3, 30, 31)
    m = as_model_input(rng.random((20, 20)) * 500, 1, kind="mri")
    assert float(m.max()) == 1.0
    with pytest.raises(InputError):
        as_model_input(np.zeros((4, 5, 6, 7)), 1)
    with pytest.raises(InputError):
        as_model_input(rgb.astype(np.float32), 1, kind="mri")


def test_max_pixels_is_checked_from_the_header(tmp_path):
    from PIL import Image as PILImage

    PILImage.new("L", (300, 200)).save(tmp_path / "wide.png")
    with pytest.raises(InputError, match=r"wide\.png: image is 300x200 = 0\.1 megapixels, more than the limit"):
        read_images(tmp_path / "wide.png", max_pixels=50_000)
    assert read_images(tmp_path / "wide.png", max_pixels=60_000)[0].image.shape == (200, 300)
    np.save(tmp_path / "s.npy", np.ones((2, 300, 200), np.float32))
    with pytest.raises(InputError, match=r"s\.npy \[slice 0\]: image is 200x300"):
        read_images(tmp_path / "s.npy", max_pixels=50_000)


def test_volume_axes_conventions(tmp_path):
    """One reader, three documented conventions: "ras" (simulation), "stored" (QF training), display records."""
    import nibabel as nib

    from recon.io.volumes import read_volume as read

    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    nib.save(nib.Nifti1Image(data, np.diag([-2.0, 1.0, 3.0, 1.0])), tmp_path / "v.nii.gz")  # LAS
    np.testing.assert_array_equal(read(tmp_path / "v.nii.gz").data, data[::-1])  # RAS+
    np.testing.assert_array_equal(read(tmp_path / "v.nii.gz", axes="stored").data, np.moveaxis(data, -1, 0))
    np.testing.assert_array_equal(read_images(tmp_path / "v.nii.gz")[3].image, np.flipud(data[:, :, 3].T))
    _write_h5(tmp_path / "r.h5", np.ones((2, 8, 8), np.float32), key="reconstruction")
    assert read(tmp_path / "r.h5").data.shape == (2, 8, 8)
    with pytest.raises(ValueError, match="axes"):
        read(tmp_path / "v.nii.gz", axes="lps")
