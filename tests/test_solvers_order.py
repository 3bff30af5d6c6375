"""Convergence order of every deterministic registered scheme (float64, steps 16 -> 256).

Two problems on u = (y, z), both separable (y' depends on z only, z' on y only) so that the
leapfrog schemes can take the same whole-state field as the others:
  * decay:  y' = -z, z' = -y with y0 = z0 = 1, i.e. u' = -u, exact solution e^{-t};
  * forced pendulum:  y' = z, z' = -sin(y) + cos(t) / 2 (nonlinear, non-autonomous), against
    scipy's DOP853 at rtol 1e-13.
Multistep schemes with a coefficient (LM's k, lmm's roots) are consistent with
rho'(1) u' = f rather than u' = f (docs/schemes.md §2); their target is that equation, with
rho'(1) from ``scheme.effective_step_factor()``.
"""
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import solvers

EXPECTED_ORDER = {"euler": 1, "backward_euler": 1, "midpoint": 2, "rk2": 2, "heun": 2, "rk4": 4,
                  "rk4_38": 4, "ab2": 2, "leapfrog": 2, "lm": 1, "lmm": 1}
OPTIONS = {"backward_euler": dict(tol=1e-13, max_iterations=200)}
EXTRA_CASES = [("leapfrog", dict(variant="revnet"), 1), ("backward_euler", dict(iterations=2), 1),
               ("lm", dict(k=0.3), 1), ("lm", dict(k=-0.3), 1),
               ("leapfrog", dict(variant="verlet", memory_efficient=False), 2)]
STEPS = [16, 32, 64, 128, 256]


def _cases():
    cases = []
    for name in solvers.available():
        scheme = solvers.get(name, **OPTIONS.get(name, {}))
        if scheme.stochastic:
            continue
        cases.append((name, OPTIONS.get(name, {}), EXPECTED_ORDER.get(name, scheme.order)))
    return cases + EXTRA_CASES


CASES = _cases()
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o, _ in CASES]


def decay(t, u):
    return -u.flip(0)


def pendulum(t, u):
    return torch.stack((u[1], -torch.sin(u[0]) + 0.5 * math.cos(t)))


def _reference(problem, scale):
    """u(1) for scale * u' = f(t, u), u(0) = (1, 1) (exact for decay, DOP853 for the pendulum)."""
    if problem is decay:
        return torch.full((2,), math.exp(-1.0 / scale), dtype=torch.float64)
    rhs = lambda t, u: np.array([u[1], -np.sin(u[0]) + 0.5 * np.cos(t)]) / scale  # noqa: E731
    sol = solve_ivp(rhs, (0.0, 1.0), [1.0, 1.0], method="DOP853", rtol=1e-13, atol=1e-15)
    return torch.tensor(sol.y[:, -1], dtype=torch.float64)


def _scale(scheme):
    factor = getattr(scheme, "effective_step_factor", None)
    return 1.0 if factor is None else float(factor())


def observed_order(scheme, problem):
    u0 = torch.ones(2, dtype=torch.float64)
    exact = _reference(problem, _scale(scheme))
    errors = [float((solvers.integrate(problem, u0, n, scheme=scheme) - exact).abs().max())
              for n in STEPS]
    slope = -np.polyfit(np.log(STEPS), np.log(errors), 1)[0]
    return slope, errors


@pytest.mark.parametrize("problem", [decay, pendulum], ids=["decay", "pendulum"])
@pytest.mark.parametrize("name,options,order", CASES, ids=IDS)
def test_convergence_order(name, options, order, problem):
    scheme = solvers.get(name, **options)
    assert scheme.order == order, f"{name} declares order {scheme.order}, expected {order}"
    slope, errors = observed_order(scheme, problem)
    assert errors[-1] < errors[0], errors
    assert abs(slope - order) < 0.15, f"{name} {options}: observed order {slope:.3f}, errors {errors}"


@pytest.mark.parametrize("k", [0.3, -0.3])
def test_lm_converges_to_scaled_equation_not_to_original(k):
    """LM with fixed k solves (1 + k) u' = -u, i.e. exp(-t / (1 + k)), not exp(-t)."""
    u0 = torch.ones(2, dtype=torch.float64)
    u1 = solvers.integrate(decay, u0, 512, scheme="lm", k=k)
    assert torch.allclose(u1, torch.full_like(u1, math.exp(-1 / (1 + k))), atol=5e-3)
    assert (u1 - math.exp(-1.0)).abs().max() > 0.05


def test_lm_per_step_k_equals_scalar_k():
    u0 = torch.ones(2, dtype=torch.float64)
    scalar = solvers.integrate(pendulum, u0, 20, scheme="lm", coefficients={"k": 0.2})
    per_step = solvers.integrate(pendulum, u0, 20, scheme="lm",
                                 coefficients={"k": torch.full((20,), 0.2, dtype=torch.float64)})
    fixed = solvers.integrate(pendulum, u0, 20, scheme="lm", k=0.2)
    torch.testing.assert_close(scalar, per_step)
    torch.testing.assert_close(scalar, fixed)


def test_lm_k_zero_is_euler():
    u0 = torch.tensor([0.3, -1.2], dtype=torch.float64)
    lm = solvers.integrate(pendulum, u0, 10, scheme="lm", coefficients={"k": 0.0})
    torch.testing.assert_close(lm, solvers.integrate(pendulum, u0, 10, scheme="euler"))


def test_rk4_variants_agree_on_linear_fields_only():
    """Classical RK4 and the 3/8 rule apply the same Taylor polynomial to u' = A u."""
    A = torch.tensor([[-0.5, 2.0], [-1.0, -0.3]], dtype=torch.float64)
    u0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    linear = lambda t, u: A @ u  # noqa: E731
    torch.testing.assert_close(solvers.integrate(linear, u0, 8, scheme="rk4"),
                               solvers.integrate(linear, u0, 8, scheme="rk4_38"), rtol=0, atol=1e-14)
    a = solvers.integrate(pendulum, u0, 8, scheme="rk4")
    b = solvers.integrate(pendulum, u0, 8, scheme="rk4_38")
    assert (a - b).abs().max() > 1e-9


@pytest.mark.parametrize("name", [c[0] for c in CASES if c[1] == OPTIONS.get(c[0], {})])
def test_return_path_ends_at_solution(name):
    scheme = solvers.get(name, **OPTIONS.get(name, {}))
    u0 = torch.tensor([0.3, -1.2], dtype=torch.float64)
    path = solvers.integrate(pendulum, u0, 7, scheme=scheme, return_path=True)
    assert path.shape == (8, 2)
    torch.testing.assert_close(path[0], u0)
    torch.testing.assert_close(path[-1], solvers.integrate(pendulum, u0, 7, scheme=scheme))


def test_history_passes_through_a_shortcut():
    """Stage transitions: LM's u_{n-1} goes through the same map as u_n (docs/schemes.md §2)."""
    scheme = solvers.get("lm", k=0.25)
    u0 = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    f = lambda t, u: -0.5 * u  # noqa: E731
    u1, state = scheme.step(f, 0.0, 1.0, u0, None)
    shortcut = lambda u: u[:, ::2]  # noqa: E731
    mapped = tuple(shortcut(s) for s in state)
    torch.testing.assert_close(mapped[0], shortcut(u0))
    u2, _ = scheme.step(f, 1.0, 1.0, shortcut(u1), mapped)
    v1 = shortcut(u1)
    torch.testing.assert_close(u2, 0.75 * v1 + 0.25 * shortcut(u0) - 0.5 * v1)
    assert scheme.past_states == len(state) == 1


def test_time_grid_is_made_once_and_safe_after_inference_mode():
    """Grids of a number t0 are kept between solves (their making cost ~1 us a step), and a grid
    first made under inference_mode still serves a solve that backpropagates through t."""
    from solvers.base import stage_times, time_grid
    u = torch.ones(2, dtype=torch.float64)
    assert time_grid(0.0, 0.25, 4, u) is time_grid(0.0, 0.25, 4, u)
    assert [float(t) for t in time_grid(0.5, 0.25, 2, u)] == [0.5, 0.75, 1.0]
    assert [float(t) for t in stage_times(0.0, 0.5, 2, (0.0, 0.5), u)[1]] == [0.5, 0.75]
    f = lambda t, v: -t * v  # noqa: E731  (saves t for backward)
    with torch.inference_mode():
        solvers.integrate(f, torch.ones(2, dtype=torch.float32), steps=3, scheme="rk4")
    u0 = torch.ones(2, requires_grad=True)
    solvers.integrate(f, u0, steps=3, scheme="rk4").sum().backward()
    assert torch.isfinite(u0.grad).all()
