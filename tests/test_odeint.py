"""solvers.odeint: torchdiffeq's signature and results on coinciding fixed grids."""
import math

import pytest
import torch

import solvers

torchdiffeq = pytest.importorskip("torchdiffeq")
D64 = torch.float64


class Lambda(torch.nn.Module):
    """torchdiffeq's ode_demo field, with t used as a tensor."""

    def forward(self, t, y):
        assert torch.is_tensor(t) and t.dim() == 0
        A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=y.dtype)
        return torch.mm(y ** 3, A) + 0.1 * torch.sin(t)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4", "heun2"])
@pytest.mark.parametrize("reverse", [False, True])
def test_agrees_with_torchdiffeq(method, reverse):
    y0 = torch.tensor([[0.5, 0.0], [0.2, -0.3]], dtype=D64)
    t = torch.linspace(0.0, 1.0, 5, dtype=D64)
    t = t.flip(0) if reverse else t
    for options in (None, {"step_size": 0.0625}):
        ours = solvers.odeint(Lambda(), y0, t, method=method, options=options)
        theirs = torchdiffeq.odeint(Lambda(), y0, t, method=method, options=options)
        assert ours.shape == theirs.shape == (5, 2, 2)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)


def test_steps_option_and_grid_on_requested_times():
    """Requested times off torchdiffeq's step grid are grid points here: with steps=n per
    interval, the result equals integrate's uniform path sampled at the requested times."""
    f = Lambda()
    y0 = torch.tensor([[1.0, 0.5]], dtype=D64)
    t = torch.tensor([0.0, 0.3, 0.6], dtype=D64)
    ours = solvers.odeint(f, y0, t, method="rk4", options={"steps": 3})
    path = solvers.integrate(f, y0, 6, scheme="rk4_38", t0=0.0, t1=0.6, return_path=True)
    torch.testing.assert_close(ours, path[::3], rtol=0, atol=1e-12)
    ours_h = solvers.odeint(f, y0, t, method="rk4", options={"step_size": 0.1})
    torch.testing.assert_close(ours_h, ours, rtol=0, atol=1e-12)


def test_tuple_states_agree_with_torchdiffeq():
    def f(t, state):
        x, v = state
        return v, -x * torch.cos(t)

    y0 = (torch.tensor([1.0, 0.0], dtype=D64), torch.tensor([[0.0], [1.0]], dtype=D64).squeeze(1))
    t = torch.linspace(1.0, 0.0, 9, dtype=D64)
    ours = solvers.odeint(f, y0, t, method="rk4", options={"step_size": 0.125})
    theirs = torchdiffeq.odeint(f, y0, t, method="rk4", options={"step_size": 0.125})
    assert isinstance(ours, tuple) and len(ours) == 2
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape == (9, 2)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_gradients_through_y0_and_parameters_match_torchdiffeq():
    net = _net()
    f = lambda t, y: net(y)  # noqa: E731
    t = torch.linspace(0.0, 1.0, 3, dtype=D64)
    grads = []
    for odeint in (solvers.odeint, torchdiffeq.odeint):
        y0 = torch.tensor([[0.3, -0.2]], dtype=D64, requires_grad=True)
        out = odeint(f, y0, t, method="midpoint", options={"step_size": 0.125})
        grads.append(torch.autograd.grad(out.pow(2).sum(), [y0, *net.parameters()]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_gradient_through_t_is_the_continuous_one():
    """u' = a u: d u(t1)/dt1 = a u(t1), d u(t1)/dt0 = -a u(t1)."""
    a = -0.7
    t = torch.tensor([0.2, 1.0], dtype=D64, requires_grad=True)
    y0 = torch.tensor([1.5], dtype=D64)
    out = solvers.odeint(lambda s, y: a * y, y0, t, method="rk4", options={"steps": 32})
    torch.testing.assert_close(out[0], y0)
    (g,) = torch.autograd.grad(out[-1].sum(), t)
    exact = a * 1.5 * math.exp(a * 0.8)
    torch.testing.assert_close(g, torch.tensor([-exact, exact], dtype=D64), rtol=1e-6, atol=0)


def test_errors_name_the_bad_value():
    y0, t = torch.ones(2), torch.linspace(0, 1, 3)
    f = lambda t, y: -y  # noqa: E731
    with pytest.raises(ValueError, match="rk4_38"):
        solvers.odeint(f, y0, t, method="rk5")
    with pytest.raises(ValueError, match="strictly increasing"):
        solvers.odeint(f, y0, torch.tensor([0.0, 1.0, 0.5]), method="euler")
    with pytest.raises(ValueError, match="step_size"):
        solvers.odeint(f, y0, t, method="euler", options={"step_size": -0.0})
    with pytest.raises(ValueError, match="perturb"):
        solvers.odeint(f, y0, t, method="lm", options={"perturb": True})
    with pytest.raises(ValueError, match="tuple"):
        solvers.odeint(lambda t, s: s[0], (y0, y0), t, method="euler")


def _recorder():
    times = []

    def f(s, y):
        times.append(float(s))
        return -y * torch.cos(s) + s
    return f, times


@pytest.mark.parametrize("method, options", [
    ("rk4", {"step_size": 0.01}), ("euler", {"step_size": 0.1}), ("midpoint", {"step_size": 0.03}),
    ("heun2", None), ("rk4", {"step_size": 0.07, "interp": "cubic"}),
    ("euler", {"step_size": 0.3}), ("midpoint", {"grid_constructor": lambda f, y, t: t[::2]})])
@pytest.mark.parametrize("reverse", [False, True])
def test_same_evaluation_times_as_torchdiffeq_on_float32_grids(method, options, reverse):
    """Issue 25, defect 1: float32 t = linspace(0, 1, 11) with step_size=0.01 gave 106
    evaluations (10.0000001 steps per interval rounded up to 11) against torchdiffeq's 100, and
    step_size=0.1 with euler evaluated at 0, 0.05, 0.1, ...: now the field sees torchdiffeq's
    times, in the same order, and the answers agree to float32 rounding."""
    t = torch.linspace(0, 1, 11)
    t = t.flip(0) if reverse else t
    f, ours_t = _recorder()
    g, theirs_t = _recorder()
    ours = solvers.odeint(f, torch.ones(3), t, method=method, options=options)
    theirs = torchdiffeq.odeint(g, torch.ones(3), t, method=method, options=options)
    assert ours_t == theirs_t
    torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-6)


def test_default_and_adaptive_methods_are_torchdiffeqs():
    """torchdiffeq's default (dopri5) and its other methods and options go through torchdiffeq;
    an option neither knows is refused with the allowed names (torchdiffeq only warns)."""
    f = Lambda()
    y0, t = torch.tensor([[0.5, 0.0]], dtype=D64), torch.linspace(0, 1, 4, dtype=D64)
    for method, options in [(None, None), ("dopri8", {"first_step": 0.1}), ("bosh3", None),
                            ("adaptive_heun", {"max_num_steps": 1000}), ("heun3", None),
                            ("explicit_adams", {"step_size": 0.1}),
                            ("dopri5", {"step_t": torch.tensor([0.5], dtype=D64)}),
                            ("euler", {"step_size": 0.1, "perturb": True})]:
        ours = solvers.odeint(f, y0, t, method=method, options=options, rtol=1e-6, atol=1e-8)
        theirs = torchdiffeq.odeint(f, y0, t, method=method, options=options, rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown options \\['stepsize'\\].*max_num_steps"):
        solvers.odeint(f, y0, t, options={"stepsize": 0.1})
    with pytest.raises(ValueError, match="unknown options.*step_size"):
        solvers.odeint(f, y0, t, method="rk4", options={"stepsize": 0.1})
    with pytest.raises(RuntimeError, match="max_num_steps"):
        solvers.odeint(f, y0, t, options={"max_num_steps": 1})


def test_odeint_adjoint_has_torchdiffeqs_signature_and_gradients():
    net = _net()
    t = torch.linspace(0.0, 1.0, 3, dtype=D64)
    grads = []
    for adjoint in (solvers.odeint_adjoint, torchdiffeq.odeint_adjoint):
        y0 = torch.tensor([[0.3, -0.2]], dtype=D64, requires_grad=True)
        out = adjoint(lambda t, y: net(y), y0, t, method="rk4", options={"step_size": 0.125},
                      adjoint_params=tuple(net.parameters()))
        grads.append(torch.autograd.grad(out.pow(2).sum(), [y0, *net.parameters()]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="unknown method 'lmx'.*dopri5.*'lm'"):
        solvers.odeint_adjoint(net, t[:1], t, method="lmx")


@pytest.mark.parametrize("out, match", [
    (lambda y: y[0], "shaped like u"), (lambda y: 1.5, "float"),
    (lambda y: y.double(), "float64"), (lambda y: y.reshape(2, 3), r"\(2, 3\)"),
    (lambda y: None, "NoneType")])
def test_field_outputs_are_checked(out, match):
    """Issue 26, item 6: broadcasting, float, float64, (2, 3) and None outputs were accepted or
    gave raw errors."""
    with pytest.raises(ValueError, match=match):
        solvers.odeint(lambda t, y: out(y), torch.ones(6), torch.linspace(0, 1, 3), method="rk4")


def test_tuple_parts_of_the_wrong_size_and_bad_steps_are_refused():
    y0 = (torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError, match="output 0 must have y0\\[0\\]'s shape"):
        solvers.odeint(lambda t, s: (s[1][:2].repeat(2)[:3], s[0].repeat(2)[:2]), y0,
                       torch.linspace(0, 1, 2), method="euler")
    f, t = (lambda t, y: -y), torch.linspace(0, 1, 3)
    for bad in (-0.1, 1e-300, float("nan"), "0.1"):
        with pytest.raises(ValueError, match="step_size"):
            solvers.odeint(f, torch.ones(2), t, method="euler", options={"step_size": bad})
    with pytest.raises(ValueError, match="finite"):
        solvers.odeint(f, torch.ones(2), torch.tensor([-3e38, 3e38]), method="euler")


def test_scheme_options_pass_through():
    y0, t = torch.ones(3, dtype=D64), torch.linspace(0, 1, 2, dtype=D64)
    f = lambda t, y: -y  # noqa: E731
    lm = solvers.odeint(f, y0, t, method="lm", options={"steps": 8, "k": 0.3})
    ref = solvers.integrate(f, y0, 8, scheme="lm", k=0.3)
    torch.testing.assert_close(lm[-1], ref, rtol=0, atol=0)
