"""Leapfrog (RevNet's reversible block): exact inverse, and the memory-efficient solve
(``memory_efficient=True``) against plain autograd: same output, same gradients, no per-step
saved activations, BatchNorm statistics updated once per forward."""
import copy

import pytest
import torch

import solvers

VARIANTS = ["verlet", "revnet"]


class HalfField(torch.nn.Module):
    """F(t, z) = tanh(BN(W z + b)) on one half of the state (a field takes (t, u))."""

    def __init__(self, width=3, norm=False, momentum=0.1):
        super().__init__()
        layers = [torch.nn.Linear(width, width)]
        if norm:
            layers.append(torch.nn.BatchNorm1d(width, momentum=momentum))
        self.net = torch.nn.Sequential(*layers, torch.nn.Tanh())

    def forward(self, t, x):
        return self.net(x)


def untied_pairs(steps, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    return [(HalfField(**kw).to(dtype), HalfField(**kw).to(dtype)) for _ in range(steps)]


def whole_state(pair):
    """The same step as a single field on u = (y, z) along dim 1: (F(z), G(y))."""
    F, G = pair
    return lambda t, u: torch.cat((F(t, u[:, 3:]), G(t, u[:, :3])), 1)


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("form", ["pair", "whole"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_inverse_reconstructs_input(variant, form, dtype, atol):
    scheme = solvers.get("leapfrog", variant=variant)
    pairs = untied_pairs(5, dtype)
    fields = pairs if form == "pair" else [whole_state(p) for p in pairs]
    u0 = torch.randn(4, 6, dtype=dtype)
    dt, u = 0.3, u0
    with torch.no_grad():
        for n, f in enumerate(fields):
            u, _ = scheme.step(f, n * dt, dt, u, None)
        assert (u - u0).abs().max() > 0.1
        for n in reversed(range(len(fields))):
            u = scheme.inverse(fields[n], n * dt, dt, u)
    torch.testing.assert_close(u, u0, rtol=0, atol=atol)


def _run(memory_efficient, fields, u0, variant="verlet", seed=1):
    scheme = solvers.get("leapfrog", variant=variant, memory_efficient=memory_efficient)
    x = u0.clone().requires_grad_()
    out = solvers.integrate(fields, x, len(fields), scheme=scheme, t1=0.5 * len(fields))
    weight = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(seed))
    (out * weight).sum().backward()
    return out.detach(), x.grad


def _param_grads(fields):
    return [p.grad for pair in fields for m in pair for p in m.parameters()]


@pytest.mark.parametrize("form", ["pair", "bound_method", "tied"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_memory_efficient_matches_plain_autograd(variant, form):
    pairs = untied_pairs(6)
    if form == "tied":
        pairs = [pairs[0]] * 6
    twin = copy.deepcopy(pairs) if form != "tied" else [copy.deepcopy(pairs[0])] * 6
    as_fields = (lambda ps: [(F.forward, G.forward) for F, G in ps]) if form == "bound_method" \
        else (lambda ps: ps)
    u0 = torch.randn(5, 6, dtype=torch.float64)
    out_me, gx_me = _run(True, as_fields(pairs), u0, variant)
    out_pl, gx_pl = _run(False, as_fields(twin), u0, variant)
    torch.testing.assert_close(out_me, out_pl, rtol=0, atol=1e-12)
    torch.testing.assert_close(gx_me, gx_pl, rtol=0, atol=1e-10)
    unique = lambda ps: list({id(m): m for pair in ps for m in pair}.values())  # noqa: E731
    grads_me = [p.grad for m in unique(pairs) for p in m.parameters()]
    grads_pl = [p.grad for m in unique(twin) for p in m.parameters()]
    assert all(g is not None for g in grads_me)
    for a, b in zip(grads_me, grads_pl):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def _count_saved(memory_efficient, steps, training=True):
    """Number of tensors autograd saves for backward during one forward."""
    count = [0]

    def pack(t):
        count[0] += 1
        return t
    fields = untied_pairs(steps, torch.float32)
    scheme = solvers.get("leapfrog", memory_efficient=memory_efficient)
    x = torch.randn(8, 6, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = solvers.integrate(fields, x, steps, scheme=scheme, training=training)
    out.sum().backward()
    assert x.grad is not None
    return count[0]


def test_memory_efficient_saves_no_per_step_activations():
    efficient = [_count_saved(True, n) for n in (2, 8, 32)]
    plain = [_count_saved(False, n) for n in (2, 8, 32)]
    assert efficient[0] == efficient[1] == efficient[2], efficient
    assert efficient[0] <= 2
    assert plain[0] < plain[1] < plain[2], plain


def test_memory_efficient_also_in_eval_mode():
    """Eval mode alone does not give up the memory saving: only fields that depend on their call
    order (`reversible.order_dependent`) need the plain graph."""
    efficient = [_count_saved(True, n, training=False) for n in (2, 8, 32)]
    assert efficient[0] == efficient[1] == efficient[2] and efficient[0] <= 2, efficient


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_statistics_updated_once_per_forward(momentum, variant):
    """Running stats as with plain autograd: one update per evaluation in forward (Verlet
    evaluates F twice per step, G once), none during the recomputing backward."""
    pairs = untied_pairs(4, norm=True, momentum=momentum)
    twin = copy.deepcopy(pairs)
    u0 = torch.randn(16, 6, dtype=torch.float64)
    out_me, gx_me = _run(True, pairs, u0, variant)
    out_pl, gx_pl = _run(False, twin, u0, variant)
    torch.testing.assert_close(out_me, out_pl, rtol=0, atol=1e-10)
    torch.testing.assert_close(gx_me, gx_pl, rtol=0, atol=1e-9)
    for pair, pair_twin in zip(pairs, twin):
        for half, (a, b) in enumerate(zip(pair, pair_twin)):
            a, b = a.net[1], b.net[1]
            calls = 2 if variant == "verlet" and half == 0 else 1
            assert int(a.num_batches_tracked) == calls == int(b.num_batches_tracked)
            assert a.momentum == momentum  # restored after the recomputing backward
            torch.testing.assert_close(a.running_mean, b.running_mean, rtol=0, atol=1e-12)
            torch.testing.assert_close(a.running_var, b.running_var, rtol=0, atol=1e-12)
            assert (a.running_mean != 0).any()
    for a, b in zip(_param_grads(pairs), _param_grads(twin)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


def test_no_grad_and_return_path_fall_back_to_plain_solve():
    pairs = untied_pairs(3)
    u0 = torch.randn(2, 6, dtype=torch.float64)
    with torch.no_grad():
        out = solvers.integrate(pairs, u0, 3, scheme="leapfrog")
    path = solvers.integrate(pairs, u0, 3, scheme="leapfrog", return_path=True)
    torch.testing.assert_close(path[-1], out)


def test_double_backward_is_refused_clearly():
    pairs = untied_pairs(2)
    x = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    out = solvers.integrate(pairs, x, 2, scheme="leapfrog")
    (g,) = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="(?i)differentiable|twice"):
        g.sum().backward()
