"""Re-solving trained networks with another scheme or grid (`odenets.resolve`, `odenets eval
--solver`): identity when nothing changes, convergence for tied flows, clear refusals."""
import json
from pathlib import Path

import pytest
import torch

import odenets
from odenets import cli
from odenets.fields import MLPField
from odenets.resolve import parse_options, with_solver

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(depths=(2, 2, 2), widths=(4, 8, 8))  # a few hundred parameters, same layout


def net(name, **overrides):
    torch.manual_seed(0)
    model = odenets.create(name, num_classes=3, in_channels=3, **{**SMALL, **overrides})
    model.train()
    with torch.no_grad():  # a few training forwards: running statistics away from their init
        for _ in range(3):
            model(torch.randn(8, 3, 8, 8))
    return model.eval()


X = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name,solver", [("resnet20", "euler"), ("resnet20", None),
                                         ("lm_resnet20", "lm"), ("rk4_resnet20", "rk4"),
                                         ("poly_resnet20", None)])
def test_same_scheme_is_the_same_network(name, solver):
    model = net(name)
    new, notes = with_solver(model, solver)
    assert notes == [] and not new.training
    assert torch.allclose(new(X), model(X), atol=1e-6)
    assert new.stages[1].flow is not model.stages[1].flow  # a copy: the trained model untouched


def test_per_evaluation_statistics_are_read_call_by_call():
    """An rk4-trained field keeps 4 slots of BatchNorm statistics; re-solved as midpoint, the
    second call reads slot 1 (not slot 0 for every call)."""
    model = net("rk4_resnet20")
    new, _ = with_solver(model, "midpoint")
    slot0 = with_solver(model, "midpoint")[0]
    for m in slot0.modules():  # every call reading slot 0: what a flow that does not count does
        if hasattr(m, "slots"):
            m.running_mean[1:] = m.running_mean[0]
            m.running_var[1:] = m.running_var[0]
    assert not torch.allclose(new(X), slot0(X), atol=1e-4)
    bn = new.stages[0].flow.blocks[0].bn1
    assert bn.running_mean.shape[0] == 4  # the trained slots, unchanged


def test_other_schemes_run_and_change_the_output():
    model = net("resnet20")
    for solver in ("midpoint", "heun", "rk4"):
        new, _ = with_solver(model, solver)
        assert new.stages[0].flow.scheme.name == solver
        assert new(X).shape == (4, 3) and not torch.allclose(new(X), model(X))


def test_lm_resolved_as_euler_drops_k_and_the_projected_history():
    model = net("lm_resnet20")
    new, notes = with_solver(model, "euler")
    assert any("'k'" in n and "dropped" in n for n in notes)
    assert all(not t._project for t in new.transitions)
    plain = net("resnet20")
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if ".raw." not in k})
    assert torch.allclose(new(X), plain(X), atol=1e-6)  # exactly the ResNet with LM's weights


def test_unlearned_coefficients_are_refused_unless_fixed():
    model = net("resnet20")
    with pytest.raises(ValueError, match=r"lm learns coefficient 'k'.*did not learn.*k="):
        with_solver(model, "lm")
    new, _ = with_solver(model, "lm", k=0.0)  # k = 0: LM is forward Euler
    assert torch.allclose(new(X), model(X), atol=1e-6)


def test_untied_flows_keep_their_steps():
    model = net("resnet20")
    with pytest.raises(ValueError, match=r"untied flow .* keeps its 2 steps; got steps=4"):
        with_solver(model, "rk4", steps=4)
    with pytest.raises(ValueError, match=r"coefficient 'p'.*euler declares"):
        with_solver(net("sd_resnet20"), "euler")


def test_tied_flow_converges_when_refined():
    torch.manual_seed(0)
    flow = odenets.build(MLPField(3, hidden=16), "euler", steps=4, tied=True)
    u = torch.randn(5, 3)
    fine = with_solver(flow, "rk4", steps=64)[0](u)
    assert torch.allclose(with_solver(flow, "midpoint", steps=256)[0](u), fine, atol=1e-4)
    assert torch.allclose(with_solver(flow, "dopri5", rtol=1e-7, atol=1e-8)[0](u), fine, atol=1e-5)
    coarse_err = (flow(u) - fine).abs().max()
    assert (with_solver(flow, None, steps=64)[0](u) - fine).abs().max() < coarse_err / 8
    assert with_solver(flow, None, steps=16)[0].dt == pytest.approx(1 / 16)


def test_tied_network_on_another_grid():
    model = net("preact_resnet20", tied=True)
    new, _ = with_solver(model, "rk4", steps=8)
    assert [f.steps for f in new.flows] == [8, 8, 8] and new.flows[1].dt == pytest.approx(1 / 8)
    assert new(X).shape == (4, 3)
    cont, _ = with_solver(model, "dopri5")
    assert torch.allclose(cont(X), new(X), atol=1e-3)
    with pytest.raises(ValueError, match="post-activated"):
        with_solver(net("resnet20", tied=True), "dopri5")


def test_parse_options():
    assert parse_options(["k=-0.05", "noise=gaussian", "iterations=2"]) == dict(
        k=-0.05, noise="gaussian", iterations=2)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_options(["k"])


def test_eval_cli_resolves_a_run(capsys, tmp_path):
    run = tmp_path / "run"
    args = ["--model", "preact_resnet20", "--model-arg", "depths=(2,3,3)", "--model-arg",
            "widths=(4,8,8)", "--model-arg", "tied=True", "--dataset", "synthetic", "--subset",
            "64", "--test-subset", "32", "--batch-size", "32", "--epochs", "1", "--no-progress",
            "--amp", "off"]  # no start-up probe: not under test
    assert cli.main(["train", *args, "--run-dir", str(run)]) == 0
    capsys.readouterr()
    assert cli.main(["eval", str(run), "--subset", "32", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert cli.main(["eval", str(run), "--subset", "32", "--solver", "euler", "--steps", "2", "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["solver"] == "euler" and same["steps"] == 2 and same["acc"] == trained["acc"]
    assert cli.main(["eval", str(run), "--subset", "32", "--solver", "rk4", "--steps", "16", "--json"]) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["acc"] <= 1
    assert cli.main(["eval", str(run), "--solver", "lm"]) == 2
    assert "did not learn" in capsys.readouterr().err
    assert Path(run / "config.json").is_file()


@pytest.mark.parametrize("name", [n for n in odenets.list_models() if n.endswith("resnet20")])
def test_every_preset_is_resolved_or_refused_clearly(name):
    """Every CIFAR family: each scheme either gives a working network or a ValueError."""
    model = net(name)
    outcomes = {}
    for solver in ("euler", "rk4", "lm", "dopri5", None):
        try:
            new, _ = with_solver(model, solver, steps=None if solver else 2)
        except ValueError as e:
            outcomes[solver] = str(e)
            continue
        assert new(X).shape == (4, 3)
        outcomes[solver] = "ok"
    assert outcomes["euler"] == "ok" or "coefficient 'p'" in outcomes["euler"] \
        or "pair of fields" in outcomes["euler"] \
        or (name.startswith(("ode_", "hbode_")) and "(--steps N)" in outcomes["euler"])  # continuous
    assert outcomes[None] == "ok" or "untied flow" in outcomes[None] \
        or (name.startswith(("ode_", "hbode_")) and "keeps its own grid control" in outcomes[None])


def test_the_runs_own_scheme_keeps_its_options():
    model = net("lm_resnet20", solver_options=dict(per_channel=True))
    new, notes = with_solver(model, "lm")
    assert notes == [] and new.flows[0].raw["k"].shape == model.flows[0].raw["k"].shape == (2, 4)
    assert torch.allclose(new(X), model(X), atol=1e-6)
