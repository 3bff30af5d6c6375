"""The whole family at convergence: the scheme table, the depth sweep, accuracy against cost.

Reads the converged campaign (`converged.py`: every model trained with the converged recipe on
the same seeds, so per-seed differences are paired) and writes ``family_<device>.{json,md}``
with two figures:

- the scheme table: the twelve schemes at resnet20 size, each with its parameters, field
  evaluations per image, minutes per run, test accuracy, and the paired difference to its
  baseline (resnet20; preact_resnet20 for the pre-activation LM) with a 95% t-interval. The
  eleven comparisons share one baseline, so beside each interval stands a Holm-adjusted p-value
  (exact two-sided paired t-test, Holm's step-down correction over the family): a difference is
  called significant for the family only when its adjusted p is below 0.05;
- the depth sweep: resnet{20,32,44,56} against lm_resnet{20,32,44,56}, paired per depth, beside
  the paper's CIFAR-10 numbers (Lu et al. 2018: another dataset, shown for direction only);
- accuracy against cost: test accuracy (95% CI bars) against training time per step relative
  to resnet20 (measured side by side in one process: ``--measure-cost``; minutes per run depend
  on the machine each run happened to get) and against field evaluations per image.

It also says which runs are still missing: 3 paired seeds per row, 5 where a difference lies
within 0.3 points after 3, and prints the campaign command that adds them.

    python benchmarks/family.py                       # report from converged_cpu.json
    python benchmarks/family.py --measure-cost        # time one training step of every scheme first
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HelpFormatter, env_info, result_path, write_json  # noqa: E402
from _stats import holm, mean_ci, paired, paired_p  # noqa: E402
from _train_common import markdown_table, model_styles, pyplot  # noqa: E402

SCHEMES = ("resnet20", "lm_resnet20", "lmm3_resnet20", "ab2_resnet20", "poly_resnet20",
           "rk2_resnet20", "rk4_resnet20", "rev_resnet20", "sd_resnet20", "shake_resnet20",
           "preact_resnet20", "lm_preact_resnet20")
BASELINE = {"lm_preact_resnet20": "preact_resnet20"}  # every other scheme: resnet20
DEPTHS = (20, 32, 44, 56)
# Lu et al. 2018, CIFAR-10 test accuracy %, basic blocks (the repository's docs/schemes.md).
PAPER_CIFAR10 = {20: (91.25, 91.67), 32: (92.49, 92.82), 44: (92.83, 92.98), 56: (93.03, 93.69)}
MIN_SEEDS, MORE_SEEDS, CLOSE = 3, 5, 0.003  # 3 seeds; 5 where |difference| < 0.3 points after 3
ALPHA = 0.05


# ---- statistics ---------------------------------------------------------------------------------
# ---- tables -------------------------------------------------------------------------------------
def campaign_runs(payload: dict) -> dict:
    """``{model: {seed: record}}`` of the campaign's runs under its recipe key."""
    out: dict = {}
    for r in payload.get("runs", []):
        if r.get("recipe_key") == payload.get("recipe_key"):
            out.setdefault(r["model"], {})[r["seed"]] = r
    return out


def compare(runs: dict, base: str, model: str) -> dict:
    """The paired comparison of ``model`` with ``base`` (`_stats.paired` + exact p)."""
    acc = {m: {s: r["test_acc"] for s, r in runs.get(m, {}).items()} for m in (base, model)}
    cmp = paired(acc[base], acc[model], base, model)
    cmp["p"] = paired_p(cmp)
    return cmp


def needed_seeds(cmp: dict | None) -> int:
    """Seeds a row should have: 3, or 5 when its difference lies within 0.3 points after 3."""
    if cmp is not None and cmp["n"] >= MIN_SEEDS and abs(cmp["mean_diff"]) < CLOSE:
        return MORE_SEEDS
    return MIN_SEEDS


def row_verdict(cmp: dict) -> str:
    """'not significant', 'b better' / 'a better' (95% interval) and the family's reading."""
    if cmp["n"] < 2:
        return f"n={cmp['n']}: no interval yet"
    if not cmp["std"]:
        return f"identical on every seed (n={cmp['n']})"
    lo, hi = cmp["ci95"]
    if lo > 0 or hi < 0:
        word = f"{cmp['b'] if cmp['mean_diff'] > 0 else cmp['a']} better (95% CI excludes 0)"
    else:
        word = "not significant"
    if cmp.get("p_holm") is not None:
        word += ("; significant after Holm" if cmp["p_holm"] < ALPHA else "; not after Holm")
    return word


def scheme_table(payload: dict, costs: dict | None = None) -> list[dict]:
    """One row per scheme of `SCHEMES` with runs: stats, paired comparison, Holm-adjusted p."""
    runs, meta = campaign_runs(payload), payload.get("meta", {})
    rows = []
    for m in SCHEMES:
        recs = runs.get(m, {})
        if not recs:
            continue
        base = BASELINE.get(m, "resnet20") if m != "resnet20" else None
        cmp = compare(runs, base, m) if base else None
        rows.append(dict(model=m, baseline=base, params=meta.get(m, {}).get("params"),
                         evaluations=meta.get(m, {}).get("evaluations"),
                         test_acc=mean_ci(r["test_acc"] for r in recs.values()),
                         minutes=mean_ci(r["seconds"] / 60 for r in recs.values()),
                         devices=sorted({f"{r.get('device')}, {r.get('threads') or '?'} threads"
                                         for r in recs.values()}),
                         relative_step_time=(costs or {}).get(m),
                         seeds=sorted(recs), comparison=cmp,
                         seeds_needed=needed_seeds(cmp)))
    adjusted = holm({r["model"]: r["comparison"]["p"] for r in rows if r["comparison"]})
    for r in rows:
        if r["comparison"]:
            r["comparison"]["p_holm"] = adjusted[r["model"]]
            r["comparison"]["verdict"] = row_verdict(r["comparison"])
    return rows


def depth_sweep(payload: dict) -> list[dict]:
    """resnetD against lm_resnetD at each depth with runs of both."""
    runs, meta = campaign_runs(payload), payload.get("meta", {})
    out = []
    for d in DEPTHS:
        a, b = f"resnet{d}", f"lm_resnet{d}"
        if not runs.get(a) and not runs.get(b):
            continue
        cmp = compare(runs, a, b)
        cmp["verdict"] = row_verdict(cmp)
        out.append(dict(depth=d, params=meta.get(a, {}).get("params"),
                        resnet=mean_ci(r["test_acc"] for r in runs.get(a, {}).values()),
                        lm_resnet=mean_ci(r["test_acc"] for r in runs.get(b, {}).values()),
                        comparison=cmp, paper=PAPER_CIFAR10.get(d)))
    return out


def missing_runs(payload: dict, table: list[dict] | None = None) -> dict:
    """``{model: [seeds]}`` still to train for the table (3 or 5 paired seeds) and the sweep;
    ``table``: the payload's `scheme_table`, when already made."""
    runs, want = campaign_runs(payload), {}
    rows = {r["model"]: r for r in (scheme_table(payload) if table is None else table)}
    for m in SCHEMES:
        row = rows.get(m)
        n = row["seeds_needed"] if row else MIN_SEEDS
        if m == "resnet20":
            n = max([r["seeds_needed"] for r in rows.values()] + [MIN_SEEDS])
        want[m] = n
    for d in DEPTHS:
        want.setdefault(f"resnet{d}", MIN_SEEDS)
        want.setdefault(f"lm_resnet{d}", MIN_SEEDS)
    return {m: [s for s in range(n) if s not in runs.get(m, {})] for m, n in want.items()
            if any(s not in runs.get(m, {}) for s in range(n))}


# ---- markdown -----------------------------------------------------------------------------------
def _pct(v, signed=False):
    return "—" if v is None else (f"{v * 100:+.2f}" if signed else f"{v * 100:.2f}")


def _ci(c):
    lo, hi = c["ci95"]
    return "—" if lo is None else f"[{lo * 100:+.2f}, {hi * 100:+.2f}]"


def _p(p):
    return "—" if p is None else ("<0.001" if p < 1e-3 else f"{p:.3f}")


def markdown(report: dict) -> str:
    rows, sweep = report["schemes"], report["depth"]
    lines = ["# The whole family at convergence", "",
             f"Recipe `converged` in {report.get('precision', 'fp32')} (key {report['recipe_key']}) "
             f"on {report['dataset']}: every run "
             "trains for the same epochs on the same seeds; test accuracy is the final epoch's. "
             "Paired differences are b − baseline in points with 95% t-intervals; the "
             f"{sum(1 for r in rows if r['comparison'])} comparisons of the table share resnet20 "
             "(preact_resnet20 for lm_preact_resnet20) and are read together with Holm's "
             "correction (adjusted p < 0.05). Minutes per run depend on the machine a run got "
             "(listed); relative step time is measured side by side in one process.", ""]
    table = []
    for r in rows:
        c = r["comparison"]
        t = r["test_acc"]
        table.append((r["model"], f"{r['params']:,}" if r["params"] else "—", r["evaluations"] or "—",
                      f"{r['minutes']['mean']:.1f}", "; ".join(r["devices"]),
                      "—" if r["relative_step_time"] is None else f"{r['relative_step_time']:.2f}",
                      f"{t['n']}", f"{_pct(t['mean'])} ± {_pct(t['std'])}",
                      "(baseline)" if c is None else f"{_pct(c['mean_diff'], True)} vs {c['a']}",
                      "—" if c is None else _ci(c), "—" if c is None else _p(c["p"]),
                      "—" if c is None else _p(c["p_holm"]), "—" if c is None else c["verdict"]))
    lines += [markdown_table(("scheme", "params", "f evals / image", "min / run", "machine x threads",
                              "step time / resnet20", "n", "test acc % (mean ± std)", "paired diff",
                              "95% CI", "p", "Holm p", "verdict"), table), ""]
    if sweep:
        lines += ["## Depth sweep: ResNet against LM-ResNet", "",
                  "The paper's CIFAR-10 numbers (Lu et al. 2018) stand beside ours for direction "
                  "only: another dataset and a 160-epoch schedule.", ""]
        lines += [markdown_table(
            ("depth", "params", "resnet %", "lm_resnet %", "n pairs", "LM − ResNet", "95% CI",
             "verdict", "paper CIFAR-10 resnet / lm"),
            [(s["depth"], f"{s['params']:,}" if s["params"] else "—",
              f"{_pct(s['resnet']['mean'])} ± {_pct(s['resnet']['std'])} (n={s['resnet']['n']})",
              f"{_pct(s['lm_resnet']['mean'])} ± {_pct(s['lm_resnet']['std'])} (n={s['lm_resnet']['n']})",
              s["comparison"]["n"], _pct(s["comparison"]["mean_diff"], True), _ci(s["comparison"]),
              s["comparison"]["verdict"],
              "—" if not s["paper"] else f"{s['paper'][0]:.2f} / {s['paper'][1]:.2f}")
             for s in sweep]), ""]
    if report["missing"]:
        lines += ["**Still to run** (3 paired seeds per row, 5 where a difference is within 0.3 "
                  "points after 3): " + "; ".join(f"{m} seeds {', '.join(map(str, s))}"
                                                   for m, s in report["missing"].items()) + ".",
                  "", f"Continue with `{report['continue']}`.", ""]
    lines += [f"![{name}]({name})" for name in report.get("plots", [])]
    return "\n".join(lines).rstrip() + "\n"


def readme_lines(payloads: list) -> list[str]:
    """README lines of the family report: the accuracy-vs-cost figure, the scheme table with
    its multiplicity note, the depth sweep and what is still running."""
    out = []
    for p in payloads:
        text = markdown(p)
        tables = [t for t in text.split("\n\n") if t.startswith("|")]
        done = sum(1 for r in p["schemes"] if r["test_acc"]["n"] >= MIN_SEEDS)
        out += [f"**The whole family at convergence, {p.get('precision', 'fp32')}** ({p['dataset']}, "
                f"recipe `converged`, key "
                f"{p['recipe_key']}; {done} of {len(SCHEMES)} schemes have "
                f">= {MIN_SEEDS} paired seeds so far; the campaign goes on across sessions). "
                "Paired differences to resnet20 (lm_preact_resnet20: to preact_resnet20) with 95% "
                "t-intervals; the comparisons share one baseline, so each row also gives its "
                "Holm-adjusted p (significant for the family only below 0.05). Rows with one seed "
                "have no interval.", ""]
        out += [f"![{name}](benchmarks/results/{name})" for name in p.get("plots", [])[:1]] + [""]
        out += [tables[0], ""] if tables else []
        if len(tables) > 1:
            out += ["**Depth sweep** (ResNet vs LM-ResNet, paired per depth; the paper's CIFAR-10 "
                    "numbers for direction only):", "", tables[1], ""]
        if p.get("missing"):
            out += [f"Still to run: {sum(len(s) for s in p['missing'].values())} runs "
                    f"(`{p['continue']}`; list in RESULTS.md).", ""]
    return out


def continue_command(missing: dict, precision: str = "fp32") -> str:
    """The campaign command that trains ``missing`` (resnet20 first: converged.py pairs with it)
    in ``precision`` (the campaign's: its runs are paired only with runs of the same one)."""
    models = ",".join(["resnet20"] + [m for m in missing if m != "resnet20"])
    top = max((max(s) for s in missing.values()), default=2)
    amp = "bf16" if precision == "bf16" else "off"
    return f"python benchmarks/converged.py --models {models} --seeds 0-{top} --amp {amp}"


def precision(payload: dict) -> str:
    """'bf16' or 'fp32': the precision of the campaign's recipe (every run shares it)."""
    return "bf16" if payload.get("recipe", {}).get("amp") == "bf16" else "fp32"


# ---- figures ------------------------------------------------------------------------------------
def _errorbar(ax, x, stats, color, marker, label):
    lo, hi = stats["ci95"]
    y = stats["mean"] * 100
    yerr = None if lo is None else [[y - lo * 100], [hi * 100 - y]]
    ax.errorbar([x], [y], yerr=yerr, fmt=marker, color=color, capsize=4, markersize=7, label=label)


def plot_cost(rows: list[dict], stem: Path, precision: str = "fp32") -> str:
    """Test accuracy (95% CI) against step time relative to resnet20 and f evaluations/image."""
    plt = pyplot()
    styles = model_styles(r["model"] for r in rows)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for r in rows:
        color, marker = styles[r["model"]]
        for ax, x in zip(axes, (r["relative_step_time"], r["evaluations"])):
            if x is not None:
                _errorbar(ax, x, r["test_acc"], color, marker, f"{r['model']} (n={r['test_acc']['n']})")
    if not any(r["relative_step_time"] for r in rows):
        axes[0].text(0.5, 0.5, "not measured yet\n(python benchmarks/family.py --measure-cost)",
                     ha="center", va="center", transform=axes[0].transAxes, color="gray")
    axes[0].set_xlabel("training step time / resnet20's (one process, side by side)")
    axes[1].set_xlabel("field evaluations per image (forward)")
    axes[0].set_ylabel("final test accuracy % (mean, 95% CI)")
    for ax in axes:
        ax.grid(alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.suptitle(f"Every scheme at resnet20 size, converged recipe in {precision} (bars: 95% CI; "
                 "n=1 has none)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    out = stem.parent / f"{stem.name}_acc_vs_cost.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out.name


def plot_depth(sweep: list[dict], stem: Path, precision: str = "fp32") -> str:
    """Accuracy against depth (and parameters) for both families, ours and the paper's."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    for key, color, marker, shift in (("resnet", "tab:blue", "o", -0.4), ("lm_resnet", "tab:red", "s", 0.4)):
        pts = [(s["depth"], s[key]) for s in sweep if s[key]["n"]]
        for i, (d, st) in enumerate(pts):
            _errorbar(ax1, d + shift, st, color, marker, key if i == 0 else None)
        ax1.plot([d + shift for d, _ in pts], [st["mean"] * 100 for _, st in pts], color=color, alpha=0.5)
        ax2.plot(list(PAPER_CIFAR10), [v[0 if key == "resnet" else 1] for v in PAPER_CIFAR10.values()],
                 marker=marker, color=color, label=key)
    params = {s["depth"]: s["params"] for s in sweep}
    ax1.set_xticks(DEPTHS, [f"{d}\n{params[d] / 1e6:.2f}M" if params.get(d) else str(d) for d in DEPTHS])
    ax1.set_xlim(DEPTHS[0] - 4, DEPTHS[-1] + 4)
    ax1.set_xlabel("depth (parameters)")
    ax1.set_ylabel("final test accuracy % (mean, 95% CI)")
    ax1.set_title(f"Ours: Fashion-MNIST, converged recipe in {precision}", fontsize=10)
    ax2.set_xticks(list(PAPER_CIFAR10))
    ax2.set_xlabel("depth")
    ax2.set_ylabel("test accuracy %")
    ax2.set_title("Lu et al. 2018: CIFAR-10 (reference)", fontsize=10)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = stem.parent / f"{stem.name}_acc_vs_depth.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out.name


# ---- side-by-side step cost ---------------------------------------------------------------------
def measure_costs(models, batch: int = 128, rounds: int = 7, warmup: int = 2, dtype: str = "fp32") -> dict:
    """Training-step time of each preset relative to resnet20: one step each in turn per round
    (order rotated), median of the per-round ratios. Fashion-MNIST shapes, channels_last, eager,
    ``dtype`` (the campaign's precision: fp32 or bf16 autocast)."""
    import odenets
    from _case import Case, interleaved
    names = ["resnet20"] + [m for m in models if m != "resnet20"]
    cases = {m: Case(lambda m=m: odenets.create(m, in_chans=1, num_classes=10), (1, 28, 28), batch,
                     "cpu", "eager", dtype, True) for m in names}
    times = interleaved(cases, rounds, warmup)
    return {m: statistics.median(a / b for a, b in zip(times[m], times["resnet20"])) for m in names}


# ---- main ---------------------------------------------------------------------------------------
def build(payload: dict, costs: dict | None = None) -> dict:
    table = scheme_table(payload, costs)
    missing = missing_runs(payload, table)
    return dict(benchmark="family", recipe_key=payload.get("recipe_key"),
                dataset=payload.get("recipe", {}).get("dataset"), precision=precision(payload),
                schemes=table, depth=depth_sweep(payload), missing=missing,
                **{"continue": continue_command(missing, precision(payload))})


def write(payload: dict, out: Path, measure: bool = False, threads: int | None = None) -> dict:
    """Write ``out`` (family_<device>.json), its markdown and figures from the campaign
    ``payload``; step costs are measured when ``measure``, else kept from the last report."""
    old = json.loads(out.read_text()) if out.exists() else {}
    costs, cost_env = old.get("relative_step_time"), old.get("cost_env")
    if measure:
        if threads:
            torch.set_num_threads(threads)
        dtype = precision(payload)
        costs = measure_costs(SCHEMES, dtype=dtype)
        cost_env = dict(env_info("cpu"), threads=torch.get_num_threads(), batch=128, dtype=dtype)
    report = build(payload, costs)
    report.update(relative_step_time=costs, cost_env=cost_env)
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.with_suffix("")
    report["plots"] = [plot_cost(report["schemes"], stem, report["precision"])]
    if report["depth"]:
        report["plots"].append(plot_depth(report["depth"], stem, report["precision"]))
    write_json(out, report)
    stem.with_suffix(".md").write_text(markdown(report))
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--campaign", default=None, help="the converged campaign's JSON "
                   "(default benchmarks/results/converged_cpu.json)")
    p.add_argument("--out-dir", default=None, help="results directory (default benchmarks/results)")
    p.add_argument("--measure-cost", action="store_true", help="time one training step of every "
                   "scheme side by side first (a few minutes on 2 CPU cores)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for --measure-cost")
    p.add_argument("--amp", default="off", choices=("off", "bf16"), help="which campaign: fp32 "
                   "(converged_cpu.json) or bf16 (converged_bf16_cpu.json)")
    args = p.parse_args(argv)
    suffix = "_bf16" if args.amp == "bf16" else ""
    src = (Path(args.campaign) if args.campaign
           else result_path("converged" + suffix, "cpu", args.out_dir))
    report = write(json.loads(src.read_text()), result_path("family" + suffix, "cpu", args.out_dir),
                   args.measure_cost, args.threads)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    from _common import run_main
    sys.exit(run_main(main))
