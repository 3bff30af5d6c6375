"""Per-evaluation BatchNorm statistics for schemes that call a field several times per step."""
import pytest
import torch
from torch import nn

import odenets
import solvers
from odenets.evaluation_norm import EvaluationBatchNorm1d, EvaluationBatchNorm2d
from odenets.fields import BasicField, Coupled


def _bn_field(width=6):
    return nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.Tanh())


def _set_momentum(model, momentum):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum


def _train_eval_gap(flow, x):
    """With momentum 1 the running statistics are the last batch's, so eval mode on that batch
    must reproduce the train-mode output (up to BatchNorm's unbiased running variance)."""
    _set_momentum(flow, 1.0)
    flow.train()
    with torch.no_grad():
        y_train = flow(x)
    flow.eval()
    with torch.no_grad():
        y_eval = flow(x)
    return (y_train - y_eval).abs().max().item()


@pytest.mark.parametrize("solver,opts", [("rk4", {}), ("midpoint", {}), ("heun", {}),
                                         ("backward_euler", {"iterations": 3})])
@pytest.mark.parametrize("tied", [False, True])
def test_eval_matches_train_per_call(solver, opts, tied):
    torch.manual_seed(0)
    x = torch.randn(4096, 6, dtype=torch.float64)
    steps = 1 if tied else 3   # a tied field shares its statistics across steps (time)
    flow = odenets.build(_bn_field(), solver, steps=steps, tied=tied, **opts).double()
    assert _train_eval_gap(flow, x) < 2e-3
    shared = odenets.build(_bn_field(), solver, steps=steps, tied=tied, per_evaluation_norm=False,
                           **opts).double()
    assert _train_eval_gap(shared, x) > 2e-2   # one shared set of statistics cannot match


def test_conv_network_eval_matches_train():
    torch.manual_seed(0)
    x = torch.randn(128, 1, 12, 12, dtype=torch.float64)
    gaps = [_train_eval_gap(odenets.create("rk4_resnet20", in_channels=1, widths=(4, 8, 8),
                                           per_evaluation_norm=pen).double(), x)
            for pen in (True, False)]
    assert gaps[0] < 1e-2 and gaps[1] > 100 * gaps[0]   # measured: 3.4e-3 vs 2.4


def test_verlet_pair_eval_matches_train():
    torch.manual_seed(0)
    x = torch.randn(128, 8, 6, 6, dtype=torch.float64)
    pair = Coupled(BasicField(4), BasicField(4))
    shared = odenets.build(pair, "leapfrog", steps=2, variant="verlet",
                           per_evaluation_norm=False).double()
    assert _train_eval_gap(shared, x) > 0.1
    for memory_efficient in (True, False):
        flow = odenets.build(pair, "leapfrog", steps=2, variant="verlet",
                             memory_efficient=memory_efficient).double()
        assert isinstance(flow.blocks[0].branches[0].bn1, EvaluationBatchNorm2d)
        assert flow.blocks[0].branches[0].bn1.slots == 2  # F is called at z_n and z_{n+1}
        assert _train_eval_gap(flow, x) < 5e-3


def test_slot_j_holds_statistics_of_call_j():
    """rk2 (midpoint): call 0 sees u_n, call 1 sees u_n + dt/2 f(u_n); BatchNorm1d without
    affine after a fixed linear map, so the batch means are computable by hand."""
    torch.manual_seed(0)
    field = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, affine=False, momentum=1.0))
    flow = odenets.build(field, "midpoint", steps=1, tied=True, t_span=(0.0, 1.0)).double()
    lin, bn = flow.blocks[0][0], flow.blocks[0][1]
    u = torch.randn(50, 3, dtype=torch.float64)
    flow.train()
    with torch.no_grad():
        flow(u)
        z0 = lin(u)
        f0 = (z0 - z0.mean(0)) / torch.sqrt(z0.var(0, unbiased=False) + bn.eps)
        z1 = lin(u + 0.5 * f0)
    torch.testing.assert_close(bn.running_mean[0], z0.mean(0))
    torch.testing.assert_close(bn.running_mean[1], z1.mean(0))
    torch.testing.assert_close(bn.running_var[1], z1.var(0, unbiased=True))
    assert int(bn.num_batches_tracked) == 1   # batches, not calls


def test_cumulative_average_counts_batches():
    torch.manual_seed(0)
    field = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, affine=False, momentum=None))
    flow = odenets.build(field, "heun", steps=1, tied=True).double()
    lin, bn = flow.blocks[0][0], flow.blocks[0][1]
    batches = [torch.randn(20, 3, dtype=torch.float64) for _ in range(3)]
    flow.train()
    with torch.no_grad():
        for u in batches:
            flow(u)
        expected = torch.stack([lin(u).mean(0) for u in batches]).mean(0)
    torch.testing.assert_close(bn.running_mean[0], expected)
    assert int(bn.num_batches_tracked) == 3


def test_single_call_schemes_keep_plain_batchnorm():
    for name in ("resnet20", "lm_resnet20", "ab2_resnet20", "sd_resnet20", "shake_resnet20",
                 "rev_resnet20"):
        model = odenets.create(name)
        assert not any(isinstance(m, EvaluationBatchNorm2d) for m in model.modules()), name
    assert solvers.get("euler_maruyama", noise="shake").max_calls_per_field == 1
    assert solvers.get("leapfrog", variant="revnet").max_calls_per_field == 1
    assert solvers.get("rk4").max_calls_per_field == 4
    assert solvers.get("backward_euler", iterations=3).max_calls_per_field == 3


def test_old_state_dict_with_one_set_of_statistics_loads():
    shared = odenets.create("poly_resnet20", in_channels=1, widths=(4, 4, 4),
                            per_evaluation_norm=False)
    with torch.no_grad():
        shared.stages[0].flow.blocks[0].bn1.running_mean.fill_(0.25)
    model = odenets.create("poly_resnet20", in_channels=1, widths=(4, 4, 4))
    model.load_state_dict(shared.state_dict())
    bn = model.stages[0].flow.blocks[0].bn1
    assert bn.running_mean.shape == (2, 4)
    assert torch.all(bn.running_mean == 0.25)


def test_parameter_count_unchanged():
    counts = [sum(p.numel() for p in odenets.create("rk4_resnet20", per_evaluation_norm=pen)
                  .parameters()) for pen in (True, False)]
    assert counts[0] == counts[1] == 269_722


def test_compiled_flow_matches_eager():
    torch.manual_seed(0)
    flow = odenets.build(_bn_field(), "rk4", steps=2)
    x = torch.randn(64, 6)
    compiled = torch.compile(flow, backend="eager", fullgraph=True)
    for mode in (True, False):
        flow.train(mode)
        ref_state = {k: v.clone() for k, v in flow.state_dict().items()}
        eager = flow(x)
        after_eager = {k: v.clone() for k, v in flow.state_dict().items()}
        flow.load_state_dict(ref_state)
        torch.testing.assert_close(compiled(x), eager)
        for k, v in flow.state_dict().items():
            torch.testing.assert_close(v, after_eager[k], msg=k)
    bn = flow.blocks[0][1]
    assert isinstance(bn, EvaluationBatchNorm1d)


def test_tied_flow_counts_calls_per_step():
    """One field shared by 3 steps: every step's j-th call uses slot j."""
    torch.manual_seed(0)
    field = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, affine=False, momentum=1.0))
    flow = odenets.build(field, "midpoint", steps=3, tied=True).double()
    bn, seen = flow.blocks[0][1], []
    bn.register_forward_pre_hook(lambda m, args: seen.append(m.call_index.value))
    flow(torch.randn(8, 3, dtype=torch.float64))
    flow(torch.randn(8, 3, dtype=torch.float64))
    assert seen == [0, 1] * 6


def test_reversible_backward_recompute_leaves_statistics():
    torch.manual_seed(0)
    flow = odenets.build(Coupled(BasicField(4), BasicField(4)), "leapfrog", steps=2,
                         variant="verlet", memory_efficient=True).double()
    x = torch.randn(8, 8, 6, 6, dtype=torch.float64, requires_grad=True)
    flow.train()
    y = flow(x)
    after_forward = {k: v.clone() for k, v in flow.state_dict().items()}
    y.square().sum().backward()
    for k, v in flow.state_dict().items():
        torch.testing.assert_close(v, after_forward[k], msg=k)


@pytest.mark.parametrize("frozen", ["flow", "norms"])
def test_verlet_eval_gradients_match_plain_autograd(frozen):
    """The reversible backward inverts then recomputes a step, calling F in another order; while
    per-call statistics are in use (the flow in eval mode, or only its norms: fine-tuning with
    frozen BatchNorm) the solve keeps the plain graph, so gradients agree."""
    torch.manual_seed(0)
    batch = torch.randn(16, 8, 6, 6, dtype=torch.float64)
    x = torch.randn(4, 8, 6, 6, dtype=torch.float64)
    flows = [odenets.build(Coupled(BasicField(4), BasicField(4)), "leapfrog", steps=2,
                           variant="verlet", memory_efficient=m).double() for m in (True, False)]
    flows[0].train()
    with torch.no_grad():
        flows[0](batch)   # distinct statistics per slot
    flows[1].load_state_dict(flows[0].state_dict())
    grads = []
    for flow in flows:
        flow.train(frozen == "norms")
        if frozen == "norms":
            for m in flow.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        xi = x.clone().requires_grad_()
        flow(xi).square().sum().backward()
        grads.append((xi.grad, *(p.grad for p in flow.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_duplicate_blocks_are_converted_once_and_counted_per_step():
    field = _bn_field()
    flow = odenets.build([field, field, field], "rk4")
    bn = field[1]
    assert isinstance(bn, EvaluationBatchNorm1d) and bn.slots == 4
    seen = []
    bn.register_forward_pre_hook(lambda m, args: seen.append(m.call_index.value))
    flow(torch.randn(8, 6))
    assert seen == [0, 1, 2, 3] * 3
    assert bn.call_index.value == 0   # reset after the solve: a direct call uses slot 0


def test_call_index_is_reset_after_a_failed_solve():
    flow = odenets.build(_bn_field(), "rk4", steps=2)
    bn = flow.blocks[0][1]
    calls = []

    def fail_at_third_call(module, args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
    bn.register_forward_pre_hook(fail_at_third_call)
    with pytest.raises(RuntimeError, match="boom"):
        flow(torch.randn(8, 6))
    assert bn.call_index.value == 0   # a direct call afterwards uses slot 0


def test_backward_euler_with_tol_keeps_iterations_slots():
    scheme = solvers.get("backward_euler", iterations=2, tol=1e-6)
    assert scheme.max_calls_per_field == 2   # later iterates share the last slot
    flow = odenets.build(_bn_field(), "backward_euler", steps=1, iterations=2, tol=1e-3,
                         max_iterations=50)
    assert flow.blocks[0][1].running_mean.shape == (2, 6)

