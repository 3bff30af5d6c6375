"""Smoke test of benchmarks/solver_overhead.py: it runs, every method evaluates the field the
expected number of times per step, and the JSON carries the metadata (no timing assertions)."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchdiffeq")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "solver_overhead.py"


def test_solver_overhead_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("solver_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "overhead.json"
    threads = torch.get_num_threads()
    try:  # main() sets torch's thread count for the process clock: restore it for other tests
        module.main(["--steps", "4", "--em-steps", "3", "--repeats", "2", "--warmup", "1",
                     "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    payload = json.loads(out.read_text())
    for key in ("device", "torch", "seed", "command", "timestamp", "torch_threads"):
        assert key in payload["env"]
    rows = payload["results_us_per_step"]["forward_backward"]
    assert rows["integrate_rk4_38"]["evals_per_step"] == 4 == rows["torchdiffeq_rk4"]["evals_per_step"]
    assert rows["integrate_euler"]["evals_per_step"] == 1 == rows["torchdiffeq_euler"]["evals_per_step"]
    assert "euler_torchdiffeq_over_ours_time" in payload["summary"]["forward"]
    em = payload["euler_maruyama"]
    assert em["steps"] == 3 and payload["flows"] is None  # --flows off by default
    for mode in ("forward", "forward_backward"):
        assert em["results_us_per_step"][mode]["integrate_em"]["evals_per_step"] == 1
        assert em["summary"][mode]["em_ours_over_plain_loop_per_round"]["n"] == 2
    assert "wrote" in capsys.readouterr().out


def test_flow_costs_record_faults_and_the_goal_row(tmp_path):
    """--flows: both stage flows stepped by both solvers, their page faults and the allocator
    setting recorded, and the goal row (`_goals.solver_goals`) read from them."""
    import sys
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("solver_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import _goals
    args = module.argparse.Namespace(flows=1, flow_repeats=2, seed=0, device="cpu", clock="process")
    flows = module.flow_costs(args)
    assert set(flows["minor_faults_per_forward"]) == set(flows["nfe_forward"])
    assert flows["malloc"] in ("system", "keep freed blocks (odenets/_malloc.py)")
    rows = _goals.solver_goals({"flows": flows})
    assert len(rows) == 1 and rows[0]["value"] == flows["hbode_over_ode_per_eval_ours"]["median"]
    assert "page faults per forward" in rows[0]["measured"]
