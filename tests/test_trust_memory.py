"""Trust (issue 26, item 1): memory independent of the step count.

No test here allocates in proportion to the steps it asks for: every long solve is stopped by
its field after a few thousand calls, and tracemalloc bounds what Python allocated meanwhile
(the old code built a list of ``steps`` fields and a tuple of ``steps + 1`` time tensors first).
"""
import tracemalloc

import pytest
import torch
from torch import nn

import odenets
import solvers
from odenets.resolve import with_solver
from solvers.base import LazyGrid, stage_times, time_grid

pytestmark = pytest.mark.usefixtures("one_thread")


class Stop(Exception):
    pass


def stops_after(calls, field=lambda t, u: -u):
    """``field``, raising `Stop` on call number ``calls`` (ends a long solve early)."""
    count = [0]

    def f(t, u):
        count[0] += 1
        if count[0] >= calls:
            raise Stop
        return field(t, u)
    return f


def peak_bytes(fn):
    """Peak Python allocation while ``fn()`` runs until it raises `Stop`."""
    tracemalloc.start()
    try:
        with pytest.raises(Stop):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


LIMIT = 2 * 2**20  # 2 MiB: a chunk of the grid, never a per-step list (300k steps: > 2.4 MB)


@pytest.mark.parametrize("scheme", ["euler", "rk4", "lm", "leapfrog"])
def test_integrate_memory_does_not_grow_with_steps(scheme):
    f = stops_after(3000)  # past the first chunks of the lazy grid
    field = (lambda t, z: f(t, z), lambda t, y: -y) if scheme == "leapfrog" else f
    peak = peak_bytes(lambda: solvers.integrate(field, torch.ones(4), steps=3 * 10**5,
                                                scheme=scheme))
    assert peak < LIMIT, f"{scheme}: {peak / 2**20:.1f} MiB for a solve stopped after 3000 calls"


def test_odeint_and_sdeint_do_not_build_the_grid():
    """options={'steps': 10**8} and sdeint's dt=1e-9 (generator= draws) run lazily, 10**12 steps
    are refused in one line (the old code raised MemoryError or grew to 23.5 GB before the first
    step)."""
    peak = peak_bytes(lambda: solvers.odeint(stops_after(2000), torch.ones(3),
                                             torch.tensor([0.0, 1.0]), method="euler",
                                             options={"steps": 10**8}))
    assert peak < LIMIT
    with pytest.raises(ValueError, match=r"asks for 1e\+12 steps; at most"):
        solvers.odeint(lambda t, y: -y, torch.ones(3), torch.tensor([0.0, 1.0]), method="euler",
                       options={"steps": 10**12})

    class SDE:
        noise_type, sde_type = "diagonal", "ito"
        f = staticmethod(stops_after(2000))

        def g(self, t, y):
            return torch.ones_like(y)
    peak = peak_bytes(lambda: solvers.sdeint(SDE(), torch.ones(2, 3), torch.linspace(0, 1, 3),
                                             dt=1e-9, method="euler",
                                             generator=torch.Generator().manual_seed(0)))
    assert peak < LIMIT
    # without bm or generator the path is torchsde's BrownianInterval, which keeps every step
    with pytest.raises(ValueError, match=r"1e\+09 steps on torchsde's Brownian motion .*"
                                         r"generator=.*at most 1e\+07"):
        solvers.sdeint(SDE(), torch.ones(2, 3), torch.linspace(0, 1, 3), dt=1e-9, method="euler")
    # torchsde's methods keep per-step objects: a count no one can mean is refused up front
    with pytest.raises(ValueError, match=r"asks for 1e\+09 steps in torchsde .*at most 1e\+07"):
        solvers.sdeint(SDE(), torch.ones(2, 3), torch.linspace(0, 1, 3), dt=1e-9)


def test_a_long_grid_is_lazy_and_exact():
    like = torch.ones(())
    grid = time_grid(0.25, 1e-9, 10**9, like)
    assert isinstance(grid, LazyGrid) and len(grid) == 10**9 + 1
    for n in (0, 1023, 1024, 123_456_789, 10**9):
        assert grid[n].item() == pytest.approx(0.25 + n * 1e-9, rel=1e-7)
    assert grid[-1].item() == pytest.approx(1.25, rel=1e-7)
    with pytest.raises(IndexError):
        grid[10**9 + 1]
    small, lazy = time_grid(0.0, 0.1, 5000, like), LazyGrid(0.0, 0.1, 5000, (), like)
    assert all(small[n] == lazy[n] for n in (0, 1, 2047, 4999, 5000))
    t0 = torch.tensor(0.5, dtype=torch.float64)  # a tensor t0 and float64 states too
    assert time_grid(t0, 0.5, 10**6, like.double())[10**6].item() == 0.5 + 0.5 * 10**6
    stages = stage_times(0.0, 1e-3, 10**5, (0.0, 0.5, 1.0), like)
    assert isinstance(stages, LazyGrid) and len(stages) == 10**5
    assert [s.item() for s in stages[4321]] == pytest.approx([4.321, 4.3215, 4.322])


def test_return_path_larger_than_memory_is_refused():
    with pytest.raises(ValueError, match=r"return_path=True would keep .* GiB"):
        solvers.integrate(lambda t, u: -u, torch.ones(1000), steps=10**12, return_path=True)


def test_a_tied_network_flow_holds_no_per_step_objects():
    """build(..., tied=True, steps=10**6): one wrapper, no list of steps items (the old code made
    one `_Call` per step: about 1 GB for 10**6 steps); its forward runs lazily."""
    field = nn.Linear(3, 3)
    tracemalloc.start()
    try:
        flow = odenets.build(field, "rk4", steps=10**6, tied=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < LIMIT, f"{peak / 2**20:.1f} MiB to build a tied flow"
    assert len(flow.fields) == 10**6 and not isinstance(flow.fields, list)
    calls = [0]

    def hook(*_):
        calls[0] += 1
        if calls[0] >= 5000:
            raise Stop
    field.register_forward_hook(hook)
    with torch.no_grad():
        assert peak_bytes(lambda: flow(torch.ones(2, 3))) < LIMIT


def test_a_tied_flow_with_norms_counts_calls_per_step():
    """The one shared wrapper still tells BatchNorm the call's index within its step."""
    field = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    flow = odenets.build(field, "rk4", steps=3, tied=True)
    seen = []
    norm = field[1]
    norm.register_forward_pre_hook(lambda m, _: seen.append(m.call_index.value))
    flow(torch.randn(5, 3))
    assert seen == [0, 1, 2, 3] * 3


def test_huge_counts_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"steps=100000000 is more than a network flow takes "
                                         r"\(at most odenets.build.MAX_STEPS"):
        odenets.build(nn.Linear(3, 3), "euler", steps=10**8, tied=True)
    model = odenets.create("preact_resnet20", num_classes=3, in_channels=3, depths=(1, 1, 1),
                           widths=(4, 4, 4), tied=True)
    with pytest.raises(ValueError, match="MAX_STEPS"):  # odenets eval RUN --steps 100000000
        with_solver(model, "euler", steps=10**8)


def test_backward_euler_norm_slots_are_bounded():
    """iterations=10**4 (old: 10**4 slots of running statistics; 10**9 tried 64 GB)."""
    field = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    odenets.build(field, "backward_euler", steps=2, tied=True, iterations=10**4)
    assert field[1].running_mean.shape == (64, 3)
    with pytest.raises(ValueError, match=r"iterations=1000000000 is more than MAX_ITERATIONS"):
        solvers.get("backward_euler", iterations=10**9)  # --solver-opt iterations=1000000000
