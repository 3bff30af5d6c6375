"""Trust (issue 13) in the solver layer and data readers: never a silent wrong gradient or
value; bad inputs are ValueErrors naming the problem; readers bound their memory."""
import gzip
import struct
import tracemalloc

import numpy as np
import pytest
import torch
from torch import nn

import odenets
from odenets.data.base import CorruptDatasetError
from odenets.data.idx import read_idx
from solvers import DivergenceError, integrate, reversible_solve
from solvers.registry import get

pytestmark = pytest.mark.usefixtures("one_thread")


class Half(nn.Module):
    """A half-field ``(t, x) -> W x``; ``scale`` makes it expansive."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        with torch.no_grad():
            self.lin.weight.mul_(scale)

    def forward(self, t, x):
        return self.lin(x)


def grads(F, G, u0, **kwargs):
    F.zero_grad()
    G.zero_grad()
    u0 = u0.detach().requires_grad_(True)
    out = integrate(kwargs.pop("field", (F, G)), u0, 8, scheme="leapfrog", **kwargs)
    out.square().sum().backward()
    return F.lin.weight.grad, u0.grad


# ---- 2: closures never get a silently missing gradient ------------------------------------
def test_leapfrog_with_closures_gets_the_plain_autograd_gradient():
    torch.manual_seed(0)
    F, G, u0 = Half(), Half(), torch.randn(3, 8)
    reference = grads(F, G, u0, memory_efficient=False)
    closures = (lambda t, z: F(t, z), lambda t, y: G(t, y))
    got = grads(F, G, u0, field=closures)
    assert got[0] is not None  # old code: None (the memory-saving backward found no parameter)
    torch.testing.assert_close(got[0], reference[0])
    torch.testing.assert_close(got[1], reference[1])
    module = grads(F, G, u0)  # modules keep the memory-saving backward, same gradient
    torch.testing.assert_close(module[0], reference[0], rtol=1e-5, atol=1e-6)


def test_reversible_solve_with_a_closure_falls_back_and_explicit_params_still_work():
    torch.manual_seed(0)
    F, G = Half(), Half()
    scheme = get("leapfrog")
    u0 = torch.randn(3, 8)
    out = reversible_solve(scheme, [(lambda t, z: F(t, z), G)] * 4, u0)
    out.sum().backward()
    assert F.lin.weight.grad is not None and G.lin.weight.grad is not None
    g = F.lin.weight.grad.clone()
    F.zero_grad()
    out = reversible_solve(scheme, [(lambda t, z: F(t, z), G)] * 4, u0,
                           params=list(F.parameters()) + list(G.parameters()))
    out.sum().backward()
    torch.testing.assert_close(F.lin.weight.grad, g, rtol=1e-5, atol=1e-6)


# ---- 12: reconstruction drift of expansive steps is detected ----------------------------
def test_leapfrog_memory_saving_backward_detects_reconstruction_drift():
    torch.manual_seed(0)
    F, G, u0 = Half(2.0), Half(2.0), torch.randn(3, 8)
    with pytest.raises(DivergenceError, match="memory_efficient=False"):
        grads(F, G, u0, t1=12.0)  # the state grows to ~1e6: old code's gradient was off by 100x
    exact = grads(F, G, u0, t1=12.0, memory_efficient=False)
    assert torch.isfinite(exact[0]).all()
    grads(F, G, u0, t1=4.0)  # mild growth passes the check


# ---- 6: tensor coefficients are bounds-checked at the API boundary -----------------------
@pytest.mark.parametrize("k", [torch.tensor(1.5), torch.tensor(float("nan")),
                               torch.tensor([0.1, 0.2, -1.0, 0.0]), [0.1, torch.tensor(2.0), 0.0, 0.0]])
def test_integrate_checks_tensor_coefficients(k):
    with pytest.raises(ValueError, match="coefficient k"):
        integrate(lambda t, u: -u, torch.ones(3), 4, scheme="lm", coefficients={"k": k})
    assert torch.isfinite(integrate(lambda t, u: -u, torch.ones(3), 4, scheme="lm",
                                    coefficients={"k": torch.tensor(0.5)})).all()


# ---- 7: stochastic depth's survival p as a coefficient is in (0, 1] ---------------------
@pytest.mark.parametrize("p", [1.5, 0.0, -0.1, float("nan")])
def test_survival_probability_coefficient_is_bounded(p):
    with pytest.raises(ValueError, match=r"coefficient p=.*(\(0.0, 1.0\]|not finite)"):
        odenets.build(nn.Linear(3, 3), "euler_maruyama", 4, noise="bernoulli", coefficients={"p": p})
    with pytest.raises(ValueError, match="coefficient p"):
        integrate(lambda t, u: -u, torch.ones(3), 4, scheme="euler_maruyama", noise="bernoulli",
                  coefficients={"p": torch.tensor(p)})
    odenets.build(nn.Linear(3, 3), "euler_maruyama", 4, noise="bernoulli", coefficients={"p": 1.0})


# ---- 8: Euler-Maruyama's noise and diffusion shapes --------------------------------------
@pytest.mark.parametrize("options", [dict(bm=lambda a, b: torch.ones(2, 3)),
                                     dict(diffusion=lambda t, u: torch.ones(2, 3)),
                                     dict(bm=lambda a, b: 1.0)])
def test_euler_maruyama_refuses_noise_of_another_shape(options):
    with pytest.raises(ValueError, match=r"\(3,\)"):
        integrate(lambda t, u: -u, torch.ones(3), 4, scheme="euler_maruyama", **options)
    ok = integrate(lambda t, u: -u, torch.ones(3), 4, scheme="euler_maruyama",
                   bm=lambda a, b: torch.full((3,), 0.1))
    assert ok.shape == (3,)


# ---- 12: time span, integer types, dtype ---------------------------------------------------
def test_an_overflowing_step_is_refused():
    with pytest.raises(ValueError, match="overflows"):
        integrate(lambda t, u: -u, torch.ones(3), 4, t0=-1e308, t1=1e308)
    with pytest.raises(ValueError, match="overflows"):
        odenets.build(nn.Linear(3, 3), "euler", 4, t_span=(-1e308, 1e308))


def test_numpy_integer_steps_are_accepted():
    out = integrate(lambda t, u: -u, torch.ones(3), np.int64(4))
    torch.testing.assert_close(out, integrate(lambda t, u: -u, torch.ones(3), 4))
    assert odenets.build(nn.Linear(3, 3), "euler", np.int64(4)).steps == 4


def test_a_field_of_another_dtype_is_refused():
    with pytest.raises(ValueError, match="float64 for a torch.float32 state"):
        integrate(lambda t, u: (-u).double(), torch.ones(3), 4)


# ---- 10 + 12: IDX readers bound their memory; sizes do not overflow -----------------------
def _idx(shape, data: bytes) -> bytes:
    return bytes([0, 0, 8, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + data


def test_idx_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    path = tmp_path / "bomb-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(_idx((10,), b"\0" * 10))
        for _ in range(64):
            f.write(b"\0" * (1 << 20))  # 64 MiB of excess, ~64 KB compressed
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(CorruptDatasetError, match="more than 18 bytes but the header"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak  # old code inflated all 64 MiB


def test_idx_oversized_header_states_the_true_size(tmp_path):
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(_idx((2 ** 32 - 1,) * 3, b"\0" * 16))
    with pytest.raises(CorruptDatasetError) as e:
        read_idx(path)
    assert f"{4 * 4 + (2 ** 32 - 1) ** 3:,}" in str(e.value)  # not an overflowed int64
    good = tmp_path / "ok-idx1-ubyte"
    good.write_bytes(_idx((3,), b"\1\2\3"))
    assert read_idx(good).tolist() == [1, 2, 3]
