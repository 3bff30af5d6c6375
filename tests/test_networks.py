"""Networks are their schemes: LM-ResNet is the LM recurrence, transitions, noise, autocast,
channels_last, torch.compile, metadata (`odenets.info`) and learned coefficients."""
import pytest
import torch

import odenets
from odenets.models import NetConfig


pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# -- the networks are the schemes ---------------------------------------------------------------
def _hand_written_lm(model, x, history):
    """LM-ResNet written out as in the authors' code:
    u_{n+1} = relu((1-k) u_n + k u_{n-1} + f(u_n));
    a transition is relu(S(u) + f(u)) and leaves S(u) as u_{n-1} ("project") or no history."""
    u, prev = model.stem(x), None
    for stage in model.stages:
        if stage.transition is not None:
            s = stage.transition.shortcut(u)
            prev = s if history == "project" else None
            u = torch.relu(s + stage.transition.field(u))
        k = stage.flow.coefficients()["k"]
        for n, f in enumerate(stage.flow.fields):
            nxt = u + f(u) if prev is None else (1 - k[n]) * u + k[n] * prev + f(u)
            u, prev = torch.relu(nxt), u
    return model.head(u)


@pytest.mark.parametrize("history", ["project", "restart"])
def test_lm_resnet_is_the_lm_recurrence(history):
    torch.manual_seed(0)
    model = odenets.create("lm_resnet20", in_channels=1, transition_history=history).eval()
    x = torch.randn(2, 1, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _hand_written_lm(model, x, history))


def test_history_rule_matters_only_for_multistep_schemes():
    x = torch.randn(2, 3, 8, 8)
    for name, differs in (("lm_resnet20", True), ("resnet20", False), ("rk2_resnet20", False)):
        torch.manual_seed(0)
        a = odenets.create(name, transition_history="project").eval()
        torch.manual_seed(0)
        b = odenets.create(name, transition_history="restart").eval()
        b.load_state_dict(a.state_dict())
        with torch.no_grad():
            assert (not torch.equal(a(x), b(x))) == differs, name


def test_resnet_is_the_hand_written_resnet():
    torch.manual_seed(0)
    model = odenets.create("resnet20").eval()
    x = torch.randn(2, 3, 8, 8)
    u = model.stem(x)
    for stage in model.stages:
        if stage.transition is not None:
            t = stage.transition
            u = torch.relu(t.shortcut(u) + t.field(u))
        for f in stage.flow.fields:
            u = torch.relu(u + f(u))
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.head(u))


def test_option_a_shortcut_is_subsample_and_zero_pad():
    s = odenets.create("resnet20").stages[1].transition.shortcut
    u = torch.randn(2, 16, 8, 8)
    out = s(u)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, :16], u[:, :, ::2, ::2]) and not out[:, 16:].any()
    assert sum(p.numel() for p in s.parameters()) == 0


def test_stochastic_depth_survival_decays_linearly_to_one_half():
    model = odenets.create("sd_resnet56")
    p = torch.cat([f.coef_p for f in model.flows])
    total = 3 * 9
    blocks = [l for l in range(1, total + 1) if l not in (10, 19)]   # 10, 19: transitions
    expected = torch.tensor([1 - l / total * 0.5 for l in blocks])
    torch.testing.assert_close(p, expected)
    assert p[-1].item() == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["sd_resnet20", "shake_resnet20"])
def test_noise_in_train_mode_only(name):
    torch.manual_seed(0)
    model = odenets.create(name)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        torch.manual_seed(1)
        a = model(x)
        torch.manual_seed(2)
        b = model(x)
        torch.manual_seed(1)
        a_again = model(x)
        model.eval()
        c, d = model(x), model(x)
    assert not torch.equal(a, b) and torch.equal(a, a_again)
    assert torch.equal(c, d)


@pytest.mark.parametrize("name", ["sd_resnet20", "shake_resnet20"])
def test_seeded_noise_is_one_stream_for_the_whole_network(name):
    """solver_options={"seed": s}: reproducible whatever the global RNG does, and the flows of
    different stages do not repeat each other's draws (one generator, not one copy per flow)."""
    model = odenets.create(name, solver_options={"seed": 0})
    draws = [f.scheme.noise_source.rand(16) for f in model.flows]
    assert len(draws) == 3
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    x = torch.randn(4, 3, 8, 8)
    outputs = []
    for global_seed in (1, 2):
        torch.manual_seed(0)
        model = odenets.create(name, solver_options={"seed": 0})
        torch.manual_seed(global_seed)
        with torch.no_grad():
            outputs.append(model(x))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["resnet20", "lm_resnet20", "shake_resnet20", "rev_resnet20"])
def test_bf16_autocast_and_channels_last(name):
    torch.manual_seed(0)
    model = odenets.create(name, in_channels=1).to(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 12, 12).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    y.float().square().mean().backward()
    assert torch.isfinite(y.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def _compile_supported():
    try:
        import torch._dynamo
        return torch._dynamo.is_dynamo_supported()    # False e.g. on unsupported Python versions
    except Exception:
        return False


@pytest.mark.skipif(not _compile_supported(), reason="torch.compile unavailable")
def test_compile_traces_whole_network_without_graph_breaks():
    """fullgraph=True: the unrolled loop, the LM history and the transitions trace as one
    graph (backend="eager" checks tracing only, quickly)."""
    torch.manual_seed(0)
    model = odenets.create("lm_resnet20", in_channels=1)
    x = torch.randn(2, 1, 8, 8)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    compiled(x).sum().backward()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.slow
@pytest.mark.skipif(not _compile_supported(), reason="torch.compile unavailable")
def test_compile_inductor_matches_eager():
    torch.manual_seed(0)
    model = odenets.create("lm_resnet20", in_channels=1).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(x), model(x), rtol=1e-4, atol=1e-4)


# -- metadata -----------------------------------------------------------------------------------
def test_info_counts_evaluations_and_macs():
    base = odenets.info("resnet20")
    assert base["params"] == 269_722 and base["blocks"] == 9 and base["evaluations"] == 9
    assert 40e6 < base["macs"] < 42e6                     # ~41M MACs at 32x32 (He et al.)
    transition_and_rest = odenets.info("resnet20", solver="rk4")
    flow_macs = (transition_and_rest["macs"] - base["macs"]) / 3   # rk4: 4 evaluations per step
    assert transition_and_rest["evaluations"] == 7 * 4 + 2
    poly = odenets.info("poly_resnet20")
    assert poly["macs"] == pytest.approx(base["macs"] + flow_macs)   # 2 evaluations per step
    lm = odenets.info("lm_resnet20")
    assert lm["coefficients"] == 7 and lm["params"] == 269_729 and lm["macs"] == base["macs"]
    gray = odenets.info("resnet20", input_size=(1, 1, 28, 28))
    assert gray["macs"] < base["macs"]


def test_info_of_a_flow_counts_actual_calls():
    flow = odenets.build(torch.nn.Linear(4, 4), "rk4", steps=3)
    meta = odenets.info(flow, input_size=(1, 4))
    assert meta["macs"] == 3 * 4 * 16 and meta["evaluations"] == 12 and meta["params"] == 60


def test_info_counts_continuous_evaluations_on_an_input_that_moves():
    # on zeros, a bias-free field solves u' = 0: dopri5 then grows its floor step 1e-6 tenfold per
    # step, 2 + 7 x 6 = 44 evaluations whatever the field (ode/hbode_resnet20 both read 132)
    torch.manual_seed(0)
    field = torch.nn.Linear(4, 4, bias=False)
    flows = [odenets.build(field, "dopri5"), odenets.build(field, "dopri5", momentum=True, damping=0.5)]
    counts = [odenets.info(flow, input_size=(2, 4))["continuous_nfe"] for flow in flows]
    assert 44 not in counts and counts[0] != counts[1], counts  # plain and heavy-ball cost differently
    from odenets.continuous.nfe import reset_nfe, total_nfe
    from odenets.info import probe_input
    for flow, count in zip(flows, counts):  # info's count is a forward's on its probe input
        reset_nfe(flow)
        with torch.no_grad():
            flow(probe_input(flow, (2, 4)))
        assert total_nfe(flow)["forward"] == count
    state = torch.get_rng_state()
    odenets.info(flows[0], input_size=(2, 4))
    assert torch.equal(state, torch.get_rng_state())  # the probe input has its own generator


def test_info_counts_learnable_damping_as_coefficients():
    field = torch.nn.Linear(4, 4)  # 20 parameters; untied flows copy it per step
    counts = {(tied, damping): odenets.info(odenets.build(field, "rk4", steps=2, tied=tied,
                                                          momentum=True, damping=damping),
                                            input_size=(1, 4))
              for tied in (True, False) for damping in (None, 0.5)}
    assert {key: (m["coefficients"], m["params"]) for key, m in counts.items()} == {
        (True, None): (1, 21), (True, 0.5): (0, 20),  # one gamma per tied flow
        (False, None): (2, 42), (False, 0.5): (0, 40)}  # one per step untied


@pytest.mark.slow
def test_resnet50_macs():
    assert 4.0e9 < odenets.info("resnet50", input_size=(1, 3, 224, 224))["macs"] < 4.2e9


def test_coefficients_of_a_network():
    model = odenets.create("lm_resnet20")
    coeffs = odenets.coefficients(model)
    assert {k: len(v) for k, v in coeffs.items()} == {
        "stages.0.flow.k": 3, "stages.1.flow.k": 2, "stages.2.flow.k": 2}
    assert all(-0.1 <= v <= 0.0 for vs in coeffs.values() for v in vs)
    assert odenets.coefficients(odenets.create("resnet20")) == {}


def test_config_validation():
    with pytest.raises(ValueError, match="one entry per stage"):
        odenets.Network(NetConfig(depths=(3, 3), widths=(16, 32, 64)))
    with pytest.raises(ValueError, match="survival"):
        odenets.create("sd_resnet20", survival=0.0)
    with pytest.raises(ValueError, match="odd"):
        odenets.create("rev_resnet20", widths=(15, 30, 60))


def test_seeded_sde_network_draws_from_one_noise_stream():
    """sde: flows in a network share one solvers.Noise (as fixed-grid flows share one scheme):
    seed=s makes the whole network's noise reproducible whatever the global RNG does."""
    if "sde:euler" not in odenets.available_solvers():
        pytest.skip("odenets.continuous is not available")
    options = dict(seed=3, steps=2)
    model = odenets.create("preact_resnet20", solver="sde:euler", solver_options=options)
    assert len({id(f.noise_source) for f in model.flows}) == 1 == len(model.flows) - 2
    assert model.flows[0].noise_source.seed == 3
    x, outs = torch.randn(2, 3, 8, 8), []
    for global_seed in (1, 2):
        torch.manual_seed(0)
        net = odenets.create("preact_resnet20", solver="sde:euler", solver_options=options)
        torch.manual_seed(global_seed)
        outs.append(net.train()(x))
    assert torch.equal(outs[0], outs[1])
    with pytest.raises(ValueError, match="seed must be an integer"):
        odenets.create("preact_resnet20", solver="sde:euler", solver_options=dict(seed="a", steps=2))


def test_continuous_solver_in_a_network():
    if "dopri5" not in odenets.available_solvers():
        pytest.skip("odenets.continuous is not available")
    torch.manual_seed(0)
    model = odenets.create("preact_resnet20", solver="dopri5")
    assert n_params(model) < n_params(odenets.create("preact_resnet20"))   # one field per stage
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    with pytest.raises(ValueError, match="post_activation=False"):
        odenets.create("resnet20", solver="dopri5")
