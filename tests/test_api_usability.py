"""API findings of the usability review: wrong field shapes, misused arguments and the messages
that explain them (`solvers.integrate`, `solvers.get`, `odenets.build`, `Flow.forward`)."""
import math

import pytest
import torch
from torch import nn

import odenets
import solvers
from odenets.fields import Coupled


# -- a field of the wrong shape (review items 2, 3) ------------------------------------------------
@pytest.mark.parametrize("field, got", [(lambda t, u: u.sum(), r"\(\)"),
                                        (lambda t, u: u[:1], r"\(1,\)"),
                                        (lambda t, u: u.expand(2, 3), r"\(2, 3\)")])
@pytest.mark.parametrize("scheme", ["euler", "rk4", "lm", "backward_euler"])
def test_integrate_rejects_a_broadcastable_wrong_shape(field, got, scheme):
    with pytest.raises(ValueError, match=rf"shaped like u .*\(3,\).*returned {got}"):
        solvers.integrate(field, torch.ones(3), steps=4, scheme=scheme)


def test_integrate_checks_every_field_of_a_per_step_list():
    fields = [lambda t, u: -u, lambda t, u: -u, lambda t, u: u[:1]]
    with pytest.raises(ValueError, match=r"\(3,\).*returned \(1,\)"):
        solvers.integrate(fields, torch.ones(3), steps=3)


class TimeLinear(nn.Linear):
    def forward(self, t, u):
        return super().forward(u)


def test_integrate_leapfrog_pairs_and_reversible_gradients_still_work():
    """The checked first step still exposes its modules to the memory-saving backward."""
    torch.manual_seed(0)
    F, G = TimeLinear(2, 2).double(), TimeLinear(2, 2).double()
    u0 = torch.randn(5, 4, dtype=torch.float64)
    grads = []
    for memory_efficient in (True, False):
        out = solvers.integrate((F, G), u0, 3, "leapfrog", memory_efficient=memory_efficient)
        grads.append(torch.autograd.grad(out.sum(), [*F.parameters(), *G.parameters()]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"\(5, 2\).*returned \(5, 1\)"):  # a half-field
        solvers.integrate((F, lambda t, y: G(t, y)[:, :1]), u0, 3, "leapfrog")


@pytest.mark.parametrize("solver", ["euler", "rk4", "lm", "ab2", "lmm"])
def test_build_names_both_shapes(solver):
    flow = odenets.build(nn.Conv2d(16, 8, 1), solver, steps=3)
    with pytest.raises(ValueError, match=r"Conv2d.*\(2, 16, 4, 4\).*returned \(2, 8, 4, 4\)"):
        flow(torch.randn(2, 16, 4, 4))


def test_build_broadcastable_wrong_shape_and_activation():
    flow = odenets.build(nn.Linear(3, 1), "euler", steps=2, activation="relu")
    with pytest.raises(ValueError, match=r"\(4, 3\).*returned \(4, 1\)"):
        flow(torch.randn(4, 3))


def test_build_names_the_step_of_a_wrong_field_in_a_list():
    flow = odenets.build([nn.Linear(3, 3), nn.Linear(3, 2), nn.Linear(3, 3)], "euler")
    with pytest.raises(ValueError, match=r"Linear of step 1 .*\(4, 3\).*returned \(4, 2\)"):
        flow(torch.randn(4, 3))
    flow.train()
    assert flow.training  # the diagnosis ran in eval mode and restored the mode


def test_build_coupled_halves_of_the_wrong_shape():
    flow = odenets.build(Coupled(nn.Linear(2, 2), nn.Linear(2, 1)), "leapfrog", steps=2)
    with pytest.raises(ValueError, match=r"\(3, 2\).*returned \(3, 1\)"):
        flow(torch.randn(3, 4))


def test_only_the_first_step_pays_for_the_check():
    from solvers.integrate import ShapeChecked
    flow = odenets.build(nn.Linear(3, 3), "rk4", steps=4)
    checked = [isinstance(c, ShapeChecked) for c in flow._calls]
    assert checked == [True, False, False, False]
    x = torch.randn(2, 3)
    torch.testing.assert_close(flow(x), solvers.integrate(
        [lambda t, u, m=m: m(u) for m in flow.blocks], x, 4, "rk4", t1=4.0))


# -- build's field argument and steps (items 5, 25) ------------------------------------------------
def test_build_takes_a_plain_function_as_torchdiffeq_users_write_it():
    f = lambda t, u: -u * torch.cos(t)  # noqa: E731
    x = torch.randn(2, 3)
    torch.testing.assert_close(odenets.build(f, "euler", steps=3, tied=True)(x),
                               solvers.integrate(f, x, 3, "euler"))
    flow = odenets.build(lambda: nn.Linear(3, 3), "euler", steps=3)  # a factory still works
    assert len(flow.blocks) == 3


def test_build_infers_steps_from_a_list():
    flow = odenets.build([nn.Linear(3, 3) for _ in range(3)], "euler")
    assert flow.steps == 3 and flow(torch.randn(2, 3)).shape == (2, 3)
    with pytest.raises(ValueError, match="steps=2"):
        odenets.build([nn.Linear(3, 3) for _ in range(3)], "euler", steps=2)


# -- Flow.forward's state (item 6) -----------------------------------------------------------------
def test_flow_state_is_keyword_only_and_checked():
    flow = odenets.build(nn.Linear(3, 3), "lm", steps=3)
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="times= needs a tied flow"):  # positional: times
        flow(x, torch.tensor(0.0))
    with pytest.raises(ValueError, match=r"state must be None or a tuple.*got Tensor"):
        flow(x, state=torch.tensor(0.0))
    with pytest.raises(ValueError, match=r"shaped like u \(2, 3\).*got a tuple of \(3,\)"):
        flow(x, state=(torch.ones(3),))
    u, state = flow(x, return_state=True)
    assert isinstance(state, tuple) and flow(u, state=state).shape == (2, 3)


# -- option and solver-name messages (items 15, 16, 22, 23) ----------------------------------------
def test_unknown_option_lists_real_options():
    with pytest.raises(ValueError, match=r"allowed options: none$"):
        odenets.build(nn.Linear(3, 3), "euler", steps=3, iterations=2)
    with pytest.raises(ValueError, match=r"allowed options: none$"):
        odenets.build(nn.Linear(3, 3), "euler", steps=3, return_path=True)
    with pytest.raises(ValueError, match="allowed options: ") as info:
        solvers.get("lm", bogus=1)
    assert "k" in str(info.value) and "args" not in str(info.value)


def test_integrate_t_hints_at_t0_t1():
    with pytest.raises(ValueError, match=r"t0=, t1="):
        solvers.integrate(lambda t, u: -u, torch.ones(3), 4, t=torch.tensor([0.0, 2.0]))


def test_build_lists_unknown_solvers_sorted():
    with pytest.raises(ValueError, match="available: ") as info:
        odenets.build(nn.Linear(3, 3), "nonexistent", steps=3)
    names = str(info.value).split("available: ")[1].split(", ")
    assert names == sorted(names) and len(names) == len(odenets.available_solvers())


def test_fixed_adams_is_listed_because_build_accepts_it():
    assert "fixed_adams" in odenets.available_solvers()
    flow = odenets.build(nn.Linear(3, 3), "fixed_adams", steps=4)
    assert flow(torch.randn(2, 3)).shape == (2, 3)


def test_integrate_accepts_method_as_an_alias_of_scheme():
    f, u0 = (lambda t, u: -u), torch.ones(3)
    torch.testing.assert_close(solvers.integrate(f, u0, 8, method="rk4"),
                               solvers.integrate(f, u0, 8, scheme="rk4"))
    assert not torch.equal(solvers.integrate(f, u0, 8, method="rk4"), solvers.integrate(f, u0, 8))
    with pytest.raises(ValueError, match="not both"):
        solvers.integrate(f, u0, 8, scheme="rk4", method="euler")


@pytest.mark.parametrize("t0, t1", [(0.0, 0.0), (0.0, math.nan), (-math.inf, 1.0), ("a", 1.0)])
def test_integrate_checks_the_time_interval(t0, t1):
    with pytest.raises(ValueError, match="t0 and t1"):
        solvers.integrate(lambda t, u: -u, torch.ones(3), 4, t0=t0, t1=t1)


def test_integrate_backwards_in_time_is_allowed():
    out = solvers.integrate(lambda t, u: -u, torch.ones(1, dtype=torch.float64), 64, "rk4",
                            t0=1.0, t1=0.0)
    assert abs(out.item() - math.e) < 1e-6


@pytest.mark.parametrize("name", ["dopri5", "bosh3", "fixed_adams"])
def test_torchdiffeq_method_names_point_to_build(name):
    hint = rf"torchdiffeq method.*odenets\.build\(field, solver='{name}'\)"
    with pytest.raises(ValueError, match=hint):
        solvers.integrate(lambda t, u: -u, torch.ones(3), 4, scheme=name)


def test_shape_diagnosis_restores_each_module_mode():
    import odenets
    from torch import nn
    good = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    bad = nn.Linear(3, 1)
    flow = odenets.build([good, bad, good], "euler")
    flow.train()
    good[1].eval()                      # a deliberately frozen BatchNorm
    try:
        flow(torch.randn(4, 3).expand(4, 3).contiguous()[:, :3])
    except ValueError:
        pass
    assert flow.training and not good[1].training
