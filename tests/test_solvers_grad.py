"""``torch.autograd.gradcheck`` (float64, tiny sizes) through every deterministic scheme via
`solvers.integrate`: w.r.t. the initial state, a tensor the field closes over, every learnable
scheme coefficient (LM's k, lmm's roots) and the parameters of an nn.Module field."""
import math

import pytest
import torch
from torch.func import functional_call

import solvers

D64 = torch.float64
STEPS = 3


def _deterministic():
    return [n for n in solvers.available() if not solvers.get(n).stochastic]


NAMES = _deterministic()


def separable_field(w):
    """y' = w0 tanh(z) + cos t, z' = w1 sin(y) on u = (y, z) (valid for leapfrog's inverse)."""
    def f(t, u):
        y, z = u.chunk(2, -1)
        return torch.cat((w[0] * torch.tanh(z) + math.cos(t), w[1] * torch.sin(y)), -1)
    return f


def _inputs():
    gen = torch.Generator().manual_seed(0)
    u0 = torch.randn(2, 4, dtype=D64, generator=gen).requires_grad_()
    w = torch.tensor([0.8, -0.6], dtype=D64, requires_grad=True)
    return u0, w


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_state_and_closure(name):
    u0, w = _inputs()
    scheme = solvers.get(name, memory_efficient=False) if "leapfrog" in name else solvers.get(name)
    fn = lambda u0, w: solvers.integrate(separable_field(w), u0, STEPS, scheme=scheme)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (u0, w))


@pytest.mark.parametrize("variant", ["verlet", "revnet"])
def test_gradcheck_memory_efficient_leapfrog(variant):
    """The recomputing backward: w.r.t. u0 via integrate, w.r.t. closed-over tensors via params=."""
    u0, w = _inputs()
    scheme = solvers.get("leapfrog", variant=variant)
    w_fixed = w.detach()
    assert torch.autograd.gradcheck(
        lambda u0: solvers.integrate(separable_field(w_fixed), u0, STEPS, scheme=scheme), (u0,))

    def with_params(u0, w):
        fields = [separable_field(w)] * STEPS
        return scheme.solve(fields, u0, 0.0, 1.0 / STEPS, params=[w])[0]
    assert torch.autograd.gradcheck(with_params, (u0, w))


def _coefficient_cases():
    cases = []
    for name in NAMES:
        for c in solvers.get(name).learnable_coefficients():
            cases.append((name, c.name))
    return cases


@pytest.mark.parametrize("per_step", [True, False])
@pytest.mark.parametrize("name,coef", _coefficient_cases())
def test_gradcheck_learnable_coefficient(name, coef, per_step):
    """Gradients w.r.t. a scheme coefficient given as a (per-step) tensor, e.g. LM's k."""
    scheme = solvers.get(name)
    spec = {c.name: c for c in scheme.coefficients}[coef]
    lo, hi = spec.bounds if spec.bounds is not None else (-1.0, 1.0)
    values = torch.linspace(lo + 0.3 * (hi - lo), lo + 0.6 * (hi - lo), STEPS, dtype=D64)
    value = (values if per_step else values[1]).clone().requires_grad_()
    u0, w = _inputs()
    field = separable_field(w.detach())
    fn = lambda u0, v: solvers.integrate(field, u0, STEPS, scheme=scheme, coefficients={coef: v})  # noqa: E731
    assert torch.autograd.gradcheck(fn, (u0, value))


def test_lm_k_gradient_is_nonzero_after_first_step():
    """The first LM step is Euler (no k); later steps depend on k."""
    k = torch.zeros(STEPS, dtype=D64, requires_grad=True)
    u0, w = _inputs()
    out = solvers.integrate(separable_field(w.detach()), u0.detach(), STEPS, scheme="lm",
                            coefficients={"k": k})
    (g,) = torch.autograd.grad(out.sum(), k)
    assert g[0] == 0 and bool((g[1:] != 0).all())


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_module_parameters(name):
    """Parameters of an nn.Module field (via functional_call, so gradcheck can perturb them)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 4)).double()
    names = [n for n, _ in net.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in net.parameters())
    u0, _ = _inputs()
    # leapfrog on a whole-state non-separable field: only the plain-autograd path is valid
    scheme = solvers.get(name, memory_efficient=False) if "leapfrog" in name else solvers.get(name)

    def fn(u0, *ps):
        field = lambda t, u: functional_call(net, dict(zip(names, ps)), (u,))  # noqa: E731
        return solvers.integrate(field, u0, STEPS, scheme=scheme)
    assert torch.autograd.gradcheck(fn, (u0, *params))


@pytest.mark.parametrize("name", NAMES)
def test_untied_module_fields_get_gradients(name):
    """A list of per-step nn.Modules (untied, like ResNet): every step's parameters get a
    gradient, and it matches a finite difference on one weight."""
    torch.manual_seed(0)
    nets = [torch.nn.Linear(4, 4).double() for _ in range(STEPS)]
    fields = [(lambda net: (lambda t, u: torch.tanh(net(u))))(net) for net in nets]
    scheme = solvers.get(name, memory_efficient=False) if "leapfrog" in name else solvers.get(name)
    u0, _ = _inputs()
    loss = lambda: solvers.integrate(fields, u0.detach(), STEPS, scheme=scheme).pow(2).sum()  # noqa: E731
    loss().backward()
    for net in nets:
        assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0
    eps = 1e-6
    with torch.no_grad():
        nets[0].weight[1, 2] += eps
        up = loss()
        nets[0].weight[1, 2] -= 2 * eps
        down = loss()
    assert abs((up - down) / (2 * eps) - nets[0].weight.grad[1, 2]) < 1e-6
