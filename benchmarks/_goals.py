"""Speed goals: the table every speed report prints (`markdown`), and the goals measured
outside speed.py — the solver layer's Euler–Maruyama step and the heavy-ball flows
(solver_overhead.py), training on a shared machine (levers.py). Each goal reads its committed
JSON; a file that is missing gives no row."""
from __future__ import annotations

import json
import statistics
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


def slope(xs, ys) -> float:
    """Least-squares slope of ys against xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def speed_goals(results: dict, memory: dict) -> list[dict]:
    """The issue's speed/memory goals, each with the measured value and met / not met."""
    out = []

    def ratio(key, num, den, target, goal):
        rows = results[key]
        a, b = rows.get(num, {}), rows.get(den, {})
        if "s_per_step" not in a or "s_per_step" not in b:
            return
        pairs = [x / y for x, y in zip(a.get("times_s", []), b.get("times_s", []))]
        if len(pairs) > 1:  # rounds interleave the models: per-round ratios are paired samples
            value, q = statistics.median(pairs), statistics.quantiles(pairs, n=4)
            spread = f" (median of {len(pairs)} per-round ratios, IQR {q[0]:.3f}-{q[2]:.3f})"
        else:
            value, spread = a["s_per_step"] / b["s_per_step"], ""
        out.append(dict(goal=goal, setting=key, measured=f"time ratio {num}/{den} = {value:.3f}{spread}",
                        value=value, target=target, met=value <= target))
    for key in results:
        if key.startswith("resnet56/"):
            ratio(key, "resnet56", "hand_resnet56", 1.02, "unrolled resnet56 within 2% of hand-written")
            ratio(key, "lm_resnet56", "resnet56", 1.05, "lm_resnet56 within 5% of resnet56")
            ratio(key, "lmm3_resnet56", "resnet56", 1.08, "lmm3_resnet56 within 8% of resnet56")
        elif key.startswith("noise/"):
            ratio(key, "gauss_resnet20", "resnet20", 1.25, "Gaussian noise injection within 25% of resnet20")
            ratio(key, "sd_resnet20", "resnet20", 1.10, "stochastic depth within 10% of resnet20")
            ratio(key, "shake_resnet20", "resnet20", 1.20, "shake-shake within 20% of resnet20")
        elif key.startswith("ode/"):
            ratio(key, "ours_euler", "torchdiffeq_euler", 1.0, "faster than torchdiffeq fixed-grid (euler)")
            ratio(key, "ours_rk4_38", "torchdiffeq_rk4", 1.0, "faster than torchdiffeq fixed-grid (rk4)")
        elif key.startswith("resnet50/"):
            ratio(key, "resnet50", "torchvision_resnet50", 1.02, "our resnet50 within 2% of torchvision")
    if memory.get("resnet") and memory.get("rev_resnet"):
        fit = {f: slope([m["blocks"] for m in memory[f].values()],
                        [m["saved_tensor_bytes"] for m in memory[f].values()]) for f in ("resnet", "rev_resnet")}
        value = fit["rev_resnet"] / fit["resnet"] if fit["resnet"] else None
        out.append(dict(goal="reversible activation memory flat in depth (slope < 10% of Euler's)",
                        setting="saved tensors, fp32, eager",
                        measured=f"bytes/block: euler {fit['resnet']:.0f}, reversible {fit['rev_resnet']:.0f}",
                        value=value, target=0.1, met=value is not None and value < 0.1))
    return out


def readme_speed(speed: list[dict]) -> list[str]:
    """The README's speed-goal tables, one per speed_*.json (``_file`` named): a setting's rows
    come from the file that measured it last (a setting kept by ``speed.py --merge``: when it
    was measured then), so a re-measured setting never shows twice."""
    out = []

    def stamp(p, setting):  # when ``p`` measured ``setting`` (a setting kept by --merge: then)
        return ((p.get("kept_settings") or {}).get(setting) or p["env"]).get("timestamp") or ""
    newest = {}
    for p in speed:
        for k in p["results"]:
            if k not in newest or stamp(p, k) > newest[k][0]:
                newest[k] = (stamp(p, k), p["_file"])
    for p in speed:
        goals = [g for g in p["goals"] if newest.get(g["setting"], ("", p["_file"]))[1] == p["_file"]]
        moved = ", ".join(sorted({f"`{newest[g['setting']][1]}`" for g in p["goals"] if g not in goals}))
        kept = "; ".join(f"{k} from {e.get('device')} ({str(e.get('timestamp'))[:10]})"
                         for k, e in (p.get("kept_settings") or {}).items()
                         if any(g["setting"] == k for g in goals))
        out += [] if not goals else [
            f"**Speed goals** ({p['env']['device']}, torch {p['env']['torch']}, "
            f"{p['env'].get('torch_threads')} thread(s), modes "
            f"{', '.join(sorted({k.split('/')[1] for k in p['results']}))}"
            + (f"; kept from an earlier run: {kept}" if kept else "")
            + f"; `{p['_file'].replace('.json', '.md')}`"
            + (f"; settings measured again later: in {moved}" if moved else "") + "):", "",
            markdown(goals), ""]
    return out
