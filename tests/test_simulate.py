"""recon.simulate: the slice model (phase, maps, noise at a stated SNR), the dataset, the demo slice, the CLI."""
from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

from recon.coils import birdcage_maps
from recon.errors import InputError
from recon.fft import ifft2c_np
from recon.demo_data import DEMO_COIL_RADIUS, demo_slice
from recon.simulate import (
    SimulationConfig,
    crop_to_fill,
    make_dataset,
    random_bias,
    random_contrast,
    resize_kspace,
    resize_slice,
    simulate_slice,
    smooth_random_phase,
)
from recon.slice_transforms import spectrum_share_beyond


def _magnitude(size: int = 64) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    inside = ((y - size / 2) ** 2 + (x - size / 2) ** 2) < (0.4 * size) ** 2
    return (inside * (0.6 + 0.4 * np.sin(x / 5.0) ** 2)).astype(np.float32)


def test_smooth_random_phase():
    phase = smooth_random_phase(64, 64, np.random.default_rng(0))
    assert phase.shape == (64, 64) and phase.dtype == np.float32
    assert np.abs(phase).max() == pytest.approx(math.pi, rel=1e-5)
    assert np.abs(np.diff(phase, axis=0)).max() < 0.5 and np.abs(np.diff(phase, axis=1)).max() < 0.5  # smooth
    again = smooth_random_phase(64, 64, np.random.default_rng(0))
    other = smooth_random_phase(64, 64, np.random.default_rng(1))
    np.testing.assert_array_equal(phase, again)
    assert not np.allclose(phase, other)


def test_noiseless_slice_rss_is_the_magnitude():
    magnitude = _magnitude()
    maps = birdcage_maps(6, 64, 64)
    kspace, rss, info = simulate_slice(magnitude, maps, math.inf, np.random.default_rng(0))
    assert kspace.shape == (6, 64, 64) and kspace.dtype == np.complex64 and rss.dtype == np.float32
    assert info["noise_std"] == 0
    np.testing.assert_allclose(rss, magnitude, atol=1e-5)  # sum_c |S_c|^2 = 1
    coil_images = ifft2c_np(kspace)
    combined = np.sum(maps.conj() * coil_images, axis=0)  # SENSE combination: m exp(i phase)
    np.testing.assert_allclose(np.abs(combined), magnitude, atol=1e-5)
    assert np.abs(np.angle(combined[magnitude > 0])).max() > 0.5  # the phase is really there


def test_noise_level_matches_the_snr_definition():
    magnitude = _magnitude()
    maps = birdcage_maps(8, 64, 64)
    clean, _, _ = simulate_slice(magnitude, maps, math.inf, np.random.default_rng(3))
    noisy, _, info = simulate_slice(magnitude, maps, 40.0, np.random.default_rng(3))  # same phase draw first
    foreground_mean = magnitude[magnitude > 0.1].mean()
    assert info["foreground_mean"] == pytest.approx(foreground_mean, rel=1e-6)
    assert info["noise_std"] == pytest.approx(foreground_mean / 40.0, rel=1e-6)
    noise = noisy - clean
    measured = np.sqrt(np.mean(np.abs(noise) ** 2))  # E|n|^2 = sigma^2, 32768 samples
    assert measured == pytest.approx(info["noise_std"], rel=0.03)
    assert np.std(noise.real) == pytest.approx(np.std(noise.imag), rel=0.05)
    image_noise = ifft2c_np(noise)  # orthonormal FFT: the same sigma in the image domain
    assert np.sqrt(np.mean(np.abs(image_noise) ** 2)) == pytest.approx(measured, rel=1e-4)


def test_demo_slice_deterministic_without_shared_data():
    kspace, rss, info = demo_slice(size=64, coils=4, snr=40, seed=0)
    assert kspace.shape == (1, 4, 64, 64) and kspace.dtype == np.complex64
    assert rss.shape == (1, 64, 64) and rss.dtype == np.float32
    again = demo_slice(size=64, coils=4, snr=40, seed=0)
    other = demo_slice(size=64, coils=4, snr=40, seed=1)
    np.testing.assert_array_equal(kspace, again[0])
    np.testing.assert_array_equal(rss, again[1])
    assert not np.allclose(kspace, other[0])
    assert info["coil_maps"] == "birdcage" and info["snr"] == 40 and "dipy" in info["description"]
    assert info["coil_radius"] == DEMO_COIL_RADIUS and f"radius {DEMO_COIL_RADIUS:g}" in info["description"]
    assert info["noise_std"] == pytest.approx(info["foreground_mean"] / 40)
    # a brain: foreground in the middle, empty corners (up to noise)
    assert rss[0, 24:40, 24:40].mean() > 10 * rss[0, :6, :6].mean()


def _small_config(**changes) -> SimulationConfig:
    settings = dict(size=32, coils=3, snr=40.0, slice_step=8, max_slices_per_file=2, seed=0)
    settings.update(changes)
    return SimulationConfig(**settings)


def _kspace_of(path) -> np.ndarray:
    with h5py.File(path) as hf:
        return hf["kspace"][()]


def test_dataset_layout_manifest_and_slicedataset(shared_data, tmp_path):
    from fastmri.data import SliceDataset

    out = tmp_path / "sim"
    manifest = make_dataset(out, shared_data, _small_config(), progress=False)
    assert set(manifest["splits"]) == {"train", "val", "test"}
    volumes = {split: {entry["volume"] for entry in files} for split, files in manifest["splits"].items()}
    assert volumes == {"train": {"trio-mprage-t1"}, "val": {"mni152"}, "test": {"colin27"}}  # split by volume
    on_disk = json.loads((out / "dataset.json").read_text())
    assert on_disk["splits"] == manifest["splits"] and "SNR" in on_disk["choices"]["snr"]
    assert on_disk["config"]["snr"] == 40.0 and on_disk["config"]["coil_maps"] == "birdcage"
    for split, files in manifest["splits"].items():
        assert sorted(entry["orientation"] for entry in files) == ["axial", "coronal", "sagittal"]
        dataset = SliceDataset(out / f"multicoil_{split}", challenge="multicoil", transform=None)
        assert len(dataset) == sum(entry["num_slices"] for entry in files)
        kspace, mask, target, attrs, fname, _ = dataset[0]
        assert kspace.shape == (3, 32, 32) and kspace.dtype == np.complex64 and mask is None
        assert target.shape == (32, 32) and target.dtype == np.float32
        assert attrs["encoding_size"] == (32, 32, 1) and attrs["split"] == split
        assert attrs["snr"] == 40.0 and attrs["orientation"] in fname
        assert attrs["max"] == pytest.approx(float(_rss_max(out / f"multicoil_{split}" / fname)))
    with h5py.File(out / "multicoil_train" / "trio-mprage-t1_sagittal.h5") as hf:
        assert hf.attrs["source_volume"] == "mri/volumes/trio-mprage-t1"
        assert hf.attrs["coil_maps"] == "birdcage,birdcage" and len(hf.attrs["noise_std"]) == 2
        rss = np.sqrt((np.abs(ifft2c_np(hf["kspace"][()])) ** 2).sum(axis=1))
        np.testing.assert_allclose(hf["reconstruction_rss"][()], rss, rtol=1e-4, atol=1e-5)


def _rss_max(path) -> float:
    with h5py.File(path) as hf:
        return float(hf["reconstruction_rss"][()].max())


def test_dataset_deterministic_by_seed_and_independent_of_subset(shared_data, tmp_path):
    splits = {"test": ["colin27"]}
    config = _small_config(splits=splits, orientations=("coronal",))
    make_dataset(tmp_path / "a", shared_data, config, progress=False)
    make_dataset(tmp_path / "b", shared_data, _small_config(splits={"val": ["mni152"], "test": ["colin27"]}),
                 progress=False)
    make_dataset(tmp_path / "c", shared_data, _small_config(splits=splits, orientations=("coronal",), seed=1),
                 progress=False)
    name = "colin27_coronal.h5"
    a = _kspace_of(tmp_path / "a" / "multicoil_test" / name)
    b = _kspace_of(tmp_path / "b" / "multicoil_test" / name)
    c = _kspace_of(tmp_path / "c" / "multicoil_test" / name)
    np.testing.assert_array_equal(a, b)  # same seed: same data, whatever else was simulated
    assert a.shape == c.shape and not np.allclose(a, c)


def test_dataset_snr_range_draws_per_slice_and_keeps_fixed_snr_data(shared_data, tmp_path):
    splits = {"test": ["colin27"]}
    fixed = make_dataset(tmp_path / "a", shared_data, _small_config(splits=splits, max_slices_per_file=4,
                                                                     slice_step=4), progress=False)
    ranged = make_dataset(tmp_path / "b", shared_data, _small_config(splits=splits, max_slices_per_file=4,
                                                                      slice_step=4, snr_max=400.0), progress=False)
    assert fixed["config"]["snr_max"] is None and ranged["config"]["snr_max"] == 400.0
    for orientation in ("axial", "coronal"):
        name = f"multicoil_test/colin27_{orientation}.h5"
        with h5py.File(tmp_path / "a" / name) as a, h5py.File(tmp_path / "b" / name) as b:
            np.testing.assert_array_equal(a.attrs["snr_per_slice"], 40.0)
            snrs, noise_a, noise_b = b.attrs["snr_per_slice"], a.attrs["noise_std"], b.attrs["noise_std"]
            assert np.all((snrs >= 40.0) & (snrs <= 400.0)) and len(set(snrs.round(6))) == len(snrs)
            # same anatomy and maps, so sigma = foreground mean / SNR scales as 40 / SNR
            np.testing.assert_allclose(noise_b, noise_a * 40.0 / snrs, rtol=1e-6)
    with pytest.raises(InputError, match="upper end"):
        make_dataset(tmp_path / "x", shared_data, _small_config(snr_max=10.0), progress=False)
    assert not (tmp_path / "x").exists()

def test_crop_to_fill_makes_the_object_span_the_asked_fraction():
    image = np.zeros((200, 200), np.float32)
    image[40:100, 70:150] = 1.0  # an 60 x 80 object off centre
    image[195, 3] = 1.0  # a stray bright pixel: not part of the object's extent
    for fill in (0.5, 0.8, 1.0):
        out = crop_to_fill(image, fill)
        assert out.shape[0] == out.shape[1] == round(80 / fill)
        rows, cols = np.nonzero(out[:, :] > 0.5)
        inside = (rows > 0) & (rows < out.shape[0] - 1)  # the stray pixel may fall inside a wide window
        assert abs((cols[inside].max() - cols[inside].min() + 1) / out.shape[1] - fill) < 0.02
        assert abs((cols[inside].min() + cols[inside].max()) / 2 - out.shape[1] / 2) <= 1  # centred
    edge = np.zeros((64, 64), np.float32)
    edge[:30, :20] = 1.0  # touches the corner: the window reaches past it and is zero there
    out = crop_to_fill(edge, 0.5)
    assert out.shape == (60, 60) and out.sum() == edge.sum()
    np.testing.assert_array_equal(crop_to_fill(np.zeros((8, 8)), 0.9), 0)


def test_resize_kspace_truncates_the_spectrum_and_keeps_intensities():
    image = _magnitude(96) + 0.2
    for size in (64, 96, 128):
        out = resize_kspace(image, size)
        assert out.shape == (size, size) and out.dtype == np.float32
        assert abs(out.mean() - image.mean()) < 0.01 * image.mean()  # the intensity scale is kept
    np.testing.assert_allclose(resize_kspace(image, 96), image, atol=1e-5)  # same size: the image itself
    # cropping keeps the centre of the spectrum exactly (the magnitude: a real image's crop may be complex)
    np.testing.assert_allclose(np.abs(np.fft.fftshift(np.fft.fft2(resize_kspace(image, 64))))[32, 32],
                               np.abs(np.fft.fft2(image))[0, 0] * (64 / 96) ** 2, rtol=1e-3)  # the mean kept
    # a sharp-edged object: the spectrum still reaches the matrix edge, unlike linear interpolation's
    small = _magnitude(120)
    assert spectrum_share_beyond(np.ones((32, 32)), 0.1) < 1e-12  # all energy at DC
    noise = np.random.default_rng(0).standard_normal((128, 128))  # a flat spectrum: the ring's area, 1 - 0.75^2
    assert abs(spectrum_share_beyond(noise, 0.75) - (1 - 0.75 ** 2)) < 0.02
    share = spectrum_share_beyond(resize_kspace(small, 128), 0.5)
    assert share > 1.4 * spectrum_share_beyond(resize_slice(small, 128), 0.5)  # 1.65x
    with pytest.raises(InputError, match="resampling"):
        SimulationConfig(resample="cubic").validate()


def test_random_contrast_remaps_tissues_and_keeps_air():
    image = np.zeros((32, 32), np.float32)
    image[4:28, 4:16], image[4:28, 16:28] = 0.4, 0.9  # two tissues
    image[0, :16], image[0, 16:] = 0.04, 0.12  # background noise
    swapped = 0
    for seed in range(20):
        out = random_contrast(image, 1.0, np.random.default_rng(seed))
        a, b = out[10, 8], out[10, 20]
        assert out[31, 31] == 0 and abs(max(a, b) - 1.0) < 1e-5  # air stays 0; the brighter tissue is 1
        assert abs(out[0, 0] / out[0, 20] - 0.04 / 0.12) < 1e-5  # below 0.15: the identity, up to the scale
        swapped += a > b
    assert 0 < swapped < 20  # the tissues' order is drawn, not kept
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(random_contrast(image, 0.5, rng_a), random_contrast(image, 0.5, rng_b))


def test_random_bias_is_smooth_and_bounded():
    image = np.ones((64, 64), np.float32)
    out = random_bias(image, 0.7, np.random.default_rng(0))
    log_field = np.log(out)
    assert abs(np.abs(log_field).max() - 0.7) < 1e-5  # the strength is the largest |log| of the field
    assert np.abs(np.diff(log_field, axis=0)).max() < 0.2 and np.abs(np.diff(log_field, axis=1)).max() < 0.2


def test_dataset_fov_fill_zooms_the_anatomy_and_keeps_data_without_it(shared_data, tmp_path):
    splits = {"test": ["colin27"]}
    plain = make_dataset(tmp_path / "a", shared_data, _small_config(splits=splits, orientations=("axial",),
                                                                     max_slices_per_file=2), progress=False)
    again = make_dataset(tmp_path / "c", shared_data, _small_config(splits=splits, orientations=("axial",),
                                                                     max_slices_per_file=2), progress=False)
    tight = make_dataset(tmp_path / "b", shared_data, _small_config(splits=splits, orientations=("axial",),
                                                                     max_slices_per_file=2, fov_fill=(0.95, 1.0)),
                         progress=False)
    assert plain["config"]["fov_fill"] is None and list(tight["config"]["fov_fill"]) == [0.95, 1.0]
    assert again["config"] == plain["config"]
    name = "multicoil_test/colin27_axial.h5"
    with h5py.File(tmp_path / "a" / name) as a, h5py.File(tmp_path / "b" / name) as b, \
            h5py.File(tmp_path / "c" / name) as c:
        np.testing.assert_array_equal(a["kspace"][()], c["kspace"][()])
        for ra, rb in zip(a["reconstruction_rss"][()], b["reconstruction_rss"][()]):
            fa, fb = (np.mean(r > 0.1 * r.max()) for r in (ra, rb))
            assert fb > 1.08 * fa  # the same slice, zoomed: its anatomy covers more of the matrix
    with pytest.raises(InputError, match="fov_fill"):
        make_dataset(tmp_path / "x", shared_data, _small_config(fov_fill=(0.8, 1.2)), progress=False)
    with pytest.raises(InputError, match="contrast"):
        make_dataset(tmp_path / "x", shared_data, _small_config(contrast=1.5), progress=False)
    assert not (tmp_path / "x").exists()


def test_dataset_with_realistic_coil_maps(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MRIQA_CACHE", str(tmp_path / "cache"))
    config = _small_config(splits={"val": ["mni152"]}, orientations=("axial",), coil_maps="mixed",
                           max_slices_per_file=4, slice_step=4)
    manifest = make_dataset(tmp_path / "sim", shared_data, config, progress=False)
    kinds = manifest["splits"]["val"][0]["coil_maps"]
    assert set(kinds) <= {"birdcage", "espirit"} and len(kinds) == 4


def test_dataset_bad_requests_write_nothing(shared_data, tmp_path):
    with pytest.raises(InputError, match="data root not found"):
        make_dataset(tmp_path / "x", tmp_path / "missing", _small_config(), progress=False)
    with pytest.raises(InputError, match="8-channel"):
        make_dataset(tmp_path / "x", shared_data, _small_config(coils=12, coil_maps="espirit"), progress=False)
    with pytest.raises(InputError, match="more than one split"):
        make_dataset(tmp_path / "x", shared_data, _small_config(splits={"train": ["colin27"], "test": ["colin27"]}),
                     progress=False)
    with pytest.raises(InputError, match="SNR"):
        make_dataset(tmp_path / "x", shared_data, _small_config(snr=0), progress=False)
    assert not (tmp_path / "x").exists()


def test_cli_make_dataset(shared_data, tmp_path, capsys):
    from mriqa.cli import main

    out = tmp_path / "cli"
    code = main(["make-dataset", "--out", str(out), "--data-root", str(shared_data), "--size", "16",
                 "--coils", "2", "--slice-step", "16", "--max-slices-per-file", "1", "--no-progress"])
    assert code == 0
    assert "train: 3 files, 3 slices" in capsys.readouterr().out
    assert json.loads((out / "dataset.json").read_text())["config"]["size"] == 16
    assert main(["make-dataset", "--out", str(tmp_path / "bad"), "--data-root", str(tmp_path / "none")]) == 2
    assert "mriqa: error:" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_ixi_split_is_by_subject_and_writes_flat_files(shared_data, tmp_path):
    """``--splits ixi``: MPRAGE + 30 IXI subjects train, 5 val, 5 + Colin27 test; no subject in two splits;
    an IXI volume's files sit directly in ``multicoil_<split>`` (fastMRI's SliceDataset reads them)."""
    from recon.simulate import split_preset, volume_source

    splits = split_preset("ixi", shared_data)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [31, 5, 6]
    names = [n for v in splits.values() for n in v]
    assert len(names) == len(set(names)) and "trio-mprage-t1" in splits["train"] and "colin27" in splits["test"]
    assert all((shared_data / volume_source(n)).is_file() for n in names if n.startswith("ixi/"))
    assert volume_source("ixi/") is None and volume_source("nope") is None
    with pytest.raises(InputError, match="unknown split preset"):
        split_preset("kfold", shared_data)
    one = {"val": splits["val"][:1]}
    manifest = make_dataset(tmp_path / "sim", shared_data, _small_config(splits=one, orientations=("axial",)),
                            progress=False)
    entry = manifest["splits"]["val"][0]
    assert entry["volume"] == splits["val"][0] and "/" not in entry["file"].split("/", 1)[1]
    assert (tmp_path / "sim" / entry["file"]).is_file()
