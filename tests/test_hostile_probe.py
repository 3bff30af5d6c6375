"""The hostile probe, Python API (issue 26's last 'done when'): solvers.integrate / odeint /
odeint_adjoint / sdeint and odenets.build / create, tried as a hostile user would. Every
attempt must end in its expected class (tests/fixtures/hostile.py): a clear one-line error or a
correct result; never a silent wrong result, a raw traceback, a crash or data lost. The command
line, run directories, results files and full disks: tests/test_hostile_probe_cli.py."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import odenets
import solvers
from fixtures.hostile import Attempt, Err, Ok, classify, tally

pytestmark = pytest.mark.usefixtures("one_thread")
E1 = math.exp(-1.0)
neg = lambda t, u: -u  # noqa: E731
U = torch.ones(3)
T01 = torch.tensor([0.0, 1.0])


class Stop(Exception):
    """Raised by `stopping` to end a long solve early."""


def stopping(calls=2000):
    """-u, raising `Stop` on call ``calls``: a huge step count must run lazily until then."""
    count = [0]

    def f(t, u):
        count[0] += 1
        if count[0] >= calls:
            raise Stop
        return -u
    return f


def lazily(fn):
    """``fn(field)``: 'stopped' when it ran until the field stopped it (bounded memory: the
    probe caps the address space)."""
    def attempt():
        try:
            fn(stopping())
        except Stop:
            return "stopped"
    return attempt


def close(value, rtol=1e-4):
    return lambda r: torch.is_tensor(r) and bool(torch.allclose(r, torch.full_like(r, value), rtol=rtol))


def last_close(value, rtol=1e-4):
    return lambda r: close(value, rtol)(r[-1])


class SDE:
    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, drift=None, diffusion=None, noise_type="diagonal"):
        self.noise_type = noise_type
        self._f = drift or (lambda t, y: -y)
        self._g = diffusion or (lambda t, y: torch.zeros_like(y))

    def f(self, t, y):
        return self._f(t, y)

    def g(self, t, y):
        return self._g(t, y)


class NoG:
    noise_type, sde_type = "diagonal", "ito"

    def f(self, t, y):
        return -y


Y2 = torch.ones(2, 3)
TS = torch.tensor([0.0, 1.0])


def sde(**kwargs):
    return lambda: solvers.sdeint(kwargs.pop("sde", SDE()), kwargs.pop("y0", Y2),
                                  kwargs.pop("ts", TS), **{"method": "euler", "dt": 0.1, **kwargs})


def ode(func=neg, y0=U, t=T01, **kwargs):
    return lambda: solvers.odeint(func, y0, t, **kwargs)


def integ(f=neg, u0=U, steps=4, *args, **kwargs):
    return lambda: solvers.integrate(f, u0, steps, *args, **kwargs)


def linear_module():
    class F(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.tensor(-1.0))

        def forward(self, t, y):
            return self.a * y
    return F()


def _odeint_grads():
    """d y(1) / d y0 = e^-1 and d y(1) / d t1 = f(y(1)) = -e^-1 for y' = -y."""
    y0, t = torch.ones(1, requires_grad=True), torch.tensor([0.0, 1.0], requires_grad=True)
    solvers.odeint(neg, y0, t, method="rk4", options={"step_size": 0.01})[-1].sum().backward()
    return y0.grad[0], t.grad[1]


def adj(y0=U, t=T01, **kwargs):
    return lambda: solvers.odeint_adjoint(linear_module(), y0, t, **kwargs)


def adjoint_grad():
    f = linear_module()
    y0 = torch.ones(3, requires_grad=True)
    solvers.odeint_adjoint(f, y0, T01, method="rk4", options={"step_size": 0.01})[-1].sum().backward()
    return y0.grad


SOLVERS = [
    # ---- solvers.integrate: steps, times, states, fields, schemes, options -----------------
    Attempt("integrate steps=None", integ(steps=None), Err(r"steps must be an integer >= 1, got None")),
    Attempt("integrate steps=inf", integ(steps=float("inf")), Err(r"steps must be an integer >= 1, got inf")),
    Attempt("integrate steps=10**9 (lazy)", lazily(lambda f: solvers.integrate(f, U, 10**9)), Ok()),
    Attempt("integrate steps=10**9 rk4 (lazy)", lazily(lambda f: solvers.integrate(f, U, 10**9, "rk4")), Ok()),
    Attempt("integrate steps=10**9 return_path", integ(u0=torch.ones(64), steps=10**9, return_path=True),
            Err(r"return_path")),
    Attempt("integrate steps=10**30", integ(steps=10**30), Err(r"steps")),
    Attempt("integrate t0=nan", integ(t0=float("nan")), Err(r"t0")),
    Attempt("integrate t1=inf", integ(t1=float("inf")), Err(r"t1")),
    Attempt("integrate t1='1'", integ(t1="1"), Err(r"t1")),
    Attempt("integrate t0=t1", integ(t0=1.0, t1=1.0), Err(r"distinct")),
    Attempt("integrate t0 tensor", integ(t0=torch.tensor(0.0), steps=64, scheme="rk4"), Ok(close(E1, 1e-5))),
    Attempt("integrate return_path='yes'", integ(return_path="yes"), Err(r"return_path")),
    Attempt("integrate backwards t0=1 t1=0", integ(steps=256, scheme="rk4", t0=1.0, t1=0.0), Ok(close(math.e))),
    Attempt("integrate rk4 64 steps", integ(steps=64, scheme="rk4"), Ok(close(E1, 1e-5))),
    Attempt("integrate euler value", integ(steps=4), Ok(close(0.75 ** 4, 1e-6))),
    Attempt("integrate float64 state", integ(u0=torch.ones(3, dtype=torch.float64), steps=64, scheme="rk4"),
            Ok(lambda r: r.dtype == torch.float64 and close(E1, 1e-8)(r))),
    Attempt("integrate 0-dim state", integ(u0=torch.tensor(1.0), steps=64, scheme="rk4"), Ok(close(E1, 1e-5))),
    Attempt("integrate empty state", integ(u0=torch.ones(0)), Ok(lambda r: r.shape == (0,))),
    Attempt("integrate complex state", integ(u0=torch.ones(3, dtype=torch.complex64)),
            Err(r"floating-point|complex")),
    Attempt("integrate int state", integ(u0=torch.ones(3, dtype=torch.int64)), Err(r"floating-point")),
    Attempt("integrate numpy state", integ(u0=np.ones(3)), Err(r"u0 must be a tensor")),
    Attempt("integrate field returns None", integ(f=lambda t, u: None), Err(r"NoneType|None")),
    Attempt("integrate field returns float", integ(f=lambda t, u: 1.0), Err(r"float")),
    Attempt("integrate field returns (1,)", integ(f=lambda t, u: u[:1]), Err(r"\(3,\)")),
    Attempt("integrate field returns (2, 3)", integ(f=lambda t, u: u.expand(2, 3)), Err(r"\(3,\)")),
    Attempt("integrate field returns int", integ(f=lambda t, u: u.long()), Err(r"int64")),
    Attempt("integrate field not callable", integ(f="neg"), Err(r"callable")),
    Attempt("integrate scheme=5", integ(scheme=5), Err(r"5")),
    Attempt("integrate scheme=''", integ(scheme=""), Err(r"available")),
    Attempt("integrate scheme='EULER'", integ(scheme="EULER"), Err(r"euler")),
    Attempt("integrate scheme='dopri5'", integ(scheme="dopri5"), Err(r"dopri5")),
    Attempt("integrate scheme and method", integ(scheme="euler", method="rk4"), Err(r"not both")),
    Attempt("integrate t=", integ(t=T01), Err(r"takes no t=")),
    Attempt("integrate unknown option", integ(scheme="rk4", foo=1), Err(r"foo")),
    Attempt("integrate coefficients=list", integ(scheme="lm", coefficients=[0.1]), Err(r"coefficients")),
    Attempt("integrate lm k=inf", integ(scheme="lm", k=float("inf")), Err(r"k")),
    Attempt("integrate backward_euler iterations=10**9", integ(scheme="backward_euler", iterations=10**9),
            Err(r"iterations")),
    Attempt("integrate leapfrog single field", integ(u0=torch.ones(2, 4), scheme="leapfrog"),
            Ok(lambda r: r.shape == (2, 4))),
    Attempt("integrate leapfrog 1-D odd", integ(u0=torch.ones(3), scheme="leapfrog"), Err(r"halves|size 3")),
    Attempt("integrate euler_maruyama seed='x'", integ(scheme="euler_maruyama", seed="x"), Err(r"seed")),
    Attempt("integrate per-step list too long", integ(f=[neg] * 5), Err(r"5 per-step fields for steps=4")),
    Attempt("integrate training='no'", integ(scheme="euler_maruyama", training="no"), Err(r"training")),
    # ---- solvers.odeint -------------------------------------------------------------------
    Attempt("odeint t list", ode(t=[0.0, 1.0], method="rk4", options={"step_size": 0.01}), Ok(last_close(E1, 1e-6))),
    Attempt("odeint t int tensor", ode(t=torch.tensor([0, 1]), method="rk4", options={"step_size": 0.01}),
            Ok(last_close(E1, 1e-6))),
    Attempt("odeint t numpy", ode(t=np.array([0.0, 1.0]), method="rk4", options={"step_size": 0.01}),
            Ok(last_close(E1, 1e-6))),
    Attempt("odeint t decreasing", ode(t=torch.tensor([1.0, 0.0]), method="rk4", options={"step_size": 0.01}),
            Ok(last_close(math.e))),
    Attempt("odeint t one time", ode(t=torch.tensor([0.5]), method="rk4"),
            Ok(lambda r: r.shape == (1, 3) and close(1.0)(r))),
    Attempt("odeint t float64, y float32", ode(t=T01.double(), method="rk4", options={"step_size": 0.01}),
            Ok(lambda r: r.dtype == torch.float32 and last_close(E1, 1e-6)(r))),
    Attempt("odeint t empty", ode(t=torch.tensor([])), Err(r"at least one time")),
    Attempt("odeint t 2-D", ode(t=torch.zeros(2, 2)), Err(r"1-D")),
    Attempt("odeint t scalar", ode(t=torch.tensor(1.0)), Err(r"1-D")),
    Attempt("odeint t not monotonic", ode(t=torch.tensor([0.0, 1.0, 0.5]), method="euler"), Err(r"strictly")),
    Attempt("odeint t repeated", ode(t=torch.tensor([0.0, 0.0]), method="euler"), Err(r"strictly")),
    Attempt("odeint t nan", ode(t=torch.tensor([0.0, float("nan")]), method="euler"), Err(r"finite")),
    Attempt("odeint t string", ode(t="0,1", method="euler"), Err(r"t must be")),
    Attempt("odeint t complex", ode(t=torch.tensor([0j, 1j]), method="euler"), Err(r"real")),
    Attempt("odeint method unknown", ode(method="rk5"), Err(r"rk5")),
    Attempt("odeint method=3", ode(method=3), Err(r"3")),
    Attempt("odeint options list", ode(method="euler", options=[("steps", 2)]), Err(r"options must be a dict")),
    Attempt("odeint step_size 0", ode(method="euler", options={"step_size": 0}), Err(r"step_size")),
    Attempt("odeint step_size -0.1", ode(method="euler", options={"step_size": -0.1}), Err(r"step_size")),
    Attempt("odeint step_size nan", ode(method="euler", options={"step_size": float("nan")}), Err(r"step_size")),
    Attempt("odeint step_size '0.1'", ode(method="euler", options={"step_size": "0.1"}), Err(r"step_size")),
    Attempt("odeint step_size tensor(2)", ode(method="euler", options={"step_size": torch.ones(2)}),
            Err(r"step_size")),
    Attempt("odeint step_size 1e-300", ode(method="euler", options={"step_size": 1e-300}), Err(r"step_size.*steps")),
    Attempt("odeint step_size > span", ode(method="euler", options={"step_size": 5.0}), Ok(last_close(0.0))),
    Attempt("odeint steps 0", ode(method="euler", options={"steps": 0}), Err(r"steps")),
    Attempt("odeint steps 2.5", ode(method="euler", options={"steps": 2.5}), Err(r"steps")),
    Attempt("odeint steps 10**12", ode(method="euler", options={"steps": 10**12}), Err(r"at most")),
    Attempt("odeint steps 10**8 (lazy)",
            lazily(lambda f: solvers.odeint(f, U, T01, method="rk4", options={"steps": 10**8})), Ok()),
    Attempt("odeint max_step 1e-12", ode(method="euler", options={"max_step": 1e-12}), Err(r"at most")),
    Attempt("odeint two grid options", ode(method="euler", options={"steps": 2, "step_size": 0.5}),
            Err(r"one of the grid options")),
    Attempt("odeint interp 'quadratic'", ode(method="euler", options={"step_size": 0.3, "interp": "quadratic"}),
            Err(r"interp")),
    Attempt("odeint grid_constructor bad",
            ode(method="euler", options={"grid_constructor": lambda f, y, t: t.flip(0)}), Err(r"grid_constructor")),
    Attempt("odeint grid_constructor not callable", ode(method="euler", options={"grid_constructor": 3}),
            Err(r"grid_constructor")),
    Attempt("odeint unknown option for euler", ode(method="euler", options={"foo": 1}), Err(r"foo")),
    Attempt("odeint lm k=2", ode(method="lm", options={"k": 2.0}), Err(r"k=2.0")),
    Attempt("odeint y0 int", ode(y0=torch.ones(3, dtype=torch.long), method="euler"), Err(r"floating-point")),
    Attempt("odeint y0 list", ode(y0=[1.0, 2.0], method="euler"), Err(r"y0")),
    Attempt("odeint y0 empty tuple", ode(y0=(), method="euler"), Err(r"tuple y0")),
    Attempt("odeint y0 tuple of ints", ode(y0=(torch.ones(2, dtype=torch.long),), method="euler"), Err(r"tuple y0")),
    Attempt("odeint func None output", ode(func=lambda t, y: None, method="euler"), Err(r"None")),
    Attempt("odeint func float output", ode(func=lambda t, y: 1.0, method="euler"), Err(r"float")),
    Attempt("odeint func broadcasting output", ode(func=lambda t, y: y[:1], method="euler"), Err(r"\(3,\)")),
    Attempt("odeint func float64 output", ode(func=lambda t, y: -y.double(), method="euler"), Err(r"float64")),
    Attempt("odeint func (2,3) output", ode(func=lambda t, y: y.expand(2, 3), method="euler"), Err(r"\(3,\)")),
    Attempt("odeint func not callable", ode(func=3, method="euler"), Err(r"callable")),
    Attempt("odeint tuple parts wrong size",
            ode(func=lambda t, y: (y[1], y[0]), y0=(torch.ones(2), torch.ones(3)), method="euler"),
            Err(r"output 0 must have y0\[0\]'s shape")),
    Attempt("odeint tuple output not tuple",
            ode(func=lambda t, y: y[0], y0=(torch.ones(2), torch.ones(3)), method="euler"), Err(r"tuple")),
    Attempt("odeint tuple correct",
            ode(func=lambda t, y: (-y[0], -2 * y[1]), y0=(torch.ones(2), torch.ones(3)), method="rk4",
                                        options={"step_size": 0.01}),
            Ok(lambda r: close(E1, 1e-6)(r[0][-1]) and close(math.exp(-2), 1e-6)(r[1][-1]))),
    Attempt("odeint overflowing t", ode(t=torch.tensor([-3e38, 3e38]), method="euler"), Err(r"finite")),
    Attempt("odeint dopri5 rtol=-1", ode(rtol=-1.0), Err(r"rtol")),
    Attempt("odeint dopri5 unknown option", ode(options={"foo": 1}), Err(r"foo")),
    Attempt("odeint dopri5 max_num_steps=1", ode(options={"max_num_steps": 1}, t=torch.tensor([0.0, 10.0])),
            Err(r"max_num_steps", (solvers.DivergenceError,))),
    Attempt("odeint dopri5 atol nan", ode(atol=float("nan")), Err(r"atol")),
    Attempt("odeint dopri5 correct", ode(rtol=1e-8, atol=1e-10), Ok(last_close(E1, 1e-5))),
    Attempt("odeint dopri5 t list", ode(t=[0.0, 1.0], rtol=1e-8, atol=1e-10), Ok(last_close(E1, 1e-5))),
    Attempt("odeint gradient wrt y0 and t", lambda: _odeint_grads(), Ok(lambda g: torch.allclose(
        torch.stack(g), torch.tensor([E1, -E1]), rtol=1e-4))),
    # ---- solvers.odeint_adjoint -----------------------------------------------------------
    Attempt("odeint_adjoint lambda func", lambda: solvers.odeint_adjoint(neg, U, T01),
            Err(r"nn.Module|adjoint_params")),
    Attempt("odeint_adjoint method lm", lambda: solvers.odeint_adjoint(linear_module(), U, T01, method="lm"),
            Ok()),
    Attempt("odeint_adjoint method nope", lambda: solvers.odeint_adjoint(linear_module(), U, T01, method="nope"),
            Err(r"unknown method 'nope'.*dopri5.*'lm'")),
    Attempt("odeint_adjoint lm lambda func", lambda: solvers.odeint_adjoint(neg, U, T01, method="lm"),
            Err(r"nn.Module|adjoint_params")),
    Attempt("odeint_adjoint options str", lambda: solvers.odeint_adjoint(linear_module(), U, T01, options="fast"),
            Err(r"options must be a dict")),
    Attempt("odeint_adjoint t 2-D", lambda: solvers.odeint_adjoint(linear_module(), U, torch.zeros(2, 2)), Err(r"t")),
    Attempt("odeint_adjoint y0 int", adj(y0=torch.ones(3, dtype=torch.long)), Err(r"floating")),
    Attempt("odeint_adjoint steps 10**12", adj(method="euler", options={"steps": 10**12}), Err(r"at most")),
    Attempt("odeint_adjoint adjoint_params=5", adj(adjoint_params=5), Err(r"adjoint_params")),
    Attempt("odeint_adjoint gradient", adjoint_grad, Ok(close(E1, 1e-4))),
    # ---- solvers.sdeint -------------------------------------------------------------------
    Attempt("sdeint g=0 is Euler", sde(), Ok(last_close(0.9 ** 10, 1e-5))),
    Attempt("sdeint constant bm",
            sde(sde=SDE(diffusion=lambda t, y: torch.ones_like(y)), bm=lambda a, b: torch.full((2, 3), 0.01)),
            Ok(lambda r: close(0.9 ** 10 + 0.01 * sum(0.9 ** k for k in range(10)), 1e-5)(r[-1]))),
    Attempt("sdeint ts list", sde(ts=[0.0, 0.5, 1.0]),
            Ok(lambda r: r.shape == (3, 2, 3) and close(0.9 ** 10, 1e-5)(r[-1]))),
    Attempt("sdeint noise_type bad", sde(sde=SDE(noise_type="diag")), Err(r"noise_type")),
    Attempt("sdeint no g", sde(sde=NoG()), Err(r"diffusion")),
    Attempt("sdeint names not dict", sde(names="drift"), Err(r"names")),
    Attempt("sdeint names unknown key", sde(names={"drfit": "f"}), Err(r"drfit")),
    Attempt("sdeint bm=5", sde(bm=5), Err(r"bm")),
    Attempt("sdeint bm (2, 1)", sde(bm=lambda a, b: torch.zeros(2, 1)), Err(r"\(2, 3\)")),
    Attempt("sdeint bm float", sde(bm=lambda a, b: 0.1), Err(r"float")),
    Attempt("sdeint drift (3,)", sde(sde=SDE(drift=lambda t, y: -y[0])), Err(r"drift")),
    Attempt("sdeint diffusion float64", sde(sde=SDE(diffusion=lambda t, y: torch.zeros_like(y).double())),
            Err(r"float64")),
    Attempt("sdeint scalar noise g (2,3)", sde(sde=SDE(noise_type="scalar")), Err(r"scalar noise")),
    Attempt("sdeint y0 1-D", sde(y0=torch.ones(3)), Err(r"\(batch, d\)")),
    Attempt("sdeint y0 int", sde(y0=torch.ones(2, 3, dtype=torch.long)), Err(r"floating-point")),
    Attempt("sdeint ts decreasing", sde(ts=torch.tensor([1.0, 0.0])), Err(r"increasing")),
    Attempt("sdeint ts nan", sde(ts=torch.tensor([0.0, float("nan")])), Err(r"finite")),
    Attempt("sdeint dt 0", sde(dt=0.0), Err(r"dt")),
    Attempt("sdeint dt -0.1", sde(dt=-0.1), Err(r"dt")),
    Attempt("sdeint dt '0.1'", sde(dt="0.1"), Err(r"dt")),
    Attempt("sdeint dt 1e-12", sde(dt=1e-12), Err(r"at most")),
    Attempt("sdeint dt 1e-8 generator (lazy)", lazily(lambda f: solvers.sdeint(
        SDE(drift=f), Y2, TS, dt=1e-8, method="euler", generator=torch.Generator().manual_seed(0))), Ok()),
    Attempt("sdeint dt 1e-8 no bm (torchsde's interval)", sde(dt=1e-8), Err(r"generator=.*at most")),
    Attempt("sdeint srk dt 1e-9", sde(method="srk", dt=1e-9), Err(r"at most")),
    Attempt("sdeint method unknown", sde(method="rk4"), Err(r"rk4")),
    Attempt("sdeint generator=0", sde(generator=0), Err(r"generator")),
    Attempt("sdeint sde_type bad", sde(sde=type("S", (SDE,), {"sde_type": "ito2"})()), Err(r"sde_type")),
]

SMALL = dict(num_classes=3, depths=(1, 1, 1), widths=(4, 8, 8))
X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
LIN = nn.Linear(3, 3)


def build(*args, **kwargs):
    return lambda: odenets.build(*args, **kwargs)


def create(name="resnet20", **kwargs):
    return lambda: odenets.create(name, **{**SMALL, **kwargs})


def forward(name="resnet20", x=X, **kwargs):
    return lambda: odenets.create(name, **{**SMALL, **kwargs}).eval()(x)


def flow_value(solver, steps, **kwargs):
    return lambda: odenets.build(lambda t, u: -u, solver, steps, tied=True, **kwargs)(torch.ones(2, 3))


BUILD = [
    Attempt("build solver unknown", build(LIN, "eulr", 2), Err(r"did you mean 'euler'")),
    Attempt("build solver None", build(LIN, None, 2), Err(r"None")),
    Attempt("build solver 3", build(LIN, 3, 2), Err(r"3")),
    Attempt("build steps 0", build(LIN, "euler", 0), Err(r"steps must be an integer >= 1")),
    Attempt("build steps 2.0", build(LIN, "euler", 2.0), Err(r"steps must be an integer")),
    Attempt("build steps None", build(LIN, "euler", None), Err(r"steps")),
    Attempt("build steps 10**9", build(LIN, "euler", 10**9), Err(r"at most")),
    Attempt("build tied 'yes'", build(LIN, "euler", 2, tied="yes"), Err(r"tied")),
    Attempt("build momentum 1", build(LIN, "euler", 2, momentum=1), Err(r"momentum must be True or False")),
    Attempt("build damping -1", build(LIN, "euler", 2, momentum=True, damping=-1.0), Err(r"damping")),
    Attempt("build damping nan", build(LIN, "euler", 2, momentum=True, damping=float("nan")), Err(r"damping")),
    Attempt("build damping 'a'", build(LIN, "euler", 2, momentum=True, damping="a"), Err(r"damping")),
    Attempt("build noise bad", build(LIN, "euler_maruyama", 2, noise="pink"), Err(r"noise must be one of")),
    Attempt("build noise on euler", build(LIN, "euler", 2, noise="gaussian"), Err(r"noise")),
    Attempt("build activation bad", build(LIN, "euler", 2, activation="tanhh"), Err(r"activation")),
    Attempt("build t_span 3 values", build(LIN, "euler", 2, t_span=(0, 1, 2)), Err(r"t_span")),
    Attempt("build t_span nan", build(LIN, "euler", 2, t_span=(0.0, float("nan"))), Err(r"t_span|t1")),
    Attempt("build coefficients unknown", build(LIN, "lm", 2, coefficients={"q": 0.1}), Err(r"q")),
    Attempt("build lm k=1", build(LIN, "lm", 2, k=1.0), Err(r"k")),
    Attempt("build channels -1", build(LIN, "lm", 2, channels=-1, per_channel=True), Err(r"channels")),
    Attempt("build field None", build(None, "euler", 2), Err(r"field")),
    Attempt("build field 3", build(3, "euler", 2), Err(r"field")),
    Attempt("build field list wrong length", build([LIN, LIN], "euler", 3), Err(r"steps=3")),
    Attempt("build field factory of 3 args", build(lambda a, b, c: LIN, "euler", 2), Err(r"factory")),
    Attempt("build unknown solver option", build(LIN, "euler", 2, foo=1), Err(r"foo")),
    Attempt("build dopri5 rtol -1", build(LIN, "dopri5", rtol=-1.0), Err(r"rtol")),
    Attempt("build dopri5 unknown option", build(LIN, "dopri5", foo=1), Err(r"foo")),
    Attempt("build dopri5 coefficients", build(LIN, "dopri5", coefficients={"k": 0.1}), Err(r"continuous solver")),
    Attempt("build momentum shake", build(LIN, "euler_maruyama", 2, momentum=True, noise="shake"),
            Err(r"shake|pair")),
    # a bare flow passes its field's own error through unchanged (tests/test_shape_errors.py)
    Attempt("build forward wrong width", lambda: odenets.build(LIN, "euler", 2)(torch.ones(2, 4)),
            Err(r"mat1 and mat2 shapes", (RuntimeError,))),
    Attempt("build t_span strings", build(LIN, "euler", 2, t_span=("0", "1")), Err(r"t_span")),
    Attempt("build tied 1", build(LIN, "euler", 2, tied=1), Err(r"tied")),
    Attempt("build rk4 tied value", flow_value("rk4", 32), Ok(close(E1, 1e-5))),
    Attempt("build euler tied value", flow_value("euler", 4), Ok(close(0.75 ** 4, 1e-6))),
    Attempt("build momentum tied value", lambda: odenets.build(lambda t, u: torch.zeros_like(u), "rk4", 4, tied=True,
                                                               momentum=True)(torch.ones(2, 3)), Ok(close(1.0, 1e-6))),
    Attempt("flow at times correct", lambda: odenets.build(lambda t, u: -u, "rk4", 64, tied=True)(
        torch.ones(2, 3), times=torch.tensor([0.0, 0.5, 1.0]))[:, 0, 0],
        Ok(lambda r: torch.allclose(r, torch.exp(-torch.tensor([0.0, 0.5, 1.0])), rtol=1e-5))),
    Attempt("flow at times not monotonic", lambda: odenets.build(lambda t, u: -u, "rk4", 8, tied=True)(
        torch.ones(2, 3), times=torch.tensor([0.0, 1.0, 0.5])), Err(r"times|increasing|monotonic")),
    Attempt("flow at times on untied flow", lambda: odenets.build(LIN, "euler", 2)(torch.ones(2, 3), times=T01),
            Err(r"tied")),
    Attempt("build sde:euler bad option", build(LIN, "sde:euler", foo=1), Err(r"foo")),
    Attempt("create ode_resnet20 rtol -1", create("ode_resnet20", solver_options={"rtol": -1.0}), Err(r"rtol")),
    Attempt("create ode_resnet20 forward", forward("ode_resnet20"),
            Ok(lambda r: r.shape == (2, 3) and bool(torch.isfinite(r).all()))),
    # ---- odenets.create and its forward ---------------------------------------------------
    Attempt("create unknown", create("resnet21"), Err(r"did you mean")),
    Attempt("create name None", lambda: odenets.create(None), Err(r"None")),
    Attempt("create num_classes 0 forward", forward(num_classes=0), Ok(lambda r: r.shape == (2, 8))),
    Attempt("create num_classes -1", create(num_classes=-1), Err(r"num_classes")),
    Attempt("create num_classes 2.5", create(num_classes=2.5), Err(r"num_classes")),
    Attempt("create num_classes '10'", create(num_classes="10"), Err(r"num_classes")),
    Attempt("create in_chans 0", create(in_chans=0), Err(r"in_chans|in_channels")),
    Attempt("create in_channels True", create(in_channels=True), Err(r"in_channels")),
    Attempt("create features_only 'yes'", create(features_only="yes"), Err(r"features_only")),
    Attempt("create out_indices (5,)", create(features_only=True, out_indices=(5,)), Err(r"out_indices")),
    Attempt("create out_indices (-1,)", create(features_only=True, out_indices=(-1,)),
            Ok(lambda m: len(m(X)) == 1 and m(X)[0].shape[1] == 8)),
    Attempt("create out_indices (0, 0)", create(features_only=True, out_indices=(0, 0)), Err(r"out_indices")),
    Attempt("create out_indices (3, -1)", create(features_only=True, out_indices=(3, -1)), Err(r"once")),
    Attempt("create out_indices ()", create(features_only=True, out_indices=()), Err(r"out_indices")),
    Attempt("create out_indices 7", create(features_only=True, out_indices=7), Err(r"out_indices")),
    Attempt("create features value", lambda: [f.shape for f in odenets.create("resnet20", **SMALL, features_only=True,
                                                                              out_indices=(0, 3))(X)],
            Ok(lambda s: s == [torch.Size([2, 4, 8, 8]), torch.Size([2, 8, 2, 2])])),
    Attempt("create pretrained 'yes'", create(pretrained="yes"), Err(r"pretrained")),
    Attempt("create solver bad", create(solver="rk5"), Err(r"rk5")),
    Attempt("create unknown override", create(dpeths=(1, 1, 1)), Err(r"dpeths")),
    Attempt("create depths (1, 1)", create(depths=(1, 1)), Err(r"depths|widths")),
    Attempt("create depths (0, 1, 1)", create(depths=(0, 1, 1)), Err(r"depths")),
    Attempt("create widths negative", create(widths=(4, -8, 8)), Err(r"widths")),
    Attempt("create drop_rate 2", create(drop_rate=2.0), Err(r"drop_rate")),
    Attempt("create drop_path_rate -1", create(drop_path_rate=-1.0), Err(r"drop_path_rate")),
    Attempt("create solver_options bad k", create("lm_resnet20", solver_options={"k": 3.0}), Err(r"k")),
    Attempt("create solver_options not dict", create("lm_resnet20", solver_options=0.1), Err(r"solver_options")),
    Attempt("create tied 'true'", create(tied="true"), Err(r"tied")),
    Attempt("forward 1 channel", forward(x=torch.randn(2, 1, 8, 8)), Err(r"in_channels")),
    Attempt("forward 3-D input", forward(x=torch.randn(3, 8, 8)), Err(r"\(N, 3, H, W\)")),
    Attempt("forward int input", forward(x=torch.ones(2, 3, 8, 8, dtype=torch.long)), Err(r"int64|floating")),
    Attempt("forward float64 input", forward(x=X.double()), Err(r"float64")),
    Attempt("forward float64 model", lambda: odenets.create("resnet20", **SMALL).double().eval()(X.double()),
            Ok(lambda r: r.dtype == torch.float64 and r.shape == (2, 3))),
    Attempt("features float64 input", lambda: odenets.create("resnet20", **SMALL, features_only=True)(X.double()),
            Err(r"float64")),
    Attempt("forward 1x1 image", forward(x=torch.randn(2, 3, 1, 1)), Ok(lambda r: r.shape == (2, 3))),
    Attempt("forward sd_ in eval is its mean", lambda: torch.equal(*[odenets.create("sd_resnet20", **SMALL).eval()(X)
                                                                    for _ in range(1)] * 2), Ok(bool)),
]

def _grad_u0():
    u0 = torch.ones(3, requires_grad=True)
    solvers.integrate(neg, u0, 64, "rk4").sum().backward()
    return u0.grad


def _classifier_reset(num_classes):
    model = odenets.create("resnet20", **SMALL)
    model.reset_classifier(num_classes)
    return model


MORE = [
    # ---- solvers' registry, options, dtypes and gradients ---------------------------------
    Attempt("get lmm history=10", lambda: solvers.get("lmm", history=10), Err(r"history")),
    Attempt("get lm per_channel 'yes'", lambda: solvers.get("lm", per_channel="yes"), Err(r"per_channel")),
    Attempt("get None", lambda: solvers.get(None), Err(r"None")),
    Attempt("register a non-scheme", lambda: solvers.register("my_scheme", 5), Err(r"my_scheme|Scheme")),
    Attempt("Noise seed 'a'", lambda: solvers.Noise(seed="a"), Err(r"seed")),
    Attempt("Noise seed 2.5", lambda: solvers.Noise(seed=2.5), Err(r"seed")),
    # the fixed-point iteration reaches its float32 fixed point exactly: tol=1e-300 is met
    Attempt("backward_euler tol 1e-300", integ(scheme="backward_euler", tol=1e-300, max_iterations=50),
            Ok(close(1.25 ** -4, 1e-5))),
    Attempt("backward_euler tol 1e-300 contractive 0.9", integ(f=lambda t, u: -9 * u, steps=10, scheme="backward_euler",
                                                               tol=1e-300, max_iterations=5),
            Err(r"did not reach tol", (solvers.DivergenceError,))),
    Attempt("integrate gradient wrt u0", _grad_u0, Ok(close(E1, 1e-5))),
    Attempt("integrate float16 state", integ(u0=torch.ones(3, dtype=torch.float16), steps=8),
            Ok(lambda r: r.dtype == torch.float16 and close(0.875 ** 8, 1e-2)(r.float()))),
    Attempt("integrate bfloat16 state", integ(u0=torch.ones(3, dtype=torch.bfloat16), steps=8),
            Ok(lambda r: r.dtype == torch.bfloat16 and close(0.875 ** 8, 2e-2)(r.float()))),
    Attempt("integrate field float32 for float64", integ(f=lambda t, u: (-u).float(), u0=torch.ones(3).double()),
            Err(r"float32")),
    Attempt("integrate leapfrog dim=5", integ(u0=torch.ones(2, 4), scheme="leapfrog", dim=5), Err(r"dim=5")),
    Attempt("integrate shake single field", integ(scheme="euler_maruyama", noise="shake"), Err(r"pair")),
    Attempt("integrate coefficients k per step wrong", integ(scheme="lm", coefficients={"k": [0.1] * 3}), Err(r"3 per-step")),
    Attempt("reversible_solve non-reversible", lambda: solvers.reversible_solve(solvers.get("euler"), [neg] * 2, U),
            Err(r"reversible|leapfrog|euler")),
    # ---- odenets' helpers -----------------------------------------------------------------
    Attempt("list_models 5", lambda: odenets.list_models(5), Err(r"pattern|5")),
    Attempt("list_models no match", lambda: odenets.list_models("zzz*"), Ok(lambda r: r == [])),
    Attempt("list_models lm_*", lambda: odenets.list_models("lm_*"), Ok(lambda r: r and all(n.startswith("lm_") for n in r))),
    Attempt("info unknown", lambda: odenets.info("resnet21"), Err(r"resnet21")),
    Attempt("info input_size 0", lambda: odenets.info("resnet20", input_size=(1, 3, 0, 0)), Err(r"input_size")),
    Attempt("info input_size 3 values", lambda: odenets.info("resnet20", input_size=(3, 32, 32)), Err(r"input_size|\(N, 3, H, W\)")),
    Attempt("info params", lambda: odenets.info("resnet20")["params"], Ok(lambda r: r == 269722)),
    Attempt("coefficients of 5", lambda: odenets.coefficients(5), Err(r"5|nn.Module|model")),
    Attempt("coefficients of lm", lambda: odenets.coefficients(odenets.create("lm_resnet20", **SMALL)),
            Ok(lambda r: r and all(all(-1 < k < 1 for k in v) for v in r.values()))),
    Attempt("create pretrained none shipped", create("rk4_resnet20", pretrained=True), Err(r"rk4_resnet20|pretrained|weights")),
    Attempt("create global_pool 'mean'", create(global_pool="mean"), Err(r"global_pool")),
    Attempt("reset_classifier -1", lambda: _classifier_reset(-1), Err(r"num_classes")),
    Attempt("reset_classifier 5 forward", lambda: _classifier_reset(5).eval()(X), Ok(lambda r: r.shape == (2, 5))),
    Attempt("forward empty batch", forward(x=torch.randn(0, 3, 8, 8)), Ok(lambda r: r.shape == (0, 3))),
]

ATTEMPTS = SOLVERS + BUILD + MORE


SEEN = {}


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=[a.name for a in ATTEMPTS])
def test_attempt(attempt):
    outcome, detail = SEEN[attempt.name] = classify(attempt)
    expected = "clear error" if isinstance(attempt.expect, Err) else "correct"
    assert outcome == expected, f"{attempt.name}: {outcome} ({detail})"


def test_probe_counts():
    """The table's counts (printed with -s; attempts not run yet are run here)."""
    outcomes = {a.name: (SEEN.get(a.name) or classify(a))[0] for a in ATTEMPTS}
    print(f"\nPython API probe: {len(ATTEMPTS)} attempts, {tally(outcomes)}")
    assert len(ATTEMPTS) == len({a.name for a in ATTEMPTS}) >= 150
