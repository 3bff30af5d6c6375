"""odenets.continuous.rk: torchdiffeq's adaptive Runge-Kutta step with list-held stages gives
torchdiffeq's solutions, gradients, evaluation times and step counts (to rounding), and the
momentum flows (batch-split layout) give the same u(t1) and gradients as before.

"To rounding" for an adaptive float32 solve: the error estimate sum_j (b_j - b*_j) dt k_j is a
cancellation, so any rounding change (even torchdiffeq's own, from a channels_last input) moves
the step sizes a little; where the estimate is near float32 rounding (small steps, smooth
fields) the step sizes are rounding-driven and the evaluation times drift by percents. So the
solver is compared with torchdiffeq in float64 (times, solutions and gradients to 1e-9), and
the float32 stage flows by their solutions and NFE, and by gradients, which depend on the steps also
through the first step size (torchdiffeq differentiates its initial-step heuristic), within the
spread torchdiffeq shows itself: its stage-flow gradients for contiguous vs channels_last
inputs differ by up to 2.7e-2 of their largest entry (hbode_resnet20, seeds 3-5)."""
import pytest
import torch
import torchdiffeq

import odenets
from odenets.continuous import rk
from odenets.momentum import MomentumField


class Field(torch.nn.Module):
    """A time-dependent MLP field that records the times it is called at."""

    def __init__(self, width=5):
        super().__init__()
        self.lin = torch.nn.Linear(width, width)
        self.times = []

    def forward(self, t, y):
        self.times.append(float(t))
        return torch.tanh(self.lin(y)) * torch.cos(3 * t) - 0.5 * y


def _solve(solver, method, t, y0, **options):
    torch.manual_seed(0)
    f = Field().double()
    y = solver(f, y0, t, rtol=1e-6, atol=1e-8, method=method, options=options or None)
    grads = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(),
                                [y0, *f.parameters()])
    return y.detach(), grads, f.times


@pytest.mark.parametrize("method", sorted(rk.FAST))
@pytest.mark.parametrize("times", [(0.0, 0.3, 1.0), (1.0, 0.0)])
def test_matches_torchdiffeq(method, times):
    y0 = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64,
                     requires_grad=True)
    t = torch.tensor(times)
    y_ref, g_ref, t_ref = _solve(torchdiffeq.odeint, method, t, y0)
    y_new, g_new, t_new = _solve(rk.odeint, method, t, y0)
    assert len(t_new) == len(t_ref) and t_new == pytest.approx(t_ref, rel=1e-5, abs=1e-5)
    torch.testing.assert_close(y_new, y_ref, rtol=1e-6, atol=1e-9)
    for a, b in zip(g_new, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7 * float(b.abs().max()))


def test_step_and_jump_times_and_callbacks():
    y0 = torch.randn(2, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64,
                     requires_grad=True)
    t = torch.tensor([0.0, 1.0])
    opts = dict(step_t=torch.tensor([0.25]), jump_t=torch.tensor([0.6]))
    y_ref, g_ref, t_ref = _solve(torchdiffeq.odeint, "dopri5", t, y0, **opts)
    y_new, g_new, t_new = _solve(rk.odeint, "dopri5", t, y0, **opts)
    assert len(t_new) == len(t_ref) and t_new == pytest.approx(t_ref, rel=1e-5, abs=1e-5)
    torch.testing.assert_close(y_new, y_ref, rtol=1e-6, atol=1e-9)

    class Counted(Field):
        def __init__(self):
            super().__init__()
            self.accepted = 0

        def callback_accept_step(self, t0, y0, dt):
            self.accepted += 1

    counts = []
    for solver in (torchdiffeq.odeint, rk.odeint):
        torch.manual_seed(0)
        f = Counted().double()
        solver(f, y0.detach(), t, method="dopri5")
        counts.append(f.accepted)
    assert counts[0] == counts[1] > 0


def test_combine_skips_zero_and_keeps_tensor_coefficients():
    ks = [torch.full((4,), float(i + 1)) for i in range(3)]
    y0 = torch.ones(4)
    assert torch.equal(rk.combine(y0, ks, [0.5, 0.0, 2.0]), torch.full((4,), 1 + 0.5 + 6.0))
    c = torch.tensor(2.0, requires_grad=True)
    out = rk.combine(None, ks, [c, 1.0, 0.0])
    assert float(torch.autograd.grad(out.sum(), c)[0]) == 4.0  # d/dc sum(c k_1 + k_2) = sum(k_1)


def _flows(name, old: bool):
    torch.manual_seed(0)
    flow = odenets.create(name).stages[0].flow
    if old:  # the layout before: (u, v) along channels
        flow.batch_split = False
        for m in flow.modules():
            if isinstance(m, MomentumField):
                m.batch_split = False
    return flow


@pytest.mark.parametrize("name", ["ode_resnet20", "hbode_resnet20"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_stage_flow_equals_before(name, channels_last, monkeypatch):
    """A dopri5 stage flow of ode/hbode_resnet20: u(t1), NFE and gradients as with torchdiffeq's
    own step and (momentum) the channel layout of (u, v)."""
    x = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(3))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = {}
    for old in (True, False):
        flow = _flows(name, old)
        if channels_last:
            flow.to(memory_format=torch.channels_last)
        xx = x.clone().requires_grad_(True)
        with monkeypatch.context() as m:
            if old:
                m.setattr(rk, "odeint", lambda f, y, t, **kw: torchdiffeq.odeint(f, y, t, **kw))
            flow.reset_nfe()
            y = flow(xx)
            grads = torch.autograd.grad((y * torch.cos(torch.arange(y.numel()).view_as(y))).sum(),
                                        [xx, *flow.parameters()])
        out[old] = y.detach(), grads, flow.nfe["forward"]
    (y_old, g_old, n_old), (y_new, g_new, n_new) = out[True], out[False]
    assert n_new == n_old
    torch.testing.assert_close(y_new, y_old, rtol=0, atol=2e-5 * float(y_old.abs().max()))
    for a, b in zip(g_new, g_old):  # torchdiffeq's own spread: 2.7e-2 (module docstring)
        torch.testing.assert_close(a, b, rtol=0, atol=5e-2 * float(b.abs().max()))


def test_momentum_layouts():
    """Inside a torchdiffeq flow (u, v) splits along the batch; fixed-grid flows keep channels."""
    assert odenets.create("hbode_resnet20").stages[0].flow.batch_split
    field = torch.nn.Conv2d(4, 4, 3, padding=1)
    fixed = odenets.build(field, "rk4", steps=2, momentum=True)
    assert not fixed.batch_split
    x = torch.randn(2, 4, 5, 5)
    u, v = fixed(x, return_velocity=True)
    assert u.shape == v.shape == x.shape
    cont = odenets.build(torch.nn.Conv2d(4, 4, 3, padding=1), "dopri5", momentum=True)
    u, v = cont(x, return_velocity=True)
    assert cont.batch_split and u.shape == v.shape == x.shape
    path = cont(x, torch.tensor([0.0, 0.5, 1.0]))
    assert path.shape == (3, *x.shape)


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "rk4"])
def test_adjoint_matches_torchdiffeq(method):
    """The adjoint (forward and backward solves by `rk.odeint`): torchdiffeq's gradients for
    y0, the parameters and the output times (float64)."""
    out = []
    for solver in (torchdiffeq.odeint_adjoint, rk.odeint_adjoint):
        torch.manual_seed(0)
        f = Field().double()
        y0 = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64,
                         requires_grad=True)
        t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64, requires_grad=True)
        opts = dict(step_size=0.05) if method == "rk4" else None
        y = solver(f, y0, t, rtol=1e-6, atol=1e-8, method=method, options=opts)
        grads = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(),
                                    [y0, t, *f.parameters()])
        out.append((y.detach(), grads, len(f.times)))
    (y_ref, g_ref, n_ref), (y_new, g_new, n_new) = out
    assert n_new == n_ref  # forward and adjoint evaluations
    torch.testing.assert_close(y_new, y_ref, rtol=1e-6, atol=1e-9)
    for a, b in zip(g_new, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7 * float(b.abs().max()))


def test_adjoint_stage_flow_equals_before(monkeypatch):
    """hbode_resnet20's stage flow with adjoint=True: gradients as with torchdiffeq's adjoint
    and the channel layout, within torchdiffeq's own spread (module docstring)."""
    x = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(3))
    out = {}
    for old in (True, False):
        flow = _flows("hbode_resnet20", old)
        flow.flow.adjoint = True
        xx = x.clone().requires_grad_(True)
        with monkeypatch.context() as m:
            if old:
                m.setattr(rk, "odeint_adjoint", torchdiffeq.odeint_adjoint)
            flow.reset_nfe()
            y = flow(xx)
            grads = torch.autograd.grad((y * torch.cos(torch.arange(y.numel()).view_as(y))).sum(),
                                        [xx, *flow.parameters()])
        out[old] = y.detach(), grads, dict(flow.nfe)
    (y_old, g_old, n_old), (y_new, g_new, n_new) = out[True], out[False]
    assert n_new["forward"] == n_old["forward"] and n_new["backward"] > 0
    torch.testing.assert_close(y_new, y_old, rtol=0, atol=2e-5 * float(y_old.abs().max()))
    for a, b in zip(g_new, g_old):
        torch.testing.assert_close(a, b, rtol=0, atol=5e-2 * float(b.abs().max()))


def test_interpolant_is_torchdiffeq_fit_evaluated():
    """`LazyFit.evaluate` (one combination) gives torchdiffeq's fitted quartic at any x in
    [0, 1] (float64, to rounding), y0 and y1 exactly at the ends, and gradients through dt."""
    from torchdiffeq._impl.interp import _interp_evaluate, _interp_fit
    g = torch.Generator().manual_seed(4)
    y0, y1 = (torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(2))
    ks = [torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(7)]
    mid = rk.FAST["dopri5"].mid.to(torch.float64)
    t0, t1 = torch.tensor(0.25, dtype=torch.float64), torch.tensor(0.75, dtype=torch.float64)
    dt = t1 - t0
    y_mid = y0 + sum(m * dt * k for m, k in zip(mid, ks))
    coefficients = _interp_fit(y0, y1, y_mid, ks[0], ks[-1], dt)
    for t in (0.25, 0.3, 0.5, 0.71, 0.75):
        t = torch.tensor(t, dtype=torch.float64)
        ref = _interp_evaluate(coefficients, t0, t1, t)
        torch.testing.assert_close(rk.LazyFit(y0, y1, ks, mid, dt).evaluate(t0, t1, t), ref,
                                   rtol=1e-12, atol=1e-12)
    assert torch.equal(rk.LazyFit(y0, y1, ks, mid, dt).evaluate(t0, t1, t0), y0)
    assert torch.equal(rk.LazyFit(y0, y1, ks, mid, dt).evaluate(t0, t1, t1), y1)
    h = dt.clone().requires_grad_(True)
    mine = rk.LazyFit(y0, y1, ks, mid, h).evaluate(t0, t0 + h, t0 + 0.3 * h).sum()
    y_mid = y0 + sum(m * h * k for m, k in zip(mid, ks))
    theirs = _interp_evaluate(_interp_fit(y0, y1, y_mid, ks[0], ks[-1], h), t0, t0 + h,
                              t0 + 0.3 * h).sum()
    torch.testing.assert_close(torch.autograd.grad(mine, h)[0], torch.autograd.grad(theirs, h)[0])


@pytest.mark.parametrize("channels_last", [False, True])
def test_error_ratio_in_blocks_is_bit_for_bit(channels_last, monkeypatch):
    """The blocked RMS error ratio equals the whole-tensor one bit for bit (same operations per
    element, same reduction), contiguous and channels_last; mismatched layouts fall back."""
    g = torch.Generator().manual_seed(5)
    y0, y1, err = (torch.randn(4, 3, 8, 8, generator=g) for _ in range(3))
    if channels_last:
        y0, y1, err = (t.contiguous(memory_format=torch.channels_last) for t in (y0, y1, err))
    from torchdiffeq._impl.misc import _rms_norm
    solver = rk.FAST["dopri5"](func=lambda t, y: y, y0=y0, rtol=1e-3, atol=1e-4, norm=_rms_norm)
    ratios = []
    for block in (1 << 20, 100):  # whole tensor, then blocks of 100 elements (a ragged last one)
        monkeypatch.setattr(rk, "BLOCK", block)
        assert (rk._blocks(err, y0, y1) is None) == (block > err.numel())
        ratios.append(solver._error_ratio(err.clone(), y0, y1))
    assert torch.equal(ratios[0], ratios[1])
    tol = torch.maximum(y0.abs(), y1.abs()) * solver.rtol.float() + solver.atol.float()
    torch.testing.assert_close(ratios[0], (err / tol).pow(2).mean().sqrt())
    assert rk._blocks(err, y0.contiguous(memory_format=torch.channels_last)
                      if not channels_last else y0.contiguous(), y1) is None
