"""Coil maps a user has (`mriqa recon --maps FILE`) and the ESPIRiT map cache (location, limit, off)."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from mriqa.cli import main
from recon.coils import default_cache_dir, espirit_maps_cached, prune_cache
from recon.errors import InputError
from recon.io.bart import write_cfl
from recon.io.fastmri_h5 import read_reconstruction, write_fastmri_h5
from recon.io.maps import read_coil_maps

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _true_maps(size=64, coils=4):
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    centres = [(0.5 * np.cos(a), 0.5 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, coils, endpoint=False)]
    maps = np.stack([np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.3) for cx, cy in centres]).astype(np.complex64)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))


def test_read_coil_maps_formats_and_errors(tmp_path):
    maps = _true_maps()
    shape = (2, 4, 64, 64)
    np.save(tmp_path / "m.npy", maps)
    assert read_coil_maps(tmp_path / "m.npy", shape).shape == shape  # one set for every slice
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["sens_maps"] = np.stack([maps, maps])
    assert np.allclose(read_coil_maps(tmp_path / "m.h5", shape), np.stack([maps, maps]))
    write_cfl(tmp_path / "bart", np.moveaxis(maps, 0, -1)[:, :, None, :])  # BART [X, Y, Z, C]
    assert np.allclose(read_coil_maps(tmp_path / "bart.cfl", shape)[0], maps)
    with pytest.raises(InputError, match="do not match k-space"):
        read_coil_maps(tmp_path / "m.npy", (2, 8, 64, 64))
    with pytest.raises(InputError, match="not found"):
        read_coil_maps(tmp_path / "none.npy", shape)
    np.save(tmp_path / "zero.npy", np.zeros_like(maps))
    with pytest.raises(InputError, match="all zero"):
        read_coil_maps(tmp_path / "zero.npy", shape)
    (tmp_path / "text.npy").write_text("not maps")
    with pytest.raises(InputError, match="not a .npy file"):
        read_coil_maps(tmp_path / "text.npy", shape)


def test_recon_with_user_maps_uses_them(tmp_path, capsys, phantom_kspace):
    kspace, rss = phantom_kspace()
    raw = write_fastmri_h5(tmp_path / "raw.h5", kspace, reconstruction_rss=rss)
    np.save(tmp_path / "maps.npy", _true_maps())
    common = ["--accel", "4", "--mask", "equispaced", "--center-fraction", "0.03", "--seed", "0"]
    # 2 centre lines: calibration refuses (it needs 3), the user's maps make CG-SENSE possible
    assert main(["recon", str(raw), "--method", "sense", *common, "--out", str(tmp_path / "e.h5")]) == 2
    assert "coil maps" in capsys.readouterr().err
    assert main(["recon", str(raw), "--method", "sense", *common, "--maps", str(tmp_path / "maps.npy"),
                 "--out", str(tmp_path / "s.h5")]) == 0
    rec = read_reconstruction(tmp_path / "s.h5").image
    assert rec.shape == rss.shape
    zf = tmp_path / "zf.h5"
    assert main(["recon", str(raw), "--method", "zf", *common, "--out", str(zf)]) == 0
    err = lambda x: np.linalg.norm(x - rss) / np.linalg.norm(rss)  # noqa: E731
    assert err(rec) < 0.7 * err(read_reconstruction(zf).image)  # measured 0.147 vs 0.245
    np.save(tmp_path / "bad.npy", _true_maps(coils=3))
    assert main(["recon", str(raw), "--method", "sense", *common, "--maps", str(tmp_path / "bad.npy"),
                 "--out", str(tmp_path / "b.h5")]) == 2
    assert "bad.npy" in capsys.readouterr().err and not (tmp_path / "b.h5").exists()


def test_cache_location_limit_and_off(tmp_path, monkeypatch, phantom_kspace):
    monkeypatch.delenv("MRIQA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mriqa" / "espirit"  # never the working directory
    monkeypatch.setenv("MRIQA_CACHE", "off")
    assert default_cache_dir() is None
    kspace = phantom_kspace(slices=1)[0][0]
    espirit_maps_cached(kspace, tmp_path / "src.h5", 0, calib_width=16, kernel_width=6)
    assert not (tmp_path / "xdg").exists()
    cache = tmp_path / "cache"
    monkeypatch.setenv("MRIQA_CACHE", str(cache))
    a = espirit_maps_cached(kspace, tmp_path / "src.h5", 0, calib_width=16, kernel_width=6)
    b = espirit_maps_cached(kspace, tmp_path / "src.h5", 0, calib_width=16, kernel_width=6)
    assert np.array_equal(a, b) and len(list((cache / "espirit").glob("*.npy"))) == 1
    one = next((cache / "espirit").glob("*.npy")).stat().st_size
    monkeypatch.setenv("MRIQA_CACHE_MAX_MB", str(1.5 * one / 2**20))  # room for one entry
    espirit_maps_cached(kspace, tmp_path / "src.h5", 1, calib_width=16, kernel_width=6)
    assert len(list((cache / "espirit").glob("*.npy"))) == 1
    assert prune_cache(cache / "espirit", 0) == one
    monkeypatch.setenv("MRIQA_CACHE_MAX_MB", "lots")
    with pytest.raises(InputError, match="MRIQA_CACHE_MAX_MB"):
        espirit_maps_cached(kspace, tmp_path / "src.h5", 2, calib_width=16, kernel_width=6)
    os.chmod(cache / "espirit", 0o500)  # a read-only cache costs recomputation, not an error
    try:
        monkeypatch.setenv("MRIQA_CACHE_MAX_MB", "100")
        assert espirit_maps_cached(kspace, tmp_path / "src.h5", 3, calib_width=16, kernel_width=6).shape[0] == 4
    finally:
        os.chmod(cache / "espirit", 0o700)
