"""The learned multistep scheme `lmm`: validity for all raw parameters, reduction to LM, orders,
gradients, warm start, history through transitions, analysis helpers and errors."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import solvers
from solvers.lmm import LMM, roots_per_step
from solvers.multistep import (characteristic_polynomial, effective_step_factor,
                               modified_equation_coefficients, multistep_coefficients)

CONFIGS = [(s, form) for s in (2, 3, 4) for form in ("real", "pairs")]


def zero_field(t, u):
    return torch.zeros_like(u)


def step_weights(scheme, values, dtype=torch.float64):
    """a_0..a_{s-1} read off the scheme's own step: f = 0, u_{n-j} = e_j."""
    s = scheme.history
    eye = torch.eye(s, dtype=dtype)
    out, _ = scheme.step(zero_field, 0.0, 1.0, eye[0], tuple(eye[1:]), **values)
    return out


def values_from_raw(scheme, raw):
    return {c.name: c.to_value(r) for c, r in zip(scheme.learnable_coefficients(), raw)}


def mlp_fields(steps, width=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    weights = [0.5 * torch.randn(width, width, generator=gen, dtype=torch.float64) for _ in range(steps)]
    return [lambda t, u, W=W: torch.tanh(u @ W) for W in weights]


# -- validity for every value of the raw parameters -------------------------------------------
@pytest.mark.parametrize("history,form", CONFIGS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_random_raw_parameters_give_consistent_zero_stable_schemes(history, form, dtype, data):
    scheme = solvers.get("lmm", history=history, form=form)
    raw = [torch.tensor(data.draw(st.floats(-60, 60)), dtype=dtype)
           for _ in scheme.learnable_coefficients()]
    values = values_from_raw(scheme, raw)
    a = step_weights(scheme, values, torch.float64).numpy()
    assert abs(a.sum() - 1) < 1e-12                           # consistency: rho(1) = 0
    rho = np.concatenate(([1.0], -a))
    sigma, remainder = np.polydiv(rho, [1.0, -1.0])
    assert np.abs(remainder).max() < 1e-12
    others = np.roots(sigma)
    assert np.all(np.abs(others) < 1), others                  # zero-stability
    if dtype == torch.float64:  # float32 rounding of the b_i moves a double root by ~sqrt(eps32)
        # (np.roots resolves a triple root only to ~eps^(1/3); radius = 0.99 leaves 1e-2 of margin)
        assert np.all(np.abs(others) <= scheme.radius + 1e-4), others
    # the analysis helpers describe the same polynomial as the step
    assert np.allclose(characteristic_polynomial(scheme.roots(values)).numpy(), rho, atol=1e-6)


@pytest.mark.parametrize("history,form", CONFIGS)
def test_extreme_raw_float32_stays_strictly_inside(history, form):
    """Saturated sigmoids (raw = +-100 in float32) still give |r| <= radius < 1."""
    scheme = solvers.get("lmm", history=history, form=form)
    n = len(scheme.learnable_coefficients())
    for signs in np.ndindex(*(2,) * n):
        raw = [torch.tensor(100.0 if s else -100.0) for s in signs]
        roots = scheme.roots(values_from_raw(scheme, raw)).abs()
        assert float(roots.max()) <= scheme.radius + 1e-6 < 1


# -- reduction to LM -------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["real", "pairs"])
def test_two_step_equals_lm_with_k_minus_r(form):
    steps, gen = 7, torch.Generator().manual_seed(1)
    k = torch.rand(steps, generator=gen, dtype=torch.float64) * 1.6 - 0.8
    u0 = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    fields = mlp_fields(steps)
    lm = solvers.integrate(fields, u0, steps, "lm", coefficients={"k": k}, return_path=True)
    lmm = solvers.integrate(fields, u0, steps, "lmm", history=2, form=form,
                            coefficients={"r1": -k}, return_path=True)
    assert torch.equal(lm, lmm)
    fixed = solvers.integrate(fields, u0, steps, "lmm", history=2, roots=(0.4,))
    assert torch.equal(fixed, solvers.integrate(fields, u0, steps, "lm", k=-0.4))


def test_zero_roots_are_euler():
    u0, fields = torch.randn(2, 5, dtype=torch.float64), mlp_fields(5)
    out = solvers.integrate(fields, u0, 5, "lmm", history=4, roots=(0.0, 0.0, 0.0))
    assert torch.allclose(out, solvers.integrate(fields, u0, 5, "euler"), rtol=0, atol=1e-15)


# -- orders on u' = -u -----------------------------------------------------------------------
def observed_order(errors):
    return float(np.polyfit(np.log([16, 32, 64, 128]), np.log(errors), 1)[0]) * -1


def decay_errors(scheme, exact_start=False):
    C1 = float(scheme.effective_step_factor())    # consistent with C1 u' = -u
    errors = []
    for steps in (16, 32, 64, 128):
        dt, u0 = 1.0 / steps, torch.ones(1, dtype=torch.float64)
        state = None
        if exact_start:
            state = tuple(torch.exp(torch.tensor([j * dt / C1], dtype=torch.float64))
                          for j in range(1, scheme.history))
        out, _ = scheme.solve([lambda t, u: -u] * steps, u0, 0.0, dt, state=state)
        errors.append(abs(float(out) - math.exp(-1.0 / C1)))
    return errors


@pytest.mark.parametrize("options", [dict(history=2, roots=(0.3,)), dict(history=2, roots=(-0.6,)),
                                     dict(history=3, roots=(0.5j, -0.5j)),
                                     dict(history=4, roots=(0.2, -0.3 + 0.4j, -0.3 - 0.4j)),
                                     dict(history=3), dict(history=4, form="pairs")])
def test_order_one_towards_rho_prime_equation(options):
    scheme = solvers.get("lmm", **options)
    assert scheme.order == 1
    assert 0.85 < observed_order(decay_errors(scheme)) < 1.3


def test_lm_case_matches_known_limit():
    """s = 2, r = -k: the limit is exp(-t / (1 + k)), as for LM in docs/schemes.md §5."""
    scheme = solvers.get("lmm", history=2, roots=(0.3,))
    assert float(scheme.effective_step_factor()) == pytest.approx(0.7)
    out = solvers.integrate(lambda t, u: -u, torch.ones(1, dtype=torch.float64), 2048, scheme)
    assert float(out) == pytest.approx(math.exp(-1 / 0.7), rel=1e-3)


def test_double_root_minus_third_is_second_order_with_exact_start():
    """rho = (xi - 1)(xi + 1/3)^2 has C_2 = 0: order 2 for (16/9) u' = f given exact start values;
    the Euler/LM warm start (consistent with other equations) brings it back to order 1."""
    scheme = solvers.get("lmm", history=3, roots=(-1 / 3, -1 / 3))
    C = scheme.modified_equation(terms=2)
    assert float(C[0]) == pytest.approx(16 / 9) and abs(float(C[1])) < 1e-12
    assert 1.8 < observed_order(decay_errors(scheme, exact_start=True)) < 2.3
    assert 0.85 < observed_order(decay_errors(scheme)) < 1.3


# -- warm start and history through transitions --------------------------------------------------
def test_warm_start_uses_lower_members():
    r = {"r1": torch.tensor(0.3, dtype=torch.float64), "r2": torch.tensor(-0.5, dtype=torch.float64),
         "r3": torch.tensor(0.7, dtype=torch.float64)}
    fields, u0 = mlp_fields(4), torch.randn(2, 5, dtype=torch.float64)
    path = solvers.integrate(fields, u0, 4, "lmm", history=4, coefficients=r, return_path=True)
    euler = solvers.get("euler").step(fields[0], 0.0, 0.25, u0, None)[0]
    lm = solvers.get("lm").step(fields[1], 0.25, 0.25, path[1], (u0,), k=-r["r1"])[0]
    three = solvers.get("lmm", history=3).step(fields[2], 0.5, 0.25, path[2], (path[1], u0),
                                               r1=r["r1"], r2=r["r2"])[0]
    assert torch.equal(path[1], euler) and torch.equal(path[2], lm) and torch.equal(path[3], three)
    # a pair enters only when both of its roots fit: step 1 of (history=3, pairs) is Euler
    pairs = solvers.get("lmm", history=3, form="pairs")
    assert pairs.sigma(available=1) == [1.0] and len(pairs.sigma(available=2)) == 3


@pytest.mark.parametrize("history,form", CONFIGS)
def test_vectorised_solve_equals_step_loop(history, form):
    scheme, steps = solvers.get("lmm", history=history, form=form), 6
    gen = torch.Generator().manual_seed(history)
    values = {c.name: c.to_value(c.init_raw((steps,), generator=gen, dtype=torch.float64) * 8)
              for c in scheme.learnable_coefficients()}
    fields, u = mlp_fields(steps), torch.randn(2, 5, generator=gen, dtype=torch.float64)
    solved, _ = scheme.solve(fields, u, 0.0, 0.5, {k: v.tolist() for k, v in values.items()})
    state = None
    for n, f in enumerate(fields):
        u, state = scheme.step(f, n * 0.5, 0.5, u, state, **{k: v[n] for k, v in values.items()})
    assert torch.allclose(solved, u, rtol=0, atol=1e-14)


@pytest.mark.parametrize("history,form", CONFIGS)
def test_state_carries_history_and_maps_through_transitions(history, form):
    scheme = solvers.get("lmm", history=history, form=form)
    fields, u0 = mlp_fields(6), torch.randn(2, 5, dtype=torch.float64)
    whole, _ = scheme.solve(fields, u0, 0.0, 0.1)
    half, state = scheme.solve(fields[:3], u0, 0.0, 0.1)
    assert len(state) == history - 1
    rest, _ = scheme.solve(fields[3:], half, 0.3, 0.1, state=state)
    assert torch.allclose(whole, rest, rtol=0, atol=1e-14)
    mapped = tuple(2 * s for s in state)    # a linear "shortcut": scaling commutes
    scaled, _ = scheme.solve([lambda t, u: u * 0.0] * 2, 2 * half, 0.3, 0.1, state=mapped)
    plain, _ = scheme.solve([lambda t, u: u * 0.0] * 2, half, 0.3, 0.1, state=state)
    assert all(torch.equal(m, 2 * s) for m, s in zip(mapped, state))
    assert torch.allclose(scaled, 2 * plain, rtol=0, atol=1e-14)


# -- gradients ---------------------------------------------------------------------------------
@pytest.mark.parametrize("history,form", [(3, "real"), (4, "real"), (3, "pairs"), (4, "pairs")])
def test_gradcheck_through_integrate(history, form):
    scheme = solvers.get("lmm", history=history, form=form)
    steps, gen = 5, torch.Generator().manual_seed(3)
    coefficients = scheme.learnable_coefficients()
    raws = [c.init_raw((steps,), generator=gen, dtype=torch.float64).requires_grad_()
            for c in coefficients]
    u0, fields = torch.randn(2, 5, generator=gen, dtype=torch.float64), mlp_fields(steps)

    def run(*raw):
        values = {c.name: c.to_value(r) for c, r in zip(coefficients, raw)}
        return solvers.integrate(fields, u0, steps, scheme, coefficients=values)

    assert torch.autograd.gradcheck(run, tuple(raws))
    run(*raws).sum().backward()
    assert all(r.grad is not None and r.grad.abs().sum() > 0 for r in raws)


def test_gradcheck_analysis_helpers():
    roots = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda r: modified_equation_coefficients(r, 3), (roots,))
    assert torch.autograd.gradcheck(effective_step_factor, (roots,))


# -- analysis helpers ---------------------------------------------------------------------------
def test_lm_modified_equation_and_step_factor():
    k = torch.linspace(-0.9, 0.9, 7, dtype=torch.float64)
    C = modified_equation_coefficients((-k).unsqueeze(-1), terms=2)
    assert torch.allclose(C[:, 0], 1 + k) and torch.allclose(C[:, 1], (1 - k) / 2)
    assert torch.allclose(multistep_coefficients((-k).unsqueeze(-1)), torch.stack((1 - k, k), -1))


@pytest.mark.parametrize("roots", [(0.3, -0.2, 0.5), (0.4j, -0.4j), (-0.7,), (0.1, 0.6 + 0.2j, 0.6 - 0.2j)])
def test_modified_equation_matches_truncation_error(roots):
    """For u = exp(mu t): rho(e^{mu dt}) e^{-(s-1) mu dt} / dt = sum_q C_q dt^{q-1} mu^q + O(dt^6)."""
    C = modified_equation_coefficients(roots, terms=6).numpy()
    rho = characteristic_polynomial(roots).numpy()
    s, mu = len(rho) - 1, -1.3
    assert C[0] == pytest.approx(np.polyval(np.polyder(rho), 1.0))
    assert C[0] == pytest.approx(float(effective_step_factor(roots)))
    for dt in (0.1, 0.05):
        lhs = np.polyval(rho, np.exp(mu * dt)) * np.exp(-(s - 1) * mu * dt) / dt
        rhs = sum(C[q - 1] * dt ** (q - 1) * mu ** q for q in range(1, 7))
        assert abs(lhs - rhs) < 10 * dt ** 6


def test_roots_per_step_for_trained_values():
    steps = 4
    scheme = solvers.get("lmm", history=4, form="pairs")
    values = {c.name: c.to_value(c.init_raw((steps,), dtype=torch.float64) * 5)
              for c in scheme.learnable_coefficients()}
    roots = roots_per_step(scheme, values)
    assert roots.shape == (steps, 3) and roots.is_complex()
    for n in range(steps):
        sigma = np.polydiv(characteristic_polynomial(roots[n]).numpy(), [1.0, -1.0])[0]
        assert np.allclose(np.sort_complex(np.roots(sigma)), np.sort_complex(roots[n].numpy()), atol=1e-6)
    assert scheme.effective_step_factor(values).shape == (steps,)
    assert scheme.modified_equation(values).shape == (steps, 3)
    k = torch.tensor([-0.1, 0.2])
    assert torch.allclose(roots_per_step(solvers.get("lm"), {"k": k}).real[:, 0], -k.double())


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("options,match", [
    (dict(history=1), "history"), (dict(history=5), "history"), (dict(history="3"), "history"),
    (dict(history=2.0), "history"), (dict(history=True), "history"),
    (dict(history=2, roots=(1.0,)), "unit disc"), (dict(history=3, roots=(0.5, -1.2)), "unit disc"),
    (dict(history=3, roots=(1.1j, -1.1j)), "unit disc"), (dict(history=3, roots=(0.5,)), "2 fixed roots"),
    (dict(history=3, roots=(0.5j, 0.2)), "conjugate"), (dict(history=3, roots="ab"), "roots"),
    (dict(form="complex"), "form"), (dict(radius=1.0), "radius"), (dict(radius=0), "radius"),
    (dict(init=(0.0, 0.995)), "r1"), (dict(init=(0.1, 0.0)), "low <= high"),
    (dict(init={"k": (0.0, 0.1)}), "valid names"), (dict(init=3), "pair"), (dict(init=(0, 0.1, 0.2)), "pair"), (dict(init="ab"), "pair"),
    (dict(roots=(0.1, 0.2), init=(0.0, 0.1)), "not both"), (dict(bogus=1), "allowed options"),
])
def test_bad_options_raise_value_error(options, match):
    with pytest.raises(ValueError, match=match):
        solvers.get("lmm", **options)


def test_missing_coefficient_in_step_is_a_value_error():
    scheme = solvers.get("lmm", history=3)
    with pytest.raises(ValueError, match="r2"):
        scheme.step(zero_field, 0.0, 1.0, torch.ones(2), (torch.ones(2), torch.ones(2)), r1=0.1)


def test_registered():
    assert "lmm" in solvers.available() and isinstance(solvers.get("lmm"), LMM)
