"""A learnable s-step linear multistep scheme that stays consistent and zero-stable while it trains."""
from __future__ import annotations

import torch

from . import checks
from .base import Coefficient, Repeat, Scheme, time_grid
from .fused import multistep_update
from .multistep import (characteristic_polynomial, effective_step_factor,
                        modified_equation_coefficients, pair_roots, polymul)

HISTORIES = (2, 3, 4)
FORMS = ("pairs", "real")
DEFAULT_INIT = {"r": (0.0, 0.1), "sum": (0.0, 0.1), "prod": (-0.01, 0.01)}


class LMM(Scheme):
    """Learned linear multistep scheme with s = ``history`` steps. Order 1, 1 evaluation, explicit.

        u_{n+1} = sum_{j=0}^{s-1} a_{n,j} u_{n-j} + dt f(t_n, u_n)
        rho_n(xi) = xi^s - sum_j a_{n,j} xi^{s-1-j} = (xi - 1) sigma_n(xi),  sigma_n = prod_i (xi - r_{n,i})

    The scheme is parametrised by the s - 1 non-unit roots of rho, never by the a_j, so for every
    value of the raw parameters it is consistent (rho(1) = 0: sum_j a_j = 1) and zero-stable
    (|r_i| <= ``radius`` < 1). It is consistent with rho'(1) u_t = f, rho'(1) = prod_i (1 - r_i)
    (LM's 1 + k); the field coefficient b_n is fixed to 1 like LM (the field absorbs its scale).
    With s = 2 and r_1 = -k it is exactly `LM` (same ``lerp``). See `solvers.multistep` for rho,
    rho'(1) and the modified equation.

    Parametrisation (``form``; each name is a per-step scalar `Coefficient` in open bounds, i.e.
    value = lo + (hi - lo) sigmoid(raw)):
      * ``"real"``: real roots ``r1..r{s-1}`` in (-radius, radius).
      * ``"pairs"``: roots in conjugate-or-real pairs, each the roots of the factor
        xi^2 - c S (1 + P) xi + c^2 P with c = radius and normalised ``sum{i}`` = S, ``prod{i}`` = P
        in (-1, 1): this maps the square onto the whole Schur-Cohn stability triangle
        (|q| < 1, |p| < 1 + q for xi^2 + p xi + q) scaled to radius c, so every real
        quadratic with both roots in |xi| < c is reachable, complex pairs included.
        For odd s - 1 a real root ``r1`` comes first.
    ``roots=(...)`` fixes the s - 1 roots (real, or complex in conjugate pairs, |r| < 1): then
    nothing is learnable. ``init`` is a (low, high) range for every coefficient value or a dict
    {name: (low, high)}; defaults r ~ U[0, 0.1] (LM's k ~ U[-0.1, 0]), sum ~ U[0, 0.1],
    prod ~ U[-0.01, 0.01] (all near Euler, sigma = xi^{s-1}).

    Computed in increment form, u_{n+1} = u_n + dt f_n - sum_{i=1}^{s-1} b_i (u_{n+1-i} - u_{n-i})
    with sigma(xi) = xi^{s-1} + b_1 xi^{s-2} + ... + b_{s-1}; the first term is
    ``lerp(u_n, u_{n-1}, b_1)``. Constants are preserved exactly even when the b_i are rounded
    (bf16). Zero-stability is exact for the coefficient values; rounding the b_i moves an
    m-fold root by ~eps^(1/m) (float32: < 5e-3 for m = 3), which ``radius`` = 0.99 absorbs.
    `solve` computes sigma once for all steps; `step` once per call. Tying the roots across
    steps is the builder's choice (one raw value for all steps), not a scheme option.

    State: ``(u_{n-1}, ..., u_{n-p})``, most recent first, p <= s - 1 = ``past_states`` (a stage
    transition maps all of them through its shortcut, as for LM). Warm start: with p < s - 1 past
    states, the factors of sigma that do not fit are dropped (their roots set to 0): the step is
    the (p+1)-step member with the leading factors of total degree <= p. ``form="real"``: Euler,
    then LM with r1, then the 3-step member with (r1, r2), ...; a pair enters only when both of its
    roots fit.
    """

    name = "lmm"
    order = 1
    evals_per_step = 1

    def __init__(self, history: int = 3, roots=None, form: str = "real", radius: float = 0.99,
                 init=None):
        if not checks.is_int(history) or history not in HISTORIES:
            raise ValueError(f"lmm: history (number of steps s) must be one of {list(HISTORIES)}, "
                             f"got {history!r}")
        if form not in FORMS:
            raise ValueError(f"lmm: form must be one of {list(FORMS)}, got {form!r}")
        self.history, self.form, self.past_states = history, form, history - 1
        self.radius = checks.real(self.name, "radius", radius, 0.0, 1.0, (False, False))
        self.fixed_roots = None
        if roots is not None:
            if init is not None:
                raise ValueError("lmm: give either fixed roots= or learnable init= ranges, not both")
            self.fixed_roots, self._fixed_factors = self._check_roots(roots)
            self.layout, self.coefficients = (), ()
        else:
            self.layout = self._layout()
            self.coefficients = self._declare(init)

    # -- construction ---------------------------------------------------------------------------
    def _layout(self):
        """Factors of sigma in warm-start order: ("real", name) or ("pair", sum_name, prod_name)."""
        m = self.history - 1
        if self.form == "real":
            return tuple(("real", f"r{i}") for i in range(1, m + 1))
        head = (("real", "r1"),) if m % 2 else ()
        return head + tuple(("pair", f"sum{i}", f"prod{i}") for i in range(1, m // 2 + 1))

    def _declare(self, init):
        names = [name for factor in self.layout for name in factor[1:]]
        if init is None:
            init = {}
        elif not isinstance(init, dict):
            init = dict.fromkeys(names, init)
        unknown = set(init) - set(names)
        if unknown:
            raise ValueError(f"lmm: init names {sorted(unknown)} are not coefficients of this scheme; "
                             f"valid names: {names}")
        out = []
        for name in names:
            kind = name.rstrip("0123456789")
            bounds = (-self.radius, self.radius) if kind == "r" else (-1.0, 1.0)
            doc = (f"zero-stability of lmm needs its roots inside the unit disc; {name} must lie in "
                   f"{bounds}")
            spec = Coefficient(name, 0.0, (0.0, 0.0), bounds, True, doc)
            lo_hi = init.get(name, DEFAULT_INIT[kind])
            try:
                lo, hi = (float(v) for v in lo_hi)
            except (TypeError, ValueError):
                raise ValueError(f"lmm: init for {name} must be a pair of numbers (low, high), "
                                 f"got {lo_hi!r}") from None
            lo, hi = spec.check(lo, self.name), spec.check(hi, self.name)
            if lo > hi:
                raise ValueError(f"lmm: init for {name} must be (low, high) with low <= high, got {lo_hi!r}")
            out.append(Coefficient(name, (lo + hi) / 2, (lo, hi), bounds, True, doc))
        return tuple(out)

    def _check_roots(self, roots):
        m = self.history - 1
        try:
            values = [complex(r) for r in roots]
        except (TypeError, ValueError):
            raise ValueError(f"lmm: roots must be a sequence of {m} numbers, got {roots!r}") from None
        if len(values) != m:
            raise ValueError(f"lmm: history={self.history} needs {m} fixed roots (rho has the root 1 "
                             f"and {m} others), got {len(values)}")
        for r in values:
            if not abs(r) < 1:
                raise ValueError(f"lmm: fixed root {r} is not strictly inside the unit disc; "
                                 f"zero-stability needs |r| < 1 for every root but the one at 1")
        factors, pending = [], list(values)
        while pending:
            r = pending.pop(0)
            if abs(r.imag) <= 1e-12:
                factors.append([1.0, -r.real])
                continue
            match = [i for i, q in enumerate(pending) if abs(q - r.conjugate()) <= 1e-9]
            if not match:
                raise ValueError(f"lmm: complex root {r} has no conjugate among the roots; complex "
                                 f"roots must come in conjugate pairs so that the a_j are real")
            pending.pop(match[0])
            factors.append([1.0, -2 * r.real, abs(r) ** 2])
        fixed = tuple(r.real if abs(r.imag) <= 1e-12 else r for r in values)
        return fixed, factors

    def options(self):
        return dict(history=self.history, roots=self.fixed_roots, form=self.form, radius=self.radius,
                    init={c.name: c.init for c in self.coefficients} or None)

    # -- sigma from coefficient values ------------------------------------------------------------
    def _factors(self, values):
        """Coefficient lists [1, -r] / [1, -c S (1 + P), c^2 P] of the factors of sigma."""
        if self.fixed_roots is not None:
            return self._fixed_factors
        try:
            out = []
            for factor in self.layout:
                if factor[0] == "real":
                    out.append([1.0, -values[factor[1]]])
                else:
                    S, P = values[factor[1]], values[factor[2]]
                    out.append([1.0, -self.radius * S * (1 + P), (self.radius ** 2) * P])
            return out
        except KeyError as e:
            raise ValueError(f"lmm: missing coefficient {e.args[0]!r}; this scheme takes "
                             f"{[c.name for c in self.coefficients]}") from None

    def sigma(self, values=None, available: int | None = None) -> list:
        """[1, b_1, ..., b_d] of the sigma used with ``available`` past states (None: all)."""
        values = self.fixed_coefficients() if values is None else values
        available = self.history - 1 if available is None else available
        sigma = [1.0]
        for factor in self._factors(values):
            if len(sigma) - 1 + len(factor) - 1 > available:
                break
            sigma = polymul(sigma, factor)
        return sigma

    # -- one step ---------------------------------------------------------------------------------
    def step(self, f, t, dt, u, state, **values):
        past = () if state is None else tuple(state)
        u_next = self._advance(f, t, dt, u, past, self.sigma(values, len(past))[1:])
        return u_next, ((u,) + past)[: self.history - 1]

    def _advance(self, f, t, dt, u, past, b):
        """u_{n+1} from u_n, the past states and [b_1, ..., b_d] (d <= len(past))."""
        f_n = f(t, u)
        return multistep_update(u, past, f_n, b, dt) if b else torch.add(u, f_n, alpha=dt)

    def solve(self, fields, u0, t0=0.0, dt=1.0, coefficients=None, state=None, return_path=False,
              training=True, activation=None):
        """`Scheme.solve` with sigma computed once for all steps (vectorised over per-step values)
        instead of once per step; warm-start steps still use their lower members."""
        values = self.per_step_values(coefficients, len(fields))
        whole = {name: _stack(v) if per_step else v for name, (v, per_step) in values.items()}
        rows = [b.unbind(0) if torch.is_tensor(b) and b.dim() > 0 else Repeat(b, len(fields))
                for b in self.sigma(whole)[1:]]
        past, m = (() if state is None else tuple(state)), self.history - 1
        u, path = u0, [u0] if return_path else None
        times = time_grid(t0, dt, len(fields), u0)
        for n, f in enumerate(fields):
            if len(past) < m:   # warm start: lower member from this step's scalar values
                b = self.sigma({name: v[n] if per_step else v
                                for name, (v, per_step) in values.items()}, len(past))[1:]
            else:
                b = [row[n] for row in rows]
            u, past = self._advance(f, times[n], dt, u, past, b), ((u,) + past)[:m]
            if activation is not None:  # the history keeps activated states
                u = activation(u)
            if return_path:
                path.append(u)
        return (torch.stack(path) if return_path else u), past

    # -- analysis (per-step values -> roots, rho'(1), modified equation) ---------------------------
    def roots(self, values=None) -> torch.Tensor:
        """The s - 1 non-unit roots of rho as a complex tensor (..., s - 1) in layout order.

        ``values``: {name: scalar or tensor (steps,)} (None: the fixed/default values), e.g.
        the builder's ``coefficient.to_value(raw)``; per-step values give shape (steps, s - 1).
        """
        if self.fixed_roots is not None:
            return torch.tensor(self.fixed_roots, dtype=torch.complex128)
        values = self.fixed_coefficients() if values is None else values
        parts = []
        values = {k: torch.as_tensor(v).to(torch.float64) for k, v in values.items()}
        for factor in self._factors(values):   # in float64: a double root is ill-conditioned
            if len(factor) == 2:
                r = -factor[1]
                parts.append(torch.complex(r, torch.zeros_like(r)).unsqueeze(-1))
            else:
                parts.append(pair_roots(-factor[1], factor[2]))
        shape = torch.broadcast_shapes(*[p.shape[:-1] for p in parts])
        return torch.cat([p.expand(*shape, p.shape[-1]) for p in parts], -1)

    def characteristic_polynomial(self, values=None) -> torch.Tensor:
        """rho's coefficients, highest first, (..., s + 1) (see `multistep.characteristic_polynomial`)."""
        return characteristic_polynomial(self.roots(values))

    def effective_step_factor(self, values=None) -> torch.Tensor:
        """rho'(1) = prod_i (1 - r_i) per step (LM's 1 + k)."""
        return effective_step_factor(self.roots(values))

    def modified_equation(self, values=None, terms: int = 3) -> torch.Tensor:
        """C_1..C_terms per step: C_1 u_t + C_2 dt u_tt + ... = f (see `multistep`)."""
        return modified_equation_coefficients(self.roots(values), terms)


def _stack(values):
    """Per-step coefficient values (tensor, or list of numbers/tensors) as one tensor (steps,)."""
    if torch.is_tensor(values):
        return values
    if any(torch.is_tensor(v) for v in values):
        return torch.stack([torch.as_tensor(v) for v in values])
    return torch.tensor([float(v) for v in values], dtype=torch.float64)


def roots_per_step(scheme, values=None) -> torch.Tensor:
    """Roots of rho other than 1 for a two-step `LM` (``-k``) or an `LMM` scheme, complex, shape
    (steps, s - 1) for per-step ``values`` {name: tensor (steps,)} (e.g. a trained block's
    ``coefficient.to_value(raw)``), for plotting learned roots in the complex plane."""
    if isinstance(scheme, LMM):
        return scheme.roots(values)
    if getattr(scheme, "name", None) == "lm":
        values = scheme.fixed_coefficients() if values is None else values
        k = torch.as_tensor(values["k"], dtype=torch.float64)
        return torch.complex(-k, torch.zeros_like(k)).unsqueeze(-1)
    raise ValueError(f"roots_per_step: needs an 'lm' or 'lmm' scheme, got {scheme!r}")
