"""recon.io: fastMRI h5 (read/write, SliceDataset compatibility, bad input), BART cfl, magnitude volumes."""
from __future__ import annotations

import copy
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.errors import InputError
from recon.io.bart import cfl_to_kspace, read_cfl, read_cfl_dims, read_cfl_kspace, write_cfl
from recon.io.fastmri_h5 import (
    read_kspace,
    read_reconstruction,
    write_fastmri_h5,
    write_reconstruction_h5,
)
from recon.io.volumes import read_volume, reslice

SMALLFOV = Path("mri") / "kspace" / "smallfov-brain8ch" / "smallfov"


def _kspace(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _rss(kspace: np.ndarray) -> np.ndarray:
    return np.sqrt((np.abs(kspace) ** 2).sum(axis=1)).astype(np.float32)


def _assert_one_line_error(excinfo, path: Path, words: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    assert words in message, message


# ----------------------------------------------------------------------------------------------- fastMRI h5


@pytest.fixture()
def multicoil_file(tmp_path) -> tuple[Path, np.ndarray]:
    kspace = _kspace((3, 4, 20, 12))
    path = tmp_path / "multicoil" / "vol.h5"
    write_fastmri_h5(path, kspace, reconstruction_rss=_rss(kspace), acquisition="AXT1", patient_id="abc",
                     attrs={"snr": 40.0})
    return path, kspace


def test_multicoil_round_trip(multicoil_file):
    path, kspace = multicoil_file
    volume = read_kspace(path)
    assert volume.kspace.dtype == np.complex64 and volume.kspace.shape == (3, 4, 20, 12)
    np.testing.assert_array_equal(volume.kspace, kspace)
    np.testing.assert_allclose(volume.target, _rss(kspace))
    assert volume.target_key == "reconstruction_rss" and volume.mask is None and not volume.single_coil
    assert volume.attrs["acquisition"] == "AXT1" and volume.attrs["patient_id"] == "abc"
    assert volume.attrs["max"] == pytest.approx(float(_rss(kspace).max()))
    assert volume.attrs["norm"] == pytest.approx(float(np.linalg.norm(_rss(kspace))), rel=1e-6)
    assert volume.attrs["snr"] == 40.0
    assert volume.encoding_size == (20, 12, 1) and volume.recon_size == (20, 12, 1)
    with h5py.File(path) as hf:  # stored exactly in fastMRI's layout
        assert hf["kspace"].dtype == np.complex64 and hf["kspace"].shape == (3, 4, 20, 12)
        assert hf["reconstruction_rss"].dtype == np.float32
    sub = read_kspace(path, slices=[0, 2])
    np.testing.assert_array_equal(sub.kspace, kspace[[0, 2]])
    assert sub.target.shape == (2, 20, 12)


def test_singlecoil_file_gets_coil_axis(tmp_path):
    kspace = _kspace((2, 16, 10))
    esc = np.abs(kspace).astype(np.float32)
    path = write_fastmri_h5(tmp_path / "single.h5", kspace, reconstruction_esc=esc, mask=np.ones(10))
    volume = read_kspace(path)
    assert volume.single_coil and volume.kspace.shape == (2, 1, 16, 10)
    np.testing.assert_array_equal(volume.kspace[:, 0], kspace)
    assert volume.target_key == "reconstruction_esc"
    assert volume.mask.shape == (1, 1, 10) and volume.mask.dtype == np.float32
    with h5py.File(path) as hf:
        assert hf["kspace"].shape == (2, 16, 10) and hf["mask"].shape == (10,)


@pytest.mark.parametrize("challenge", ["multicoil", "singlecoil"])
def test_fastmri_slicedataset_reads_our_files(tmp_path, challenge):
    from fastmri.data import SliceDataset

    root = tmp_path / challenge
    volumes = {}
    for index in range(2):
        if challenge == "multicoil":
            kspace = _kspace((2 + index, 3, 16, 12), seed=index)
            write_fastmri_h5(root / f"file{index}.h5", kspace, reconstruction_rss=_rss(kspace))
            target = _rss(kspace)
        else:
            kspace = _kspace((2 + index, 16, 12), seed=index)
            target = np.abs(kspace).astype(np.float32)
            write_fastmri_h5(root / f"file{index}.h5", kspace, reconstruction_esc=target,
                             reconstruction_rss=target)
        volumes[f"file{index}.h5"] = (kspace, target)
    dataset = SliceDataset(root, challenge=challenge, transform=None)
    assert len(dataset) == 2 + 3
    for i in range(len(dataset)):
        kspace, mask, target, attrs, fname, slice_index = dataset[i]
        expected_kspace, expected_target = volumes[fname]
        np.testing.assert_array_equal(kspace, expected_kspace[slice_index])
        np.testing.assert_array_equal(target, expected_target[slice_index])
        assert mask is None
        assert attrs["padding_left"] == 0 and attrs["padding_right"] == 12
        assert attrs["encoding_size"] == (16, 12, 1) and attrs["recon_size"] == (16, 12, 1)
        assert attrs["max"] == pytest.approx(float(expected_target.max()))


def test_fastmri_varnet_transform_runs_on_our_files(multicoil_file):
    from fastmri.data import SliceDataset
    from fastmri.data.subsample import RandomMaskFunc
    from fastmri.data.transforms import VarNetDataTransform

    path, kspace = multicoil_file
    transform = VarNetDataTransform(mask_func=RandomMaskFunc([0.25], [2], seed=0))
    sample = SliceDataset(path.parent, challenge="multicoil", transform=transform)[0]
    assert tuple(sample.masked_kspace.shape) == (4, 20, 12, 2)
    assert tuple(sample.target.shape) == (20, 12) and sample.crop_size == (20, 12)
    assert sample.max_value == pytest.approx(float(_rss(kspace).max()))


def _h5(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as hf:
        for key, value in datasets.items():
            hf.create_dataset(key, data=value)
    return path


def test_not_hdf5_is_input_error(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not an hdf5 file\n")
    with pytest.raises(InputError) as excinfo:
        read_kspace(path)
    _assert_one_line_error(excinfo, path, "not an HDF5 file")
    with pytest.raises(InputError):
        read_kspace(tmp_path / "missing.h5")


def test_truncated_file_is_input_error(multicoil_file, tmp_path):
    path, _ = multicoil_file
    truncated = tmp_path / "truncated.h5"
    data = path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as excinfo:
        read_kspace(truncated)
    _assert_one_line_error(excinfo, truncated, "truncated")


def test_missing_kspace_is_input_error(tmp_path):
    path = _h5(tmp_path / "nok.h5", reconstruction_rss=np.ones((1, 4, 4), np.float32))
    with pytest.raises(InputError) as excinfo:
        read_kspace(path)
    _assert_one_line_error(excinfo, path, "no 'kspace' dataset")


@pytest.mark.parametrize("shape", [(8, 8), (1, 1, 2, 8, 8)])
def test_wrong_rank_is_input_error(tmp_path, shape):
    path = _h5(tmp_path / "rank.h5", kspace=_kspace(shape))
    with pytest.raises(InputError) as excinfo:
        read_kspace(path)
    _assert_one_line_error(excinfo, path, f"rank {len(shape)}")


def test_real_valued_kspace_is_input_error(tmp_path):
    path = _h5(tmp_path / "real.h5", kspace=np.ones((1, 2, 8, 8), np.float32))
    with pytest.raises(InputError) as excinfo:
        read_kspace(path)
    _assert_one_line_error(excinfo, path, "expected complex64")


@pytest.mark.parametrize("bad", [np.nan, np.inf, complex(0, -np.inf)])
def test_non_finite_kspace_is_input_error(tmp_path, bad):
    kspace = _kspace((2, 2, 8, 8))
    kspace[1, 0, 3, 4] = bad
    path = _h5(tmp_path / "nan.h5", kspace=kspace)
    with pytest.raises(InputError) as excinfo:
        read_kspace(path)
    _assert_one_line_error(excinfo, path, "NaN or Inf")


def test_all_zero_kspace_is_input_error(tmp_path):
    path = _h5(tmp_path / "zero.h5", kspace=np.zeros((2, 2, 8, 8), np.complex64))
    with pytest.raises(InputError) as excinfo:
        read_kspace(path)
    _assert_one_line_error(excinfo, path, "all zero")
    kspace = _kspace((3, 2, 8, 8))
    kspace[1] = 0
    path = _h5(tmp_path / "zero_slice.h5", kspace=kspace)
    with pytest.raises(InputError) as excinfo:
        read_kspace(path)
    _assert_one_line_error(excinfo, path, "slice 1 is all zero")


def test_all_zero_or_misshaped_mask_is_input_error(tmp_path):
    path = _h5(tmp_path / "mask0.h5", kspace=_kspace((1, 2, 8, 6)), mask=np.zeros(6, bool))
    with pytest.raises(InputError) as excinfo:
        read_kspace(path)
    _assert_one_line_error(excinfo, path, "'mask' is all zero")
    path = _h5(tmp_path / "mask_shape.h5", kspace=_kspace((1, 2, 8, 6)), mask=np.ones(7, bool))
    with pytest.raises(InputError) as excinfo:
        read_kspace(path)
    _assert_one_line_error(excinfo, path, "'mask' has shape (7,)")


def test_writer_refuses_bad_data_and_leaves_no_file(tmp_path):
    kspace = _kspace((1, 2, 8, 8))
    kspace[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError):
        write_fastmri_h5(tmp_path / "bad.h5", kspace)
    with pytest.raises(InputError):
        write_fastmri_h5(tmp_path / "bad.h5", _kspace((1, 2, 8, 8)), mask=np.zeros(8))
    assert list(tmp_path.iterdir()) == []


def test_reconstruction_round_trip(tmp_path):
    image = np.random.default_rng(0).random((2, 10, 8)).astype(np.float32)
    mask = np.zeros((1, 1, 8), np.float32)
    mask[..., ::2] = 1
    path = write_reconstruction_h5(tmp_path / "recon.h5", image, mask=mask,
                                   attrs={"method": "zf", "acceleration": 2.0, "seed": None})
    recon = read_reconstruction(path)
    np.testing.assert_array_equal(recon.image, image)
    np.testing.assert_array_equal(recon.mask, mask)
    assert recon.key == "reconstruction"
    assert recon.attrs == {"method": "zf", "acceleration": 2.0, "seed": "none"}
    with h5py.File(path) as hf:
        assert hf["mask"].shape == (8,)
    # a raw-data file's target reads as the reference
    kspace = _kspace((1, 2, 10, 8))
    raw = write_fastmri_h5(tmp_path / "raw.h5", kspace, reconstruction_rss=_rss(kspace))
    assert read_reconstruction(raw).key == "reconstruction_rss"
    with pytest.raises(InputError):
        read_reconstruction(raw, key="reconstruction")


def test_reconstruction_attrs_have_one_owner(tmp_path):
    from recon.io.fastmri_h5 import ReconstructionAttrs, read_reconstruction_attrs

    written = ReconstructionAttrs(method="sense", acceleration=4.0, acceleration_effective=3.37, mask_type="random",
                                  center_fraction=0.08, num_low_frequencies=10, seed=None, retrospective=True,
                                  num_maps=1)
    path = write_reconstruction_h5(tmp_path / "r.h5", np.ones((1, 8, 8), np.float32), attrs=written)
    assert read_reconstruction_attrs(path) == written  # typed back: float, int, bool, None
    assert read_reconstruction(path).info == written
    # a plain dict as mriqa recon writes it, "none" for None, 0/1 for booleans
    write_reconstruction_h5(tmp_path / "d.h5", np.ones((8, 8), np.float32),
                            attrs={"method": "zf", "acceleration": 2, "seed": None, "retrospective": False,
                                   "other": "kept"})
    info = read_reconstruction_attrs(tmp_path / "d.h5")
    assert (info.method, info.acceleration, info.seed, info.retrospective) == ("zf", 2.0, None, False)
    assert isinstance(info.acceleration, float) and info.mask_type is None
    assert read_reconstruction(tmp_path / "d.h5").attrs["other"] == "kept"
    assert ReconstructionAttrs.from_attrs({"acceleration": "fast"}).acceleration is None  # a foreign meaning
    (tmp_path / "text.h5").write_text("not HDF5")
    with pytest.raises(InputError, match="not an HDF5"):
        read_reconstruction_attrs(tmp_path / "text.h5")


def test_read_reconstruction_complex_and_nan_slice(tmp_path):
    data = (np.random.default_rng(0).random((3, 6, 5)) + 1j).astype(np.complex64)
    with h5py.File(tmp_path / "c.h5", "w") as hf:
        hf["reconstruction"] = data
    np.testing.assert_allclose(read_reconstruction(tmp_path / "c.h5").image, np.abs(data), rtol=1e-6)
    bad = np.abs(data)
    bad[1, 2, 2] = np.nan
    with h5py.File(tmp_path / "n.h5", "w") as hf:
        hf["reconstruction"] = bad
        hf["mask"] = np.ones(99)  # a raw-data file's k-space-width mask: ignored with with_mask=False
    with pytest.raises(InputError, match=r"n\.h5: slice 1 contains NaN or Inf values \(in 'reconstruction'\)"):
        read_reconstruction(tmp_path / "n.h5", with_mask=False)


# ----------------------------------------------------------------------------------------------- BART


@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4, 5), (3, 1, 4, 1, 1)])
def test_cfl_round_trip_fortran_order(tmp_path, shape):
    array = _kspace(shape, seed=len(shape))
    base = write_cfl(tmp_path / "arr", array)
    assert (tmp_path / "arr.cfl").is_file() and (tmp_path / "arr.hdr").is_file()
    raw = np.fromfile(tmp_path / "arr.cfl", dtype=np.complex64)
    np.testing.assert_array_equal(raw, array.ravel(order="F"))  # column-major on disk
    assert read_cfl_dims(base) == shape
    back = read_cfl(tmp_path / "arr.cfl")
    trimmed = shape
    while len(trimmed) > 1 and trimmed[-1] == 1:
        trimmed = trimmed[:-1]
    assert back.shape == trimmed and back.dtype == np.complex64
    np.testing.assert_array_equal(back.reshape(shape), array)


def test_cfl_header_without_trailing_dims_and_errors(tmp_path):
    array = _kspace((4, 3))
    array.ravel(order="F").tofile(tmp_path / "a.cfl")
    (tmp_path / "a.hdr").write_text("# Dimensions\n4 3\n# Command\nbart something\n")
    np.testing.assert_array_equal(read_cfl(tmp_path / "a"), array)
    (tmp_path / "a.hdr").write_text("# Dimensions\n4 3 2\n")
    with pytest.raises(InputError) as excinfo:
        read_cfl(tmp_path / "a.hdr")
    _assert_one_line_error(excinfo, tmp_path / "a.cfl", "truncated")
    (tmp_path / "a.hdr").write_text("nothing useful\n")
    with pytest.raises(InputError):
        read_cfl(tmp_path / "a")
    with pytest.raises(InputError):
        read_cfl(tmp_path / "missing")


def test_cfl_to_kspace_layouts():
    two_d = _kspace((10, 6, 1, 3))  # [READ, PHS1, PHS2=1, COIL]
    kspace = cfl_to_kspace(two_d)
    assert kspace.shape == (1, 3, 10, 6)
    np.testing.assert_array_equal(kspace[0, 2], two_d[:, :, 0, 2])
    with pytest.raises(InputError):
        cfl_to_kspace(_kspace((4, 5, 6, 2)))  # 3-D k-space
    with pytest.raises(InputError):
        cfl_to_kspace(_kspace((4, 5, 1, 2, 2)))  # MAPS dim


def test_real_smallfov_cfl(shared_data):
    base = shared_data / SMALLFOV
    assert read_cfl_dims(base) == (1, 320, 168, 8, 1)
    array = read_cfl(base)
    assert array.shape == (1, 320, 168, 8) and array.dtype == np.complex64
    volume = read_cfl_kspace(base)
    assert volume.kspace.shape == (1, 8, 320, 168)
    np.testing.assert_array_equal(volume.kspace[0, 3], array[0, :, :, 3])
    assert volume.mask.shape == (1, 1, 168)
    assert int(volume.mask.sum()) == 96  # 96 of 168 phase-encode lines acquired
    columns = volume.mask[0, 0].astype(bool)
    assert columns[72:96].all()  # a 24-line fully sampled centre
    energy = np.abs(volume.kspace[0]).sum(axis=0)
    assert abs(int(np.argmax(energy.sum(axis=1))) - 160) <= 2  # k-space centre at H // 2
    assert abs(int(np.argmax(energy.sum(axis=0))) - 84) <= 2  # and at W // 2


# ----------------------------------------------------------------------------------------------- volumes


def _dicom_series(folder: Path, num_slices: int = 3) -> np.ndarray:
    import pydicom
    from pydicom.data import get_testdata_file

    template = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    folder.mkdir()
    rows, cols = template.Rows, template.Columns
    order = [2, 0, 1] if num_slices == 3 else list(range(num_slices))
    for file_index, k in enumerate(order):
        ds = copy.deepcopy(template)
        pixels = np.full((rows, cols), 100 * (k + 1), dtype=np.int16)
        pixels[0, 1] = 7  # marks row 0, column 1
        ds.PixelData = pixels.tobytes()
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]  # axial: rows along +x (L), columns along +y (P)
        ds.ImagePositionPatient = [0, 0, 2.0 * k]  # 2 mm apart, increasing z (S)
        ds.PixelSpacing = [0.5, 0.75]
        ds.InstanceNumber = k + 1
        ds.RescaleSlope, ds.RescaleIntercept = 2, 1
        ds.save_as(folder / f"img{file_index:03d}")  # no extension, shuffled order on disk
    (folder / "notes.txt").write_text("not DICOM")
    return np.array([100 * (k + 1) * 2 + 1 for k in range(num_slices)], dtype=np.float32)


def test_dicom_series_sorted_and_reoriented(tmp_path):
    levels = _dicom_series(tmp_path / "series")
    volume = read_volume(tmp_path / "series")
    rows, cols = 64, 64
    # canonical RAS+: axis 0 = x (L->R: DICOM columns run to +x = L, so reversed), axis 1 = y (P->A:
    # DICOM rows run to +y = P, so reversed), axis 2 = z (I->S: slices in increasing z)
    assert volume.ras and volume.data.shape == (cols, rows, 3) and volume.data.dtype == np.float32
    np.testing.assert_allclose(volume.spacing, (0.75, 0.5, 2.0))
    np.testing.assert_allclose(volume.data[10, 10, :], levels)  # sorted by position, rescale applied
    assert volume.data[cols - 1 - 1, rows - 1 - 0, 0] == 7 * 2 + 1
    axial = reslice(volume, "axial")
    assert axial.shape == (3, rows, cols)


def test_dicom_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("hello")
    with pytest.raises(InputError) as excinfo:
        read_volume(tmp_path / "empty")
    _assert_one_line_error(excinfo, tmp_path / "empty", "no readable DICOM")


def test_nifti_reoriented_and_4d_first_volume(tmp_path):
    import nibabel as nib

    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    affine = np.diag([-2.0, 1.0, 3.0, 1.0])  # LAS: first axis runs right -> left
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "vol.nii.gz")
    volume = read_volume(tmp_path / "vol.nii.gz")
    np.testing.assert_array_equal(volume.data, data[::-1])
    assert volume.spacing == (2.0, 1.0, 3.0) and volume.ras
    four_d = np.stack([data, data + 1000], axis=-1)
    nib.save(nib.Nifti1Image(four_d, np.eye(4)), tmp_path / "vol4d.nii")
    with pytest.warns(UserWarning, match="first volume"):
        first = read_volume(tmp_path / "vol4d.nii")
    np.testing.assert_array_equal(first.data, data)
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(InputError) as excinfo:
        read_volume(tmp_path / "broken.nii.gz")
    _assert_one_line_error(excinfo, tmp_path / "broken.nii.gz", "cannot read as NIfTI")


def test_images_as_grayscale_float(tmp_path):
    from PIL import Image

    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.bmp")
    gray16 = (np.arange(6 * 7, dtype=np.uint16).reshape(6, 7) * 1000)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    Image.fromarray(gray16.astype(np.float32)).save(tmp_path / "g.tiff")
    for name in ("rgb.png", "rgb.bmp"):
        volume = read_volume(tmp_path / name)
        assert volume.data.shape == (1, 6, 7) and volume.data.dtype == np.float32 and not volume.ras
        np.testing.assert_allclose(volume.data, 0.299 * 200 + 0.587 * 100 + 0.114 * 50, rtol=1e-6)
    np.testing.assert_array_equal(read_volume(tmp_path / "g16.png").data[0], gray16)
    np.testing.assert_array_equal(read_volume(tmp_path / "g.tiff").data[0], gray16)
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=95)
    assert read_volume(tmp_path / "rgb.jpg").data.shape == (1, 6, 7)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(InputError) as excinfo:
        read_volume(tmp_path / "bad.png")
    _assert_one_line_error(excinfo, tmp_path / "bad.png", "cannot read as an image")


def test_npy(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((4, 5)))
    assert read_volume(tmp_path / "a.npy").data.shape == (1, 4, 5)
    bad = np.ones((2, 4, 5))
    bad[1, 2, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(InputError) as excinfo:
        read_volume(tmp_path / "nan.npy")
    _assert_one_line_error(excinfo, tmp_path / "nan.npy", "NaN or Inf")
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(InputError):
        read_volume(tmp_path / "empty.npy")
    with pytest.raises(InputError):
        read_volume(tmp_path / "nothing.npy")
    (tmp_path / "text.npy").write_text("x")  # NumPy would call this pickled data and advise allow_pickle
    with pytest.raises(InputError) as excinfo:
        read_volume(tmp_path / "text.npy")
    _assert_one_line_error(excinfo, tmp_path / "text.npy", "not a .npy file")
    np.save(tmp_path / "objects.npy", np.array([1, None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError) as excinfo:
        read_volume(tmp_path / "objects.npy")
    _assert_one_line_error(excinfo, tmp_path / "objects.npy", "holds Python objects")
    assert "allow_pickle" not in str(excinfo.value)


def test_real_mprage_and_templates(shared_data):
    import nibabel as nib

    root = shared_data / "mri" / "volumes"
    mprage = read_volume(root / "trio-mprage-t1")
    assert mprage.data.shape == (176, 256, 256) and mprage.ras  # 176 sagittal DICOM slices -> axis 0 = x
    np.testing.assert_allclose(mprage.spacing, (1, 1, 1), atol=1e-6)
    assert 1000 < mprage.data.max() <= 1579
    colin = read_volume(root / "colin27" / "ch2.nii.gz")
    assert colin.data.shape == (181, 217, 181)
    for volume in (mprage, colin):
        assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
