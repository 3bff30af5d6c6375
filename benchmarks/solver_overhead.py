"""Per-step overhead of the solver layer against torchdiffeq and a hand-written loop.

Compares, on the same small field (a 16-wide MLP, batch 32) and the same fixed grid:
  * ``solvers.integrate(f, u0, N, scheme=...)`` and ``scheme.solve(fields, u0, ...)`` (the grid
    loop without the argument checks of `integrate`),
  * torchdiffeq's fixed-grid ``odeint(f, u0, [0, 1], method=..., options=dict(step_size=1/N))``,
  * a hand-written Python loop (``u = u + dt * f(t, u)``, and classical RK4 written out),
for Euler and fourth-order RK (torchdiffeq's "rk4" is Kutta's 3/8 rule = our "rk4_38"; our
classical "rk4" has the same cost), in forward only (``no_grad``) and forward+backward
(``autograd.grad`` of ``out.sum()`` w.r.t. the MLP's parameters and u0).

Euler-Maruyama (``--em-steps``, default 200; Gaussian additive noise, sigma 1, seeded):
``solvers.integrate(f, u0, N, scheme="euler_maruyama", seed=0)`` against a hand-written loop
``u = u + dt f(t, u) + sigma sqrt(dt) randn(generator=g)`` drawing from its own seeded
generator (goal: ours <= 1.1x the loop).

Continuous flows (``--flows B``, off by default): one dopri5 forward of the stage-0 flow of
``ode_resnet20`` and of ``hbode_resnet20`` (u'' + gamma u' = f(u), state (u, v)) on a random
batch of B 16x32x32 activations (channels_last), per field evaluation, stepped by torchdiffeq's
own ``odeint`` and by ours (`odenets.continuous.rk`, the one the flows use) on the same counted
field (goal: hbode/ode <= 1.2 per evaluation).

Overhead per step = (time per step) - (field evaluations per step) x (time of one field
evaluation, measured alone the same way). Timing: warm-up calls, then ``--repeats`` rounds that
run every method once each in turn (so machine load hits all alike); medians, minima and
interquartile ranges are reported. On CPU the default clock is this process's CPU time with one
torch thread (``--clock process``): the 2-core development machine is shared, and elapsed time
there mostly measures the other processes; ``--clock wall`` gives elapsed time (GPU default).
Writes benchmarks/results/solver_overhead_<device>.json (``cpu`` or the GPU name) with device,
torch version, threads, machine load, seed and command line.

Measured here (2-core CPU, torch 2.13, process clock, 1 thread, median us/step; see the JSON):
forward Euler: plain loop 17.7, integrate 15.3, torchdiffeq 29.3 (field alone 14.7), i.e.
overhead 0.6 vs 14.6 us/step; RK4 overhead 13.8 (3/8 rule) vs 56.0 us/step; forward+backward
RK4 overhead 47 vs 126 us/step, Euler's below the timing noise vs 19 us/step.
Euler-Maruyama (2-core Xeon with AMX, shared with a 2-worker training campaign, 60 rotated
rounds; results/solver_overhead_em_flows_cpu.json): ours / plain loop 0.82 forward (quartiles
0.81-0.86), 0.90 forward+backward, overhead 8.1 vs 13.4 us/step. Flows, batch 128: per
evaluation ours / torchdiffeq 0.27 (ode_resnet20) and 0.23 (hbode_resnet20); hbode / ode
1.99 with torchdiffeq's step, 1.77 with ours. Then, with glibc keeping freed blocks
(odenets/_malloc.py: ~160,000 page faults per heavy-ball forward before, 0 after) and fewer
passes (docs/solver_layer.md section 6), on a 2-core EPYC: hbode / ode 1.36 with ours (51.3 vs
37.2 ms per evaluation), 1.82 with torchdiffeq's step (goal 1.2 not met; page faults in the JSON).

    python benchmarks/solver_overhead.py [--steps 128] [--device cuda] [--repeats 60]
    python benchmarks/solver_overhead.py --flows 128 --flow-repeats 9   # + the dopri5 flows
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import env_info, result_path, time_call, write_json  # noqa: E402

import solvers  # noqa: E402

try:
    from torchdiffeq import odeint
except ImportError:  # the comparison is skipped, the rest still runs
    odeint = None


# -- the methods ----------------------------------------------------------------------------------
def plain_euler(f, u0, steps):
    u, dt = u0, 1.0 / steps
    for n in range(steps):
        u = u + dt * f(n * dt, u)
    return u


def plain_rk4(f, u0, steps):
    u, dt = u0, 1.0 / steps
    for n in range(steps):
        t = n * dt
        k1 = f(t, u)
        k2 = f(t + dt / 2, u + (dt / 2) * k1)
        k3 = f(t + dt / 2, u + (dt / 2) * k2)
        k4 = f(t + dt, u + dt * k3)
        u = u + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return u


def plain_em(f, u0, steps, sigma=1.0, seed=0):
    """Euler-Maruyama written out, additive noise, its own seeded generator."""
    g = torch.Generator(device=u0.device).manual_seed(seed)
    u, dt = u0, 1.0 / steps
    scale = sigma * math.sqrt(dt)
    for n in range(steps):
        u = u + dt * f(n * dt, u) + scale * torch.randn(u.shape, generator=g, device=u.device)
    return u


def field_only(f, u0, steps, evals):
    """The field alone, ``evals * steps`` times on the same input: the cost every method pays."""
    out = None
    for n in range(int(evals * steps)):
        y = f(n / steps, u0)
        out = y if out is None else out + y  # one add per eval, cheaper than any scheme's update
    return out


def methods(steps):
    """name -> (callable(f, u0), field evaluations per step)."""
    out = {
        "field_only_x1": (lambda f, u: field_only(f, u, steps, 1), 1),
        "plain_loop_euler": (lambda f, u: plain_euler(f, u, steps), 1),
        "integrate_euler": (lambda f, u: solvers.integrate(f, u, steps, scheme="euler"), 1),
        "solve_euler": (lambda f, u: solvers.get("euler").solve([f] * steps, u, 0.0, 1 / steps)[0], 1),
        "field_only_x4": (lambda f, u: field_only(f, u, steps, 4), 4),
        "plain_loop_rk4": (lambda f, u: plain_rk4(f, u, steps), 4),
        "integrate_rk4": (lambda f, u: solvers.integrate(f, u, steps, scheme="rk4"), 4),
        "integrate_rk4_38": (lambda f, u: solvers.integrate(f, u, steps, scheme="rk4_38"), 4),
        "solve_rk4_38": (lambda f, u: solvers.get("rk4_38").solve([f] * steps, u, 0.0, 1 / steps)[0], 4),
    }
    if odeint is not None:
        for method in ("euler", "rk4"):
            out[f"torchdiffeq_{method}"] = (
                lambda f, u, m=method: odeint(f, u, torch.tensor([0.0, 1.0], device=u.device), method=m,
                                              options=dict(step_size=1.0 / steps))[-1],
                1 if method == "euler" else 4)
    return out


def em_methods(steps):
    """The Euler-Maruyama comparison: name -> (callable(f, u0), field evaluations per step)."""
    return {
        "field_only_x1": (lambda f, u: field_only(f, u, steps, 1), 1),
        "plain_loop_em": (lambda f, u: plain_em(f, u, steps), 1),
        "integrate_em": (lambda f, u: solvers.integrate(f, u, steps, scheme="euler_maruyama",
                                                        noise="gaussian", sigma=1.0, seed=0), 1),
    }


# -- measuring -------------------------------------------------------------------------------------
def make_field(width, device, seed):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.Tanh(),
                              torch.nn.Linear(width, width)).to(device)
    calls = [0]

    def f(t, u):
        calls[0] += 1
        return net(u)
    return net, f, calls


def runner(fn, f, u0, params, backward):
    if not backward:
        def run():
            with torch.no_grad():
                fn(f, u0)
        return run

    def run():
        out = fn(f, u0)
        torch.autograd.grad(out.sum(), [u0, *params])
    return run


def measure(args, make_methods=methods, steps=None):
    steps = args.steps if steps is None else steps
    device = torch.device(args.device)
    net, f, calls = make_field(args.width, device, args.seed)
    u0 = torch.randn(args.batch, args.width, device=device, requires_grad=True)
    params = list(net.parameters())
    table, evals_seen = {}, {}
    for name, (fn, evals) in make_methods(steps).items():  # check every method's evaluation count
        calls[0] = 0
        with torch.no_grad():
            fn(f, u0)
        evals_seen[name] = calls[0] / steps
        if abs(evals_seen[name] - evals) > 1e-9:
            raise RuntimeError(f"{name}: {calls[0]} field calls for {steps} steps, expected {evals}/step")
    for mode, backward in (("forward", False), ("forward_backward", True)):
        runs = {name: runner(fn, f, u0, params, backward) for name, (fn, _) in make_methods(steps).items()}
        for run in runs.values():
            for _ in range(args.warmup):
                run()
        times = {name: [1e6 * t / steps for t in ts]
                 for name, ts in rotated_rounds(runs, args.repeats, args.clock, device).items()}
        table[mode] = {}
        for name, ts in times.items():
            q = statistics.quantiles(ts, n=4)
            table[mode][name] = {"us_per_step": statistics.median(ts), "min_us_per_step": min(ts),
                                 "iqr_us": q[2] - q[0], "evals_per_step": evals_seen[name],
                                 "us_per_round": ts}
        field = table[mode]["field_only_x1"]
        for name, row in table[mode].items():
            if not name.startswith("field_only"):
                row["overhead_us_per_step"] = row["us_per_step"] - row["evals_per_step"] * field["us_per_step"]
                row["overhead_min_us_per_step"] = (row["min_us_per_step"]
                                                   - row["evals_per_step"] * field["min_us_per_step"])
    return table


def _quartiles(values) -> dict:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2], "n": len(values)}


def rotated_rounds(runs: dict, repeats: int, clock: str, device) -> dict:
    """name -> seconds per call over ``repeats`` rounds, each running every case once, the
    order rotated by one each round."""
    names, times = list(runs), {name: [] for name in runs}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(time_call(runs[name], device, clock))
    return times


def flow_costs(args) -> dict:
    """ms per field evaluation of one dopri5 forward (no_grad) of the stage-0 flows of
    ode_resnet20 and hbode_resnet20, stepped by torchdiffeq and by ours (module docstring)."""
    import torchdiffeq

    import odenets
    from odenets import _malloc
    from odenets.continuous import rk
    device = torch.device(args.device)
    x = torch.randn(args.flows, 16, 32, 32, device=device,
                    generator=torch.Generator(device).manual_seed(args.seed))
    x = x.contiguous(memory_format=torch.channels_last)
    runs, counters = {}, {}
    for name in ("ode_resnet20", "hbode_resnet20"):
        torch.manual_seed(args.seed)
        flow = odenets.create(name).stages[0].flow.to(device, memory_format=torch.channels_last)
        ode = flow.flow if name.startswith("hb") else flow  # MomentumFlow -> its ODEFlow
        z0 = torch.cat((x, torch.zeros_like(x)), 0) if name.startswith("hb") else x  # (u, v)
        t = torch.tensor(ode.t_span, dtype=torch.float32, device=device)
        for solver, odeint_fn in (("torchdiffeq", torchdiffeq.odeint), ("ours", rk.odeint)):
            def run(fn=odeint_fn, ode=ode, z0=z0, t=t):
                with torch.no_grad():
                    fn(ode.func, z0, t, rtol=ode.rtol, atol=ode.atol, method=ode.method,
                       options=dict(ode.options))
            runs[f"{name}/{solver}"], counters[f"{name}/{solver}"] = run, ode
    nfe = {}
    for key, run in runs.items():  # warm-up, and the evaluations of one forward
        counters[key].reset_nfe()
        run()
        nfe[key] = counters[key].nfe["forward"]
    faults = {key: _minor_faults(run) for key, run in runs.items()}
    times = rotated_rounds(runs, args.flow_repeats, args.clock, device)
    per_eval = {k: [1e3 * s / nfe[k] for s in v] for k, v in times.items()}
    out = {"batch": args.flows, "input": [args.flows, 16, 32, 32], "memory_format": "channels_last",
           "malloc": "keep freed blocks (odenets/_malloc.py)" if _malloc.applied else "system",
           "minor_faults_per_forward": faults,
           "nfe_forward": nfe, "ms_per_eval": {k: _quartiles(v) for k, v in per_eval.items()}}
    for solver in ("torchdiffeq", "ours"):
        out[f"hbode_over_ode_per_eval_{solver}"] = _quartiles(
            [a / b for a, b in zip(per_eval[f"hbode_resnet20/{solver}"],
                                   per_eval[f"ode_resnet20/{solver}"])])
    for name in ("ode_resnet20", "hbode_resnet20"):
        out[f"{name}_ours_over_torchdiffeq"] = _quartiles(
            [a / b for a, b in zip(per_eval[f"{name}/ours"], per_eval[f"{name}/torchdiffeq"])])
    return out


def _minor_faults(run):
    """Minor page faults of one call of ``run`` (None where getrusage is missing)."""
    try:
        import resource
    except ImportError:
        return None
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    run()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _ratio(num, den, floor):
    """num / den, or None when den is within timing noise (<= floor) of zero."""
    return num / den if den > floor else None


def summarise(table):
    """Time and overhead ratios, ours = `integrate` (Euler; the 3/8 rule for rk4, as torchdiffeq).
    An overhead ratio is None when ours is below 2% of the field's cost (not resolvable)."""
    out = {}
    for mode, rows in table.items():
        s, floor = {}, 0.02 * rows["field_only_x1"]["min_us_per_step"]
        for method in ("euler", "rk4"):
            ours = rows["integrate_euler" if method == "euler" else "integrate_rk4_38"]
            plain = rows[f"plain_loop_{method}"]
            s[f"{method}_ours_over_plain_loop_time"] = ours["us_per_step"] / plain["us_per_step"]
            s[f"{method}_ours_overhead_us"] = ours["overhead_us_per_step"]
            s[f"{method}_ours_overhead_min_us"] = ours["overhead_min_us_per_step"]
            theirs = rows.get(f"torchdiffeq_{method}")
            if theirs is None:
                continue
            s[f"{method}_torchdiffeq_over_ours_time"] = theirs["us_per_step"] / ours["us_per_step"]
            s[f"{method}_torchdiffeq_overhead_us"] = theirs["overhead_us_per_step"]
            s[f"{method}_torchdiffeq_over_ours_overhead"] = _ratio(
                theirs["overhead_us_per_step"], ours["overhead_us_per_step"], floor)
            s[f"{method}_torchdiffeq_over_ours_overhead_min"] = _ratio(
                theirs["overhead_min_us_per_step"], ours["overhead_min_us_per_step"], floor)
        out[mode] = s
    return out


def summarise_em(table) -> dict:
    """ours (`integrate`) over the plain loop: ratio of medians, and of each round's pair."""
    out = {}
    for mode, rows in table.items():
        ours, plain = rows["integrate_em"], rows["plain_loop_em"]
        out[mode] = {"em_ours_over_plain_loop_time": ours["us_per_step"] / plain["us_per_step"],
                     "em_ours_over_plain_loop_per_round": _quartiles(
                         [a / b for a, b in zip(ours["us_per_round"], plain["us_per_round"])]),
                     "em_ours_overhead_us": ours["overhead_us_per_step"],
                     "em_plain_overhead_us": plain["overhead_us_per_step"]}
    return out


def _print_table(table, steps, args):
    for mode, rows in table.items():
        print(f"\n{mode} ({steps} steps, batch {args.batch}, width {args.width}, {args.device})")
        print(f"  {'method':20s} {'median':>8s} {'min':>8s} {'iqr':>7s} {'overhead':>9s} {'(min)':>7s}  us/step")
        for name, row in rows.items():
            over = "" if "overhead_us_per_step" not in row else \
                f"{row['overhead_us_per_step']:9.2f} {row['overhead_min_us_per_step']:7.2f}"
            print(f"  {name:20s} {row['us_per_step']:8.2f} {row['min_us_per_step']:8.2f} "
                  f"{row['iqr_us']:7.2f} {over}")


def _fmt(value):
    if value is None:
        return "n/a (below noise)"
    if isinstance(value, dict):
        return f"{value['median']:.3f} (quartiles {value['q1']:.3f}-{value['q3']:.3f}, n={value['n']})"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=128, help="grid steps (a power of 2 keeps "
                        "torchdiffeq's float grid exact)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--em-steps", type=int, default=200, help="Euler-Maruyama grid steps")
    parser.add_argument("--flows", type=int, default=0, metavar="B",
                        help="also time the dopri5 stage-0 flows of ode/hbode_resnet20 at batch B")
    parser.add_argument("--flow-repeats", type=int, default=7, help="rounds of the flow timing")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: 1 with --clock process, else unchanged)")
    parser.add_argument("--clock", choices=("process", "wall"), default=None,
                        help="process: CPU time of this process, immune to other processes on a "
                             "shared machine (default on CPU); wall: elapsed time (default on GPU)")
    parser.add_argument("--out", default=None, help="JSON path (default results/solver_overhead_<device>.json)")
    args = parser.parse_args(argv)
    if args.clock is None:
        args.clock = "wall" if torch.device(args.device).type == "cuda" else "process"
    if args.clock == "process" and torch.device(args.device).type == "cuda":
        parser.error("--clock process measures CPU time only; use --clock wall on a GPU")
    if args.threads is None and args.clock == "process":
        args.threads = 1  # process time sums over threads: keep it equal to compute time
    if args.threads:
        torch.set_num_threads(args.threads)
    table = measure(args)
    summary = summarise(table)
    em = measure(args, em_methods, args.em_steps)
    em_summary = summarise_em(em)
    flows = flow_costs(args) if args.flows else None
    payload = {"benchmark": "solver_overhead", "env": env_info(args.device, args.seed),
               "config": vars(args), "results_us_per_step": table, "summary": summary,
               "euler_maruyama": {"steps": args.em_steps, "results_us_per_step": em,
                                  "summary": em_summary},
               "flows": flows,
               "anchors": {"plain_euler_loop_us_per_step": 20.9,
                           "torchdiffeq_euler_us_per_step": 34.6,
                           "machine": "2-core CPU, torch 2.13", "source": "docs/solver_layer.md §7"}}
    path = write_json(args.out or result_path("solver_overhead", args.device), payload)
    flows = dict(flows) if flows else None
    _print_table(table, args.steps, args)
    for mode in table:
        for key, value in summary[mode].items():
            print(f"  {mode} {key}: {_fmt(value)}")
    _print_table(em, args.em_steps, args)
    for mode in em:
        for key, value in em_summary[mode].items():
            print(f"  {mode} {key}: {_fmt(value)}")
    if flows:
        print(f"\ndopri5 stage-0 flows, batch {args.flows}, no_grad, ms per field evaluation")
        for key, value in {**flows.pop("ms_per_eval"), **flows}.items():
            if key not in ("batch", "input", "memory_format"):
                print(f"  {key}: {_fmt(value) if not isinstance(value, dict) or 'median' in value else value}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    from _common import run_main
    sys.exit(run_main(main))
