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
model. Reports mean ± std over seeds; JSON, markdown and a plot of accuracy vs input noise under
benchmarks/results/sde_noise_<config>_<device>.*

It also checks that stochastic depth written as Euler-Maruyama is the classic implementation
(Huang et al. 2016) -- see `sd_equivalence`.

    python benchmarks/sde_noise.py --quick       # CPU, Fashion-MNIST
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
from _common import HelpFormatter, env_info  # noqa: E402
from _train_common import (Recipe, default_dataset, markdown_table, mean_std, model_styles,  # noqa: E402
                           parse_list, pm, pyplot, run_description, save_results, set_threads,
                           significant, train_one)

import odenets  # noqa: E402
from odenets import data as datasets  # noqa: E402
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
def markdown(payload: dict) -> str:
    env, recipe, levels = payload["env"], payload["recipe"], payload["input_noise_levels"]
    lines = [f"# Noise injection (Euler-Maruyama) and input-noise robustness ({payload['config']}, "
             f"{recipe['dataset']}, depth {payload['depth']})", "",
             run_description(payload) + " Input noise: clip(x + delta eps, 0, 1) in pixel units. "
             f"Command: `{env['command']}`", ""]
    head = ["variant", "model", "params", "train s/run"] + [
        "clean acc %" if lv == "0" else f"acc % at delta={lv}" for lv in levels] + ["mean over noisy levels %"]
    rows = [[name, v["model"], f"{v['params']:,}", f"{v['train_seconds']['mean']:.1f}"]
            + [pm(v["accuracy"][lv]) for lv in levels] + [pm(noisy_mean(v, levels))]
            for name, v in payload["variants"].items()]
    lines += [markdown_table(head, rows), ""]
    base = payload["variants"].get("none")
    if base:
        diffs = [f"{name} at delta={lv}: {100 * (v['accuracy'][lv]['mean'] - base['accuracy'][lv]['mean']):+.1f}"
                 for name, v in payload["variants"].items() if name != "none" for lv in levels
                 if significant(v["accuracy"][lv], base["accuracy"][lv])]
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


def noisy_mean(variant: dict, levels: list[str]) -> dict:
    """mean ± std over seeds of each run's accuracy averaged over the noisy levels (delta > 0)."""
    noisy = [lv for lv in levels if float(lv) > 0]
    return mean_std(sum(r["accuracy"][lv] for lv in noisy) / len(noisy) for r in variant["runs"]) \
        if noisy else dict(mean=None, std=None, n=0, values=[])


def plot(payload: dict, stem: Path) -> list[str]:
    plt = pyplot()
    levels = payload["input_noise_levels"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    styles = model_styles(payload["variants"])
    for name, v in payload["variants"].items():
        ax.errorbar([float(lv) for lv in levels], [100 * v["accuracy"][lv]["mean"] for lv in levels],
                    yerr=[100 * v["accuracy"][lv]["std"] for lv in levels], marker=styles[name][1],
                    color=styles[name][0], capsize=3, label=name)
    ax.set_xlabel("input noise std delta (pixel units)")
    ax.set_ylabel("test accuracy % (mean ± std over seeds)")
    ax.set_title(f"{payload['recipe']['dataset']}, depth {payload['depth']}, {payload['config']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = stem.with_name(f"{stem.name}_acc_vs_input_noise.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path.name]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=HelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="config", const="quick",
                      help="the CPU configuration (minutes on 2 cores; default: full, for a GPU)")
    size.add_argument("--tiny", action="store_const", dest="config", const="tiny",
                      help="a smoke-test configuration (seconds; numbers meaningless)")
    p.set_defaults(config="full")
    p.add_argument("--depth", type=int, default=20, help="depth of every variant's ResNet")
    p.add_argument("--additive-sigmas", default="0.1,0.3", help="additive Gaussian noise levels")
    p.add_argument("--field-sigmas", default="0.25,0.5", help="multiplicative (diffusion=field) levels")
    p.add_argument("--input-noise", default="0,0.05,0.1,0.2,0.3", help="test-time input noise levels")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--dataset", default=None, help="default: fashion-mnist, cifar10 with --data-dir")
    p.add_argument("--data-dir", default=None, help="directory with the dataset files")
    p.add_argument("--epochs", type=int, default=None, help="override the configuration's epochs")
    p.add_argument("--subset", type=int, default=None, help="override the configuration's "
                   "training subset (images)")
    p.add_argument("--test-subset", type=int, default=None, help="override the configuration's "
                   "test subset (images)")
    p.add_argument("--sd-samples", type=int, default=4000, help="samples of the SD equivalence check (0: skip)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--out-dir", default=None, help="directory for the results (default "
                   "benchmarks/results)")
    args = p.parse_args(argv)
    set_threads(args.threads)
    dataset = default_dataset(args.dataset, args.data_dir)
    recipe = Recipe.preset(args.config, dataset, data_dir=args.data_dir, epochs=args.epochs,
                           subset=args.subset or (5120 if args.config == "quick" else None),
                           test_subset=args.test_subset, device=args.device)
    seeds, levels = parse_list(args.seeds, int), parse_list(args.input_noise, float)
    if any(lv < 0 for lv in levels):
        raise ValueError(f"--input-noise levels must be >= 0, got {levels}")
    plan = variants(args.depth, parse_list(args.additive_sigmas, float), parse_list(args.field_sigmas, float))
    known = odenets.list_models()
    missing = sorted({m for m, _ in plan.values()} - set(known))
    if missing:
        raise ValueError(f"no preset {missing} for --depth {args.depth}; depths: 20, 32, 44, 56, 110, 164")
    device = resolve_device(recipe.device)
    start = time.perf_counter()
    test = datasets.load_dataset(dataset, "test", args.data_dir, recipe.test_subset)
    runs = {name: [] for name in plan}
    for seed in seeds:
        for name, (model_name, overrides) in plan.items():
            row, model = train_one(model_name, seed, recipe, overrides, keep_model=True)
            row["accuracy"] = noisy_accuracy(model, test, levels)
            runs[name].append(row)
            print(f"[{time.perf_counter() - start:7.1f}s] {name:18s} seed {seed}: "
                  + ", ".join(f"{k}: {v:.3f}" for k, v in row["accuracy"].items()), flush=True)
    keys = [f"{lv:g}" for lv in levels]
    out = {name: dict(model=plan[name][0], overrides=plan[name][1], params=runs[name][0]["params"],
                      train_seconds=mean_std(r["train_seconds"] for r in runs[name]),
                      accuracy={k: mean_std(r["accuracy"][k] for r in runs[name]) for k in keys},
                      runs=runs[name]) for name in plan}
    payload = dict(benchmark="sde_noise", config=args.config, env=env_info(device, seeds[0]), seeds=seeds,
                   depth=args.depth, recipe=recipe.to_dict(), input_noise_levels=keys, variants=out,
                   sd_equivalence=sd_equivalence(args.sd_samples, args.depth) if args.sd_samples else None,
                   wall_seconds=time.perf_counter() - start)
    save_results(payload, f"sde_noise_{args.config}", device, args.out_dir, plot, markdown)
    return payload


if __name__ == "__main__":
    main()
