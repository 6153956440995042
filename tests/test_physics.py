"""FFT conventions and the operators: fastMRI equality, SENSE adjointness and shapes, Sampling, fastMRI's mask
layouts, shape errors, CUDA."""
from __future__ import annotations

import fastmri
import numpy as np
import pytest
import torch

from recon.errors import InputError
from recon.fft import centering_phases, fft2c, fft2c_np, ifft2c, ifft2c_np
from recon.physics import LinearOperator, Sampling, SenseOperator, as_kspace, as_mask


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny FFT problems (conftest.py)


def crandn(*shape, dtype=torch.complex64, gen=None):
    return torch.randn(*shape, dtype=dtype, generator=gen)


def unit_maps(b, c, h, w, dtype=torch.complex64, sets=None):
    shape = (b, c, h, w) if sets is None else (b, sets, c, h, w)
    maps = crandn(*shape, dtype=dtype)
    return maps / maps.abs().square().sum(-3, keepdim=True).sqrt()


def cdot(a, b):
    return torch.sum(a.conj() * b)


@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 1, 7, 5), (2, 6, 9)])
def test_fft2c_matches_fastmri(shape):
    x = crandn(*shape)
    ours = fft2c(x)
    ref = torch.view_as_complex(fastmri.fft2c(torch.view_as_real(x)))
    assert torch.equal(ours, ref)
    ours_i = ifft2c(x)
    ref_i = torch.view_as_complex(fastmri.ifft2c(torch.view_as_real(x)))
    assert torch.equal(ours_i, ref_i)
    assert torch.allclose(ifft2c(fft2c(x)), x, atol=1e-5)
    np.testing.assert_allclose(fft2c_np(x.numpy()), ours.numpy(), atol=1e-5)
    np.testing.assert_allclose(ifft2c_np(x.numpy()), ours_i.numpy(), atol=1e-5)
    assert fft2c_np(x.numpy()).dtype == np.complex64


def test_fft2c_rejects_real():
    with pytest.raises(TypeError):
        fft2c(torch.randn(4, 4))


@pytest.mark.parametrize("hw", [(8, 6), (7, 5), (6, 9)])
def test_centering_phases_replace_shifts(hw):
    x = crandn(3, *hw, dtype=torch.complex128)
    d_in, d_out = centering_phases(*hw, dtype=torch.complex128)
    assert torch.allclose(d_in.abs(), torch.ones(hw, dtype=torch.float64))
    assert torch.allclose(fft2c(x), d_out * torch.fft.fft2(d_in * x, norm="ortho"), atol=1e-12)
    assert torch.allclose(ifft2c(x), d_in.conj() * torch.fft.ifft2(d_out.conj() * x, norm="ortho"), atol=1e-12)


def _reference_forward(maps, mask, x):
    """M F S x written the obvious way, with fastmri's FFT."""
    coil = x.unsqueeze(-3) * maps if maps.ndim == 4 else (x.unsqueeze(2) * maps).sum(1)
    k = torch.view_as_complex(fastmri.fft2c(torch.view_as_real(coil)).contiguous())
    return k * mask


MASKS = {
    "lines": lambda b, c, h, w: (torch.rand(b, 1, 1, w) > 0.5).float(),
    "2d": lambda b, c, h, w: (torch.rand(b, 1, h, w) > 0.6).float(),
    "shared": lambda b, c, h, w: (torch.rand(1, 1, 1, w) > 0.3).float(),
}


@pytest.mark.parametrize("mask_kind", sorted(MASKS))
@pytest.mark.parametrize("hw", [(16, 12), (15, 9)])
def test_sense_matches_reference_and_is_adjoint(mask_kind, hw):
    b, c = 3, 4
    maps = unit_maps(b, c, *hw)
    mask = MASKS[mask_kind](b, c, *hw)
    op = SenseOperator(maps, mask)
    x, y = crandn(b, *hw), crandn(b, c, *hw)
    assert torch.allclose(op(x), _reference_forward(maps, mask, x), atol=1e-5)
    ax, ahy = op.forward(x), op.adjoint(y)
    assert ax.shape == (b, c, *hw) and ahy.shape == (b, *hw) and ax.dtype == torch.complex64
    lhs, rhs = cdot(ax, y), cdot(x, ahy)
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)
    assert torch.allclose(op.normal(x), op.adjoint(op.forward(x)), atol=1e-5)
    # shapes, the adjoint operator and the sampling part M
    assert op.in_shape == (b, *hw) and op.out_shape == (b, c, *hw)
    assert op.H.in_shape == op.out_shape and op.H.out_shape == op.in_shape and op.H.H is op
    assert torch.allclose(op.H(y), ahy) and torch.allclose(op.sampling(fft2c(x.unsqueeze(1) * maps)), ax, atol=1e-5)


def test_adjoint_float32_precision_on_real_size():
    """<Ax, y> = <x, A^H y> to float32 precision at a fastMRI-like size."""
    b, c, h, w = 2, 8, 320, 168
    maps = unit_maps(b, c, h, w)
    op = SenseOperator(maps, (torch.rand(b, 1, 1, w) > 0.6).float())
    x, y = crandn(b, h, w), crandn(b, c, h, w)
    lhs = torch.sum(op(x).to(torch.complex128).conj() * y.to(torch.complex128))
    rhs = torch.sum(x.to(torch.complex128).conj() * op.H(y).to(torch.complex128))
    assert abs(lhs - rhs) / abs(lhs) < 1e-5


def test_map_sets_are_sum_over_sets_and_adjoint():
    b, m, c, h, w = 2, 2, 3, 10, 8
    maps = unit_maps(b, c, h, w, sets=m)
    mask = (torch.rand(b, 1, 1, w) > 0.5).float()
    op = SenseOperator(maps, mask)
    x, y = crandn(b, m, h, w), crandn(b, c, h, w)
    assert op(x).shape == (b, c, h, w) and op.H(y).shape == (b, m, h, w)
    expected = SenseOperator(maps[:, 0], mask)(x[:, 0]) + SenseOperator(maps[:, 1], mask)(x[:, 1])
    assert torch.allclose(op(x), expected, atol=1e-5)
    assert torch.allclose(op(x), _reference_forward(maps, mask, x), atol=1e-5)
    lhs, rhs = cdot(op(x), y), cdot(x, op.H(y))
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)
    assert torch.allclose(op.normal(x), op.H(op(x)), atol=1e-5)


def test_single_coil_full_mask_is_unitary():
    h, w = 12, 10
    op = SenseOperator(torch.ones(2, 1, h, w, dtype=torch.complex64), torch.ones(2, 1, 1, w))
    x = crandn(2, h, w)
    assert torch.allclose(op(x)[:, 0], fft2c(x), atol=1e-6)
    assert torch.allclose(op.normal(x), x, atol=1e-5)


def test_inputs_not_modified_and_graph_path_equal():
    b, c, h, w = 2, 3, 8, 8
    maps = unit_maps(b, c, h, w)
    mask = (torch.rand(b, 1, 1, w) > 0.5).float()
    op = SenseOperator(maps, mask)
    x, y = crandn(b, h, w), crandn(b, c, h, w)
    x0, y0, maps0, mask0 = x.clone(), y.clone(), maps.clone(), mask.clone()
    fast = op.normal(x), op.forward(x), op.adjoint(y)
    assert torch.equal(x, x0) and torch.equal(y, y0) and torch.equal(maps, maps0) and torch.equal(mask, mask0)
    xg, yg = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    slow = op.normal(xg), op.forward(xg), op.adjoint(yg)
    for f, s in zip(fast, slow):
        assert s.requires_grad and torch.allclose(f, s.detach(), atol=1e-6)


def test_strided_maps_same_result_and_stored_contiguous():
    """ESPIRiT maps from sigpy are coil-last in memory; the operator must not inherit that layout."""
    b, c, h, w = 1, 4, 10, 8
    maps = unit_maps(b, c, h, w)
    strided = maps.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert not strided.is_contiguous()
    mask = (torch.rand(b, 1, 1, w) > 0.5).float()
    op, op_s = SenseOperator(maps, mask), SenseOperator(strided, mask)
    assert op_s._maps.is_contiguous() and op_s._maps_conj.is_contiguous()
    x = crandn(b, h, w)
    assert torch.allclose(op_s.normal(x), op.normal(x), atol=1e-6)


def test_autograd_through_operator_gradcheck():
    b, c, h, w = 1, 2, 4, 5
    maps = unit_maps(b, c, h, w, dtype=torch.complex128)
    op = SenseOperator(maps, (torch.rand(b, 1, 1, w) > 0.3).double())
    x = crandn(b, h, w, dtype=torch.complex128).requires_grad_(True)
    assert torch.autograd.gradcheck(op.normal, (x,))
    assert torch.autograd.gradcheck(op.forward, (x,))


def test_sampling_operator_and_fastmri_layouts():
    b, c, h, w = 2, 3, 6, 8
    cols = torch.rand(b, 1, 1, w) > 0.5
    k = crandn(b, c, h, w)
    op = Sampling(cols.unsqueeze(-1), (b, c, h, w))  # fastMRI's bool [B, 1, 1, W, 1]
    assert op.in_shape == op.out_shape == (b, c, h, w) and op.sampling is op and op.mask.dtype == torch.float32
    assert torch.equal(op(k), k * cols.float()) and torch.equal(op.H(k), op(k)) and torch.equal(op.normal(k), op(k))
    lhs, rhs = cdot(op(k), k), cdot(k, op.H(k))
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)
    # fastMRI's per-sample [1, 1, W, 1] and real-view k-space [B, C, H, W, 2]
    assert as_mask(cols[:1, 0].unsqueeze(-1).float(), (1, c, h, w)).shape == (1, 1, 1, w)
    assert torch.equal(as_kspace(torch.view_as_real(k)), k)
    # a SenseOperator takes the same masks
    maps = unit_maps(b, c, h, w)
    x = crandn(b, h, w)
    assert torch.allclose(SenseOperator(maps, cols.unsqueeze(-1))(x), SenseOperator(maps, cols.float())(x))
    with pytest.raises(InputError, match="expected k-space"):
        op(k[:, :2])
    with pytest.raises(InputError, match="all zeros"):
        as_mask(torch.zeros(1, 1, 1, w), (b, c, h, w))
    with pytest.raises(NotImplementedError):
        LinearOperator()(x)


@pytest.mark.parametrize("maps_shape, mask_shape", [
    ((2, 4, 8, 6), (2, 3, 1, 6)),   # mask coils 3 vs maps 4
    ((2, 4, 8, 6), (2, 1, 1, 7)),   # width mismatch
    ((2, 4, 8, 6), (3, 1, 1, 6)),   # batch mismatch
    ((2, 4, 8), (2, 1, 1, 6)),      # maps rank
])
def test_mismatched_shapes_raise_input_error(maps_shape, mask_shape):
    with pytest.raises(InputError):
        SenseOperator(crandn(*maps_shape), torch.ones(mask_shape))


def test_bad_inputs_raise_input_error():
    op = SenseOperator(unit_maps(2, 4, 8, 6), torch.ones(2, 1, 1, 6))
    with pytest.raises(InputError, match="expected shape"):
        op.forward(crandn(2, 8, 7))
    with pytest.raises(InputError, match="expected shape"):
        op.adjoint(crandn(2, 3, 8, 6))
    with pytest.raises(InputError, match="dtype"):
        op.normal(crandn(2, 8, 6, dtype=torch.complex128))
    with pytest.raises(InputError, match="dtype"):
        op.forward(torch.randn(2, 8, 6))
    with pytest.raises(InputError, match="complex"):
        SenseOperator(torch.ones(2, 4, 8, 6), torch.ones(2, 1, 1, 6))
    with pytest.raises(InputError, match="real"):
        SenseOperator(unit_maps(2, 4, 8, 6), torch.ones(2, 1, 1, 6, dtype=torch.complex64))


@pytest.mark.gpu
def test_sense_cuda_matches_cpu():
    b, c, h, w = 2, 4, 32, 24
    maps = unit_maps(b, c, h, w)
    mask = (torch.rand(b, 1, 1, w) > 0.5).float()
    x, y = crandn(b, h, w), crandn(b, c, h, w)
    cpu = SenseOperator(maps, mask)
    gpu = SenseOperator(maps.cuda(), mask.cuda())
    assert torch.allclose(gpu(x.cuda()).cpu(), cpu(x), atol=1e-5)
    assert torch.allclose(gpu.H(y.cuda()).cpu(), cpu.H(y), atol=1e-5)
    assert torch.allclose(gpu.normal(x.cuda()).cpu(), cpu.normal(x), atol=1e-5)
