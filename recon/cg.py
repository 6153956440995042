"""Batched conjugate gradient for ``(A^H A + lam I) x = b``, with an implicit (memory-free) backward pass.

Two entry points solve the same system, sample by sample, for a batch ``b`` of complex tensors ``[B, ...]``
(``[B, H, W]`` images, or ``[B, M, H, W]`` with ESPIRiT map sets):

- :func:`conjugate_gradient`: plain autograd through the unrolled iterations (the reference; memory grows
  with ``max_iter``).
- :func:`cg_solve`: a ``torch.autograd.Function`` whose backward solves the adjoint system instead of storing
  the iterations. The system matrix ``K = A^H A + lam I`` is Hermitian, so for ``x = K^{-1} b``:
  ``grad_b = K^{-1} grad_x`` (one more CG solve, same ``max_iter`` / ``tol``) and
  ``grad_lam = -Re<x, grad_b>`` per sample (summed over the batch when ``lam`` is a scalar). Only ``x`` and
  ``lam`` are saved, so training memory does not grow with the number of CG iterations.
  The operator inside ``normal`` (coil maps, mask) is treated as a constant: no gradient reaches it through
  ``cg_solve`` (use :func:`conjugate_gradient` if you need one). The implicit gradient is exact for the exact
  solution; with a loose ``tol`` / few iterations it is the gradient of the converged solve, not of the
  truncated one (they differ by O(residual)). ``x0`` is a warm start and receives no gradient.

Per sample: step sizes ``alpha`` / ``beta`` are ``[B]`` tensors (never shared across the batch); a sample
stops updating once its relative residual ``||r|| / ||b||`` is ``<= tol`` (``tol = 0`` runs all ``max_iter``
iterations); a sample whose curvature ``Re<p, K p>`` is not positive (operator not positive definite on it)
stops too. The loop ends at ``max_iter`` or when every sample has stopped. ``b = 0`` gives ``x = 0`` (no NaN).
Non-finite values in ``b``, ``x0`` or ``lam``, or appearing during the iterations (NaN in the coil maps, a
diverging network), raise ``recon.errors.InputError``. One host sync per iteration (convergence + finiteness).

``lam`` (Tikhonov weight, >= 0, dimensionless relative to ``A^H A``): a Python float, a 0-d tensor (may
require grad, e.g. MoDL's learnable lambda) or a ``[B]`` tensor (per-sample weights).
``normal`` is a callable ``x -> A^H A x`` mapping ``[B, ...]`` to the same shape (e.g.
``SenseOperator.normal``); it must act on each sample independently.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from recon.errors import InputError

__all__ = ["conjugate_gradient", "cg_solve", "CGInfo"]

Normal = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class CGInfo:
    """Per-sample diagnostics: ``iterations`` (int64 ``[B]``, updates applied) and ``residual``
    (``[B]`` relative residual ``||b - K x|| / ||b||`` as tracked by CG; 0 where ``b = 0``)."""

    iterations: torch.Tensor
    residual: torch.Tensor


def _rdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample ``Re<a, b> = Re sum conj(a) b`` over all dims but the first: ``[B]`` real."""
    ra = torch.view_as_real(a).reshape(a.shape[0], 1, -1)
    rb = torch.view_as_real(b).reshape(b.shape[0], -1, 1)
    return torch.bmm(ra, rb).reshape(a.shape[0])


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape((v.shape[0],) + (1,) * (like.ndim - 1))


def _check_rhs(rhs: torch.Tensor, what: str) -> None:
    if not torch.is_tensor(rhs) or not rhs.is_complex():
        raise InputError(None, f"conjugate gradient: {what} must be a complex tensor [B, ...], "
                               f"got {type(rhs).__name__} {getattr(rhs, 'dtype', '')}")
    if rhs.ndim < 2:
        raise InputError(None, f"conjugate gradient: {what} must be batched [B, ...], got shape "
                               f"{tuple(rhs.shape)}")
    if not bool(torch.isfinite(rhs).all()):
        bad = (~torch.isfinite(rhs)).flatten(1).any(1).nonzero().flatten().tolist()
        raise InputError(None, f"conjugate gradient: {what} has NaN/Inf values (batch samples {bad})")


def _lam_vector(lam, rhs: torch.Tensor) -> torch.Tensor:
    """``lam`` as a ``[B]`` real tensor on rhs's device (keeps the graph of a tensor lam)."""
    real = torch.float64 if rhs.dtype == torch.complex128 else torch.float32
    n = rhs.shape[0]
    if torch.is_tensor(lam):
        if lam.is_complex():
            raise InputError(None, f"conjugate gradient: lam must be real, got {lam.dtype}")
        if lam.ndim == 0:
            lam_b = lam.to(device=rhs.device, dtype=real).expand(n)
        elif lam.ndim == 1 and lam.shape[0] == n:
            lam_b = lam.to(device=rhs.device, dtype=real)
        else:
            raise InputError(None, f"conjugate gradient: lam must be a float, a 0-d tensor or a [B] = [{n}] "
                                   f"tensor, got shape {tuple(lam.shape)}")
    else:
        try:
            lam_f = float(lam)
        except (TypeError, ValueError):
            raise InputError(None, f"conjugate gradient: lam must be a number, got {lam!r}") from None
        lam_b = torch.full((n,), lam_f, dtype=real, device=rhs.device)
    with torch.no_grad():
        ok = torch.stack([torch.isfinite(lam_b).all(), (lam_b >= 0).all()]).tolist()
    if not ok[0]:
        raise InputError(None, "conjugate gradient: lam has NaN/Inf values")
    if not ok[1]:
        raise InputError(None, "conjugate gradient: lam must be >= 0 (the system would not be positive definite)")
    return lam_b


def _cg(normal: Normal, b: torch.Tensor, lam_b: torch.Tensor, x0: torch.Tensor | None, max_iter: int,
        tol: float, differentiable: bool, what: str = "right-hand side") -> tuple[torch.Tensor, CGInfo]:
    """The batched CG loop. ``differentiable=False`` works in place (call under ``torch.no_grad``)."""
    if int(max_iter) < 0:
        raise InputError(None, f"conjugate gradient: max_iter must be >= 0, got {max_iter}")
    if not tol >= 0:
        raise InputError(None, f"conjugate gradient: tol must be >= 0, got {tol}")
    n = b.shape[0]
    lam_v = _bcast(lam_b, b)
    tol2 = float(tol) ** 2
    bn = _rdot(b, b).detach()
    nonzero = bn > 0
    if x0 is None:
        x = torch.zeros_like(b)
        r = b.clone()
    else:
        if tuple(x0.shape) != tuple(b.shape):
            raise InputError(None, f"conjugate gradient: x0 has shape {tuple(x0.shape)}, expected "
                                   f"{tuple(b.shape)} like the right-hand side")
        _check_rhs(x0, "x0")
        x = torch.where(_bcast(nonzero, b), x0.to(b.dtype), 0)  # b = 0 -> x = 0 whatever x0 says
        r = b - (normal(x) + lam_v * x)
    p = r.clone()
    rs = _rdot(r, r)
    active = nonzero & (rs > tol2 * bn)
    iters = torch.zeros(n, dtype=torch.int64, device=b.device)
    if max_iter > 0 and not bool(active.any()):
        max_iter = 0
    for it in range(int(max_iter)):
        ap = normal(p)
        if differentiable or ap.untyped_storage().data_ptr() == p.untyped_storage().data_ptr():
            ap = ap + lam_v * p  # (an identity-like normal may hand back p itself: never update it in place)
        else:
            ap.addcmul_(p, lam_v)
        pap = _rdot(p, ap)
        ok = active & (pap > 0)
        alpha = torch.where(ok, rs / torch.where(ok, pap, 1), 0)
        alpha_v = _bcast(alpha, b)
        if differentiable:
            x = x + alpha_v * p
            r = r - alpha_v * ap
        else:
            x.addcmul_(p, alpha_v)
            r.addcmul_(ap, alpha_v, value=-1)
        rs_new = _rdot(r, r)
        beta = torch.where(ok, rs_new / torch.where(ok, rs, 1), 0)
        beta_v = _bcast(beta, b)
        p = r + beta_v * p if differentiable else p.mul_(beta_v).add_(r)
        iters += ok.to(torch.int64)
        rs = torch.where(ok, rs_new, rs)
        active = ok & (rs_new > tol2 * bn)
        with torch.no_grad():
            nonfinite = ~(torch.isfinite(pap) & torch.isfinite(rs_new))
            flags = torch.stack([active.any(), nonfinite.any()]).tolist()
        if flags[1]:
            bad = nonfinite.nonzero().flatten().tolist()
            raise InputError(None, f"conjugate gradient: non-finite values at iteration {it + 1} for batch samples "
                                   f"{bad} while solving for the {what} (check the coil maps, mask, lam and inputs)")
        if not flags[0]:
            break
    with torch.no_grad():
        resid = torch.where(nonzero, rs.detach().clamp_min(0).sqrt() / bn.sqrt().clamp_min(1e-300), 0)
    return x, CGInfo(iterations=iters, residual=resid)


def conjugate_gradient(normal: Normal, rhs: torch.Tensor, lam=0.0, x0: torch.Tensor | None = None,
                       max_iter: int = 10, tol: float = 1e-6, *, return_info: bool = False):
    """Solve ``(normal + lam I) x = rhs`` per sample; autograd goes through the unrolled iterations.

    With grad mode on, every iteration is recorded (out-of-place), so gradients also reach tensors that
    ``normal`` uses (e.g. coil maps that require grad); under ``torch.no_grad`` it runs in place. These are the
    gradients of the iterations actually run: where a sample stops early because ``b`` lies in a small invariant
    subspace (tiny, structured problems), they can differ from the derivative of the exact solution even though
    the solution itself is exact; ``tol = 0`` with enough iterations avoids that.

    Args:
        normal: callable ``x -> A^H A x`` on ``[B, ...]`` complex tensors (e.g. ``SenseOperator.normal``).
        rhs: ``b``, complex ``[B, ...]`` (typically ``A^H y``, ``[B, H, W]``).
        lam: Tikhonov weight >= 0: float, 0-d tensor or ``[B]`` tensor.
        x0: optional initial guess, same shape as ``rhs`` (samples with ``b = 0`` still return 0).
        max_iter: maximum iterations (each costs one ``normal``).
        tol: stop a sample when ``||r|| <= tol * ||b||`` (0: always run ``max_iter``).
        return_info: also return :class:`CGInfo` (per-sample iterations and relative residual).

    Returns: ``x`` with the shape and dtype of ``rhs`` (and the info when asked for).
    """
    _check_rhs(rhs, "right-hand side")
    lam_b = _lam_vector(lam, rhs)
    if torch.is_grad_enabled():  # out-of-place: gradients reach rhs, lam, x0 and tensors inside ``normal``
        x, info = _cg(normal, rhs, lam_b, x0, max_iter, tol, differentiable=True)
    else:
        with torch.no_grad():
            x, info = _cg(normal, rhs, lam_b, x0, max_iter, tol, differentiable=False)
    return (x, info) if return_info else x


class _CGSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rhs, lam_b, normal, max_iter, tol, x0):
        x, _ = _cg(normal, rhs, lam_b, x0, max_iter, tol, differentiable=False)
        ctx.normal, ctx.max_iter, ctx.tol = normal, max_iter, tol
        ctx.save_for_backward(x, lam_b)
        return x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_x):
        x, lam_b = ctx.saved_tensors
        if grad_x.is_conj():
            grad_x = grad_x.resolve_conj()
        _check_rhs(grad_x, "incoming gradient")
        grad_b, _ = _cg(ctx.normal, grad_x, lam_b, None, ctx.max_iter, ctx.tol, differentiable=False,
                        what="gradient (adjoint system)")
        grad_lam = -_rdot(x, grad_b) if ctx.needs_input_grad[1] else None
        return (grad_b if ctx.needs_input_grad[0] else None), grad_lam, None, None, None, None


def cg_solve(normal: Normal, rhs: torch.Tensor, lam, max_iter: int = 10, tol: float = 1e-6,
             x0: torch.Tensor | None = None) -> torch.Tensor:
    """Solve ``(normal + lam I) x = rhs`` per sample with an implicit backward (no stored iterations).

    Same arguments and result as :func:`conjugate_gradient`. Gradients flow to ``rhs`` and to ``lam`` (when it
    is a tensor that requires grad) through one adjoint CG solve in the backward pass; ``normal``'s operator
    is constant there (see the module docstring). Double backward is not supported.
    """
    _check_rhs(rhs, "right-hand side")
    lam_b = _lam_vector(lam, rhs)
    if x0 is not None:
        x0 = x0.detach()
    return _CGSolve.apply(rhs, lam_b, normal, int(max_iter), float(tol), x0)
