"""recon.transforms: fastMRI SliceDataset + ModlDataTransform -> ModlSample, masks, maps cache, collate."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import recon.coils
from recon.errors import InputError
from recon.fft import fft2c_np, ifft2c_np
from recon.io.fastmri_h5 import write_fastmri_h5
from recon.transforms import ModlDataTransform, ModlSample, collate, slice_dataset

H, W, C, S = 32, 32, 4, 3


def write_volume(path, seed: int = 0, slices: int = S, coils: int = C, h: int = H, w: int = W):
    """A small fully sampled multi-coil volume in fastMRI layout, with its RSS target."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1:1:h * 1j, -1:1:w * 1j]
    img = np.stack([((yy / (0.8 - 0.05 * s)) ** 2 + (xx / 0.6) ** 2 < 1) * (1 + 0.3 * np.cos(4 * xx + s))
                    for s in range(slices)]).astype(np.complex64) * np.exp(1j * 0.4 * yy)
    angles = np.linspace(0, 2 * np.pi, coils, endpoint=False)
    maps = np.stack([np.exp(-((yy - np.sin(a)) ** 2 + (xx - np.cos(a)) ** 2)) * np.exp(1j * a) for a in angles])
    maps = maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    k = fft2c_np(img[:, None] * maps[None])
    k = k + 0.01 * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
    k = k.astype(np.complex64)
    rss = np.sqrt((np.abs(ifft2c_np(k)) ** 2).sum(1)).astype(np.float32)
    write_fastmri_h5(path, k, reconstruction_rss=rss)
    return k, rss


@pytest.fixture(scope="module")
def volume_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf")
    data = {}
    for i, name in enumerate(["a.h5", "b.h5"]):
        data[name] = write_volume(root / name, seed=i)
    return root, data


def _tf(root, **kw):
    kw.setdefault("cache_dir", root.parent / (root.name + "-cache"))
    kw.setdefault("calib_width", 16)  # small calibration block: ESPIRiT stays fast in tests
    return ModlDataTransform(root=root, **kw)


def test_slice_dataset_gives_modl_samples(volume_dir):
    root, data = volume_dir
    ds = slice_dataset(root, _tf(root, accelerations=[4.0], mask_types=["equispaced"], fixed=True))
    assert len(ds) == 2 * S
    sample = ds[4]
    assert isinstance(sample, ModlSample)
    k, rss = data[sample.fname]
    s = sample.slice_num
    assert sample.fname == "b.h5" and s == 1
    assert sample.masked_kspace.shape == (C, H, W) and sample.masked_kspace.dtype == torch.complex64
    assert sample.mask.shape == (1, 1, W) and sample.mask.dtype == torch.float32
    assert sample.sens_maps.shape == (C, H, W) and sample.sens_maps.dtype == torch.complex64
    np.testing.assert_array_equal(sample.target.numpy(), rss[s])
    assert sample.max_value == pytest.approx(float(rss.max()))  # the volume max (fastMRI's attrs["max"])
    assert sample.crop_size == (H, W)
    np.testing.assert_array_equal(sample.masked_kspace.numpy(), k[s] * sample.mask.numpy())
    assert sample.acceleration == 4.0 and sample.mask_type == "equispaced"
    assert sample.num_low_frequencies == round(W * 0.08)
    assert sample.acceleration_effective == pytest.approx(W / float(sample.mask.sum()))
    # ESPIRiT maps: unit norm over coils inside the support
    norm = sample.sens_maps.abs().square().sum(0)
    inside = norm > 0.5
    assert inside.float().mean() > 0.3
    torch.testing.assert_close(norm[inside], torch.ones_like(norm[inside]), atol=1e-3, rtol=0)


def test_masks_fixed_per_volume_and_drawn_per_call_in_training(volume_dir):
    root, _ = volume_dir
    fixed = slice_dataset(root, _tf(root, accelerations=[6.0], mask_types=["random"], fixed=True))
    masks = [fixed[i].mask for i in range(S)]  # the slices of a.h5 share one mask
    assert all(torch.equal(masks[0], m) for m in masks)
    assert not torch.equal(fixed[0].mask, fixed[S].mask)  # another volume, another mask
    assert torch.equal(fixed[0].mask, fixed[0].mask)  # and the same on every call

    tf = _tf(root, accelerations=[3.0, 9.0], mask_types=["random", "equispaced"], continuous=True, seed=1)
    train = slice_dataset(root, tf)
    draws = []
    for epoch in range(4):
        tf.set_epoch(epoch)
        draws.append([train[i] for i in range(len(train))])
    accels = [s.acceleration for d in draws for s in d]
    assert min(accels) >= 3.0 and max(accels) <= 9.0 and len(set(accels)) > 8  # continuous R
    assert {s.mask_type for d in draws for s in d} == {"random", "equispaced"}
    tf.set_epoch(2)
    again = train[1]
    assert torch.equal(again.mask, draws[2][1].mask) and again.acceleration == draws[2][1].acceleration
    assert not all(torch.equal(draws[0][1].mask, d[1].mask) for d in draws[1:])  # new masks each epoch


def test_maps_computed_once_per_slice(volume_dir, monkeypatch, tmp_path):
    root, _ = volume_dir
    calls = []
    real = recon.coils.espirit_maps

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(recon.coils, "espirit_maps", counting)
    tf = ModlDataTransform(accelerations=[3.0, 9.0], continuous=True, cache_dir=tmp_path, root=root,
                           calib_width=16)
    ds = slice_dataset(root, tf)
    first = ds[0].sens_maps
    for epoch in range(3):  # new masks, same maps, no new ESPIRiT run
        tf.set_epoch(epoch)
        assert torch.equal(ds[0].sens_maps, first)
    assert len(calls) == 1


def test_acs_maps_and_too_few_acs_lines(volume_dir):
    root, _ = volume_dir
    ok = slice_dataset(root, _tf(root, accelerations=[1.25], fixed=True, maps="acs"))[0]  # 0.256 * 32 = 8 lines
    assert ok.num_low_frequencies == 8 and ok.sens_maps.shape == (C, H, W)
    # R = 8 at W = 32: the default centre keeps the 3 lines that fit (< W / R): maps refined from them
    narrow = slice_dataset(root, _tf(root, accelerations=[8.0], fixed=True, maps="acs"))[0]
    assert narrow.num_low_frequencies == 3 and torch.isfinite(narrow.sens_maps).all()
    bad = slice_dataset(root, _tf(root, accelerations=[8.0], center_fraction=0.03, fixed=True, maps="acs"))  # 1
    with pytest.raises(InputError, match="centre lines"):
        bad[0]


def test_full_maps_from_too_small_a_block_are_an_error_not_zeros(volume_dir):
    root, _ = volume_dir
    # an 8 x 8 block is too small for ESPIRiT's 6 x 6 kernel: the crop keeps nothing (the maps came back all zero
    # and a network trained on a zero operator before this check)
    ds = slice_dataset(root, _tf(root, accelerations=[4.0], fixed=True, calib_width=8, cache_dir=False))
    with pytest.raises(InputError, match="all zero"):
        ds[0]


def test_poisson_masks_and_collate(volume_dir):
    root, _ = volume_dir
    tf = _tf(root, accelerations=[4.0], mask_types=["random", "poisson"], seed=3)
    ds = slice_dataset(root, tf)
    samples = [ds[i] for i in range(len(ds))]
    assert all(s.mask.shape == (1, H, W) for s in samples)  # line masks expanded so batches stack
    assert {s.mask_type for s in samples} == {"random", "poisson"}
    batch = collate(samples[:4])
    assert batch["masked_kspace"].shape == (4, C, H, W) and batch["mask"].shape == (4, 1, H, W)
    assert batch["sens_maps"].shape == (4, C, H, W) and batch["target"].shape == (4, H, W)
    assert batch["max_value"].shape == (4,) and batch["fname"] == [s.fname for s in samples[:4]]
    # mixed mask shapes from different transforms still collate
    line = slice_dataset(root, _tf(root, accelerations=[4.0], fixed=True))[0]
    mixed = collate([line, samples[0]])
    assert mixed["mask"].shape == (2, 1, H, W)


def test_poisson_training_masks_start_at_the_poisson_minimum(volume_dir, monkeypatch):
    import recon.masks
    from recon.masks import POISSON_MIN_ACCEL

    root, _ = volume_dir
    drawn = {"random": [], "poisson": []}
    # sigpy's sampler is slow on tiny grids: record what would be asked for instead of making the masks
    monkeypatch.setattr(recon.masks, "make_mask", lambda kind, shape, accel, **kw: drawn[kind].append(accel))
    tf = _tf(root, accelerations=[2.0, 12.0], continuous=True, mask_types=["random", "poisson"], seed=1)
    for epoch in range(12):
        tf.set_epoch(epoch)
        for name in ("a.h5", "b.h5"):
            for s in range(S):
                tf.draw_mask((H, W), name, s)
    assert min(drawn["poisson"]) >= POISSON_MIN_ACCEL and max(drawn["poisson"]) <= 12.0
    assert min(drawn["random"]) < POISSON_MIN_ACCEL  # line masks keep the whole range
    # the mapping is linear from [2, 12] onto [4, 12]; a list of R maps onto its allowed entries
    assert tf._poisson_accel(2.0) == POISSON_MIN_ACCEL and tf._poisson_accel(7.0) == 7.0
    assert tf._poisson_accel(3.0) == pytest.approx(POISSON_MIN_ACCEL + 0.1 * (12.0 - POISSON_MIN_ACCEL))
    listed = _tf(root, accelerations=[2.0, 3.0, 8.0], mask_types=["poisson"])
    assert {listed._poisson_accel(r) for r in (2.0, 3.0, 8.0)} == {8.0}
    with pytest.raises(InputError, match="Poisson-disk training masks need R >= 4"):
        _tf(root, accelerations=[2.0, 3.0], mask_types=["poisson"])


def test_transform_does_not_modify_input_and_rejects_bad_input(volume_dir):
    root, data = volume_dir
    k, rss = data["a.h5"]
    kk = k[0].copy()
    tf = _tf(root, accelerations=[4.0], fixed=True)
    sample = tf(kk, None, rss[0], {"max": float(rss.max())}, "a.h5", 0)
    np.testing.assert_array_equal(kk, k[0])
    assert sample.masked_kspace.shape == (C, H, W)
    no_target = tf(kk, None, None, {}, "a.h5", 0)
    assert no_target.target.ndim == 0 and no_target.max_value == 0.0
    with pytest.raises(InputError, match="NaN"):
        bad = kk.copy()
        bad[0, 0, 0] = np.nan
        tf(bad, None, None, {}, "a.h5", 0)
    with pytest.raises(InputError, match="complex"):
        tf(np.abs(kk), None, None, {}, "a.h5", 0)
    with pytest.raises(InputError):
        ModlDataTransform(accelerations=[0.5])
    with pytest.raises(InputError):
        ModlDataTransform(mask_types=["spiral"])
    with pytest.raises(InputError, match="no .h5"):
        slice_dataset(root / "nowhere", tf)


def test_single_coil_gets_unit_maps(tmp_path):
    write_volume(tmp_path / "s.h5", coils=1, slices=1)
    sample = slice_dataset(tmp_path, ModlDataTransform(accelerations=[4.0], fixed=True, cache_dir=False))[0]
    assert sample.sens_maps.shape == (1, H, W) and torch.all(sample.sens_maps == 1)


def test_dihedral_training_slices_are_flipped_and_transposed_consistently(volume_dir):
    """``dihedral=True``: the coil images and the target get the same flip / transpose (the target stays the RSS
    of the k-space), all 8 elements occur, the masks are those of a run without it, and evaluation ignores it."""
    from recon.transforms import dihedral_image, dihedral_kspace

    root, data = volume_dir
    kw = dict(accelerations=[3.0, 9.0], mask_types=["random"], continuous=True, seed=2, maps="full")
    plain, flipped = slice_dataset(root, _tf(root, **kw)), slice_dataset(root, _tf(root, dihedral=True, **kw))
    seen = set()
    for epoch in range(6):
        for ds in (plain, flipped):
            ds.transform.set_epoch(epoch)
        for i in range(len(flipped)):
            a, b = plain[i], flipped[i]
            element = flipped.transform.dihedral_element(b.fname, b.slice_num, square=True)
            seen.add(element)
            k, rss = data[b.fname]
            assert torch.equal(a.mask, b.mask) and a.acceleration == b.acceleration
            target = dihedral_image(rss[b.slice_num], element)
            np.testing.assert_array_equal(b.target.numpy(), target)
            full = dihedral_kspace(k[b.slice_num], element)
            np.testing.assert_allclose(b.masked_kspace.numpy(), full * b.mask.numpy(), atol=1e-6)
            # the target is still the RSS of the (flipped) k-space
            rss_flipped = np.sqrt((np.abs(ifft2c_np(full)) ** 2).sum(0))
            np.testing.assert_allclose(rss_flipped, target, rtol=1e-4, atol=1e-4 * float(target.max()))
            if element:
                assert not np.allclose(target, rss[b.slice_num])
    assert seen == set(range(8))
    fixed = ModlDataTransform(accelerations=[4.0], fixed=True, dihedral=True, root=root, cache_dir=False,
                              calib_width=16)
    assert fixed.dihedral_element("a.h5", 0, square=True) == 0
