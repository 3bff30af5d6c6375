"""Noise injection as Euler-Maruyama: does training noise buy robustness to input noise?

Trains one depth (``--depth``, default 20) with the same recipe and seeds in these variants:
  none                 resnet: u_{n+1} = relu(u_n + f(u_n))
  gauss_add_<s>        euler_maruyama noise="gaussian", diffusion="additive":
                       u_{n+1} = relu(u_n + f(u_n) + s eps),        eps ~ N(0, I)
  gauss_field_<s>      diffusion="field" (multiplicative): relu(u_n + f(u_n) (1 + s eps))
  stochastic_depth     sd_resnet: relu(u_n + eta_n f(u_n)), eta_n ~ Bernoulli(p_n), p 1 -> 0.5
  shake_shake          shake_resnet: relu(u_n + eta f1(u_n) + (1 - eta) f2(u_n)), eta ~ U(0, 1)
(the noise is on in training and replaced by its mean at test time). Each trained model is
evaluated on the clean test set and under Gaussian input noise: x + delta eps in pixel units
([0, 1] images, clipped back to [0, 1]) at several delta, with the same noise draws for every
model, and under L-inf FGSM and PGD attacks (``--attacks``, eps in [0, 1] pixel units,
`odenets.analysis.attacks`). Reports per-seed accuracies, means with 95% t-intervals, and the
paired seed differences of every noisy variant against ``none`` (sigma = 0) with their 95%
intervals and a verdict (`_stats`). Each finished (variant, seed) is written to the result JSON
at once; re-running the same command skips the finished ones (resumable). JSON, markdown and
plots (accuracy vs input noise, vs attack eps) under benchmarks/results/sde_noise_<config>_<device>.*

Anchor: Liu et al. 2019 ("Neural SDE: Stabilizing Neural ODE Networks with Stochastic Noise")
report on CIFAR-10 clean 81.1% -> 83.6% and attacked 44.5% -> 47.5% going sigma = 0 -> 0.5.

It also checks that stochastic depth written as Euler-Maruyama is the classic implementation
(Huang et al. 2016) -- see `sd_equivalence`.

    python benchmarks/sde_noise.py --quick       # CPU, Fashion-MNIST
    python benchmarks/sde_noise.py --config converged    # 3 seeds, the converged recipe
    python benchmarks/sde_noise.py --data-dir ~/data
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HelpFormatter, env_info, result_path, write_json  # noqa: E402
from _records import done, load_runs  # noqa: E402
from _stats import mean_ci, paired, significant, verdict  # noqa: E402
from _train_common import (Recipe, default_dataset, markdown_table, mean_std, parse_list,  # noqa: E402
                           pm, pyplot, run_description, set_threads, train_one)

import odenets  # noqa: E402
from odenets import data as datasets  # noqa: E402
from odenets.analysis.attacks import ATTACKS, attack_accuracy  # noqa: E402
from odenets.train.distributed import resolve_device  # noqa: E402

EM = "euler_maruyama"


def variants(depth: int, additive: list, field: list) -> dict:
    """name -> (preset, NetConfig overrides)."""
    out = {"none": (f"resnet{depth}", {})}
    for kind, sigmas in (("additive", additive), ("field", field)):
        for s in sigmas:
            out[f"gauss_{'add' if kind == 'additive' else 'field'}_{s:g}"] = (f"resnet{depth}", dict(
                solver=EM, solver_options=dict(noise="gaussian", sigma=s, diffusion=kind)))
    out["stochastic_depth"] = (f"sd_resnet{depth}", {})
    out["shake_shake"] = (f"shake_resnet{depth}", {})
    return out


# -- evaluation under input noise ------------------------------------------------------------------
@torch.no_grad()
def noisy_accuracy(model, test, levels, seed=1234, batch=500) -> dict:
    """Accuracy at each input-noise level delta: x = clip(images/255 + delta eps, 0, 1),
    normalised as in training. One eps ~ N(0, I) per test image, drawn once from ``seed`` and
    shared by all levels and models (common random numbers: curves differ by the model only)."""
    model.eval()
    device = next(model.parameters()).device
    shape = (1, test.channels, 1, 1)
    mean = torch.tensor(test.mean, device=device).view(shape)
    std = torch.tensor(test.std, device=device).view(shape)
    eps = torch.randn(test.images.shape, generator=torch.Generator().manual_seed(seed))
    out = {}
    for level in levels:
        correct = 0
        for start in range(0, len(test), batch):
            x = test.images[start:start + batch].float() / 255
            if level:
                x = (x + level * eps[start:start + batch]).clamp_(0, 1)
            x = (x.to(device) - mean) / std
            correct += (model(x).argmax(1).cpu() == test.labels[start:start + batch]).sum().item()
        out[f"{level:g}"] = correct / len(test)
    return out


# -- stochastic depth = Euler-Maruyama with Bernoulli noise ----------------------------------------
def classic_stochastic_depth(blocks, survival, u, training: bool):
    """Huang et al. (2016) written by hand: per-sample gate b ~ Bernoulli(p_l) in training,
    u <- relu(u + b f_l(u)); at test time u <- relu(u + p_l f_l(u))."""
    for block, p in zip(blocks, survival):
        f = block(u)
        if training:
            gate = (torch.rand(u.shape[0], *([1] * (u.dim() - 1)), device=u.device) < p).to(f.dtype)
            u = F.relu(u + gate * f)
        else:
            u = F.relu(u + p * f)
    return u


def sd_flow(depth: int = 20, seed: int = 0):
    """(flow, survival p_n, input u): the last flow of ``sd_resnet<depth>`` with noise on and
    BatchNorm in eval mode (so the samples of a batch are independent), and one input."""
    torch.manual_seed(seed)
    flow = odenets.create(f"sd_resnet{depth}", num_classes=10, in_channels=3).flows[-1]
    flow.train()
    for m in flow.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    u = F.relu(torch.randn(1, flow.blocks[0].conv1.in_channels, 8, 8))
    return flow, flow.coef_p.tolist(), u


@torch.no_grad()
def exact_distribution(blocks, survival, u) -> dict:
    """The classic loop's output law: for each gate pattern g in {0,1}^S its output
    (relu(v + g_n f_n(v)) per block) and probability prod p^g (1-p)^(1-g); mean and variance."""
    outs, probs = [], []
    for g in itertools.product((0, 1), repeat=len(blocks)):
        v = u
        for block, gate in zip(blocks, g):
            v = F.relu(v + gate * block(v))
        outs.append(v.flatten())
        probs.append(math.prod(pn if gn else 1 - pn for pn, gn in zip(survival, g)))
    outs, probs = torch.stack(outs), torch.tensor(probs, dtype=torch.float64)
    mean = (probs[:, None] * outs.double()).sum(0)
    return dict(outs=outs, probs=probs, mean=mean, var=(probs[:, None] * (outs.double() - mean) ** 2).sum(0))


def pattern_stats(draws, exact: dict) -> dict:
    """How ``draws`` (samples x features) fit the exact law: the largest distance to the nearest
    pattern output (relative), chi-square of the pattern counts, rms z-score of the mean and the
    ratio of total variances."""
    n, outs = len(draws), exact["outs"]
    dist = torch.cdist(draws, outs, compute_mode="donot_use_mm_for_euclid_dist")
    counts = torch.bincount(dist.argmin(1), minlength=len(outs)).double()
    expected = exact["probs"] * n
    mean, var = draws.double().mean(0), draws.double().var(0)
    z = (mean - exact["mean"]) / (exact["var"] / n).sqrt().clamp_min(1e-12)
    return dict(max_relative_residual=dist.min(1).values.max().item() / outs.norm(dim=1).max().item(),
                chi2=float(((counts - expected) ** 2 / expected).sum()), chi2_dof=len(outs) - 1,
                pattern_counts=counts.tolist(), expected_counts=expected.tolist(),
                mean_z_rms=float(z[exact["var"] > 0].pow(2).mean().sqrt()),
                total_variance_ratio=float(var.sum() / exact["var"].sum()))


CHI2_999 = {1: 10.83, 3: 16.27, 7: 24.32, 15: 37.70}  # 0.999 quantiles by degrees of freedom


@torch.no_grad()
def sd_equivalence(samples: int = 4000, depth: int = 20, seed: int = 0) -> dict:
    """Stochastic depth as Euler-Maruyama (our ``sd_resnet`` flow) vs `classic_stochastic_depth`
    on the same modules. Draws ``samples`` outputs of our flow (one input repeated, one gate per
    sample): every draw must be one gate pattern's output of the classic loop, the pattern
    frequencies must match prod p^g (1-p)^(1-g) (chi-square), and mean and variance must match
    the exact ones (`exact_distribution`). The classic loop is sampled the same way for
    reference. In eval mode our flow must give exactly relu(u + p f(u)) per block."""
    flow, p, u = sd_flow(depth, seed)
    blocks = list(flow.blocks)
    exact = exact_distribution(blocks, p, u)
    batch = u.expand(samples, *u.shape[1:]).contiguous()
    report = dict(model=f"sd_resnet{depth}", flow_steps=len(blocks), survival=p, samples=samples,
                  ours=pattern_stats(flow(batch).flatten(1), exact),
                  classic=pattern_stats(classic_stochastic_depth(blocks, p, batch, True).flatten(1), exact))
    flow.eval()
    diff = flow(u) - classic_stochastic_depth(blocks, p, u, training=False)
    report["test_time_max_abs_diff"] = diff.abs().max().item()
    report["chi2_critical_0.999"] = CHI2_999.get(2 ** len(blocks) - 1)
    return report


# -- the benchmark ---------------------------------------------------------------------------------
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


SUBSETS = {"tiny": 32, "quick": 500, "full": 2000, "converged": 2000}  # attacked test images


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--config", choices=("tiny", "quick", "full", "converged"), dest="config",
                      help="recipe (Recipe.preset) and defaults (default: full)")
    size.add_argument("--quick", action="store_const", dest="config", const="quick")
    size.add_argument("--tiny", action="store_const", dest="config", const="tiny")
    p.set_defaults(config="full")
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--additive-sigmas", default=None, help="additive Gaussian noise levels "
                   "(default: 0.1,0.5 converged, else 0.1,0.3)")
    p.add_argument("--field-sigmas", default=None, help="multiplicative (diffusion=field) "
                   "levels (default: 0.5 converged, else 0.25,0.5)")
    p.add_argument("--variants", default=None, help="names of the variants to run, comma-separated "
                   "(default: all; converged: none and the Gaussian ones)")
    p.add_argument("--input-noise", default="0,0.05,0.1,0.2,0.3", help="test-time input noise levels")
    p.add_argument("--attacks", default="fgsm,pgd", help="fgsm, pgd, both or 'none'")
    p.add_argument("--attack-eps", default="0.01,0.02,0.05,0.1", help="L-inf budgets, pixel units")
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument("--attack-subset", type=int, default=None, help="attacked test images (default: "
                   + ", ".join(f"{k} {v}" for k, v in SUBSETS.items()) + "; 0: all)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--dataset", default=None, help="default: fashion-mnist, cifar10 with --data-dir")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--subset", type=int, default=None)
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--sd-samples", type=int, default=4000, help="samples of the SD equivalence check (0: skip)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out-dir", default=None)
    return p.parse_args(argv)


def make_plan(args) -> dict:
    converged = args.config == "converged"
    additive = args.additive_sigmas or ("0.1,0.5" if converged else "0.1,0.3")
    field = args.field_sigmas or ("0.5" if converged else "0.25,0.5")
    plan = variants(args.depth, parse_list(additive, float), parse_list(field, float))
    if args.variants:
        wanted = parse_list(args.variants)
        unknown = sorted(set(wanted) - set(plan))
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; available: {', '.join(plan)}")
        plan = {k: v for k, v in plan.items() if k in wanted or k == "none"}
    elif converged:
        plan = {k: v for k, v in plan.items() if k == "none" or k.startswith("gauss_")}
    missing = sorted({m for m, _ in plan.values()} - set(odenets.list_models()))
    if missing:
        raise ValueError(f"no preset {missing} for --depth {args.depth}; depths: 20, 32, 44, 56, 110, 164")
    return plan


def main(argv=None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    dataset = default_dataset(args.dataset, args.data_dir)
    recipe = Recipe.preset(args.config, dataset, data_dir=args.data_dir, epochs=args.epochs,
                           subset=args.subset or (5120 if args.config == "quick" else None),
                           test_subset=args.test_subset, device=args.device)
    seeds, levels = parse_list(args.seeds, int), parse_list(args.input_noise, float)
    if any(lv < 0 for lv in levels):
        raise ValueError(f"--input-noise levels must be >= 0, got {levels}")
    names = [] if args.attacks.strip().lower() == "none" else parse_list(args.attacks)
    bad = sorted(set(names) - set(ATTACKS))
    if bad:
        raise ValueError(f"unknown attack(s) {bad}; available: {', '.join(ATTACKS)} (or 'none')")
    eps = [f"{e:g}" for e in parse_list(args.attack_eps, float)]
    plan = make_plan(args)
    device = resolve_device(recipe.device)
    start = time.perf_counter()
    test = datasets.load_dataset(dataset, "test", args.data_dir, recipe.test_subset)
    subset = SUBSETS[args.config] if args.attack_subset is None else (args.attack_subset or None)
    attacked = test.subset(subset)
    keys = [f"{lv:g}" for lv in levels]
    attacks = dict(names=names, eps=eps if names else [], pgd_steps=args.pgd_steps,
                   images=len(attacked) if names else 0)
    setup = dict(depth=args.depth, recipe=recipe.to_dict(), input_noise_levels=keys, attacks=attacks)
    path = result_path(f"sde_noise_{args.config}", device, args.out_dir)
    runs = load_runs(path, setup)

    def payload(status: str) -> dict:
        finished = [n for n in plan if done(runs, variant=n)]
        return dict(benchmark="sde_noise", config=args.config, env=env_info(device, seeds[0]),
                    seeds=seeds, **setup, variants=aggregate(runs, plan, keys, attacks),
                    comparisons=compare(runs, finished, keys, attacks), runs=runs,
                    sd_equivalence=None, partial=status != "finished", status=status,
                    wall_seconds=sum(r["wall_seconds"] for r in runs))

    def save(out: dict) -> None:
        stem = path.with_suffix("")
        try:
            out["plots"] = plot(out, stem) if out["variants"] else []
        except Exception as e:  # no matplotlib (a bare GPU image): the results still count
            out["plots"], out["plot_error"] = [], f"{type(e).__name__}: {e}"
        write_json(path, out)
        stem.with_suffix(".md").write_text(markdown(out) + "\n")

    for seed in seeds:  # seed-major: a campaign cut short holds whole seeds for the pairs
        for name, (model_name, overrides) in plan.items():
            if done(runs, variant=name, seed=seed):
                print(f"{name} seed {seed}: already in {path.name}, skipped", flush=True)
                continue
            t0 = time.perf_counter()
            row, model = train_one(model_name, seed, recipe, overrides, keep_model=True)
            row.update(variant=name, model=model_name, accuracy=noisy_accuracy(model, test, levels))
            t1 = time.perf_counter()
            row["attacks"] = {a: attack_accuracy(model, attacked, [0.0] + [float(e) for e in eps],
                                                 a, args.pgd_steps, seed=seed) for a in names}
            row["attack_seconds"], row["wall_seconds"] = time.perf_counter() - t1, time.perf_counter() - t0
            row.pop("coefficients", None)
            runs.append(row)
            save(payload(f"running: {name} seed {seed} done"))
            print(f"[{time.perf_counter() - start:7.1f}s] {name:18s} seed {seed}: "
                  + ", ".join(f"{k}: {v:.3f}" for k, v in row["accuracy"].items())
                  + "".join(f"; {a} " + " ".join(f"{v:.3f}" for v in row["attacks"][a].values())
                            for a in names), flush=True)
    out = payload("finished")
    out["sd_equivalence"] = sd_equivalence(args.sd_samples, args.depth) if args.sd_samples else None
    save(out)
    print(markdown(out))
    print(f"wrote {path}, {path.with_suffix('.md').name} and {', '.join(out['plots']) or 'no plots'}")
    return out


if __name__ == "__main__":
    main()
