"""Momentum vs plain continuous-depth networks: NFE per step, wall time and test accuracy.

Compares ``ode_resnet20`` (a tied pre-activation field per stage, u' = f(u), dopri5) with
``hbode_resnet20`` (the same field in u'' + gamma u' = f(u), learnable gamma, dopri5) on the same
seeds (same data order and shared initial weights: paired differences). Per run it records the
forward and backward field evaluations per training step for every epoch (summed over the
three stage flows; backward counts the adjoint solve, so ``--adjoint`` is on by default as in
the anchor), the wall time, the final test accuracy and the learned damping per stage. The
converged recipe runs without torch.compile (adaptive solves have data-dependent loops).

Anchor (Xia et al., NeurIPS 2021, "Heavy Ball Neural Ordinary Differential Equations", CIFAR-10,
end of training): HBNODE vs NODE forward/backward NFE 26.0/26.1 vs 29.8/71.5, best test
accuracy 61.2% vs 54.6%, training time 70 vs 185 minutes. The verdict states, metric by metric,
whether the momentum flow moves in the anchor's direction here.

Configurations (``--config``): ``converged`` is Recipe.preset('converged') (10 epochs over the
55,000 training images, 5,000 validation images, the whole test set): the measurement, ~10 h
(plain) to ~14 h (momentum) per run on 2 CPU cores, scaled from the pilot's measured times.
``pilot`` is the converged recipe cut to fit 2 CPU cores (`PILOT`): 2 epochs over a fixed
5,120-image training subset (80 steps of batch 128), warm-up 0.4 epochs (the converged 20%),
1,000 validation and 2,000 test images; a direction-finding run, not a result to quote. Measured
on 2 cores (GroupNorm presets): 11-12 min (plain) and 16 min (momentum) per run.
``tiny``: a smoke test (seconds). Each configuration writes its own file.

Resumable: each finished run is recorded at once (one record file per run under
benchmarks/results/momentum_flows[_pilot|_tiny]_<device>/records/, the summary
momentum_flows[_pilot|_tiny]_<device>.json rebuilt from them); running the same command again
skips the (model, seed) pairs done under that recipe. Runs execute on local workers or as a
SLURM array (`odenets.campaign`, docs/campaigns.md).

    python benchmarks/momentum_flows.py --config tiny --seeds 0          # smoke test, seconds
    python benchmarks/momentum_flows.py --config pilot --seeds 0-2       # 11-16 min a run, 2 cores
    python benchmarks/momentum_flows.py --config converged --seeds 0-2   # the measurement, ~10-14 h a run
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _campaign import (add_campaign_arguments, drive, load_summary,  # noqa: E402
                       parse_seeds, recipe_key, report_header, write_report)
from _common import HelpFormatter, env_info, result_path  # noqa: E402
from _stats import mean_ci, paired, significant, verdict  # noqa: E402
from _train_common import (Recipe, default_dataset, markdown_table, parse_list, pyplot,  # noqa: E402
                           save_figure, set_threads, train_one)

from odenets import campaign  # noqa: E402
from odenets.momentum import MomentumFlow  # noqa: E402
from odenets.train.distributed import resolve_device  # noqa: E402

NAME = "momentum_flows"
DEFAULT_MODELS = "ode_resnet20,hbode_resnet20"
ANCHOR = dict(source="Xia et al. 2021 (HBNODE), CIFAR-10, end of training",
              nfe_forward=(29.8, 26.0), nfe_backward=(71.5, 26.1), best_acc=(0.546, 0.612),
              minutes=(185.0, 70.0))  # (plain, momentum)
CONFIGS = ("converged", "pilot", "tiny")
# the converged recipe cut to fit 2 CPU cores (see the module docstring)
PILOT = dict(epochs=2, subset=5120, test_subset=2000, val_split=1000, warmup_epochs=0.4,
             precise_bn=8)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS, help="plain model first, momentum second")
    p.add_argument("--seeds", default="0-2", help="seeds, e.g. 0-2 or 0,2,5")
    p.add_argument("--config", default="converged", choices=CONFIGS,
                   help="converged: Recipe.preset('converged'), ~10-14 h per run on 2 CPU cores; "
                   "pilot: the converged recipe with 2 epochs over 5,120 training images, 1,000 "
                   "validation and 2,000 test images, 11-16 min per run; tiny: a smoke test")
    p.add_argument("--adjoint", action=argparse.BooleanOptionalAction, default=True,
                   help="backpropagate by the adjoint ODE (as the anchor); --no-adjoint: direct")
    p.add_argument("--rtol", type=float, default=None, help="override the presets' rtol (1e-3)")
    p.add_argument("--atol", type=float, default=None, help="override the presets' atol (1e-4)")
    p.add_argument("--dataset", default=None, help="default fashion-mnist (cifar10 with --data-dir)")
    p.add_argument("--data-dir", default=None, help="directory holding the dataset files")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--subset", type=int, default=None, help="override the training images per epoch")
    p.add_argument("--test-subset", type=int, default=None, help="override the test images")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_campaign_arguments(p)
    return p.parse_args(argv)


def train_run(model: str, seed: int, recipe: Recipe, solver_options: dict) -> dict:
    """Train ``model`` once (`_train_common.train_one`, ``solver_options`` merged into the
    preset's); the run's record."""
    start = time.perf_counter()
    row, net = train_one(model, seed, recipe, overrides=dict(solver_options=solver_options),
                         keep_model=True)
    nfe = row.get("nfe_per_step", [])
    damping = [f.damping().tolist() for f in net.modules() if isinstance(f, MomentumFlow)]
    return dict(model=model, seed=seed, test_acc=row["test_acc"], val_acc=row["val_acc"],
                best_test_acc=max(r["test_acc"] for r in row["curve"]), epochs=row["epochs"],
                seconds=time.perf_counter() - start, train_seconds=row["train_seconds"],
                params=row["params"], damping=damping, amp_used=row.get("amp_used"),
                compile_used=row.get("compile_used"),
                nfe_forward=[n.get("forward", 0.0) for n in nfe],
                nfe_backward=[n.get("backward", 0.0) for n in nfe],
                curve=[dict(epoch=r["epoch"], train_loss=r["train_loss"], test_acc=r["test_acc"])
                       for r in row["curve"]])


def _final(run: dict, metric: str):
    """The run's value of ``metric`` at the end of training (None when not measured)."""
    if metric == "minutes":
        return run["seconds"] / 60
    value = run[metric]
    return (value[-1] if value else None) if isinstance(value, list) else value


def summarise(payload: dict, models: list[str], key: str) -> None:
    runs = [r for r in payload["runs"] if r["recipe_key"] == key]
    by = {m: [r for r in runs if r["model"] == m] for m in models}
    payload["models"] = {m: dict(
        test_acc=mean_ci(r["test_acc"] for r in rs), best_test_acc=mean_ci(r["best_test_acc"] for r in rs),
        **{k: mean_ci(v for v in (_final(r, k) for r in rs) if v is not None)
           for k in ("minutes", "nfe_forward", "nfe_backward")})
        for m, rs in by.items()}
    payload["comparisons"] = []
    if len(models) >= 2:
        a, b = models[:2]
        for metric in ("test_acc", "nfe_forward", "nfe_backward", "minutes"):
            per_seed = [{r["seed"]: _final(r, metric) for r in by[m] if _final(r, metric) is not None}
                        for m in (a, b)]
            cmp = paired(*per_seed, a, b)
            cmp["metric"] = metric
            cmp["verdict"] = verdict(cmp) if metric == "test_acc" else verdict(
                cmp, 1.0, "minutes" if metric == "minutes" else "NFE/step").replace("better", "higher")
            payload["comparisons"].append(cmp)
    payload["anchor_verdict"] = anchor_verdict(payload, by, models)


def _interval_note(cmp: dict | None) -> str:
    """What the paired difference's 95% interval says, for every anchor line."""
    if not cmp or not cmp.get("n"):
        return "no paired seeds"
    if cmp["n"] < 2:
        return "one seed, no interval"
    if cmp["std"] == 0:
        return f"identical on every seed (n={cmp['n']})"
    return f"95% CI {'excludes' if significant(cmp) else 'includes'} 0"


def anchor_verdict(payload: dict, by: dict, models: list[str]) -> list[str]:
    """One line per metric: momentum/plain here against the anchor's, on the seeds both models
    finished (paired: the same seeds on both sides of every ratio and difference). ``by``: each
    model's runs under the payload's recipe (`summarise`)."""
    cmps = {c["metric"]: c for c in payload.get("comparisons", [])}
    if len(models) < 2 or not cmps.get("test_acc", {}).get("n"):
        return ["no paired runs yet"]
    seeds = set(cmps["test_acc"]["seeds"])
    by = {m: [r for r in by[m] if r["seed"] in seeds] for m in models[:2]}
    lines = []
    for metric, label in (("nfe_forward", "forward NFE/step"), ("nfe_backward", "backward NFE/step"),
                          ("minutes", "wall time")):
        pa, pb = (mean_ci(v for v in (_final(r, metric) for r in by[m]) if v is not None)["mean"]
                  for m in models[:2])
        plain, mom = ANCHOR[metric]
        if not pa:
            lines.append(f"{label}: not measured (0 for the plain model; backward NFE needs --adjoint)")
            continue
        ratio, anchor = pb / pa, mom / plain
        same = (ratio < 1) == (anchor < 1)
        lines.append(f"{label}: momentum/plain = {ratio:.2f} here ({pb:.1f} vs {pa:.1f}; "
                     f"{_interval_note(cmps.get(metric))}), {anchor:.2f} in the anchor: "
                     f"{'same direction' if same else 'opposite direction'}")
    cmp = cmps["test_acc"]
    diff, anchor = cmp["mean_diff"], ANCHOR["best_acc"][1] - ANCHOR["best_acc"][0]
    sig = _interval_note(cmp)
    lines.append(f"test accuracy: momentum - plain = {diff * 100:+.2f} points here ({sig}), "
                 f"{anchor * 100:+.1f} in the anchor: "
                 f"{'same direction' if (diff > 0) == (anchor > 0) else 'opposite direction'}")
    return lines


def markdown(payload: dict) -> str:
    recipe, env = payload["recipe"], payload["env"]
    superseded = (f", superseded by `{payload['superseded_by'].replace('.json', '.md')}`"
                  if payload.get("superseded_by") else "")
    lines = [f"# Momentum (heavy-ball) vs plain continuous-depth networks ({payload['config']}, "
             f"recipe key {payload['recipe_key']}{superseded})", "",
             f"Device: {env['device']}, torch {env['torch']}; recipe `{payload['config']}` (key "
             f"{payload['recipe_key']}): {recipe['epochs']} epochs, batch {recipe['batch_size']}, "
             f"{recipe['dataset']}; solver options {payload['solver_options']}. NFE per training "
             "step summed over the three stage flows, last epoch.", ""]
    if payload.get("note"):
        lines += [f"**Note.** {payload['note']}", ""]
    rows = []
    for m, s in payload["models"].items():
        if not s["test_acc"]["n"]:
            continue
        pct = lambda d: f"{d['mean'] * 100:.2f} ± {d['std'] * 100:.2f}"  # noqa: E731
        num = lambda d: "—" if d["mean"] is None else f"{d['mean']:.1f} ± {d['std']:.1f}"  # noqa: E731
        gammas = [r["damping"] for r in payload["runs"] if r["model"] == m and r["damping"]]
        rows.append((m, s["test_acc"]["n"], pct(s["test_acc"]), pct(s["best_test_acc"]),
                     num(s["nfe_forward"]), num(s["nfe_backward"]), num(s["minutes"]),
                     "—" if not gammas else ", ".join(f"{sum(g[i][0] for g in gammas) / len(gammas):.2f}"
                                                     for i in range(len(gammas[0])))))
    lines += [markdown_table(("model", "n", "final test %", "best test %", "fwd NFE/step",
                              "bwd NFE/step", "min/run", "learned gamma per stage (mean)"), rows), ""]
    lines += [f"- {c['metric']}: {c['verdict']}" for c in payload["comparisons"]]
    paired_seeds = next((c["seeds"] for c in payload["comparisons"] if c["metric"] == "test_acc"), [])
    lines += ["", f"**Against the anchor** ({ANCHOR['source']}; here on the seeds both models "
              f"finished, {', '.join(map(str, paired_seeds)) or 'none'}):", ""]
    lines += [f"- {v}" for v in payload["anchor_verdict"]]
    runs = [r for r in payload["runs"] if r["recipe_key"] == payload["recipe_key"]]
    lines += ["", campaign.provenance_line(runs, lambda r: f"{r['model']} seed {r['seed']}")
              + f" Command: `{env['command']}`."]
    return "\n".join(lines)


def plot(payload: dict, stem: Path) -> list[str]:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for m in payload["models"]:
        runs = [r for r in payload["runs"] if r["model"] == m and r["recipe_key"] == payload["recipe_key"]]
        for ax, key in zip(axes, ("nfe_forward", "nfe_backward")):
            for i, r in enumerate(runs):
                ax.plot(range(1, len(r[key]) + 1), r[key], color="tab:red" if "hb" in m else "tab:blue",
                        alpha=0.6, label=m if i == 0 else None)
    from matplotlib.ticker import MaxNLocator
    fig.suptitle(f"{payload['config']} (recipe key {payload['recipe_key']}"
                 f"{', superseded' if payload.get('superseded_by') else ''}): field evaluations per "
                 "training step, summed over the 3 stage flows, mean over each epoch", fontsize=9)
    for ax, title in zip(axes, ("forward NFE per training step", "backward (adjoint) NFE per training step")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, stem, "nfe")


def run_one(model: str, seed: int, recipe: dict, solver_options: dict) -> dict:
    """One run of the campaign (`train_run` with ``recipe`` given as a dict)."""
    r = train_run(model, seed, Recipe(**recipe), solver_options)
    print(f"{model} seed {seed}: test {r['test_acc'] * 100:.2f}%, NFE/step fwd "
          f"{(r['nfe_forward'] or [0])[-1]:.1f} bwd {(r['nfe_backward'] or [0])[-1]:.1f}, "
          f"{r['seconds'] / 60:.1f} min", flush=True)
    return r


def make_recipe(config: str, dataset: str, **overrides) -> Recipe:
    """The recipe of ``config`` (`CONFIGS`), without torch.compile, then ``overrides`` (None:
    keep). ``pilot`` is ``converged`` with `PILOT`'s values."""
    if config not in CONFIGS:
        raise ValueError(f"unknown configuration {config!r}; available: {', '.join(CONFIGS)}")
    base = PILOT if config == "pilot" else {}
    # compile=False: torchdiffeq's adaptive loops (data-dependent step counts) defeat torch.compile
    return Recipe.preset("converged" if config == "pilot" else config, dataset=dataset,
                         **{**base, **{k: v for k, v in overrides.items() if v is not None},
                            "compile": False})


def main(argv=None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    models, seeds = parse_list(args.models), parse_seeds(args.seeds)
    device = resolve_device(args.device)
    dataset = default_dataset(args.dataset, args.data_dir)
    recipe = make_recipe(args.config, dataset, data_dir=args.data_dir, device=str(device),
                         epochs=args.epochs, subset=args.subset, test_subset=args.test_subset)
    options = dict(adjoint=args.adjoint, **{k: v for k, v in (("rtol", args.rtol),
                                                              ("atol", args.atol)) if v is not None})
    key = recipe_key({**recipe.to_dict(), "solver_options": options})
    path = result_path(NAME if args.config == "converged" else f"{NAME}_{args.config}", device,
                       args.out_dir)
    stored = load_summary(path, ("model", "seed"))
    header = dict(benchmark=NAME, config=args.config, recipe=recipe.to_dict(), recipe_key=key,
                  solver_options=options, env=env_info(device), anchor=ANCHOR)
    header, key = report_header(stored, header, path, args.report_only)
    payload = {**stored, **header}

    def summary(records: list, failures: list) -> None:
        payload.update(runs=records, failures=failures)
        summarise(payload, models, key)
        write_report(payload, path, plot, markdown)

    runs = [campaign.Run(f"{m}__s{s}", dict(model=m, seed=s),
                         dict(model=m, seed=s, recipe=recipe.to_dict(), solver_options=options))
            for s in seeds for m in models]
    drive(path=path, key=key, fn="momentum_flows:run_one", runs=runs, args=args, summary=summary,
          device=header["env"]["device"], report_only=args.report_only, max_runs=args.max_runs,
          label=NAME)
    print(markdown(payload))
    return 0


if __name__ == "__main__":
    from _common import run_main
    sys.exit(run_main(main))
