"""Polynomial maths of explicit linear multistep schemes with one field evaluation at t_n.

An s-step scheme of this family (LM-ResNet is s = 2) is

    u_{n+1} = sum_{j=0}^{s-1} a_j u_{n-j} + dt f(t_n, u_n),

with first characteristic polynomial

    rho(xi) = xi^s - sum_j a_j xi^{s-1-j} = (xi - 1) * sigma(xi),   sigma(xi) = prod_{i=1}^{s-1} (xi - r_i).

The factor (xi - 1) is consistency (rho(1) = 0, i.e. sum_j a_j = 1); zero-stability is |r_i| < 1.
Every function here takes the s - 1 non-unit roots ``r_i`` as a tensor of shape (..., s - 1),
real or complex (complex roots must come in conjugate pairs, so that the a_j are real), or as a
Python sequence of numbers, and is differentiable in torch. Polynomials are coefficient
vectors, highest degree first (numpy.roots' convention).

Used by `solvers.lmm` (the learned scheme) and by analysis/plotting code (learned roots, rho'(1),
modified equation); nothing here knows about networks.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from . import checks


def polymul(p: Sequence, q: Sequence) -> list:
    """Product of two polynomials given as coefficient lists (highest degree first) whose entries
    are numbers or tensors of a common broadcastable shape; returns a list of len(p)+len(q)-1."""
    out = [None] * (len(p) + len(q) - 1)
    for i, p_i in enumerate(p):
        for j, q_j in enumerate(q):   # monic factors: skip the (python) multiplications by 1.0
            term = q_j if _is_one(p_i) else p_i if _is_one(q_j) else p_i * q_j
            out[i + j] = term if out[i + j] is None else out[i + j] + term
    return out


def _is_one(x) -> bool:
    return isinstance(x, float) and x == 1.0


def as_roots(roots) -> torch.Tensor:
    """``roots`` as a tensor of shape (..., m): tensors pass through, Python sequences become
    float64 (complex128 if any entry is complex)."""
    if torch.is_tensor(roots):
        return roots if roots.dim() > 0 else roots.reshape(1)
    values = list(roots)
    is_complex = any(isinstance(v, complex) or (torch.is_tensor(v) and v.is_complex()) for v in values)
    return torch.tensor(values, dtype=torch.complex128 if is_complex else torch.float64)


def _real(coefficients: torch.Tensor) -> torch.Tensor:
    """Real part of coefficients built from conjugate-pair roots (raises if they are not)."""
    if not coefficients.is_complex():
        return coefficients
    scale = 1.0 + float(coefficients.abs().max()) if coefficients.numel() else 1.0
    if coefficients.numel() and float(coefficients.imag.abs().max()) > 1e-9 * scale:
        raise ValueError("roots must be real or come in complex-conjugate pairs, so that the "
                         "scheme's coefficients a_j are real")
    return coefficients.real


def characteristic_polynomial(roots) -> torch.Tensor:
    """Coefficients of rho(xi) = (xi - 1) prod_i (xi - r_i), highest degree first.

    ``roots`` (..., s - 1) -> (..., s + 1), real. rho = [1, -a_0, -a_1, ..., -a_{s-1}].
    """
    roots = as_roots(roots)
    one = torch.ones(roots.shape[:-1], dtype=roots.dtype, device=roots.device)
    coefficients = [one, -one]
    for r in roots.unbind(-1):
        coefficients = polymul(coefficients, [one, -r])
    return _real(torch.stack(coefficients, -1))


def multistep_coefficients(roots) -> torch.Tensor:
    """The weights a_0..a_{s-1} of u_{n+1} = sum_j a_j u_{n-j} + dt f(u_n); shape (..., s).

    They sum to 1 (consistency) for any roots. For s = 2, r = -k: (a_0, a_1) = (1 - k, k) (LM).
    """
    return -characteristic_polynomial(roots)[..., 1:]


def effective_step_factor(roots) -> torch.Tensor:
    """rho'(1) = sigma(1) = prod_i (1 - r_i), shape (...).

    The scheme is consistent with ``rho'(1) u_t = f(u)``: it integrates the field scaled by
    1 / rho'(1), i.e. it takes an effective step dt / rho'(1). LM: rho'(1) = 1 + k.
    """
    roots = as_roots(roots)
    return _real(torch.prod(1 - roots, dim=-1))


def modified_equation_coefficients(roots, terms: int = 3) -> torch.Tensor:
    """Coefficients C_1..C_terms of the modified equation, shape (..., terms).

    Expanding every u_{n+l} = u(t_n + l dt) of ``rho(E) u_{n-s+1} = dt f(u_n)`` in a Taylor series
    around t_n (where the field is evaluated) and dividing by dt gives

        C_1 u_t + C_2 dt u_tt + C_3 dt^2 u_ttt + ... = f(u),
        C_q = (1 / q!) sum_{l=0}^{s} rho_l (l - s + 1)^q,

    where rho_l is the coefficient of xi^l in rho (so u_{n+1} has offset +1, u_{n-j} offset -j;
    the q = 0 term is rho(1) = 0). C_1 = rho'(1) = sigma(1) is the effective step factor; C_2 / C_1
    (times dt) is the size of the inertia term of the normalised equation
    u_t + (C_2 / C_1) dt u_tt + ... = f / C_1. For s = 2 with r = -k: C_1 = 1 + k, C_2 = (1 - k)/2,
    i.e. LM's (1 + k) u_t + (1 - k) (dt/2) u_tt = f. The scheme is of order p for C_1 u_t = f iff
    C_2 = ... = C_p = 0 (e.g. s = 3 with the double root r = -1/3 has C_2 = 0: order 2).
    """
    if not checks.is_int(terms, 1):
        raise ValueError(f"modified_equation_coefficients: terms must be an integer >= 1, got {terms!r}")
    rho = characteristic_polynomial(roots)
    s = rho.shape[-1] - 1
    offsets = torch.arange(s, -1, -1, dtype=rho.dtype, device=rho.device) - (s - 1)
    return torch.stack([(rho * offsets ** q).sum(-1) / math.factorial(q)
                        for q in range(1, terms + 1)], -1)


def pair_roots(pair_sum: torch.Tensor, pair_product: torch.Tensor) -> torch.Tensor:
    """The two roots of xi^2 - pair_sum xi + pair_product, complex, shape (..., 2)."""
    pair_sum, pair_product = torch.broadcast_tensors(torch.as_tensor(pair_sum), torch.as_tensor(pair_product))
    dtype = torch.complex128 if pair_sum.dtype == torch.float64 else torch.complex64
    root = torch.sqrt((pair_sum * pair_sum - 4 * pair_product).to(dtype))
    half = pair_sum.to(dtype) / 2
    return torch.stack((half + root / 2, half - root / 2), -1)
