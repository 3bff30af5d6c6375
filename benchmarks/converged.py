"""Do schemes differ once trained to convergence? Paired seeds, 95% confidence intervals.

Trains every model with the converged recipe (`odenets train --recipe converged`: resnet20 reaches
>= 93% on the full Fashion-MNIST in ~10 minutes on 2 CPU cores) on the same seeds. Seed s gives
every model the same data order, augmentation, validation split and initial weights of the parts
they share by name (`odenets.models.network.Network._init_weights`), so per-seed differences are
paired: each comparison reports the mean paired difference with its 95% t-interval and a verdict.
The accuracy reported is the final epoch's on the test set; the best epoch is chosen on the
5,000 validation images (never on test) and shown beside it.

A campaign accumulates: each finished run is written at once as its own record file
(benchmarks/results/converged_<device>/records/<model>__s<seed>__<recipe key>.json, with the git
commit it ran from, and its final weights beside it as a .pt state_dict), and the summary
converged_<device>.json, its markdown and plots are rebuilt from the records; running the same
command again skips the (model, seed) pairs already recorded under the same recipe. Runs go
seed-major (every model once, then the next seed), so a campaign cut short holds whole pairs.
Each run trains in converged_<device>/partial/<model>__s<seed>__<key>/ with a checkpoint every
epoch: killed at any moment, it continues from its last completed epoch when the same command
runs again (record: ``resumed_from_epoch``, ``pieces``), with the result of an uninterrupted run.
Runs execute on local workers or as a SLURM array (`odenets.campaign`, docs/campaigns.md).

``--config long`` is the converged recipe over 60 epochs (`odenets.train.recipes`), written to
its own files (converged_long_<device>.json) and never mixed into the 10-epoch tables.

    python benchmarks/converged.py                                    # resnet20 vs lm_resnet20, seeds 0-4
    python benchmarks/converged.py --models resnet20,lm_resnet20,lmm3_resnet20 --seeds 0-4
    python benchmarks/converged.py --models resnet32,lm_resnet32 --seeds 0-2
    nohup python benchmarks/converged.py > converged.log 2>&1 &       # a long campaign
    python benchmarks/converged.py --workers 4 --gpus 0,1,2,3         # 4 GPUs, one run each
    python benchmarks/converged.py --executor slurm --slurm-time 60   # a SLURM job array
    python benchmarks/converged.py --config long --models resnet20,lm_resnet20 --seeds 0 --amp off
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _campaign import (add_campaign_arguments, drive, load_summary,  # noqa: E402
                       parse_seeds, recipe_key, report_header, write_report)
import family  # noqa: E402
from _common import HelpFormatter, env_info, result_path  # noqa: E402
from _stats import mean_ci, paired, significant, verdict  # noqa: E402
from _train_common import (Recipe, default_dataset, markdown_table, model_meta,  # noqa: E402
                           parse_list, pyplot, save_figure, set_threads, train_one)

from odenets import campaign  # noqa: E402
from odenets.train.distributed import resolve_device  # noqa: E402

NAME = "converged"
DEFAULT_MODELS = "resnet20,lm_resnet20"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--models", default=None, help="comma-separated presets (default "
                   f"{DEFAULT_MODELS}; --report-only: the stored ones); each is compared with its "
                   "baseline (`pair_baseline`) when that is in the list, else with the first model")
    p.add_argument("--seeds", default="0-4", help="seeds, e.g. 0-4 or 0,2,5")
    p.add_argument("--config", default="converged", choices=("converged", "long", "tiny"),
                   help="converged: the recipe of the committed results (10 epochs); long: the "
                   "same recipe over 60 epochs (issue 22 item 5; its own files, converged_long_"
                   "<device>.json, never in the 10-epoch tables); tiny: a smoke test")
    p.add_argument("--dataset", default=None, help="default fashion-mnist (cifar10 with --data-dir)")
    p.add_argument("--data-dir", default=None, help="directory holding the dataset files")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", default=None, choices=("auto", "off", "bf16"),
                   help="precision of every run. Default: the recipe's 'auto', resolved ONCE for "
                   "the whole campaign by timing the first model's training step (fp32 vs bf16) "
                   "on this machine; the precision is part of the recipe key, and a bf16 campaign "
                   "is stored apart (converged_bf16_<device>.json): runs of two precisions are "
                   "never paired. --report-only: auto means the fp32 file")
    add_campaign_arguments(p)
    return p.parse_args(argv)


# ---- the summary -------------------------------------------------------------------------------
def pair_baseline(model: str, models: list[str]) -> str | None:
    """The model ``model`` is compared with: the nearest listed model obtained by dropping its
    leading scheme prefixes (lm_preact_resnet20 -> preact_resnet20 -> resnet20), else the first
    listed model. A plain resnetD, and the first model, are baselines themselves (None)."""
    if model == models[0]:
        return None
    parts = model.split("_")
    for i in range(1, len(parts)):
        candidate = "_".join(parts[i:])
        if candidate in models:
            return candidate
    return None if model.startswith("resnet") and model[6:].isdigit() else models[0]


def summarise(payload: dict, models: list[str], key: str) -> None:
    """Per-model statistics and paired comparisons of the runs made under recipe ``key``."""
    runs = [r for r in payload["runs"] if r["recipe_key"] == key]
    acc = {m: {r["seed"]: r["test_acc"] for r in runs if r["model"] == m} for m in models}
    payload["models"] = {m: dict(test_acc=mean_ci(acc[m].values()),
                                 val_acc=mean_ci(r["val_acc"] for r in runs
                                                 if r["model"] == m and r.get("val_acc") is not None),
                                 seconds=mean_ci(r["seconds"] for r in runs  # older records: none
                                                 if r["model"] == m and r.get("seconds") is not None))
                         for m in models}
    payload["comparisons"] = []
    for m in models:
        base = pair_baseline(m, models)
        if base is not None:
            cmp = paired(acc[base], acc[m], base, m)
            cmp["verdict"] = verdict(cmp)
            payload["comparisons"].append(cmp)


# ---- markdown and plots --------------------------------------------------------------------------
def _pct(v, digits=2):
    return "—" if v is None else f"{v * 100:.{digits}f}"


def _minutes(seconds):
    return "—" if seconds is None else f"{seconds / 60:.1f}"


def markdown(payload: dict) -> str:
    recipe, env = payload["recipe"], payload["env"]
    lines = [f"# Converged, paired-seed comparison ({payload['config']})", "",
             f"Device: {env['device']} ({env['device_type']}), torch {env['torch']}, "
             f"{env.get('torch_threads')} threads; recipe `{payload['recipe_name']}` "
             f"(key {payload['recipe_key']}): {recipe['epochs']} epochs, batch {recipe['batch_size']}, "
             f"lr {recipe['lr']} ({recipe['schedule']}, warm-up {recipe['warmup_epochs']} epochs), "
             f"weight decay {recipe['weight_decay']}, label smoothing {recipe['label_smoothing']}, "
             f"compile {recipe['compile']}, amp {recipe['amp']}; {recipe['dataset']} with "
             f"{recipe['val_split']} training images held out for validation. Test accuracy is the "
             "final epoch's (nothing is chosen on the test set).", ""]
    rows = []
    for m, s in payload["models"].items():
        t = s["test_acc"]
        if not t["n"]:
            continue
        lo, hi = t["ci95"]
        runs = [r for r in payload["runs"] if r["model"] == m and r["recipe_key"] == payload["recipe_key"]]
        per_seed = ", ".join(f"{r['seed']}: {_pct(r['test_acc'])}" for r in sorted(runs, key=lambda r: r["seed"]))
        rows.append((m, f"{payload['meta'].get(m, {}).get('params', 0):,}", t["n"],
                     f"{_pct(t['mean'])} ± {_pct(t['std'])}",
                     f"[{_pct(lo)}, {_pct(hi)}]" if lo is not None else "—",
                     _pct(s["val_acc"]["mean"]), _minutes(s["seconds"]["mean"]), per_seed))
    lines += [markdown_table(("model", "params", "n", "test acc % (mean ± std)", "95% CI",
                              "val acc %", "min/run", "per seed (seed: test %)"), rows), ""]
    if payload["comparisons"]:
        lines += ["**Paired differences** (same seeds; b − a in percentage points):", ""]
        lines += [markdown_table(("a", "b", "n", "mean diff", "95% CI", "per seed"),
                                 [(c["a"], c["b"], c["n"],
                                   "—" if c["mean_diff"] is None else f"{c['mean_diff'] * 100:+.2f}",
                                   "—" if c["ci95"][0] is None else
                                   f"[{c['ci95'][0] * 100:+.2f}, {c['ci95'][1] * 100:+.2f}]",
                                   ", ".join(f"{d * 100:+.2f}" for d in c["diffs"]))
                                  for c in payload["comparisons"]]), ""]
        lines += [f"- {c['verdict']}" for c in payload["comparisons"]] + [""]
    if payload.get("failures"):
        lines += ["Failed runs: " + "; ".join(f"{f['model']} seed {f['seed']}: {f['error']}"
                                               for f in payload["failures"]), ""]
    runs = [r for r in payload["runs"] if r["recipe_key"] == payload["recipe_key"]]
    lines.append(campaign.provenance_line(runs, lambda r: f"{r['model']} seed {r['seed']}")
                 + f" Command: `{env['command']}`.")
    return "\n".join(lines)


def plot(payload: dict, stem: Path) -> list[str]:
    plt = pyplot()
    models = [m for m, s in payload["models"].items() if s["test_acc"]["n"]]
    if not models:
        return []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, m in enumerate(models):
        t = payload["models"][m]["test_acc"]
        ax1.scatter([i] * t["n"], [v * 100 for v in t["values"]], color=colors[i % len(colors)],
                    alpha=0.45, s=18, zorder=2)
        lo, hi = t["ci95"]
        err = [[(t["mean"] - lo) * 100], [(hi - t["mean"]) * 100]] if lo is not None else None
        ax1.errorbar([i + 0.15], [t["mean"] * 100], yerr=err, fmt="o", color=colors[i % len(colors)],
                     capsize=5, markersize=7, zorder=3)
    ax1.set_xticks(range(len(models)), models, rotation=15)
    ax1.set_ylabel("test accuracy % (dots: seeds; bar: mean, 95% CI)")
    ax1.set_title("Final test accuracy")
    ax1.ticklabel_format(axis="y", useOffset=False)
    ax1.grid(axis="y", alpha=0.3)
    cmps = [c for c in payload["comparisons"] if c["n"]]
    for i, c in enumerate(cmps):
        ax2.scatter([i] * c["n"], [d * 100 for d in c["diffs"]], color="tab:gray", s=18, zorder=2)
        for d, s in zip(c["diffs"], c["seeds"]):
            ax2.annotate(str(s), (i, d * 100), textcoords="offset points", xytext=(5, -3), fontsize=7)
        if c["ci95"][0] is not None:
            lo, hi = c["ci95"]
            ax2.errorbar([i + 0.2], [c["mean_diff"] * 100],
                         yerr=[[(c["mean_diff"] - lo) * 100], [(hi - c["mean_diff"]) * 100]],
                         fmt="s", color="tab:red" if significant(c) else "tab:blue", capsize=5)
    ax2.axhline(0, color="black", lw=0.8)
    ax2.set_xticks(range(len(cmps)), [f"{c['b']}\n− {c['a']}" for c in cmps])
    ax2.set_xlim(-0.6, max(len(cmps) - 0.4, 0.6))
    ax2.set_ylabel("paired difference, points (numbers: seed)")
    ax2.set_title("Per-seed differences, mean and 95% CI")
    ax2.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{payload['recipe']['dataset']}, recipe {payload['recipe_name']} "
                 f"({payload['recipe']['epochs']} epochs), {payload['env']['device']}", fontsize=10)
    return save_figure(fig, stem, "paired")


# ---- the campaign ----------------------------------------------------------------------------------
def run_one(model: str, seed: int, recipe: dict, config: str, work_dir: str | None = None) -> dict:
    """Train ``model`` once with ``recipe`` (a `Recipe` as dict): the run's record, with its
    final weights under ``state_dict`` (the engine saves them beside the record). ``work_dir``
    (the campaign's ``partial/<run>__<key>/``): checkpoint there every epoch and continue a run
    killed earlier; the record then says ``resumed_from_epoch`` (0: trained in one piece) and,
    when resumed, its ``pieces``; ``seconds`` adds up the pieces (`_partial`)."""
    start = time.perf_counter()
    row, net = train_one(model, seed, Recipe(**recipe), keep_model=True, work_dir=work_dir)
    earlier = sum(p["seconds"] for p in row.get("pieces", [])[:-1])
    record = dict(model=model, seed=seed, test_acc=row["test_acc"], val_acc=row["val_acc"],
                  epochs=row["epochs"], train_images=row["train_images"],
                  seconds=earlier + time.perf_counter() - start, train_seconds=row["train_seconds"],
                  img_per_s=row["img_per_s"], params=row["params"],
                  coefficients=row["coefficients"], curve=row["curve"], recipe=config,
                  amp_used=row.get("amp_used"), compile_used=row.get("compile_used"))
    if "resumed_from_epoch" in row:
        record["resumed_from_epoch"] = row["resumed_from_epoch"]
        if len(row["pieces"]) > 1:
            record["pieces"] = row["pieces"]
        if row["discarded"]:
            record["discarded_partial"] = row["discarded"]
    print(f"{model} seed {seed}: test {record['test_acc'] * 100:.2f}%, val "
          f"{(record['val_acc'] or 0) * 100:.2f}%, {record['seconds'] / 60:.1f} min"
          + (f" (resumed from epoch {row['resumed_from_epoch']})" if row.get("resumed_from_epoch")
             else ""), flush=True)
    if net is not None:
        record["state_dict"] = net.state_dict()
    return record


def campaign_precision(model: str, recipe: Recipe, device, threads: int | None = None) -> str:
    """'bf16' or 'off': what the start-up probe (`odenets.train.probe`) picks for ``model``'s
    training step at the recipe's batch on this machine. A campaign resolves ``amp='auto'`` once,
    so that all its runs share one precision (per run, machines of one campaign could differ)."""
    from types import SimpleNamespace

    import odenets
    from odenets.data import get_spec
    from odenets.train import probe

    spec = get_spec(recipe.dataset)
    net = odenets.create(model, in_chans=spec.input_size[0], num_classes=spec.num_classes).to(device)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        choice, _ = probe.probe(net, SimpleNamespace(amp="auto", compile=False, channels_last=True),
                                (recipe.batch_size, *spec.input_size), spec.num_classes, device)
    finally:
        torch.set_num_threads(before)
    print(f"campaign precision: {choice['amp']} ({probe.describe(choice)}); pass --amp off or "
          "--amp bf16 to choose it yourself", flush=True)
    return choice["amp"]


def main(argv=None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    seeds = parse_seeds(args.seeds)
    device = resolve_device(args.device)
    dataset = default_dataset(args.dataset, args.data_dir)
    recipe = Recipe.preset(args.config, dataset=dataset, data_dir=args.data_dir,
                           device=str(device), epochs=args.epochs, amp=args.amp)
    if args.config == "tiny":
        recipe.val_split = 32
    if recipe.amp == "auto":
        recipe.amp = "off" if args.report_only else campaign_precision(
            parse_list(args.models or DEFAULT_MODELS)[0], recipe, device,
            getattr(args, "threads_per_worker", None) or args.threads)
    key = recipe_key(recipe.to_dict())
    name = NAME if args.config == "converged" else f"{NAME}_{args.config}"
    if recipe.amp == "bf16":
        name += "_bf16"
    path = result_path(name, device, args.out_dir)
    stored = load_summary(path, ("model", "seed"))
    header = dict(config=args.config, recipe_name=args.config, recipe=recipe.to_dict(),
                  recipe_key=key, env=env_info(device))
    header, key = report_header(stored, header, path, args.report_only)
    models = parse_list(args.models or (",".join(stored["models"]) if args.report_only and
                                        stored.get("models") else DEFAULT_MODELS))
    meta = dict(stored.get("meta", {}))
    for m in models:
        meta.setdefault(m, model_meta(m, header["recipe"]["dataset"]))
    payload = {**stored, "benchmark": NAME, **header, "meta": meta}

    def summary(records: list, failures: list) -> None:
        payload.update(runs=records, failures=failures)
        summarise(payload, models, key)
        write_report(payload, path, plot, markdown)
        if args.config == "converged":  # the family report reads the same runs
            family.write(payload, path.with_name(path.name.replace(NAME, "family", 1)))

    runs = [campaign.Run(f"{m}__s{s}", dict(model=m, seed=s),
                         dict(model=m, seed=s, recipe=recipe.to_dict(), config=args.config))
            for s in seeds for m in models]
    drive(path=path, key=key, fn="converged:run_one", runs=runs, args=args, summary=summary,
          device=header["env"]["device"], keep_weights=True, resumable=True,
          report_only=args.report_only,
          max_runs=args.max_runs, label="converged campaign")
    print(markdown(payload))
    return 0


if __name__ == "__main__":
    from _common import run_main
    sys.exit(run_main(main))
