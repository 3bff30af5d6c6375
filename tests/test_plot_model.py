"""Figures of a model's scheme: learned roots of rho (LM / lmm) and LM's modified equation."""
import pytest
import torch

import odenets
from odenets.plot import _multistep_flows, plot_model
from solvers.lmm import roots_per_step


@pytest.mark.parametrize("name", ["lm_resnet20", "lmm3_resnet20", "lmm4_resnet20"])
def test_roots_figure_of_multistep_networks(name, tmp_path):
    model = odenets.create(name, num_classes=10, in_channels=1)
    flows = _multistep_flows(model)
    assert len(flows) == 3  # one flow per stage
    for _, flow in flows:
        roots = roots_per_step(flow.scheme, flow.coefficient_values())
        assert roots.shape[0] == flow.steps
        assert bool((roots.abs() < 1).all())  # zero-stable: inside the unit disc
    paths = plot_model(model, tmp_path)
    assert (tmp_path / "roots.png") in paths and (tmp_path / "roots.png").stat().st_size > 1000
    assert ((tmp_path / "lm_modified_equation.md").exists()) == (name == "lm_resnet20")


def test_lm_table_matches_learned_k(tmp_path):
    model = odenets.create("lm_resnet20", num_classes=10, in_channels=1)
    flow = _multistep_flows(model)[0][1]
    flow.set_coefficients(k=torch.tensor([0.5, -0.25, 0.0]))
    plot_model(model, tmp_path)
    rows = [line.split("|") for line in (tmp_path / "lm_modified_equation.md").read_text().splitlines()[2:5]]
    k, one_plus_k, half_one_minus_k = ([float(r[i]) for r in rows] for i in (3, 4, 5))
    assert k == pytest.approx([0.5, -0.25, 0.0], abs=1e-4)
    assert one_plus_k == pytest.approx([1.5, 0.75, 1.0], abs=1e-4)
    assert half_one_minus_k == pytest.approx([0.25, 0.625, 0.5], abs=1e-4)


def test_no_multistep_no_roots_figure(tmp_path):
    assert plot_model(odenets.create("resnet20", num_classes=10, in_channels=1), tmp_path) == []


def test_analyze_command_writes_figures_and_orders(tmp_path, capsys):
    from odenets.cli import main
    assert main(["analyze", "--out", str(tmp_path)]) == 0
    for name in ("stability_regions.png", "convergence.png", "convergence.md"):
        assert (tmp_path / name).stat().st_size > 0
    rows = {line.split("|")[1].strip(): line.split("|")
            for line in (tmp_path / "convergence.md").read_text().splitlines()[2:]}
    assert float(rows["rk4"][3]) == pytest.approx(4, abs=0.15)
    assert float(rows["euler"][3]) == pytest.approx(1, abs=0.15)
