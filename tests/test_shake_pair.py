"""Shake-shake's two basic branches as one field (`ShakeBasicPair`): the same functions and
parameters as two `BasicField` branches, and checkpoints of that two-module layout load into it
with identical outputs and gradients."""
import copy

import pytest
import torch

import odenets
import solvers
from odenets.fields import BasicField, ShakeBasicPair, TwoBranch
from odenets.models import network

pytestmark = pytest.mark.usefixtures("one_thread")


def _randomise(model):
    """Weights and BatchNorm statistics away from their defaults (a trained checkpoint)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) * (1.0 if "var" in name else 0.4) +
                        (0.5 if "var" in name else -0.2))
    return model


def _two_module_layout(name, **kw):
    """``name`` built as before `ShakeBasicPair`: each shake field a TwoBranch of BasicFields."""
    saved = network.MERGED_SHAKE_BLOCKS
    network.MERGED_SHAKE_BLOCKS = ()
    try:
        return odenets.create(name, **kw)
    finally:
        network.MERGED_SHAKE_BLOCKS = saved


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_pair_is_the_two_branches_side_by_side(norm):
    c, h = 8, 4
    old = _randomise(TwoBranch(BasicField(c, c, 1, h, norm), BasicField(c, c, 1, h, norm)))
    new = ShakeBasicPair(c, h, norm)
    assert sum(p.numel() for p in new.parameters()) == sum(p.numel() for p in old.parameters())
    new.load_state_dict(old.state_dict())  # the two-module layout, converted on load
    u = torch.randn(5, c, 6, 6, dtype=torch.float64)
    old, new = old.double(), new.double()
    for mode in (False, True):  # eval first: training calls move the running statistics
        old.train(mode), new.train(mode)
        f1, f2 = new.branch_outputs(u)
        torch.testing.assert_close(f1, old.branch1(u), rtol=0, atol=1e-12)
        torch.testing.assert_close(f2, old.branch2(u), rtol=0, atol=1e-12)
        torch.testing.assert_close(new(u), old(u), rtol=0, atol=1e-12)
        torch.testing.assert_close(new.branches[1](u), old.branch2(u), rtol=0, atol=1e-12)


def test_old_checkpoint_loads_with_identical_outputs_and_gradients():
    """A shake_resnet20 state_dict of the two-module layout (trained-looking weights and BN
    statistics) loads strictly; eval and training outputs (same noise draws) and gradients
    agree to 1e-6, and the parameter count is unchanged."""
    old, new = _randomise(_two_module_layout("shake_resnet20", in_channels=1)), \
        odenets.create("shake_resnet20", in_channels=1)
    assert any(isinstance(m, ShakeBasicPair) for m in new.modules())
    assert not any(isinstance(m, ShakeBasicPair) for m in old.modules())
    assert sum(p.numel() for p in new.parameters()) == sum(p.numel() for p in old.parameters())
    state = old.state_dict()
    assert any(".branch2.conv2.weight" in k for k in state)
    new.load_state_dict(state, strict=True)
    assert any(".branch2.conv2.weight" in k for k in state)  # the caller's dict is not changed
    x = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    old.eval(), new.eval()
    with torch.no_grad():
        torch.testing.assert_close(new(x), old(x), rtol=0, atol=1e-6)
    old.train(), new.train()
    out = []
    for m in (old, new):
        torch.manual_seed(7)  # shake_resnet20 draws eta from the global RNG
        y = m(x)
        (y.square().sum()).backward()
        out.append(y)
    torch.testing.assert_close(out[1], out[0], rtol=0, atol=1e-6)
    merged = {n for n, m in new.named_modules() if isinstance(m, ShakeBasicPair)}
    grads = {k: p.grad for k, p in old.named_parameters()}
    for name, p in new.named_parameters():  # a merged tensor's gradient: the branches', stacked
        base, layer, leaf = name.rsplit(".", 2)
        want = (torch.cat([grads[f"{base}.branch{k}.{layer}.{leaf}"] for k in (1, 2)])
                if base in merged else grads[name])
        torch.testing.assert_close(p.grad, want, rtol=1e-5, atol=1e-6)


def test_shake_step_takes_one_call_returning_the_pair():
    """euler_maruyama(noise="shake") mixes (f1, f2) the same whether they come from two
    callables or one callable returning both; anything else is refused clearly."""
    u = torch.randn(4, 3, dtype=torch.float64)
    f1, f2 = (lambda t, v: v.sin()), (lambda t, v: -v)
    two = solvers.integrate((f1, f2), u, 3, scheme="euler_maruyama", noise="shake", seed=1)
    scheme = solvers.get("euler_maruyama", noise="shake", seed=1)
    one = scheme.solve([lambda t, v: (f1(t, v), f2(t, v))] * 3, u, dt=1 / 3)[0]
    torch.testing.assert_close(one, two, rtol=0, atol=0)
    with pytest.raises(ValueError, match="pair .f1, f2. of callables, or one callable"):
        solvers.get("euler_maruyama", noise="shake").solve([lambda t, v: v], u, dt=1.0)


def test_old_optimizer_state_resumes_with_the_same_momentum():
    """A run saved with the two-module layout resumes (`merge_branch_optimizer_state`, as
    ``--resume`` calls it): its momentum buffers, concatenated, give the same next step."""
    from odenets.fields.shake import merge_branch_optimizer_state
    from odenets.train import param_groups
    x = torch.randn(4, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    old, new = _two_module_layout("shake_resnet20", in_channels=1), odenets.create("shake_resnet20", in_channels=1)

    def step(model, opt, seed):
        opt.zero_grad()
        torch.manual_seed(seed)
        model(x).square().mean().backward()
        opt.step()

    opt_old = torch.optim.SGD(param_groups(old, 5e-4), lr=0.1, momentum=0.9)
    step(old, opt_old, 0)
    new.load_state_dict(old.state_dict())
    opt_new = torch.optim.SGD(param_groups(new, 5e-4), lr=0.1, momentum=0.9)
    saved = copy.deepcopy(opt_old.state_dict())  # as read from disk: no buffer shared with opt_old
    with pytest.raises(ValueError):  # unconverted, the layouts do not fit
        torch.optim.SGD(param_groups(new, 5e-4), lr=0.1, momentum=0.9).load_state_dict(saved)
    opt_new.load_state_dict(merge_branch_optimizer_state(saved, opt_new))
    step(old, opt_old, 1), step(new, opt_new, 1)
    expected = odenets.create("shake_resnet20", in_channels=1)
    expected.load_state_dict(old.state_dict())
    for (name, p), q in zip(new.named_parameters(), expected.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
