"""Output problems (issue 23): a read-only output folder, an output path that is a folder, no space left:
one line ``mriqa: error: ...``, exit 2, no traceback, nothing partial; checked before the work where possible
(recon.io.output)."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mriqa.cli import main
from recon.errors import InputError
from recon.io.output import check_writable, check_writable_dir, output_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder nobody may create files in: a chmod 0555 folder, or (root ignores modes) one of /sys."""
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    for candidate in (Path("/sys/kernel"), Path("/sys")):
        try:
            (candidate / ".mriqa-probe").touch()
        except OSError:
            yield candidate
            return
        (candidate / ".mriqa-probe").unlink()
    pytest.skip("no unwritable folder on this machine (root on a writable /sys)")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A photo, a gray PNG and a small raw-data / reconstruction h5 pair, shared by the cases below."""
    from recon.io.fastmri_h5 import write_fastmri_h5, write_reconstruction_h5

    d = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(d / "photo.png")
    yy, xx = np.mgrid[:48, :48]
    target = ((np.hypot(yy - 24, xx - 24) < 16) * 1.0 + 0.05 * rng.random((48, 48)))[None].astype(np.float32)
    kspace = np.fft.fftshift(np.fft.fft2(target))[:, None].astype(np.complex64)
    write_fastmri_h5(d / "raw.h5", kspace, reconstruction_rss=target)
    write_reconstruction_h5(d / "recon.h5", target * 0.9, attrs={"method": "zf"})
    lines = ["image,reference,mos"]
    for i in range(4):
        noisy = np.clip(target[0] + 0.1 * i * rng.standard_normal(target[0].shape), 0, 1)
        Image.fromarray((noisy * 255).astype(np.uint8)).save(d / f"d{i}.png")
        lines.append(f"{d / f'd{i}.png'},{d / 'd0.png'},{5 - i}")
    (d / "set.csv").write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture(scope="module")
def qairn_weights(tmp_path_factory):
    from mriqa.models.qairn import QAIRN
    from recon.io.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "qairn.safetensors"
    save_weights(QAIRN(channels=(4, 4, 4, 4), n_res=1, att_hidden=4, att_depth=1), path)
    return path


def _commands(inputs, qairn_weights, out):
    """command -> argv writing ``out`` (a file, or the folder of ``restore --out``)."""
    return {
        "score --json": ["score", inputs / "photo.png", "--json", out],
        "estimate-r --json": ["estimate-r", inputs / "photo.png", "--method", "qf", "--json", out],
        "restore --out": ["restore", inputs / "photo.png", "--weights", qairn_weights, "--out", out],
        "restore --json": ["restore", inputs / "photo.png", "--weights", qairn_weights, "--out",
                           inputs.parent / "restored-ok", "--json", out],
        "recon --out": ["recon", inputs / "raw.h5", "--method", "zf", "--out", out],
        "evaluate --json": ["evaluate", "--target", inputs / "raw.h5", "--recon", inputs / "recon.h5", "--json", out],
        "iqa-bench --json": ["iqa-bench", "--dataset", f"csv:{inputs / 'set.csv'}", "--metric", "psnr",
                             "--bootstrap", "0", "--json", out],
    }


CASES = ["score --json", "estimate-r --json", "restore --out", "restore --json", "recon --out", "evaluate --json",
         "iqa-bench --json"]


def _one_line(capsys, argv) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mriqa: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("case", CASES)
def test_read_only_output_folder(case, inputs, qairn_weights, readonly_dir, capsys):
    out = readonly_dir / ("restored" if case == "restore --out" else "out.json")
    line = _one_line(capsys, _commands(inputs, qairn_weights, out)[case])
    assert str(readonly_dir) in line and ("not writable" in line or "cannot write" in line)
    assert not out.exists()


@pytest.mark.parametrize("case", [c for c in CASES if c != "restore --out"])
def test_output_file_that_is_a_folder(case, inputs, qairn_weights, tmp_path, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    line = _one_line(capsys, _commands(inputs, qairn_weights, folder)[case])
    assert str(folder) in line and ("not a folder" in line or "Is a directory" in line)
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_output_folder_that_is_a_file(inputs, qairn_weights, tmp_path, capsys):
    file = tmp_path / "a-file"
    file.write_text("keep me")
    line = _one_line(capsys, _commands(inputs, qairn_weights, file)["restore --out"])
    assert "must name a folder" in line and file.read_text() == "keep me"
    line = _one_line(capsys, ["score", inputs / "photo.png", "--maps", file])
    assert "must name a folder" in line


def test_no_space_left_is_one_line_and_leaves_nothing(inputs, tmp_path, capsys, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    out = tmp_path / "out.json"
    line = _one_line(capsys, ["estimate-r", inputs / "photo.png", "--method", "qf", "--json", out])
    assert "No space left on device" in line and str(out) in line
    assert list(tmp_path.iterdir()) == []  # no temp file left behind


def test_helpers(tmp_path):
    assert check_writable(tmp_path / "new" / "deeper" / "x.json") == tmp_path / "new" / "deeper" / "x.json"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_writable(tmp_path / "file" / "x.json")
    with pytest.raises(InputError, match="must name a folder"):
        check_writable_dir(tmp_path / "file")
    assert check_writable_dir(tmp_path / "made-later") == tmp_path / "made-later"
    with output_file(tmp_path / "ok.json") as tmp:
        tmp.write_text(json.dumps({"a": 1}))
    assert json.loads((tmp_path / "ok.json").read_text()) == {"a": 1}
    with pytest.raises(InputError, match=r"ok2\.json: cannot write --json \(boom\)"):
        with output_file(tmp_path / "ok2.json", "--json"):
            raise OSError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "ok.json"]
