"""solvers.sdeint: torchsde's signature; equals torchsde.sdeint(method="euler") on one path."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import solvers

torchsde = pytest.importorskip("torchsde")
D64 = torch.float64
B, D, M = 3, 2, 4


class SDE(torch.nn.Module):
    """A torchsde-style SDE, unchanged: t is used as a tensor."""
    sde_type = "ito"

    def __init__(self, noise_type):
        super().__init__()
        self.noise_type = noise_type
        self.lin = torch.nn.Linear(D, D).double()
        self.mix = torch.randn(D, M, dtype=D64, generator=torch.Generator().manual_seed(1))

    def f(self, t, y):
        assert torch.is_tensor(t) and t.dim() == 0
        return torch.tanh(self.lin(y)) * torch.cos(t)

    def g(self, t, y):
        if self.noise_type == "diagonal":
            return 0.3 * torch.sigmoid(y) + 0.1 * torch.sin(t)
        if self.noise_type == "scalar":
            return (0.2 * torch.cos(y)).unsqueeze(-1)
        if self.noise_type == "additive":
            return (0.5 * self.mix).expand(y.shape[0], D, M)
        return 0.2 * torch.tanh(y).unsqueeze(-1) * self.mix  # general: (B, D, M), depends on y


def _m(noise):
    return D if noise == "diagonal" else 1 if noise == "scalar" else M


@pytest.mark.parametrize("noise", ["diagonal", "scalar", "additive", "general"])
def test_equals_torchsde_euler_on_the_same_brownian_path(noise):
    torch.manual_seed(0)
    sde = SDE(noise)
    y0 = torch.randn(B, D, dtype=D64)
    ts = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=D64)
    bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(B, _m(noise)), dtype=D64, entropy=3)
    theirs = torchsde.sdeint(sde, y0, ts, bm=bm, method="euler", dt=1 / 16)
    ours = solvers.sdeint(sde, y0, ts, bm=bm, method="euler", dt=1 / 16)
    assert ours.shape == theirs.shape == (4, B, D)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    ours.sum().backward()
    assert sde.lin.weight.grad is not None


def test_without_bm_and_seeded_generator():
    sde = SDE("diagonal")
    y0 = torch.zeros(B, D, dtype=D64)
    ts = torch.linspace(0, 1, 3, dtype=D64)
    a = solvers.sdeint(sde, y0, ts, dt=0.1, method="euler", generator=torch.Generator().manual_seed(0))
    b = solvers.sdeint(sde, y0, ts, dt=0.1, method="euler", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.shape == (3, B, D) and (a[-1] != a[0]).all()


def test_names_and_errors():
    class Renamed(SDE):
        def h(self, t, y):
            return self.f(t, y)

    sde = Renamed("diagonal")
    y0, ts = torch.zeros(B, D, dtype=D64), torch.linspace(0, 1, 2, dtype=D64)
    out = solvers.sdeint(sde, y0, ts, dt=0.5, names={"drift": "h"}, method="euler")
    assert out.shape == (2, B, D)
    with pytest.raises(ValueError, match="unknown sdeint method 'srkk'"):
        solvers.sdeint(sde, y0, ts, method="srkk")
    sde.sde_type, sde.noise_type = "ito", "diag"
    with pytest.raises(ValueError, match="noise_type"):
        solvers.sdeint(sde, y0, ts)
    sde.noise_type = "diagonal"
    with pytest.raises(ValueError, match="increasing"):
        solvers.sdeint(sde, y0, ts.flip(0), method="euler")


class _Recording(SDE):
    def __init__(self, noise):
        super().__init__(noise)
        self.times = []

    def f(self, t, y):
        self.times.append(float(t))
        return super().f(t, y)


@pytest.mark.parametrize("dt, ts", [(0.1, torch.linspace(0, 1, 11)), (0.3, torch.linspace(0, 1, 4)),
                                     (0.07, torch.tensor([0.0, 0.25, 0.5, 1.0]))])
def test_same_evaluation_times_and_values_as_torchsde_on_float32_grids(dt, ts):
    """Issue 25, defect 1: with float32 ts and dt=0.1, ours took ceil(10.0000001) = 2 steps per
    interval (max difference 3.2e-2 from torchsde on the same BrownianInterval); now the drift
    sees torchsde's times and the path agrees to float32 rounding."""
    y0 = torch.randn(B, D, generator=torch.Generator().manual_seed(0))
    paths = []
    for sdeint in (solvers.sdeint, torchsde.sdeint):
        torch.manual_seed(0)
        sde = _Recording("diagonal").float()
        bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(B, D), entropy=5)
        paths.append((sdeint(sde, y0, ts, bm=bm, method="euler", dt=dt), sde.times))
    (ours, ours_t), (theirs, theirs_t) = paths
    assert ours_t == theirs_t[1:]  # torchsde first probes f at ts[0] to check its shape
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_torchsde_keywords_have_torchsdes_meaning():
    """Other methods, adaptive stepping, logqp and extra go through torchsde: same numbers on
    the same Brownian motion; method=None is torchsde's default (srk for diagonal Ito noise)."""
    y0 = torch.randn(B, D, dtype=D64, generator=torch.Generator().manual_seed(0))
    ts = torch.linspace(0, 1, 3, dtype=D64)
    for kwargs in [dict(method="srk"), dict(), dict(method="milstein"),
                   dict(method="euler", adaptive=True, rtol=1e-3, atol=1e-3, dt_min=1e-3),
                   dict(method="euler", names={"drift": "f", "diffusion": "g"}, extra=True)]:
        outs = []
        for sdeint in (solvers.sdeint, torchsde.sdeint):
            torch.manual_seed(0)
            bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(B, D), dtype=D64, entropy=7,
                                           levy_area_approximation="space-time")
            outs.append(sdeint(SDE("diagonal"), y0, ts, bm=bm, dt=0.05, **kwargs))
        ours, theirs = (o[0] if isinstance(o, tuple) else o for o in outs)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="generator="):
        solvers.sdeint(SDE("diagonal"), y0, ts, generator=torch.Generator())


@pytest.mark.parametrize("bm_out, match", [
    (lambda y: torch.zeros(4, 1), r"bm\(t0, t1\) must be a tensor of shape \(4, 3\)"),
    (lambda y: torch.zeros(1, 3), r"\(4, 3\).*got \(1, 3\)"),
    (lambda y: torch.tensor(0.1), r"got \(\)"), (lambda y: 0.1, "got float")])
def test_brownian_increments_of_the_wrong_shape_are_refused(bm_out, match):
    """Issue 26, item 5: a bm returning (4, 1), (1, 3), a 0-dim tensor or a float was accepted
    (every component got the same noise, or a constant increment)."""
    class Diagonal:
        noise_type, sde_type = "diagonal", "ito"

        def f(self, t, y):
            return -y

        def g(self, t, y):
            return torch.ones_like(y)
    with pytest.raises(ValueError, match=match):
        solvers.sdeint(Diagonal(), torch.zeros(4, 3), torch.linspace(0, 1, 2), method="euler",
                       dt=0.5, bm=lambda a, b: bm_out(None))
    with pytest.raises(ValueError, match=r"\(4, 3\).*got \(1, 3\)"):
        bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(1, 3))
        solvers.sdeint(Diagonal(), torch.zeros(4, 3), torch.linspace(0, 1, 2), method="euler",
                       dt=0.5, bm=bm)


def test_bad_sdes_drifts_names_and_bm_are_refused():
    y0, ts = torch.zeros(B, D, dtype=D64), torch.linspace(0, 1, 2, dtype=D64)
    sde = SDE("diagonal")
    sde.f = lambda t, y: y[0]  # (D,): would broadcast
    with pytest.raises(ValueError, match="drift f must be a tensor of shape"):
        solvers.sdeint(sde, y0, ts, method="euler", dt=0.5)
    with pytest.raises(ValueError, match="Brownian"):
        solvers.sdeint(SDE("diagonal"), y0, ts, method="euler", bm=5)
    with pytest.raises(ValueError, match="names\\['drift'\\]"):
        solvers.sdeint(SDE("diagonal"), y0, ts, method="euler", names={"drift": "nope"})
    with pytest.raises(ValueError, match="unknown names keys"):
        solvers.sdeint(SDE("diagonal"), y0, ts, method="euler", names={"drfit": "f"})

    class NoG:
        noise_type, sde_type = "diagonal", "ito"

        def f(self, t, y):
            return y
    with pytest.raises(ValueError, match="diffusion method 'g'"):
        solvers.sdeint(NoG(), y0, ts, method="euler")
    with pytest.raises(ValueError, match="steps"):
        solvers.sdeint(SDE("diagonal"), y0, ts, method="euler", dt=1e-12)


@pytest.mark.parametrize("noise", ["diagonal", "general"])
def test_without_bm_the_brownian_motion_is_torchsdes(noise):
    """Issue 25 (latent_sde port): with neither bm nor generator, sdeint makes the
    BrownianInterval torchsde makes (entropy from numpy's global RNG), so the same seeds give
    torchsde's numbers; the old code drew torch.randn and differed."""
    sde = SDE(noise)
    y0 = torch.randn(B, D, dtype=D64, generator=torch.Generator().manual_seed(0))
    ts = torch.tensor([0.0, 0.3, 1.0], dtype=D64)
    outs = []
    for sdeint in (torchsde.sdeint, solvers.sdeint):
        np.random.seed(0)
        torch.manual_seed(0)
        outs.append(sdeint(sde, y0, ts, method="euler", dt=0.1, names={"diffusion": "g"}))
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-12)


def test_sdeint_adjoint_is_torchsdes_after_our_checks():
    sde = SDE("diagonal")
    y0 = torch.randn(B, D, dtype=D64, generator=torch.Generator().manual_seed(0))
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=D64)
    outs = []
    for sdeint_adjoint in (torchsde.sdeint_adjoint, solvers.sdeint_adjoint):
        bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(B, D), dtype=D64, entropy=11)
        ys = sdeint_adjoint(sde, y0, ts, bm=bm, method="euler", dt=0.05)
        outs.append([ys.detach(), *torch.autograd.grad(ys.sum(), list(sde.parameters()))])
    for ours, theirs in zip(outs[1], outs[0]):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    with pytest.raises(ValueError, match="sdeint_adjoint: unknown names keys"):
        solvers.sdeint_adjoint(sde, y0, ts, names={"drfit": "f"})
    with pytest.raises(ValueError, match="unknown sdeint_adjoint adjoint_method 'eulr'"):
        solvers.sdeint_adjoint(sde, y0, ts, adjoint_method="eulr")
    with pytest.raises(ValueError, match=r"sdeint_adjoint: dt=1e-09 asks for 1e\+09 steps"):
        solvers.sdeint_adjoint(sde, y0, ts, dt=1e-9)


def test_torchsdes_classes_come_from_solvers_on_first_use():
    """``import solvers as torchsde`` runs torchsde's examples: ``solvers.SDEIto`` and the
    Brownian motions are torchsde's own classes, and torchsde is imported only when asked."""
    assert solvers.SDEIto is torchsde.SDEIto
    assert solvers.BrownianInterval is torchsde.BrownianInterval
    with pytest.raises(AttributeError, match="no attribute 'SDEito'"):
        solvers.SDEito
    code = ("import sys, solvers; solvers.sdeint; assert 'torchsde' not in sys.modules; "
            "solvers.SDEIto; assert 'torchsde' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
