"""Batched CG: accuracy, per-sample independence, guards, and the implicit backward against unrolled autograd."""
from __future__ import annotations

import pytest
import torch

from recon.cg import cg_solve, conjugate_gradient
from recon.errors import InputError
from recon.physics import SenseOperator


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny FFT problems (conftest.py)


def crandn(*shape, dtype=torch.complex128):
    return torch.randn(*shape, dtype=dtype)


def make_problem(b=3, c=4, h=12, w=10, dtype=torch.complex128, keep=(0.7, 0.45, 0.3)):
    """SENSE operator whose samples differ in conditioning (different masks), and rhs = A^H y."""
    maps = crandn(b, c, h, w, dtype=dtype)
    maps = maps / maps.abs().square().sum(1, keepdim=True).sqrt()
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    mask = torch.stack([(torch.rand(1, 1, w) < keep[i % len(keep)]) for i in range(b)]).to(real)
    mask[..., w // 2 - 1: w // 2 + 1] = 1
    op = SenseOperator(maps, mask)
    rhs = op.adjoint(crandn(b, c, h, w, dtype=dtype))
    return op, rhs


def dense_solve(op, rhs, lam):
    """Solve (A^H A + lam I) x = b per sample with an explicit matrix (tiny problems only)."""
    b = rhs.shape[0]
    n = rhs[0].numel()
    eye = torch.eye(n, dtype=rhs.dtype).reshape(n, *rhs.shape[1:])
    out = []
    for i in range(b):
        cols = []
        for j in range(n):
            e = torch.zeros_like(rhs)
            e[i] = eye[j]
            cols.append(op.normal(e)[i].reshape(-1))
        k = torch.stack(cols, 1) + lam * torch.eye(n, dtype=rhs.dtype)
        out.append(torch.linalg.solve(k, rhs[i].reshape(-1)).reshape(rhs.shape[1:]))
    return torch.stack(out)


def test_solution_matches_dense_solve():
    op, rhs = make_problem(b=2, c=3, h=6, w=5)
    ref = dense_solve(op, rhs, 0.05)
    for solver in (conjugate_gradient, cg_solve):
        x = solver(op.normal, rhs, 0.05, max_iter=200, tol=1e-12)
        assert torch.allclose(x, ref, atol=1e-9), solver.__name__


def test_float32_solution_and_residual():
    op, rhs = make_problem(b=2, h=32, w=24, dtype=torch.complex64)
    x, info = conjugate_gradient(op.normal, rhs, lam=0.01, max_iter=100, tol=1e-5, return_info=True)
    assert x.dtype == torch.complex64
    res = (op.normal(x) + 0.01 * x - rhs).flatten(1).norm(dim=1) / rhs.flatten(1).norm(dim=1)
    assert (res < 1e-4).all() and (info.residual <= 1e-5).all()


def test_per_sample_independence_batch_equals_individual():
    op, rhs = make_problem(b=3)
    lam = torch.tensor([0.02, 0.001, 0.1], dtype=torch.float64)
    xb, info = conjugate_gradient(op.normal, rhs, lam, max_iter=60, tol=1e-6, return_info=True)
    its = info.iterations.tolist()
    assert len(set(its)) > 1, f"samples should converge at different iterations, got {its}"
    xs = cg_solve(op.normal, rhs, lam, max_iter=60, tol=1e-6)
    for i in range(3):
        single = SenseOperator(op.sens_maps[i:i + 1], op.mask[i:i + 1])
        xi, ii = conjugate_gradient(single.normal, rhs[i:i + 1], float(lam[i]), max_iter=60, tol=1e-6,
                                    return_info=True)
        assert ii.iterations.item() == its[i]
        assert torch.allclose(xb[i:i + 1], xi, rtol=0, atol=1e-12)
        assert torch.allclose(xs[i:i + 1], xi, rtol=0, atol=1e-12)


def test_tol_zero_runs_max_iter_and_max_iter_zero():
    op, rhs = make_problem(b=2, dtype=torch.complex64)
    _, info = conjugate_gradient(op.normal, rhs, 0.01, max_iter=7, tol=0.0, return_info=True)
    assert info.iterations.tolist() == [7, 7]
    x0 = crandn(*rhs.shape, dtype=torch.complex64)
    assert torch.equal(conjugate_gradient(op.normal, rhs, 0.01, x0=x0, max_iter=0), x0)
    assert torch.equal(cg_solve(op.normal, rhs, 0.01, max_iter=0), torch.zeros_like(rhs))


def test_warm_start_converges_to_same_solution():
    op, rhs = make_problem(b=2)
    ref = conjugate_gradient(op.normal, rhs, 0.05, max_iter=200, tol=1e-12)
    x, info = conjugate_gradient(op.normal, rhs, 0.05, x0=ref + 1e-3 * crandn(*ref.shape), max_iter=200,
                                 tol=1e-12, return_info=True)
    assert torch.allclose(x, ref, atol=1e-9)


def test_zero_rhs_gives_zero_without_nan():
    op, rhs = make_problem(b=3, dtype=torch.complex64)
    rhs = rhs.clone()
    rhs[1] = 0
    for solver in (conjugate_gradient, cg_solve):
        r = rhs.clone().requires_grad_(True)
        lam = torch.tensor(0.01, requires_grad=True)
        x = solver(op.normal, r, lam, max_iter=20, tol=1e-6)
        assert torch.isfinite(torch.view_as_real(x)).all() and torch.equal(x[1], torch.zeros_like(x[1]))
        x.abs().square().sum().backward()
        assert torch.isfinite(torch.view_as_real(r.grad)).all() and torch.isfinite(lam.grad)
    assert torch.equal(cg_solve(op.normal, torch.zeros_like(rhs), 0.0), torch.zeros_like(rhs))


def test_identity_like_normal_is_not_corrupted():
    rhs = crandn(2, 5, 5)
    x = conjugate_gradient(lambda v: v, rhs, lam=1.0, max_iter=5, tol=1e-12)
    assert torch.allclose(x, rhs / 2, atol=1e-12)


def test_inputs_not_modified():
    op, rhs = make_problem(b=2, dtype=torch.complex64)
    keep = rhs.clone()
    x0 = crandn(*rhs.shape, dtype=torch.complex64)
    x0_keep = x0.clone()
    conjugate_gradient(op.normal, rhs, 0.01, x0=x0, max_iter=5)
    cg_solve(op.normal, rhs, 0.01, max_iter=5, x0=x0)
    assert torch.equal(rhs, keep) and torch.equal(x0, x0_keep)


def test_non_finite_values_raise_input_error():
    op, rhs = make_problem(b=2, dtype=torch.complex64)
    bad = rhs.clone()
    bad[1, 0, 0] = float("nan")
    for solver in (conjugate_gradient, cg_solve):
        with pytest.raises(InputError, match=r"NaN/Inf.*\[1\]"):
            solver(op.normal, bad, 0.01)
    maps = op.sens_maps.clone()
    maps[0, 0, 3, 3] = complex(float("inf"), 0)
    broken = SenseOperator(maps, op.mask)
    with pytest.raises(InputError, match="non-finite values at iteration 1"):
        cg_solve(broken.normal, rhs, 0.01)
    with pytest.raises(InputError, match="lam must be >= 0"):
        cg_solve(op.normal, rhs, -1.0)
    with pytest.raises(InputError, match="lam"):
        cg_solve(op.normal, rhs, torch.ones(5))
    with pytest.raises(InputError, match="lam"):
        cg_solve(op.normal, rhs, float("nan"))


def _grads(solver, op, rhs, lam, weight, **kw):
    r = rhs.clone().requires_grad_(True)
    lam = lam.clone().requires_grad_(True)
    x = solver(op.normal, r, lam, **kw)
    loss = (weight * x).abs().square().sum() + (x.real * 0.3).sum()
    g_r, g_lam = torch.autograd.grad(loss, (r, lam))
    return x.detach(), g_r, g_lam


@pytest.mark.parametrize("lam", [torch.tensor(0.03, dtype=torch.float64),
                                  torch.tensor([0.03, 0.002, 0.2], dtype=torch.float64)])
def test_implicit_gradient_matches_unrolled_autograd_float64(lam):
    op, rhs = make_problem(b=3)
    weight = crandn(*rhs.shape)
    kw = dict(max_iter=300, tol=1e-13)
    x_ref, gr_ref, gl_ref = _grads(conjugate_gradient, op, rhs, lam, weight, **kw)
    x, gr, gl = _grads(cg_solve, op, rhs, lam, weight, **kw)
    assert torch.allclose(x, x_ref, atol=1e-12)
    assert torch.allclose(gr, gr_ref, rtol=1e-7, atol=1e-9)
    assert gl.shape == lam.shape
    assert torch.allclose(gl, gl_ref, rtol=1e-7, atol=1e-9)


def test_implicit_gradient_matches_unrolled_autograd_float32():
    op, rhs = make_problem(b=2, h=24, w=20, dtype=torch.complex64)
    weight = crandn(*rhs.shape, dtype=torch.complex64)
    lam = torch.tensor(0.05)
    kw = dict(max_iter=100, tol=1e-6)
    _, gr_ref, gl_ref = _grads(conjugate_gradient, op, rhs, lam, weight, **kw)
    _, gr, gl = _grads(cg_solve, op, rhs, lam, weight, **kw)
    assert (gr - gr_ref).norm() / gr_ref.norm() < 1e-3
    assert abs(gl - gl_ref) / abs(gl_ref) < 1e-3


def test_gradcheck_cg_solve():
    op, rhs = make_problem(b=2, c=2, h=4, w=3)
    r = rhs.clone().requires_grad_(True)
    lam = torch.tensor([0.1, 0.05], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda b, l: cg_solve(op.normal, b, l, max_iter=60, tol=1e-13), (r, lam),
                                    fast_mode=True)


def test_unrolled_reference_differentiates_through_the_operator():
    op, rhs = make_problem(b=1, c=2, h=3, w=4)
    maps = op.sens_maps.clone().requires_grad_(True)

    def solve(m):  # tol = 0, more iterations than unknowns: the unrolled map is the exact solution map
        return conjugate_gradient(SenseOperator(m, op.mask).normal, rhs, 0.05, max_iter=20, tol=0.0)

    assert torch.autograd.gradcheck(solve, (maps,), fast_mode=True)
    # cg_solve treats the operator as constant (documented): no gradient reaches the maps
    x = cg_solve(SenseOperator(maps, op.mask).normal, rhs.clone().requires_grad_(True), 0.05)
    x.abs().sum().backward()
    assert maps.grad is None


def _saved_tensor_count(solver, max_iter):
    op, rhs = make_problem(b=2, dtype=torch.complex64)
    r = rhs.clone().requires_grad_(True)
    count = [0]

    def pack(t):
        count[0] += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        x = solver(op.normal, r, torch.tensor(0.01, requires_grad=True), max_iter=max_iter, tol=0.0)
    x.abs().sum().backward()
    return count[0]


def test_cg_solve_memory_does_not_grow_with_iterations():
    assert _saved_tensor_count(cg_solve, 3) == _saved_tensor_count(cg_solve, 12) <= 4
    assert _saved_tensor_count(conjugate_gradient, 12) > _saved_tensor_count(conjugate_gradient, 3)


def test_learnable_lambda_in_module_style_training_step():
    op, rhs = make_problem(b=2, dtype=torch.complex64)
    log_lam = torch.nn.Parameter(torch.tensor(-3.0))
    x = cg_solve(op.normal, rhs, log_lam.exp(), max_iter=10)
    (x.abs().sum()).backward()
    assert log_lam.grad is not None and torch.isfinite(log_lam.grad) and log_lam.grad != 0


@pytest.mark.gpu
def test_cg_cuda_matches_cpu():
    op, rhs = make_problem(b=3, h=32, w=24, dtype=torch.complex64)
    gop = SenseOperator(op.sens_maps.cuda(), op.mask.cuda())
    lam = torch.tensor([0.01, 0.02, 0.005])
    x_cpu = cg_solve(op.normal, rhs, lam, max_iter=30, tol=1e-6)
    x_gpu = cg_solve(gop.normal, rhs.cuda(), lam.cuda(), max_iter=30, tol=1e-6)
    assert (x_gpu.cpu() - x_cpu).norm() / x_cpu.norm() < 1e-4
    r = rhs.cuda().requires_grad_(True)
    cg_solve(gop.normal, r, 0.01, max_iter=30).abs().sum().backward()
    assert torch.isfinite(torch.view_as_real(r.grad)).all()
