"""Which scheme gives the best accuracy per parameter, per FLOP and per second?

Trains the scheme variants of one depth -- resnet (forward Euler), lm_resnet (two-step LM),
poly_resnet (backward Euler, 2 fixed-point iterations), rk2_resnet (midpoint), ab2_resnet,
rev_resnet (reversible leapfrog), sd_resnet (stochastic depth as Euler-Maruyama), shake_resnet
-- all within 0.2% of the same parameter count, with one recipe and budget (`Recipe`), over
several seeds, then a depth sweep of ResNet vs LM-ResNet (20/32/44/56) to test the paper's claim
that LM reaches ResNet accuracy with fewer parameters.

Per scheme: parameters, field evaluations per forward, MACs per image, test accuracy mean ± std
over seeds, training time and images/s. Equal-compute view: schemes with more evaluations per
step (poly, rk2: 2 per step) also cost more MACs; each scheme's accuracy is set beside the
accuracy a plain ResNet of the same MACs reaches, interpolated (linearly in MACs) on the ResNet
depth sweep trained with the same recipe.

Runs are ordered seed-major (every scheme once, then the next seed) so machine load affects all
schemes alike, and a run cut short still holds whole seeds. The JSON and markdown are rewritten
after every run (``"partial": true`` until the end; plots only at the end), so a run killed by a
time limit keeps what it trained; ``--budget-s`` starts no seed predicted (from the previous
one) to end past the budget, and no run after it. A run that fails (e.g. diverges) is recorded
under ``failures`` and the others go on. Writes
benchmarks/results/compare_schemes_<config>_<device>.{json,md} and PNG plots (accuracy vs
parameters, vs MACs, vs training time).

    python benchmarks/compare_schemes.py --quick                  # CPU, Fashion-MNIST, ~10 min idle
    python benchmarks/compare_schemes.py --data-dir ~/data        # GPU, CIFAR-10, the full recipe
    python benchmarks/compare_schemes.py --data-dir ~/data --dataset cifar100
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HelpFormatter, env_info, result_path, write_json  # noqa: E402
from _train_common import (Recipe, configuration_label, default_dataset, markdown_table,  # noqa: E402
                           mean_std, model_meta, model_styles, parse_list, plain_axis, pm,
                           pyplot, run_description, save_results, set_threads, significant, train_one)

import odenets  # noqa: E402
from odenets.train.distributed import resolve_device  # noqa: E402

SCHEMES = ("resnet", "lm_resnet", "lmm3_resnet", "lmm4_resnet", "poly_resnet", "rk2_resnet",
           "ab2_resnet", "rev_resnet", "sd_resnet", "shake_resnet")
SWEEP = ("resnet", "lm_resnet")
SWEEP_DEPTHS = (20, 32, 44, 56)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=HelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="config", const="quick",
                      help="the CPU configuration (short runs on a subset)")
    size.add_argument("--tiny", action="store_const", dest="config", const="tiny",
                      help="a few-second smoke configuration (tests)")
    p.set_defaults(config="full")
    p.add_argument("--depth", type=int, default=20, help="depth of the scheme comparison")
    p.add_argument("--schemes", default=",".join(SCHEMES), help="preset families to compare")
    p.add_argument("--sweep-depths", default=",".join(map(str, SWEEP_DEPTHS)),
                   help="ResNet vs LM-ResNet depths ('none' to skip the sweep)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--dataset", default=None, help="default: fashion-mnist, cifar10 with --data-dir")
    p.add_argument("--data-dir", default=None, help="directory with the dataset files")
    for name, kind in (("epochs", int), ("subset", int), ("test-subset", int), ("batch-size", int),
                       ("lr", float), ("schedule", str), ("weight-decay", float),
                       ("precise-bn", int)):
        p.add_argument(f"--{name}", type=kind, default=None, help="override the configuration's recipe")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    p.add_argument("--amp", default=None, help="auto | bf16 | off (default: auto)")
    p.add_argument("--compile", action="store_true", help="torch.compile every model")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU; 1 is "
                   "faster than 2 on a machine shared with other jobs)")
    p.add_argument("--name", default=None, help="result file stem (default compare_schemes_<config>); the device "
                   "kind is appended: <name>_cpu.json, <name>_cuda.json")
    p.add_argument("--out-dir", default=None, help="directory for the results (default benchmarks/results)")
    p.add_argument("--budget-s", type=float, default=None, help="start no seed predicted to end after "
                   "this many seconds, and no run after them (default: no limit)")
    args = p.parse_args(argv)
    if args.budget_s is not None and args.budget_s <= 0:
        raise ValueError(f"--budget-s must be positive, got {args.budget_s}")
    return args


def make_recipe(args) -> Recipe:
    dataset = default_dataset(args.dataset, args.data_dir)
    return Recipe.preset(args.config, dataset, data_dir=args.data_dir, epochs=args.epochs,
                         subset=args.subset, test_subset=args.test_subset, batch_size=args.batch_size,
                         lr=args.lr, schedule=args.schedule, weight_decay=args.weight_decay,
                         precise_bn=args.precise_bn, device=args.device, amp=args.amp, compile=args.compile or None)


def plan(args) -> tuple[list[str], list[int], list[int]]:
    """(model names in run order, seeds, sweep depths); unknown names raise ValueError."""
    families = parse_list(args.schemes)
    depths = [] if args.sweep_depths.strip().lower() == "none" else sorted(set(parse_list(args.sweep_depths, int)))
    names = [f"{f}{args.depth}" for f in families]
    names += [f"{f}{d}" for d in depths for f in SWEEP if f"{f}{d}" not in names]
    known = odenets.list_models()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; scheme families are presets without the depth, "
                         f"e.g. {', '.join(SCHEMES)}; depths: 20, 32, 44, 56, 110, 164")
    return names, parse_list(args.seeds, int), depths


def interpolate(x: float, xs: list, ys: list) -> float | None:
    """Piecewise-linear y(x) through sorted points; None outside [min xs, max xs]."""
    pts = sorted(zip(xs, ys))
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[0][1] if len(pts) == 1 and x == pts[0][0] else None


def summarise(models: dict, args, depths: list[int]) -> dict:
    """Equal-compute view and the LM-vs-ResNet parameter claim, from the per-model results.

    The claim (LM-ResNet of depth d reaches the accuracy of a deeper ResNet) is only testable
    where ResNet accuracy rises with depth in the setting at hand; otherwise a shallow net
    'matching' a deep one says nothing about parameter efficiency, and the verdict says so."""
    depths = [d for d in depths if all(f"{f}{d}" in models for f in SWEEP)]  # partial runs: both trained
    sweep = {f: [models[f"{f}{d}"] for d in depths] for f in SWEEP if depths}
    out = {"equal_compute": {}, "lm_claim": [], "resnet_improves_with_depth": None}
    if sweep.get("resnet"):
        xs = [m["macs"] for m in sweep["resnet"]]
        ys = [m["test_acc"]["mean"] for m in sweep["resnet"]]
        out["resnet_improves_with_depth"] = len(ys) > 1 and ys[-1] > ys[0]
        for name, m in models.items():
            iso = interpolate(m["macs"], xs, ys)
            out["equal_compute"][name] = dict(
                macs=m["macs"], test_acc=m["test_acc"]["mean"], resnet_acc_at_same_macs=iso,
                delta=None if iso is None else m["test_acc"]["mean"] - iso)
    if sweep.get("resnet") and sweep.get("lm_resnet"):
        for r, same in zip(sweep["resnet"], sweep["lm_resnet"]):
            match = next((lm for lm in sweep["lm_resnet"]
                          if lm["test_acc"]["mean"] >= r["test_acc"]["mean"]), None)
            out["lm_claim"].append(dict(
                resnet=r["name"], resnet_acc=r["test_acc"]["mean"], resnet_params=r["params"],
                lm_same_depth_acc=same["test_acc"]["mean"],
                same_depth_delta=same["test_acc"]["mean"] - r["test_acc"]["mean"],
                same_depth_difference_significant=significant(r["test_acc"], same["test_acc"]),
                smallest_lm_reaching_it=None if match is None else match["name"],
                lm_params=None if match is None else match["params"],
                param_ratio=None if match is None else match["params"] / r["params"],
                fewer_params=bool(match is not None and match["params"] < r["params"])))
        supported = [c for c in out["lm_claim"] if c["fewer_params"]]
        first, last = sweep["resnet"][0], sweep["resnet"][-1]
        if not out["resnet_improves_with_depth"]:
            out["lm_claim_verdict"] = (
                f"Not testable in this setting: ResNet accuracy does not rise with depth here "
                f"({first['name']} {100 * first['test_acc']['mean']:.1f}% vs {last['name']} "
                f"{100 * last['test_acc']['mean']:.1f}%; deeper nets are further from convergence in a "
                f"short run), so a shallow LM net reaching a deep ResNet's accuracy says nothing "
                f"about parameter efficiency. Run the full configuration on a GPU.")
        else:
            out["lm_claim_verdict"] = (
                f"LM-ResNet reached a deeper ResNet's mean accuracy with fewer parameters at "
                f"{len(supported)} of {len(out['lm_claim'])} ResNet depths "
                f"({', '.join(c['resnet'] for c in supported) or 'none'}); differences smaller than "
                f"~2 standard errors are not significant with {args.n_seeds} seeds.")
    return out


def markdown(payload: dict) -> str:
    env, recipe, models = payload["env"], payload["recipe"], payload["models"]
    lines = [f"# Scheme comparison ({configuration_label(payload['config'], recipe)}, "
             f"{recipe['dataset']})", "",
             run_description(payload), f"Command: `{env['command']}`", ""]
    if payload.get("partial"):
        lines += [f"**Partial results** ({payload['status']}); runs per model: "
                  + ", ".join(f"{name} {m['test_acc']['n']}" for name, m in models.items()) + ".", ""]
    lines += [f"- {f['model']} seed {f['seed']} failed: `{f['error']}`" for f in payload.get("failures", [])]
    lines += [""] if payload.get("failures") else []
    if payload["config"] != "full":
        lines += ["Short CPU runs: accuracies are far from converged and differences between schemes "
                  "are mostly within seed noise. The full configuration is meant for a GPU.", ""]
    head = ["model", "params", "evals/forward", "MMACs/image", "test acc % (mean ± std)",
            "train s/run", "img/s", "ResNet acc % at same MACs", "Δ vs iso-MAC ResNet"]
    rows = []
    for name, m in models.items():
        eq = payload["summary"]["equal_compute"].get(name, {})
        iso, delta = eq.get("resnet_acc_at_same_macs"), eq.get("delta")
        rows.append([name, f"{m['params']:,}", f"{m['evaluations']:g}", f"{m['macs'] / 1e6:.1f}",
                     pm(m["test_acc"]), f"{m['train_seconds']['mean']:.1f}", f"{m['img_per_s']['mean']:.0f}",
                     "—" if iso is None else f"{100 * iso:.2f}",
                     "—" if delta is None else f"{100 * delta:+.2f}"])
    lines += [markdown_table(head, rows), ""]
    gaps = [f"{name} seed {r['seed']} (train {100 * r['train_acc']:.1f}%, test {100 * r['test_acc']:.1f}%)"
            for name, m in models.items() for r in m["runs"] if r["train_acc"] - r["test_acc"] > 0.2]
    if gaps:
        lines += ["Runs whose test accuracy is more than 20 points below their training accuracy "
                  "(a sign that eval-mode BatchNorm running statistics do not match the training-mode "
                  f"forward): {'; '.join(gaps)}.", ""]
    if payload["summary"].get("resnet_improves_with_depth") is False:
        lines += ["ResNet accuracy does not rise with depth in this setting, so the iso-MAC ResNet "
                  "reference (interpolated on the depth sweep) penalises nothing but depth; read the "
                  "Δ column with that in mind.", ""]
    claim = payload["summary"].get("lm_claim")
    if claim:
        lines += ["## LM-ResNet vs ResNet: accuracy at fewer parameters?", "",
                  markdown_table(["ResNet", "its acc %", "params", "LM same depth acc %", "LM − ResNet",
                                  "significant (2 SE)", "smallest LM reaching it", "LM params", "ratio"],
                                 [[c["resnet"], f"{100 * c['resnet_acc']:.2f}", f"{c['resnet_params']:,}",
                                   f"{100 * c['lm_same_depth_acc']:.2f}", f"{100 * c['same_depth_delta']:+.2f}",
                                   "yes" if c["same_depth_difference_significant"] else "no",
                                   c["smallest_lm_reaching_it"] or "none",
                                   "—" if c["lm_params"] is None else f"{c['lm_params']:,}",
                                   "—" if c["param_ratio"] is None else f"{c['param_ratio']:.2f}"]
                                  for c in claim]), "", payload["summary"]["lm_claim_verdict"], ""]
    return "\n".join(lines)


def plot(payload: dict, stem: Path) -> list[str]:
    plt = pyplot()
    models, depths = payload["models"], payload["sweep_depths"]
    files = []
    variants = [n for n in models if n.endswith(str(payload["depth"]))]
    sweeps = [f for f in SWEEP if sum(f"{f}{d}" in models for d in depths) > 1]
    styles = model_styles([f"{f} depth sweep" for f in sweeps] + variants)
    for key, label, fname, scale in (("params", "parameters (millions)", "acc_vs_params", 1e-6),
                                     ("macs", "MMACs per image", "acc_vs_macs", 1e-6),
                                     ("train_seconds", "training seconds per run", "acc_vs_time", 1)):
        fig, ax = plt.subplots(figsize=(8, 4.6))
        x_of = (lambda m: m["train_seconds"]["mean"]) if key == "train_seconds" else (lambda m: m[key] * scale)
        for fam in sweeps:
            pts = [models[f"{fam}{d}"] for d in depths if f"{fam}{d}" in models]
            color, marker = styles[f"{fam} depth sweep"]
            ax.errorbar([x_of(m) for m in pts], [100 * m["test_acc"]["mean"] for m in pts],
                        yerr=[100 * m["test_acc"]["std"] for m in pts], marker=marker, color=color,
                        capsize=3, label=f"{fam} depth sweep")
        for name in variants:
            m = models[name]  # the scheme variants at the comparison depth, one legend entry each
            color, marker = styles[name]
            ax.errorbar([x_of(m)], [100 * m["test_acc"]["mean"]], yerr=[100 * m["test_acc"]["std"]],
                        fmt=marker, color=color, ms=7, mec="k", mew=0.5, capsize=3, alpha=0.9,
                        label=name)
        plain_axis(ax.xaxis)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy % (mean ± std over seeds)")
        ax.set_title(f"{payload['recipe']['dataset']}, {configuration_label(payload['config'], payload['recipe'])} "
                     f"({payload['env']['device_type']})", fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        path = stem.with_name(f"{stem.name}_{fname}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path.name)
    return files


def aggregate(names: list[str], meta: dict, runs: dict) -> dict:
    """Per-model statistics over the runs done so far (models without a run are left out)."""
    models = {}
    for n in names:
        if runs[n]:
            models[n] = dict(name=n, **meta[n], test_acc=mean_std(r["test_acc"] for r in runs[n]),
                             train_seconds=mean_std(r["train_seconds"] for r in runs[n]),
                             wall_seconds=mean_std(r["wall_seconds"] for r in runs[n]),
                             img_per_s=mean_std(r["img_per_s"] for r in runs[n]), runs=runs[n])
    return models


def main(argv=None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    recipe = make_recipe(args)
    names, seeds, depths = plan(args)
    args.n_seeds = len(seeds)
    device = resolve_device(recipe.device)
    start = time.perf_counter()
    meta = {n: model_meta(n, recipe.dataset) for n in names}
    runs, failures = {n: [] for n in names}, []
    stem_name = args.name or f"compare_schemes_{args.config}"
    path = result_path(stem_name, device, args.out_dir)

    def payload(status: str) -> dict:
        models = aggregate(names, meta, runs)
        return dict(benchmark="compare_schemes", config=args.config, env=env_info(device, seeds[0]),
                    seeds=seeds, depth=args.depth, sweep_depths=depths, recipe=recipe.to_dict(),
                    wall_seconds=time.perf_counter() - start, models=models,
                    summary=summarise(models, args, depths), partial=status != "finished", status=status,
                    failures=failures, plots=[],
                    note=("CPU results from short runs; no GPU was available when they were made." if
                          device.type == "cpu" else "GPU run."))

    def save_partial(status: str) -> None:
        out = payload(status)
        write_json(path, out)
        path.with_suffix(".md").write_text(markdown(out) + "\n")

    status, seed_seconds = "finished", None
    for seed in seeds:  # seed-major: load changes hit every model alike
        elapsed = time.perf_counter() - start
        if args.budget_s is not None and seed_seconds is not None and elapsed + seed_seconds > args.budget_s:
            status = (f"stopped before seed {seed}: the last seed took {seed_seconds:.0f} s and "
                      f"{elapsed:.0f} of the {args.budget_s:.0f} s budget were used")
            break
        seed_start = time.perf_counter()
        for n in names:
            if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
                status = f"stopped during seed {seed}: the {args.budget_s:.0f} s budget was used"
                break
            try:
                row, _ = train_one(n, seed, recipe)
            except Exception as e:  # a diverged or broken run must not cost the others
                traceback.print_exc()
                failures.append(dict(model=n, seed=seed, error=f"{type(e).__name__}: {str(e)[:300]}"))
                continue
            runs[n].append(row)
            print(f"[{time.perf_counter() - start:7.1f}s] {n:16s} seed {seed}: test acc "
                  f"{row['test_acc']:.4f}, {row['train_seconds']:.1f} s, {row['img_per_s']:.0f} img/s",
                  flush=True)
            save_partial(f"running seed {seed}")
        if status != "finished":
            break
        seed_seconds = time.perf_counter() - seed_start
    if status != "finished":
        print(f"compare_schemes: {status}", flush=True)
    out = payload(status)
    save_results(out, stem_name, device, args.out_dir, plot, markdown)
    return out


def exit_status(payload: dict) -> int:
    """1 when a run failed (the others were recorded), else 0."""
    return 1 if payload["failures"] else 0


if __name__ == "__main__":
    from _common import run_main
    sys.exit(run_main(lambda argv: exit_status(main(argv))))
