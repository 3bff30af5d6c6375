"""Is it an ODE? Tied networks trained on one grid, evaluated on other grids and schemes.

Trains tied networks (one shared field per flow, every flow an ODE on t in [0, 1]) on K
forward-Euler steps per flow, for a few K (default 1, 4, 16), then re-solves each trained
network (`odenets.resolve.with_solver`, as ``odenets eval RUN --solver S --steps N``) with
euler, midpoint and rk4 on 1..64 steps and measures test accuracy. If the weights define an
ODE, accuracy stays flat as the grid is refined or the scheme changes (the solutions converge
to the flow map); if they fit the training grid's discretisation, it collapses. Ott et al.
(ICLR 2021, "ResNet After All? Neural ODEs and Their Numerical Solution") found the collapse
for too coarse training grids and solver-robustness above a step-size threshold; Queiruga et
al. (2020, ContinuousNet) likewise.

The network: ``--model`` (default ``preact_resnet20``: no post-activation, so each flow is a
plain ODE u' = f(u)) with ``tied=True`` and depths (K, K + 1, K + 1), so every flow (after
the stage transitions) has K steps. BatchNorm running statistics are the trained ones at
every evaluation (one set per field, shared by all steps and stages of the step).

Resumable: each finished training (K, seed) is recorded at once (training and cross-solver
accuracies; one record file per run under benchmarks/results/cross_solver_<config>_<device>/
records/, run by the campaign engine `odenets.campaign` on local workers or SLURM), and the
summary JSON, markdown and plot are rebuilt from the records; re-running the same command skips
the finished ones. Writes benchmarks/results/cross_solver_<config>_<device>.{json,md,png}.

    python benchmarks/cross_solver.py --config tiny --dataset synthetic      # seconds
    python benchmarks/cross_solver.py --config converged                     # hours on 2 CPUs
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _campaign import (add_campaign_arguments, check_setup, drive,  # noqa: E402
                       load_summary, recipe_key, write_report)
from _common import HelpFormatter, env_info, result_path  # noqa: E402
from _stats import mean_ci  # noqa: E402
from _train_common import (Recipe, default_dataset, markdown_table, parse_list, pyplot,  # noqa: E402
                           run_description, set_threads, train_one)

import solvers  # noqa: E402
from odenets import campaign  # noqa: E402
from odenets import data as datasets  # noqa: E402
from odenets.resolve import with_solver  # noqa: E402
from odenets.train.distributed import resolve_device  # noqa: E402

DEFAULTS = {  # config: (training steps K, evaluation steps, evaluation test subset)
    "tiny": ("1,2", "1,2,4", 64),
    "quick": ("1,4,16", "1,2,4,8,16,32,64", 1000),
    "converged": ("1,4,16", "1,2,4,8,16,32,64", 2000),
}
ODE_LIKE, COLLAPSE = 2.0, 10.0  # points lost at the finest rk4 grid vs the training grid


@torch.no_grad()
def accuracy(model, test, batch: int = 500) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``test`` (normalised as in training)."""
    device = next(model.parameters()).device
    shape = (1, test.channels, 1, 1)
    mean = torch.tensor(test.mean, device=device).view(shape)
    std = torch.tensor(test.std, device=device).view(shape)
    correct = 0
    for start in range(0, len(test), batch):
        x = (test.images[start:start + batch].to(device).float() / 255 - mean) / std
        correct += (model(x).argmax(1) == test.labels[start:start + batch].to(device)).sum().item()
    return correct / len(test)


def cross_evaluate(model, test, solver_names, steps_list) -> dict:
    """``{solver: {steps: accuracy}}`` of ``model`` re-solved by each scheme on each grid."""
    out = {}
    for solver in solver_names:
        out[solver] = {}
        for steps in steps_list:
            resolved, _ = with_solver(model, solver, steps)
            out[solver][str(steps)] = accuracy(resolved.eval(), test)
    return out


def summarise(runs: list, solver_names, steps_list, chance: float) -> dict:
    """Per training K: accuracy mean/CI over seeds per (solver, steps), and the verdict's
    numbers: accuracy on the training grid and on the finest grid of the last (highest-order)
    scheme, their difference in points, and the worst accuracy over all evaluations. A network
    within 1.5x of ``chance`` accuracy on its own grid learned nothing to test: 'untrained'."""
    by_k = {}
    for r in runs:
        by_k.setdefault(r["train_steps"], []).append(r)
    out = {}
    for k, rows in sorted(by_k.items()):
        acc = {s: {n: mean_ci(r["eval"][s][n] for r in rows) for n in rows[0]["eval"][s]}
               for s in rows[0]["eval"]}
        trained = mean_ci(r["trained_acc"] for r in rows)  # on the evaluation images
        fine_solver, fine_steps = solver_names[-1], str(max(steps_list))
        fine = acc.get(fine_solver, {}).get(fine_steps)
        drop = None if fine is None else 100 * (trained["mean"] - fine["mean"])
        worst = min((v["mean"], s, n) for s, per in acc.items() for n, v in per.items())
        out[str(k)] = dict(seeds=[r["seed"] for r in rows], trained=trained, accuracy=acc,
                           finest=dict(solver=fine_solver, steps=fine_steps,
                                       acc=None if fine is None else fine["mean"]),
                           drop_points=drop, worst=dict(acc=worst[0], solver=worst[1], steps=worst[2]),
                           kind=_kind(drop, trained["mean"], chance))
    return out


def _kind(drop, trained: float, chance: float) -> str | None:
    if drop is None:
        return None
    if trained < 1.5 * chance:
        return "untrained"
    return "ODE-like" if drop <= ODE_LIKE else "collapses" if drop >= COLLAPSE else "partly"


def _ks(ks) -> str:
    """'K = 1', 'K = 1, 2' (no Python list in verdict text)."""
    return "K = " + ", ".join(map(str, ks))


def _seeds_text(n: int) -> str:
    """'n=1, no interval' for one seed, else 'mean of n=3 seeds'."""
    return "n=1, no interval" if n == 1 else f"mean of n={n} seeds"


def verdict(summary: dict, train_solver: str) -> str:
    if not summary:
        return "No finished training yet."
    parts = [f"K={k} ({_seeds_text(s['trained']['n'])}): {s['trained']['mean'] * 100:.1f}% on its "
             f"{train_solver} grid -> "
             f"{(s['finest']['acc'] or 0) * 100:.1f}% with {s['finest']['solver']} on "
             f"{s['finest']['steps']} steps ({-s['drop_points']:+.1f} points, {s['kind']})"
             for k, s in summary.items() if s["drop_points"] is not None]
    groups = {kind: [k for k, s in summary.items() if s["kind"] == kind]
              for kind in ("collapses", "partly", "ODE-like", "untrained")}
    judged = [k for kind in ("collapses", "partly", "ODE-like") for k in groups[kind]]
    if not judged:
        return ("Verdict: none; every network is near chance accuracy on its own grid (a smoke "
                "run), so solver-independence cannot be judged.")
    if groups["collapses"] and groups["ODE-like"] and max(map(int, groups["collapses"])) < min(
            map(int, groups["ODE-like"])):
        tail = (f" Coarse training grids ({_ks(groups['collapses'])}) collapse when the solver "
                f"changes, fine ones ({_ks(groups['ODE-like'])}) behave as ODEs, consistent with "
                f"Ott et al. (ICLR 2021).")
    elif len(groups["ODE-like"]) == len(judged):
        tail = " Every trained network behaves as an ODE at every K tried."
    elif len(groups["collapses"]) == len(judged):
        tail = " Every trained network collapses when the solver changes: none is an ODE."
    else:
        tail = " " + "; ".join(f"{kind}: {_ks(ks)}" for kind, ks in groups.items()
                               if ks and kind != "untrained") + "."
    if groups["untrained"]:
        tail += f" ({_ks(groups['untrained'])}: near chance, not judged.)"
    return "Verdict: " + "; ".join(parts) + "." + tail + (
        f" (ODE-like: at most {ODE_LIKE:g} points lost; collapse: {COLLAPSE:g} or more.)")


def markdown(payload: dict) -> str:
    steps_list = payload["eval_steps"]
    lines = [f"# Is it an ODE? Cross-solver evaluation of tied networks ({payload['config']}, "
             f"{payload['recipe']['dataset']}, {payload['model']} tied)", "",
             run_description(payload) + f" Evaluation on {payload['eval_images']} test images. "
             f"Command: `{payload['env']['command']}`", "",
             "Networks trained with K forward-Euler steps per flow (tied: one field per flow, "
             "t in [0, 1], dt = 1/K), then re-solved with each scheme on each number of steps "
             "(`odenets eval RUN --solver S --steps N`). Accuracy in %, mean over seeds "
             "(± half-width of the 95% t-interval when n ≥ 2).", ""]
    if payload.get("partial"):
        lines += [f"**Partial**: {payload['status']}.", ""]
    head = ["train K", "seeds", "trained acc %", "scheme"] + [f"{n} steps" for n in steps_list]
    rows = []
    for k, s in payload["summary"].items():
        for solver, per in s["accuracy"].items():
            rows.append([k, len(s["seeds"]), _ci(s["trained"]), solver]
                        + [_ci(per[str(n)]) for n in steps_list])
    lines += [markdown_table(head, rows), "", verdict(payload["summary"], payload["train_solver"]), "",
              campaign.provenance_line(payload["runs"],
                                       lambda r: f"K={r['train_steps']} seed {r['seed']}"), ""]
    return "\n".join(lines)


def _ci(stats: dict) -> str:
    lo, hi = stats["ci95"]
    half = f" ± {(hi - lo) * 50:.1f}" if lo is not None else ""
    return f"{stats['mean'] * 100:.1f}{half}"


def plot(payload: dict, stem: Path) -> list[str]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    styles = {"euler": "-", "midpoint": "--", "rk4": ":", "heun": "-."}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (k, s) in enumerate(payload["summary"].items()):
        color = colors[i % len(colors)]
        for solver, per in s["accuracy"].items():
            xs = [int(n) for n in per]
            ys = [100 * per[n]["mean"] for n in per]
            err = [0 if per[n]["ci95"][0] is None else 50 * (per[n]["ci95"][1] - per[n]["ci95"][0])
                   for n in per]
            ax.errorbar(xs, ys, yerr=err, color=color, linestyle=styles.get(solver, "-"),
                        marker="o", markersize=3, capsize=2, label=f"trained K={k}, eval {solver}")
        ax.axvline(int(k), color=color, alpha=0.25, linewidth=4)
    ax.set_xscale("log", base=2)
    ax.set_xticks(payload["eval_steps"], [str(n) for n in payload["eval_steps"]])
    ax.set_xlabel("evaluation steps per flow (shaded: the training grid K)")
    ax.set_ylabel("test accuracy %")
    ax.set_title(f"Is it an ODE? {payload['model']} tied, {payload['recipe']['dataset']}, "
                 f"{payload['config']}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = stem.with_name(f"{stem.name}_acc_vs_steps.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path.name]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--config", default="quick", choices=tuple(DEFAULTS),
                   help="training recipe (Recipe.preset) and default grids")
    p.add_argument("--model", default="preact_resnet20", help="preset made tied, depths (K, K+1, K+1)")
    p.add_argument("--train-steps", default=None, help="K values, comma-separated (default by config)")
    p.add_argument("--train-solver", default="euler", help="scheme used in training")
    p.add_argument("--eval-solvers", default="euler,midpoint,rk4", help="fixed-grid schemes to "
                   "re-solve with (the last one gives the verdict's finest grid)")
    p.add_argument("--eval-steps", default=None, help="evaluation steps per flow (default by config)")
    p.add_argument("--eval-subset", type=int, default=None, help="test images of the cross-solver "
                   "evaluation (default by config; 0: all)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--dataset", default=None, help="default: fashion-mnist, cifar10 with --data-dir")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--subset", type=int, default=None)
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--amp", default=None, choices=("auto", "off", "bf16"),
                   help="mixed precision of every run (default: the recipe's, auto: a start-up probe "
                   "per run times bf16 against fp32)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    add_campaign_arguments(p, report=False)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    ks_default, steps_default, subset_default = DEFAULTS[args.config]
    ks = parse_list(args.train_steps or ks_default, int)
    steps_list = parse_list(args.eval_steps or steps_default, int)
    seeds = parse_list(args.seeds, int)
    solver_names = parse_list(args.eval_solvers)
    for name in [args.train_solver, *solver_names]:
        if name not in solvers.available():
            raise ValueError(f"unknown fixed-grid scheme {name!r}; available: "
                             f"{', '.join(solvers.available())}")
    if any(v < 1 for v in ks + steps_list):
        raise ValueError(f"--train-steps and --eval-steps must be >= 1, got {ks}, {steps_list}")
    dataset = default_dataset(args.dataset, args.data_dir)
    recipe = Recipe.preset(args.config, dataset, data_dir=args.data_dir, epochs=args.epochs,
                           subset=args.subset, test_subset=args.test_subset, device=args.device, amp=args.amp)
    device = resolve_device(recipe.device)
    eval_subset = subset_default if args.eval_subset is None else (args.eval_subset or None)
    test = datasets.load_dataset(dataset, "test", args.data_dir, eval_subset)
    path = result_path(f"cross_solver_{args.config}", device, args.out_dir)
    setup = dict(model=args.model, train_solver=args.train_solver, recipe=recipe.to_dict(),
                 eval_images=len(test), eval_solvers=solver_names, eval_steps=steps_list)
    key = recipe_key({**recipe.to_dict(), **{k: v for k, v in setup.items() if k != "recipe"}})
    check_setup(load_summary(path, ("train_steps", "seed"), key), setup, path)
    env, last = env_info(device, seeds[0]), {}

    def summary(records: list, failures: list) -> None:
        runs = [r for r in records if r["recipe_key"] == key]
        s = summarise(runs, solver_names, steps_list, 1 / test.num_classes)
        todo = len(ks) * len(seeds) - sum(r["train_steps"] in ks and r["seed"] in seeds for r in runs)
        out = dict(benchmark="cross_solver", config=args.config, env=env, seeds=seeds,
                   train_steps=ks, **setup, runs=runs, failures=failures, summary=s,
                   verdict=verdict(s, args.train_solver), partial=todo > 0,
                   status="finished" if todo <= 0 else f"running: {todo} run(s) to go",
                   wall_seconds=sum(r["wall_seconds"] for r in runs))
        write_report(out, path, plot, markdown)
        last["out"] = out

    runs = [campaign.Run(f"K{k}__s{seed}", dict(train_steps=k, seed=seed),
                         dict(k=k, seed=seed, model=args.model, train_solver=args.train_solver,
                              recipe=recipe.to_dict(), solver_names=solver_names,
                              steps_list=steps_list, eval_subset=eval_subset))
            for k in ks for seed in seeds]
    drive(path=path, key=key, fn="cross_solver:run_one", runs=runs, args=args, summary=summary,
          identity=("train_steps", "seed"), device=env["device"], legacy_key=key,
          label="cross_solver")
    out = last["out"]
    print(markdown(out))
    print(f"wrote {path}, {path.with_suffix('.md').name} and {', '.join(out['plots']) or 'no plots'}")
    return out


def run_one(k: int, seed: int, model: str, train_solver: str, recipe: dict, solver_names: list,
            steps_list: list, eval_subset: int | None) -> dict:
    """Train ``model`` tied on K = ``k`` steps per flow, then re-solve it on every grid."""
    recipe = Recipe(**recipe)
    test = datasets.load_dataset(recipe.dataset, "test", recipe.data_dir, eval_subset)
    t0 = time.perf_counter()
    overrides = dict(tied=True, depths=(k, k + 1, k + 1), solver=train_solver)
    row, net = train_one(model, seed, recipe, overrides, keep_model=True)
    row.update(train_steps=k, trained_acc=accuracy(net, test),
               eval=cross_evaluate(net, test, solver_names, steps_list),
               eval_seconds=time.perf_counter() - t0 - row["wall_seconds"])
    row["wall_seconds"] = time.perf_counter() - t0
    row.pop("coefficients", None)
    print(f"K={k} seed {seed}: trained acc {row['trained_acc']:.4f}; " + "; ".join(
        f"{s} " + " ".join(f"{v:.3f}" for v in per.values()) for s, per in row["eval"].items()),
        flush=True)
    return row


if __name__ == "__main__":
    from _common import run_main
    sys.exit(run_main(main))
