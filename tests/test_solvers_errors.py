"""Bad input gives a ValueError naming the problem and the allowed values; a diverging or
NaN-producing implicit iteration gives `solvers.DivergenceError` with a helpful message."""
import pytest
import torch

import solvers

U0 = torch.ones(4, 2)
F = lambda t, u: -u  # noqa: E731


def test_unknown_scheme_lists_available_names():
    with pytest.raises(ValueError) as err:
        solvers.get("eular")
    message = str(err.value)
    assert "'eular'" in message and "did you mean 'euler'" in message
    for name in solvers.available():
        assert name in message
    with pytest.raises(ValueError, match="available"):
        solvers.integrate(F, U0, 4, scheme="nope")


def test_registry_is_sorted_and_refuses_duplicates():
    assert solvers.available() == sorted(solvers.available())
    with pytest.raises(ValueError, match="already registered"):
        solvers.register("euler", type(solvers.get("euler")))


@pytest.mark.parametrize("name,options,match", [
    ("euler", dict(foo=1), "foo.*allowed options"),
    ("backward_euler", dict(iterations=0), "iterations must be an integer >= 1"),
    ("backward_euler", dict(iterations=1.5), "iterations must be an integer"),
    ("backward_euler", dict(tol=-1.0), r"tol must be a finite number > 0.0, got -1.0"),
    ("backward_euler", dict(max_iterations=0), "max_iterations"),
    ("lm", dict(k=1.0), r"outside the open interval \(-1.0, 1.0\).*\|k\| < 1"),
    ("lm", dict(k=-1.0), "outside the open interval"),
    ("lm", dict(k=float("nan")), "not finite"),
    ("lm", dict(k_init=(0.5, -0.5)), "low <= high"),
    ("euler_maruyama", dict(sigma=-0.1), r"sigma must be a finite number >= 0.0, got -0.1"),
    ("euler_maruyama", dict(p=0.0), r"p must lie in \(0.0, 1.0\]"),
    ("euler_maruyama", dict(p=1.5), "p must lie in"),
    ("euler_maruyama", dict(noise="poisson"), r"noise must be one of \['bernoulli', 'gaussian', 'shake'\]"),
    ("euler_maruyama", dict(diffusion="linear"), "diffusion must be 'additive', 'field' or a callable"),
    ("euler_maruyama", dict(bm=3), "bm must be a callable"),
    ("euler_maruyama", dict(noise="bernoulli", bm=lambda a, b: 0), "noise='gaussian' only"),
    ("euler_maruyama", dict(generator=0), "torch.Generator"),
    ("leapfrog", dict(variant="euler"), r"variant must be one of \['revnet', 'verlet'\]"),
])
def test_bad_options(name, options, match):
    with pytest.raises(ValueError, match=match):
        solvers.get(name, **options)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True, "4"])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        solvers.integrate(F, U0, steps)


def test_bad_state_and_fields():
    with pytest.raises(ValueError, match="u0 must be a tensor"):
        solvers.integrate(F, [1.0, 2.0], 4)
    with pytest.raises(ValueError, match="floating-point"):
        solvers.integrate(F, torch.ones(3, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="must be callable"):
        solvers.integrate(3.0, U0, 4)
    with pytest.raises(ValueError, match="2 per-step fields for steps=4"):
        solvers.integrate([F, F], U0, 4)
    with pytest.raises(ValueError, match="options .* given with an already built scheme"):
        solvers.integrate(F, U0, 4, scheme=solvers.get("lm"), k=0.1)


def test_bad_coefficients():
    with pytest.raises(ValueError, match=r"unknown coefficient\(s\) \['q'\]; this scheme has \['k'\]"):
        solvers.integrate(F, U0, 4, scheme="lm", coefficients={"q": 0.1})
    with pytest.raises(ValueError, match="3 per-step values for 4 steps"):
        solvers.integrate(F, U0, 4, scheme="lm", coefficients={"k": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"coefficient p=0.0 is outside the interval \(0.0, 1.0\]"):
        solvers.integrate(F, U0, 4, scheme="euler_maruyama", noise="bernoulli", coefficients={"p": 0.0})


def test_leapfrog_odd_split_and_bad_pair():
    with pytest.raises(ValueError, match="two equal halves along dim 1.*size 3"):
        solvers.integrate(F, torch.ones(2, 3), 2, scheme="leapfrog")
    with pytest.raises(ValueError, match=r"pair \(F, G\)"):
        solvers.integrate((F, F, F), torch.ones(2, 4), 2, scheme="leapfrog")


def test_shake_needs_a_pair():
    with pytest.raises(ValueError, match=r"pair\s+\(f1, f2\)"):
        solvers.integrate(F, U0, 2, scheme="euler_maruyama", noise="shake")


def test_backward_euler_divergence_is_reported():
    """f(u) = -5u with dt = 1: the fixed-point map has Lipschitz constant 5 > 1."""
    stiff = lambda t, u: -5 * u  # noqa: E731
    with pytest.raises(solvers.DivergenceError, match=r"diverges.*Lip\(f\)\*dt < 1"):
        solvers.integrate(stiff, U0, 1, scheme="backward_euler", tol=1e-8)
    with pytest.raises(solvers.DivergenceError, match="did not reach tol"):
        solvers.integrate(lambda t, u: -u, U0, 1, scheme="backward_euler", tol=1e-12, max_iterations=5)
    with pytest.raises(solvers.DivergenceError, match="NaN/inf"):  # fixed K, check=True
        solvers.integrate(stiff, U0, 1, scheme="backward_euler", iterations=200, check=True)
    # converges once Lip(f) dt < 1
    out = solvers.integrate(stiff, U0, 20, scheme="backward_euler", tol=1e-10)
    torch.testing.assert_close(out, U0 / 1.25 ** 20)


def test_backward_euler_nan_is_reported():
    nan_field = lambda t, u: u * float("nan")  # noqa: E731
    with pytest.raises(solvers.DivergenceError, match="NaN/inf"):
        solvers.integrate(nan_field, U0, 2, scheme="backward_euler", tol=1e-6)
    with pytest.raises(solvers.DivergenceError, match="NaN/inf"):
        solvers.integrate(nan_field, U0, 2, scheme="backward_euler", check=True)
    assert issubclass(solvers.DivergenceError, RuntimeError)


def test_fixed_coefficient_numbers_are_checked_against_their_bounds():
    """integrate(coefficients=...) with numbers is checked like solvers.get(k=...): an LM k
    outside (-1, 1) is not zero-stable and must not run silently."""
    with pytest.raises(ValueError, match=r"k=2.0 is outside the open interval \(-1.0, 1.0\)"):
        solvers.integrate(F, U0, 4, scheme="lm", coefficients={"k": 2.0})
    with pytest.raises(ValueError, match=r"k=1.5 is outside"):
        solvers.integrate(F, U0, 4, scheme="lm", coefficients={"k": [0.1, 0.2, 1.5, 0.0]})
    with pytest.raises(ValueError, match="coefficient k must be a number"):
        solvers.integrate(F, U0, 4, scheme="lm", coefficients={"k": "a"})
    with pytest.raises(ValueError, match=r"r1=0.995 is outside"):
        solvers.integrate(F, U0, 4, scheme="lmm", history=2, coefficients={"r1": 0.995})
    ok = solvers.integrate(F, U0, 4, scheme="lm", coefficients={"k": [0.1, 0.2, -0.5, 0.0]})
    assert torch.isfinite(ok).all()


def test_option_types_give_value_errors():
    with pytest.raises(ValueError, match=r"dim=5 is out of range .* \(valid: -2 \.\. 1\)"):
        solvers.integrate(F, torch.ones(4, 4), 2, scheme="leapfrog", dim=5)
    with pytest.raises(ValueError, match="dim must be None or an integer"):
        solvers.get("leapfrog", dim="1")
    with pytest.raises(ValueError, match="seed must be None or an integer"):
        solvers.get("euler_maruyama", seed="0")
    with pytest.raises(ValueError, match=r"k_init must be a pair \(low, high\)"):
        solvers.get("lm", k_init=(0.5,))
    with pytest.raises(ValueError, match=r"k_init must be a pair \(low, high\)"):
        solvers.get("lm", k_init=-0.1)
