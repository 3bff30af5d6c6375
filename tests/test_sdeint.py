"""solvers.sdeint: torchsde's signature; equals torchsde.sdeint(method="euler") on one path."""
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
    ours = solvers.sdeint(sde, y0, ts, bm=bm, dt=1 / 16)
    assert ours.shape == theirs.shape == (4, B, D)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    ours.sum().backward()
    assert sde.lin.weight.grad is not None


def test_without_bm_and_seeded_generator():
    sde = SDE("diagonal")
    y0 = torch.zeros(B, D, dtype=D64)
    ts = torch.linspace(0, 1, 3, dtype=D64)
    a = solvers.sdeint(sde, y0, ts, dt=0.1, generator=torch.Generator().manual_seed(0))
    b = solvers.sdeint(sde, y0, ts, dt=0.1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.shape == (3, B, D) and (a[-1] != a[0]).all()


def test_names_and_errors():
    class Renamed(SDE):
        def h(self, t, y):
            return self.f(t, y)

    sde = Renamed("diagonal")
    y0, ts = torch.zeros(B, D, dtype=D64), torch.linspace(0, 1, 2, dtype=D64)
    assert solvers.sdeint(sde, y0, ts, dt=0.5, names={"drift": "h"}).shape == (2, B, D)
    with pytest.raises(ValueError, match="sde:srk"):
        solvers.sdeint(sde, y0, ts, method="srk")
    with pytest.raises(ValueError, match="adaptive"):
        solvers.sdeint(sde, y0, ts, adaptive=True)
    sde.sde_type = "stratonovich"
    with pytest.raises(ValueError, match="Ito"):
        solvers.sdeint(sde, y0, ts)
    sde.sde_type, sde.noise_type = "ito", "diag"
    with pytest.raises(ValueError, match="noise_type"):
        solvers.sdeint(sde, y0, ts)
    sde.noise_type = "diagonal"
    with pytest.raises(ValueError, match="increasing"):
        solvers.sdeint(sde, y0, ts.flip(0))
