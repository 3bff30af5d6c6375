"""Linear stability regions of the fixed-step schemes, read off their update rules.

For the test equation ``u' = lam u`` with ``z = lam dt``, one step of any linear one-step,
multistep or Runge-Kutta scheme is a linear map ``M(z)`` on the state ``(u_n, history)``
(``history`` = the scheme's explicit ``state`` tuple, e.g. LM's ``u_{n-1}``, AB2's
``f_{n-1}``). `step_matrix` builds ``M(z)`` numerically in complex128 by running
``scheme.step`` on basis vectors, so every registered scheme gets its region without a
hand-written formula. The region is ``{z : rho(M(z)) <= 1}`` (spectral radius): for a
multistep scheme the eigenvalues of ``M`` are the roots of its stability polynomial
``rho(xi) - z sigma(xi)``, so this is the root condition (up to repeated roots on the circle,
a boundary set of measure zero).

Closed forms used as checks (`analytic_radius`):

* euler: ``|1 + z|``;  midpoint, heun: ``|1 + z + z^2/2|``;  rk4, rk4_38:
  ``|sum_{j<=4} z^j / j!|`` (all explicit RK with s = p <= 4 stages share the truncated exp).
* backward_euler with K fixed-point iterations: ``|sum_{j=0}^K z^j|``. This is the *truncated*
  series, not the implicit region ``|1 / (1 - z)| <= 1`` (outside the disc about 1), which the
  iteration approaches only for ``|z| < 1``, where the fixed-point iteration converges.
* ab2: roots of ``xi^2 - (1 + 3z/2) xi + z/2``.
* lm with fixed k: roots of ``xi^2 - (1 - k + z) xi - k`` (the region for ``(1 + k) u' = lam u``;
  at ``z = 0`` the roots are 1 and ``-k``: zero-stable iff ``|k| < 1``).
* leapfrog (both variants): the scheme acts on a *partitioned* state ``(y, z)``; the test
  system is ``y' = lam z``, ``z' = lam y`` (i.e. ``y'' = lam^2 y``, modes ``exp(+-lam t)``).
  One step has determinant 1 (each half-update is a shear) and trace ``2 + z^2``, so the
  eigenvalues are the roots of ``xi^2 - (2 + z^2) xi + 1``; both lie on the unit circle iff
  ``z^2`` is real in ``[-4, 0]``: the region is the segment ``z in i[-2, 2]`` of the imaginary
  axis (oscillatory modes with ``|omega dt| <= 2``). Leapfrog preserves volume: it never damps,
  so it has no 2-D region, unlike the dissipative schemes.
* damped_leapfrog: on this test system (one field on the whole state, no damping pair) it is
  velocity Verlet with gamma = 0, so its region is leapfrog's segment.
"""
from __future__ import annotations

import math
import warnings

import torch

import solvers
from solvers import checks
from solvers.leapfrog import Leapfrog

# options per scheme for the region figure (a scheme not named here is drawn with its defaults)
VARIANTS = {
    "backward_euler": [dict(iterations=2), dict(iterations=5)],
    "lm": [dict(k=-0.5), dict(k=0.0), dict(k=0.5)],
    "leapfrog": [dict(variant="verlet"), dict(variant="revnet")],
}


def _scheme(scheme, options=None):
    return solvers.get(scheme, **(options or {})) if isinstance(scheme, str) else scheme


def deterministic_schemes() -> list[str]:
    """Registered scheme names that are deterministic, aliases of the same class removed."""
    seen, names = set(), []
    for name in solvers.available():
        cls = solvers.SCHEMES[name]
        if getattr(cls, "stochastic", False) or cls in seen:
            continue
        seen.add(cls)
        names.append(name)
    return names


def _test_system(scheme):
    """``(w, S)``: the state has ``w`` components per point and the test field is ``lam u S``."""
    if isinstance(scheme, Leapfrog):  # partitioned y' = lam z, z' = lam y
        return 2, torch.tensor([[0, 1], [1, 0]], dtype=torch.complex128)
    return 1, torch.ones(1, 1, dtype=torch.complex128)


def step_matrix(scheme, z, options=None, **coefficients) -> torch.Tensor:
    """``M(z)`` of shape ``(P, m, m)`` (complex128) for ``P = z.numel()`` points: one step of
    ``scheme`` on ``u' = lam u`` with ``dt = 1``, ``lam = z``, acting on ``(u, *history)``.

    ``scheme`` is a name (with ``options``) or a `solvers.Scheme`; ``coefficients`` override its
    fixed coefficients (e.g. ``k=0.3`` for ``lm``)."""
    scheme = _scheme(scheme, options)
    if scheme.stochastic:
        raise ValueError(f"{scheme.name}: stability regions are for deterministic schemes; "
                         f"{scheme.name} is stochastic")
    values = dict(scheme.fixed_coefficients())
    values.update(coefficients)
    unknown = set(values) - {c.name for c in scheme.coefficients}
    if unknown:
        raise ValueError(f"{scheme.name}: unknown coefficient(s) {sorted(unknown)}; this scheme has "
                         f"{[c.name for c in scheme.coefficients]}")
    lam = torch.as_tensor(z, dtype=torch.complex128).reshape(-1, 1)
    w, coupling = _test_system(scheme)

    def field(t, u):
        return lam * (u @ coupling)

    def step(u, state):
        return scheme.step(field, 0.0, 1.0, u, state, **values)

    points = lam.shape[0]
    # the steady history: multistep schemes warm up with shorter histories (Euler first, ...)
    u, warm, history = torch.ones(points, w, dtype=torch.complex128), None, -1
    for _ in range(16):
        u, warm = step(u, warm)
        if (0 if warm is None else len(warm)) == history:
            break
        history = 0 if warm is None else len(warm)
    if warm is not None and not all(torch.is_tensor(s) and s.shape == (points, w) for s in warm):
        raise ValueError(f"{scheme.name}: its state is not a tuple of tensors shaped like u, so the "
                         f"step cannot be linearised on (u, history)")
    m = w * (1 + history)
    columns = []
    for j in range(m):
        basis = torch.zeros(points, m, dtype=torch.complex128)
        basis[:, j] = 1
        parts = basis.split(w, dim=1)
        u_next, state = step(parts[0], tuple(parts[1:]) if history else None)
        columns.append(torch.cat((u_next, *state), dim=1) if history else u_next)
    return torch.stack(columns, dim=2)


def amplification(scheme, z, options=None, **coefficients) -> torch.Tensor:
    """Spectral radius ``rho(M(z))`` at each point of ``z`` (float64, shape of ``z``)."""
    z = torch.as_tensor(z, dtype=torch.complex128)
    matrix = step_matrix(scheme, z, options, **coefficients)
    if matrix.shape[-1] == 1:
        radius = matrix[..., 0, 0].abs()
    elif matrix.shape[-1] == 2:  # roots of xi^2 - tr xi + det: much faster than batched eigvals
        trace = matrix[..., 0, 0] + matrix[..., 1, 1]
        det = matrix[..., 0, 0] * matrix[..., 1, 1] - matrix[..., 0, 1] * matrix[..., 1, 0]
        radius = _poly_roots_radius((-trace, det))
    else:
        radius = torch.linalg.eigvals(matrix).abs().amax(dim=-1)
    return radius.reshape(z.shape)


def complex_grid(re=(-3.5, 1.5), im=(-3.0, 3.0), n: int = 401):
    """``(x, y, z)``: an ``n x n`` grid of the complex plane (``z[i, j] = x[j] + i y[i]``)."""
    if not checks.is_int(n, 2):
        raise ValueError(f"grid size n must be an integer >= 2, got {n!r}")
    x = torch.linspace(float(re[0]), float(re[1]), n, dtype=torch.float64)
    y = torch.linspace(float(im[0]), float(im[1]), n, dtype=torch.float64)
    return x, y, torch.complex(x[None, :].expand(n, n), y[:, None].expand(n, n))


def stability_region(scheme, options=None, re=(-3.5, 1.5), im=(-3.0, 3.0), n: int = 401,
                     tol: float = 1e-9, **coefficients) -> dict:
    """The region ``rho(M(z)) <= 1 + tol`` on a grid: a dict with ``x``, ``y`` (axes), ``radius``
    and ``stable`` (``n x n``), and the scheme's ``name``, ``order`` and ``label``."""
    built = _scheme(scheme, options)
    x, y, z = complex_grid(re, im, n)
    radius = amplification(built, z, **coefficients)
    opts = {**(options or {}), **coefficients}
    label = built.name + (" (" + ", ".join(f"{k}={v}" for k, v in opts.items()) + ")" if opts else "")
    return dict(name=built.name, label=label, order=built.order, options=opts, x=x, y=y,
                radius=radius, stable=radius <= 1 + tol)


def _poly_roots_radius(coeffs):
    """max |root| of ``xi^2 + b xi + c`` for tensors ``b``, ``c`` (elementwise)."""
    b, c = coeffs
    disc = torch.sqrt(b * b - 4 * c)
    return torch.maximum(((-b + disc) / 2).abs(), ((-b - disc) / 2).abs())


def analytic_radius(name: str, z, **options) -> torch.Tensor:
    """Closed-form spectral radius of a scheme at ``z`` (see the module docstring); ``options``
    as for `solvers.get` (``iterations`` for backward_euler, ``k`` for lm)."""
    z = torch.as_tensor(z, dtype=torch.complex128)
    if name == "euler":
        return (1 + z).abs()
    if name in ("midpoint", "rk2", "heun"):
        return (1 + z + z ** 2 / 2).abs()
    if name in ("rk4", "rk4_38"):  # every 4-stage explicit RK of order 4 has this polynomial
        return sum(z ** j / math.factorial(j) for j in range(5)).abs()
    if name == "backward_euler":
        iterations = options.get("iterations", 2)
        return sum(z ** j for j in range(iterations + 1)).abs()
    if name == "backward_euler_implicit":  # the K -> infinity limit, for comparison
        return 1 / (1 - z).abs()
    if name == "ab2":
        return _poly_roots_radius((-(1 + 1.5 * z), 0.5 * z))
    if name == "lm":
        k = options.get("k", solvers.get("lm").fixed_coefficients()["k"])
        return _poly_roots_radius((-(1 - k + z), torch.full_like(z, -k)))
    if name in ("leapfrog", "damped_leapfrog"):  # damped_leapfrog on one f(t, u): undamped
        return _poly_roots_radius((-(2 + z ** 2), torch.ones_like(z)))
    raise ValueError(f"no closed form for scheme {name!r}; closed forms exist for ['ab2', "
                     f"'backward_euler', 'backward_euler_implicit', 'damped_leapfrog', 'euler', 'heun', "
                     f"'leapfrog', 'lm', 'midpoint', 'rk2', 'rk4', 'rk4_38']")


def stability_regions(schemes=None, re=(-3.5, 1.5), im=(-3.0, 3.0), n: int = 401,
                      skip_errors: bool = False) -> list[dict]:
    """`stability_region` for every deterministic registered scheme (or the given names), with
    the option sets of `VARIANTS` (LM for several k, backward Euler for several K, ...).
    ``skip_errors`` skips (with a warning) a scheme whose step cannot be linearised here, e.g.
    one registered later that needs a pair of fields; by default it raises."""
    names = deterministic_schemes() if schemes is None else list(schemes)
    entries = [(name, options) for name in names for options in VARIANTS.get(name, [{}])]
    return for_each_scheme(entries, lambda name, options: stability_region(name, options, re, im, n),
                           "stability region", skip_errors)


def for_each_scheme(entries, compute, what: str, skip_errors: bool = False) -> list:
    """``compute(name, options)`` for each deterministic entry (a name or ``(name, options)``),
    checking names first. ``skip_errors`` turns a failure into a warning naming ``what``."""
    entries = [e if isinstance(e, tuple) else (e, {}) for e in entries]
    for name, _ in entries:
        if isinstance(name, str) and name not in solvers.available():
            raise ValueError(f"unknown scheme {name!r}; available: {', '.join(solvers.available())}")
    out = []
    for name, options in entries:
        if isinstance(name, str) and solvers.SCHEMES[name].stochastic:
            continue
        try:
            out.append(compute(name, options))
        except (ValueError, TypeError, RuntimeError) as e:
            if not skip_errors:
                raise
            warnings.warn(f"{what} of {name} {options or ''} skipped: {e}")
    return out


def real_stability_interval(scheme, options=None, low: float = -10.0, n: int = 20001) -> float:
    """The left end ``a`` of the largest interval ``[a, 0]`` of the negative real axis inside
    the region (e.g. -2 for Euler and RK2, about -2.785 for RK4)."""
    z = torch.linspace(0.0, low, n, dtype=torch.float64).to(torch.complex128)
    radius = amplification(scheme, z, options)
    bad = (radius > 1 + 1e-9).nonzero()
    if len(bad) == 0:
        return low
    return float(z[int(bad[0]) - 1].real) if int(bad[0]) > 0 else 0.0
