"""Speed goals: the table every speed report prints (`markdown`), and the goals measured
outside speed.py — the solver layer's Euler–Maruyama step and the heavy-ball flows
(solver_overhead.py), training on a shared machine (levers.py). Each goal reads its committed
JSON; a file that is missing gives no row."""
from __future__ import annotations

import json
from pathlib import Path

from _train_common import markdown_table


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _iqr(s: dict) -> str:
    return f"median of {s['n']}, IQR {s['q1']:.3f}-{s['q3']:.3f}"


def solver_goals(payload: dict) -> list[dict]:
    out = []
    em = (payload.get("euler_maruyama") or {}).get("summary")
    if em:
        fb, fw = em["forward_backward"], em["forward"]
        value = fb["em_ours_over_plain_loop_per_round"]["median"]
        out.append(dict(goal="solver-layer Euler–Maruyama within 10% of a plain loop",
                        setting=f"{payload['euler_maruyama']['steps']} steps, MLP field, 1 thread",
                        measured=f"time ratio {value:.3f} forward+backward "
                                 f"({_iqr(fb['em_ours_over_plain_loop_per_round'])}); "
                                 f"{fw['em_ours_over_plain_loop_per_round']['median']:.3f} forward",
                        value=value, target=1.10))
    flows = payload.get("flows") or {}
    ratio = flows.get("hbode_over_ode_per_eval_ours")
    threads = (payload.get("config") or {}).get("threads")
    if ratio:
        out.append(dict(goal="heavy-ball dopri5 flow within 20% of the plain one per field evaluation",
                        setting=f"resnet20 stage 0, batch {flows.get('batch')}, "
                                f"{flows.get('memory_format')}, no_grad, {threads} thread(s)",
                        measured=f"time ratio hbode/ode {ratio['median']:.3f} ({_iqr(ratio)}); "
                                 + _flow_detail(flows), value=ratio["median"], target=1.20))
    return out


def _flow_detail(flows: dict) -> str:
    """ms per evaluation of both flows, and their page faults per forward with the allocator
    setting (odenets/_malloc.py) where the file records them."""
    ms = flows["ms_per_eval"]
    text = (f"{ms['hbode_resnet20/ours']['median']:.1f} vs {ms['ode_resnet20/ours']['median']:.1f} "
            f"ms per evaluation")
    faults = flows.get("minor_faults_per_forward")
    if faults:
        text += (f", {faults['hbode_resnet20/ours']} vs {faults['ode_resnet20/ours']} page faults "
                 f"per forward (malloc: {flows.get('malloc', 'system')})")
    return text


def shared_machine_goal(payload: dict) -> list[dict]:
    loads = (payload.get("shared_machine") or {}).get("loads")
    if not loads:
        return []
    idle, busy = (loads[k] for k in sorted(loads, key=lambda k: int(k.split()[0])))
    quiet = idle["all threads, OMP_WAIT_POLICY unset"]
    chosen = busy["all threads, PASSIVE"]  # what odenets picks when the load is >= 1 (_openmp.py)
    spin = busy["all threads, OMP_WAIT_POLICY unset"]
    value = chosen["cpu_ms"] / quiet["cpu_ms"]
    return [dict(goal="training beside busy processes: <= 1.3x the quiet CPU time per image, "
                      "quiet speed unchanged",
                 setting="resnet20, batch 128, 2 threads, one busy loop per core",
                 measured=f"CPU ms/step {chosen['cpu_ms']:.0f} (passive, chosen at load >= 1) vs "
                          f"{quiet['cpu_ms']:.0f} quiet = {value:.2f}x (spinning: "
                          f"{spin['cpu_ms']:.0f}, {spin['cpu_ms'] / quiet['cpu_ms']:.1f}x); quiet "
                          f"runs keep libgomp's default ({quiet['wall_ms']:.0f} ms/step)",
                 value=value, target=1.30)]


def more_goals(results: Path) -> list[dict]:
    rows = []
    for path in sorted(Path(results).glob("solver_overhead*_cpu.json")):
        rows += solver_goals(_read(path))
    rows += shared_machine_goal(_read(Path(results) / "levers_cpu.json"))
    for r in rows:
        r["met"] = r["value"] <= r["target"]
    return rows


def markdown(rows: list[dict]) -> str:
    return markdown_table(["goal", "setting", "measured", "met"],
                          [[r["goal"], r["setting"], r["measured"], "yes" if r["met"] else "**no**"]
                           for r in rows])
