"""solvers.odeint_adjoint with our fixed-grid schemes: the discrete adjoint by recomputation
(solvers/adjoint.py) gives odeint's gradients and saves the grid states only (none for
schemes with an inverse)."""
import pytest
import torch

import solvers

D64 = torch.float64


class MLP(torch.nn.Module):
    """A small time-dependent MLP field."""

    def __init__(self, d=4, width=16, dtype=D64):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(d, width), torch.nn.Tanh(),
                                       torch.nn.Linear(width, d)).to(dtype)

    def forward(self, t, y):
        return self.net(y) * torch.cos(t)


class Separable(torch.nn.Module):
    """``(F(z), G(y))`` on ``u = (y, z)``: the fields leapfrog inverts exactly."""

    def __init__(self, d=4, width=16, dtype=D64):
        super().__init__()
        self.F, self.G = MLP(d // 2, width, dtype), MLP(d // 2, width, dtype)

    def forward(self, t, u):
        y, z = u.chunk(2, -1)
        return torch.cat([self.F(t, z), torch.sin(t) * self.G(t, y)], -1)


def _grads(solve, func, method, options, t, y0_value):
    """Outputs and d<w, outputs>/d(y0, t, parameters)."""
    y0 = y0_value.clone().requires_grad_(True)
    tt = t.clone().requires_grad_(True)
    out = solve(func, y0, tt, method=method, options=dict(options))
    w = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(2))
    return out.detach(), torch.autograd.grad((out * w).sum(), [y0, tt, *func.parameters()])


def _assert_same_as_odeint(func, method, options, t, y0):
    (o1, g1), (o2, g2) = (_grads(s, func, method, options, t, y0)
                          for s in (solvers.odeint, solvers.odeint_adjoint))
    torch.testing.assert_close(o2, o1, rtol=0, atol=1e-12)
    for a, b in zip(g2, g1):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


T = torch.tensor([0.0, 0.3, 0.75, 1.0], dtype=D64)
Y0 = torch.randn(3, 4, dtype=D64, generator=torch.Generator().manual_seed(1))
GRIDS = [{"steps": 3}, {"step_size": 0.1}, {"step_size": 0.07, "interp": "cubic"}]


@pytest.mark.parametrize("method", [solvers.get("euler"), solvers.get("rk4"),
                                    solvers.get("midpoint"), "ab2", "lm", "rk4_38", "lmm"],
                         ids=str)
@pytest.mark.parametrize("options", GRIDS, ids=str)
def test_gradients_equal_backprop_through_the_steps(method, options):
    """Outputs at several times; y0, t and parameter gradients equal odeint's to rounding
    (step_size grids: outputs between grid points, multistep restarts where the step changes)."""
    _assert_same_as_odeint(MLP(), method, options, T, Y0)


@pytest.mark.parametrize("method, options", [
    ("leapfrog", {"steps": 5}), ("leapfrog", {"steps": 5, "variant": "revnet"}),
    ("damped_leapfrog", {"step_size": 0.1}), ("leapfrog", {"steps": 5, "memory_efficient": False})],
    ids=str)
def test_inverse_schemes_rebuild_the_states(method, options):
    _assert_same_as_odeint(Separable(), method, options, T, Y0)


def test_decreasing_times_and_tuple_states():
    _assert_same_as_odeint(MLP(), "ab2", {"steps": 2}, T.flip(0), Y0)
    f = MLP()
    tuple_field = Tupled(f)
    outs = []
    for solve in (solvers.odeint, solvers.odeint_adjoint):
        y0 = (Y0[:, :2].clone().requires_grad_(True), Y0[:, 2:].clone().requires_grad_(True))
        a, b = solve(tuple_field, y0, T, method=solvers.get("rk4"), options={"steps": 2})
        outs.append(torch.autograd.grad((a * b).sum(), [*y0, *f.parameters()]))
    for x, y in zip(*outs):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-12)


class Tupled(torch.nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, t, y):
        out = self.f(t, torch.cat(y, -1))
        return out[:, :2], out[:, 2:]


@pytest.mark.parametrize("method", [solvers.get("euler"), "ab2", "leapfrog"], ids=str)
def test_gradcheck(method):
    f = Separable(d=2, width=3)
    y0 = torch.tensor([[0.3, -0.2]], dtype=D64, requires_grad=True)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=D64)

    def solve(y, *params):
        return solvers.odeint_adjoint(f, y, t, method=method, options={"steps": 3},
                                      adjoint_params=params)
    assert torch.autograd.gradcheck(solve, (y0, *f.parameters()))


def saved_bytes(fn, params) -> int:
    """Bytes of the distinct non-parameter storages autograd saves in ``fn()``'s forward (as
    benchmarks/_case.py's ``saved_bytes``)."""
    known = {p.untyped_storage().data_ptr() for p in params}
    seen = {}

    def pack(x):
        storage = x.untyped_storage()
        if storage.data_ptr() not in known:
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = fn()
    del out
    return sum(seen.values())


@pytest.mark.parametrize("method, history, field", [
    (solvers.get("rk4"), 0, MLP), ("ab2", 1, MLP), ("lm", 0, MLP), ("leapfrog", None, Separable)],
    ids=str)
def test_saved_memory_grows_by_the_states_only(method, history, field):
    """Saved bytes grow by at most one state (plus ``history`` new tensors: AB2's f_{n-1}; LM's
    u_{n-1} is a stored state already) and one grid time per step; not at all (but the grid) for
    leapfrog (``history`` None). odeint (backprop through the steps) breaks the bound: the
    measure tells a naive adjoint apart."""
    f = field(d=16, width=64, dtype=torch.float32)
    y0 = torch.randn(32, 16, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0])
    state = y0.numel() * y0.element_size()

    def growth(solve):
        b = [saved_bytes(lambda: solve(f, y0, t, method=method, options={"steps": n}),
                         f.parameters()) for n in (4, 16)]
        return b[1] - b[0], 2 * (16 - 4)  # bytes, steps added
    grown, steps = growth(solvers.odeint_adjoint)
    per_step = 0 if history is None else (1 + history) * state
    assert grown <= steps * (per_step + 8), (grown, steps, state)
    grown_naive, _ = growth(solvers.odeint)
    assert grown_naive > steps * (per_step + 8)


def test_refusals_and_torchdiffeq_methods():
    f = MLP()
    for grad in (True, False):
        with torch.set_grad_enabled(grad), pytest.raises(ValueError, match="maruyama.*stochastic"):
            solvers.odeint_adjoint(f, Y0, T, method="euler_maruyama")
    with pytest.raises(ValueError, match="event_fn.*not supported"):
        solvers.odeint_adjoint(f, Y0, T, method="ab2", event_fn=lambda t, y: y.sum())
    with pytest.raises(ValueError, match="nn.Module.*adjoint_params"):
        solvers.odeint_adjoint(lambda t, y: -y, Y0, T, method="ab2")
    hidden = torch.nn.Parameter(torch.tensor(0.5, dtype=D64))
    sneaky = Sneaky(hidden)
    y0 = Y0.clone().requires_grad_(True)
    out = solvers.odeint_adjoint(sneaky, y0, T, method="ab2")
    with pytest.raises(ValueError, match="not among its parameters.*adjoint_params"):
        out.sum().backward()
    # given adjoint_params are taken as given (torchdiffeq): () gives dL/dy0 only
    out = solvers.odeint_adjoint(sneaky, y0, T, method="ab2", adjoint_params=())
    (g,) = torch.autograd.grad(out.sum(), [y0])
    torch.testing.assert_close(g, torch.autograd.grad(
        solvers.odeint(sneaky, y0, T, method="ab2").sum(), [y0])[0], rtol=0, atol=1e-12)
    pytest.importorskip("torchdiffeq")  # torchdiffeq's names keep its continuous adjoint
    import torchdiffeq
    for method in ("rk4", "euler"):
        ours = solvers.odeint_adjoint(f, Y0, T, method=method)
        torch.testing.assert_close(ours, torchdiffeq.odeint_adjoint(f, Y0, T, method=method))


class Sneaky(torch.nn.Module):
    """A field using a Parameter it does not register (held in a plain list)."""

    def __init__(self, p):
        super().__init__()
        self.hidden = [p]

    def forward(self, t, y):
        return -self.hidden[0] * y


def test_batchnorm_statistics_are_updated_once():
    stats = []
    for solve in (solvers.odeint, solvers.odeint_adjoint):
        torch.manual_seed(0)
        f = BN()
        y0 = Y0.clone().requires_grad_(True)
        solve(f, y0, T, method="lm", options={"steps": 2}).sum().backward()
        stats.append((f.bn.running_mean.clone(), int(f.bn.num_batches_tracked), y0.grad))
    torch.testing.assert_close(stats[0][0], stats[1][0], rtol=0, atol=1e-14)
    assert stats[0][1] == stats[1][1] == 6
    torch.testing.assert_close(stats[0][2], stats[1][2], rtol=0, atol=1e-12)


class BN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4).double()
        self.bn = torch.nn.BatchNorm1d(4).double()

    def forward(self, t, y):
        return self.bn(torch.tanh(self.lin(y)))


def test_memory_benchmark_runs(tmp_path):
    """benchmarks/adjoint_memory.py on a tiny size: odeint_adjoint saves less than odeint."""
    import json
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import adjoint_memory
    path = adjoint_memory.main(["--steps", "4", "8", "--dim", "4", "--width", "8", "--batch", "2",
                                "--rounds", "1", "--schemes", "rk4", "leapfrog",
                                "--out-dir", str(tmp_path)])
    rows = json.loads(Path(path).read_text())["rows"]
    assert len(rows) == 4
    assert all(r["odeint_adjoint_saved_MiB"] < r["odeint_saved_MiB"] for r in rows)
