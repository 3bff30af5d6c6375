"""Tables, verdicts and plots of the noise-injection benchmark (`sde_noise.py`).

Reads both result formats: the paired, resumable one (``comparisons``, ``attacks``, 95%
intervals from `_stats.mean_ci`) and the earlier one (mean ± std, unpaired 2-SE differences).
"""
from __future__ import annotations

import math
from pathlib import Path

from _stats import mean_ci, paired, significant, verdict
from _train_common import markdown_table, mean_std, pm, pyplot, run_description

from odenets.analysis.attacks import ATTACKS
from odenets.campaign import provenance_line

ANCHOR = ("Anchor: Liu et al. 2019 (Neural SDE), CIFAR-10 with their network and attack: clean "
          "81.1% -> 83.6% and attacked 44.5% -> 47.5% going sigma = 0 -> 0.5. Ours: another dataset, "
          "network and recipe; compare the direction and size of the paired differences, not the levels.")


def markdown(payload: dict) -> str:
    env, recipe, levels = payload["env"], payload["recipe"], payload["input_noise_levels"]
    lines = [f"# Noise injection (Euler-Maruyama) and input-noise robustness ({payload['config']}, "
             f"{recipe['dataset']}, depth {payload['depth']})", "",
             run_description(payload) + " Input noise: clip(x + delta eps, 0, 1) in pixel units. "
             f"Command: `{env['command']}`", ""]
    if payload.get("partial"):
        lines += [f"**Partial**: {payload['status']}.", ""]
    paired_ci = "comparisons" in payload  # results since the paired, resumable version
    show = (lambda st: ci_text(st)) if paired_ci else pm
    head = ["variant", "model", "params", "train s/run"] + [
        "clean acc %" if lv == "0" else f"acc % at delta={lv}" for lv in levels] + ["mean over noisy levels %"]
    rows = [[name, v["model"], f"{v['params']:,}", f"{v['train_seconds']['mean']:.1f}"]
            + [show(v["accuracy"][lv]) for lv in levels] + [show(noisy_mean(v, levels))]
            for name, v in payload["variants"].items()]
    lines += [("Mean over seeds ± half-width of the 95% t-interval." if paired_ci else
               "Mean ± std over seeds."), "", markdown_table(head, rows), ""]
    attacks = payload.get("attacks") or {}
    if attacks.get("names"):
        eps = ["0", *attacks["eps"]]
        lines += [f"## Under attack: L-inf {', '.join(a.upper() for a in attacks['names'])} "
                  f"(PGD {attacks['pgd_steps']} steps, step 2.5 eps / steps, random start; eps in "
                  f"[0, 1] pixel units; {attacks['images']} test images)", "",
                  "eps = 0: the clean accuracy of the attacked images.", "",
                  markdown_table(["variant"] + [f"{a.upper()} eps={e}" for a in attacks["names"] for e in eps],
                                 [[name] + [ci_text(v["attacks"][a][e]) for a in attacks["names"] for e in eps]
                                  for name, v in payload["variants"].items()]), ""]
    if paired_ci:
        lines += comparison_lines(payload)
    else:
        base = payload["variants"].get("none")
        if base:
            diffs = [f"{name} at delta={lv}: {100 * (v['accuracy'][lv]['mean'] - base['accuracy'][lv]['mean']):+.1f}"
                     for name, v in payload["variants"].items() if name != "none" for lv in levels
                     if two_se(v["accuracy"][lv], base["accuracy"][lv])]
            lines += ["Differences from `none` larger than 2 standard errors (points): "
                      + ("; ".join(diffs) if diffs else "none") + f" ({len(payload['seeds'])} seeds; no "
                      "correction for the number of comparisons; all other differences are within seed noise).", ""]
    sd = payload.get("sd_equivalence")
    if sd:
        o, c = sd["ours"], sd["classic"]
        lines += ["## Stochastic depth as Euler-Maruyama = the classic implementation", "",
                  f"Last flow of {sd['model']} ({sd['flow_steps']} steps, survival {[round(x, 3) for x in sd['survival']]}), "
                  f"{sd['samples']} samples of one input, BatchNorm in eval mode. Every draw of ours is one of the "
                  f"2^{sd['flow_steps']} gate patterns' outputs (max relative residual {o['max_relative_residual']:.1e}); "
                  f"pattern counts {[int(x) for x in o['pattern_counts']]} vs expected "
                  f"{[round(x) for x in o['expected_counts']]} (chi2 {o['chi2']:.2f} on {o['chi2_dof']} dof, "
                  f"0.999 critical value {sd['chi2_critical_0.999']}); mean z-score rms {o['mean_z_rms']:.2f} "
                  f"(1 expected), total variance / exact {o['total_variance_ratio']:.3f}. The hand-written loop: "
                  f"chi2 {c['chi2']:.2f}, z rms {c['mean_z_rms']:.2f}, variance ratio {c['total_variance_ratio']:.3f}. "
                  f"Test time: max |ours - relu(u + p f(u))| = {sd['test_time_max_abs_diff']:.1e}.", ""]
    lines += [provenance_line(payload.get("runs", []), lambda r: f"{r['variant']} seed {r['seed']}"), ""]
    return "\n".join(lines)


def two_se(a: dict, b: dict, z: float = 2.0) -> bool:
    """Old (unpaired) results: whether two means differ by more than ``z`` standard errors."""
    if a["n"] < 2 or b["n"] < 2:
        return False
    se = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
    return abs(a["mean"] - b["mean"]) > z * se if se > 0 else a["mean"] != b["mean"]


def ci_text(stats: dict) -> str:
    """'93.12 ± 0.20' (percent, ± half-width of the 95% interval; no interval for n = 1)."""
    if stats.get("mean") is None:
        return "—"
    lo, hi = stats.get("ci95") or (None, None)
    return f"{stats['mean'] * 100:.2f}" + (f" ± {(hi - lo) * 50:.2f}" if lo is not None else "")


def comparison_lines(payload: dict) -> list[str]:
    """The paired differences against ``none`` as a table and the verdict lines."""
    cmps = payload["comparisons"]
    if not cmps:
        return ["Paired differences against `none`: no variant shares a finished seed with `none` yet.", ""]
    rows = [[c["b"], c["metric"], c["n"], f"{c['mean_diff'] * 100:+.2f}",
             "—" if c["ci95"][0] is None else f"[{c['ci95'][0] * 100:+.2f}, {c['ci95'][1] * 100:+.2f}]",
             "yes" if significant(c) else "no"] for c in cmps]
    lines = ["## Paired differences against `none` (sigma = 0), per seed", "",
             "Seed s gives every variant the same data order, augmentation and initial weights, so "
             "the differences variant − none are paired; 95% t-intervals, no correction for the "
             "number of comparisons.", "",
             markdown_table(["variant", "metric", "n", "mean diff (points)", "95% CI", "significant"], rows), "",
             "Verdicts (clean, and the strongest attack at its largest eps):", ""]
    attacked = [c["metric"] for c in cmps if c["metric"].split(" ")[0] in ATTACKS]
    top = max(attacked, key=lambda m: (m.startswith("pgd"), float(m.split("=")[1])), default=None)
    lines += [f"- {c['metric']}: {verdict(c)}" for c in cmps if c["metric"] in ("clean", top)]
    return lines + ["", ANCHOR, ""]


def compare(runs: list, names: list, levels: list, attacks: dict) -> list:
    """Paired comparisons (`_stats.paired`) of every variant against ``none`` on every metric:
    clean, each input-noise level, each attack and eps."""
    metrics = [("clean", lambda r: r["accuracy"]["0"])] if "0" in levels else []
    metrics += [(f"noise delta={lv}", lambda r, lv=lv: r["accuracy"][lv]) for lv in levels if lv != "0"]
    metrics += [(f"{a} eps={e}", lambda r, a=a, e=e: r["attacks"][a][e])
                for a in attacks.get("names", []) for e in attacks.get("eps", [])]
    base = [r for r in runs if r["variant"] == "none"]
    out = []
    for name in names:
        if name == "none":
            continue
        rows = [r for r in runs if r["variant"] == name]
        for metric, get in metrics:
            cmp = paired({r["seed"]: get(r) for r in base}, {r["seed"]: get(r) for r in rows},
                         "none", name)
            if cmp["n"]:
                out.append(dict(metric=metric, **cmp))
    return out


def aggregate(runs: list, plan: dict, levels: list, attacks: dict) -> dict:
    """variant -> model, overrides, params, train seconds, accuracy per level and per attack
    (`_stats.mean_ci` over seeds) and its runs; variants without a finished run are left out."""
    out = {}
    for name, (model, overrides) in plan.items():
        rows = [r for r in runs if r["variant"] == name]
        if not rows:
            continue
        out[name] = dict(model=model, overrides=overrides, params=rows[0]["params"],
                         train_seconds=mean_ci(r["train_seconds"] for r in rows),
                         accuracy={lv: mean_ci(r["accuracy"][lv] for r in rows) for lv in levels},
                         attacks={a: {e: mean_ci(r["attacks"][a][e] for r in rows)
                                      for e in ["0", *attacks["eps"]]}
                                  for a in attacks["names"]},
                         runs=rows)
    return out


def noisy_mean(variant: dict, levels: list[str]) -> dict:
    """Mean (and interval) over seeds of each run's accuracy averaged over the noisy levels."""
    noisy = [lv for lv in levels if float(lv) > 0]
    stats = mean_ci if "ci95" in variant["accuracy"][levels[0]] else mean_std
    return stats(sum(r["accuracy"][lv] for lv in noisy) / len(noisy) for r in variant["runs"]) \
        if noisy else dict(mean=None, std=None, n=0, values=[], ci95=[None, None])


def _bars(stats: dict, use_ci: bool) -> float:
    if not use_ci:
        return 100 * stats["std"]
    lo, hi = stats["ci95"]
    return 0.0 if lo is None else 50 * (hi - lo)


def plot(payload: dict, stem: Path) -> list[str]:
    plt = pyplot()
    levels, use_ci = payload["input_noise_levels"], "comparisons" in payload
    attacks = payload.get("attacks") or {}
    panels = [("input noise std delta (pixel units)", "input noise")] + [
        (f"{a.upper()} eps (L-inf, pixel units)", a) for a in attacks.get("names", [])]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    for ax, (xlabel, what) in zip(axes[0], panels):
        for name, v in payload["variants"].items():
            if what == "input noise":
                xs, stats = [float(lv) for lv in levels], [v["accuracy"][lv] for lv in levels]
            else:  # eps = 0: the clean accuracy of the attacked images
                eps = ["0", *attacks["eps"]]
                xs, stats = [float(e) for e in eps], [v["attacks"][what][e] for e in eps]
            ax.errorbar(xs, [100 * s["mean"] for s in stats], yerr=[_bars(s, use_ci) for s in stats],
                        marker="o", capsize=3, label=name)
        ax.set_xlabel(xlabel)
        ax.set_title(what if what == "input noise" else f"{what.upper()} attack", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy % (mean, " + ("95% CI" if use_ci else "± std") + " over seeds)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{payload['recipe']['dataset']}, depth {payload['depth']}, {payload['config']}", fontsize=10)
    fig.tight_layout()
    path = stem.with_name(f"{stem.name}_acc_vs_input_noise.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path.name]
