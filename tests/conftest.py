"""Shared test fixtures.

``shared_data``: the path of ``../shared/data`` beside the checkout. Without it the test skips with the
reason; with ``MRIQA_REQUIRE_SHARED=1`` (set by ``.ci/run``) a missing folder is a failure instead, so CI
never passes by skipping.
"""
from __future__ import annotations

import os

# numpy's BLAS threads make ESPIRiT's tiny SVDs ~100x slower on a busy 2-core machine; tests use one thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MRIQA_SHARED_DATA", REPO.parent / "shared" / "data"))


def _need(path: Path) -> Path:
    if path.exists():
        return path
    reason = f"needs {path} (the project's shared data, present in CI beside the checkout)"
    if os.environ.get("MRIQA_REQUIRE_SHARED") == "1":
        pytest.fail(reason + " but MRIQA_REQUIRE_SHARED=1")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch intra-op thread for a test module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``).
    For tiny problems: torch's pocketfft splits even a 12 x 10 FFT over every intra-op thread, which costs
    milliseconds per FFT on a busy 2-core machine (measured 16 ms vs 34 us)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def phantom_kspace():
    """``make(slices=2, size=64, coils=4) -> (kspace [S, C, H, W] complex64, rss [S, H, W] float32)``: fully
    sampled k-space of a textured disc with Gaussian coil profiles (the behaviour recording's input)."""
    from test_behaviour_unchanged import _phantom_kspace

    return _phantom_kspace


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _need(SHARED_DATA)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """ESPIRiT maps and other caches go to a temporary folder, not the user's ./.mriqa-cache."""
    old = os.environ.get("MRIQA_CACHE")
    os.environ["MRIQA_CACHE"] = str(tmp_path_factory.mktemp("mriqa-cache"))
    yield
    if old is None:
        os.environ.pop("MRIQA_CACHE", None)
    else:
        os.environ["MRIQA_CACHE"] = old


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(1)  # small FFTs split over threads are slower than on one (and busy CI cores)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
