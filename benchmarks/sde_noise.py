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
intervals and a verdict (`_stats`). Each finished (variant, seed) is recorded at once (one
record file per run under benchmarks/results/sde_noise_<config>_<device>/records/, run by the
campaign engine `odenets.campaign` on local workers or SLURM); re-running the same command
skips the finished ones (resumable). The summary JSON, markdown and plots (accuracy vs input
noise, vs attack eps) are rebuilt from the records: benchmarks/results/sde_noise_<config>_<device>.*

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
from _campaign import (add_campaign_arguments, check_setup, drive,  # noqa: E402
                       load_summary, recipe_key, write_report)
from _common import HelpFormatter, env_info, result_path  # noqa: E402
from _sde_report import aggregate, compare, markdown, plot  # noqa: E402,F401 (report.py: markdown)
from _train_common import Recipe, default_dataset, parse_list, set_threads, train_one  # noqa: E402

import odenets  # noqa: E402
from odenets import campaign  # noqa: E402
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
SUBSETS = {"tiny": 32, "quick": 500, "full": 2000, "converged": 2000}  # attacked test images


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--config", choices=("tiny", "quick", "full", "converged"), dest="config",
                      help="recipe (Recipe.preset) and defaults (default: full)")
    size.add_argument("--quick", action="store_const", dest="config", const="quick",
                      help="the CPU configuration (minutes on 2 cores)")
    size.add_argument("--tiny", action="store_const", dest="config", const="tiny",
                      help="a smoke-test configuration (seconds; numbers meaningless)")
    p.set_defaults(config="full")
    p.add_argument("--depth", type=int, default=20, help="depth of every variant's ResNet")
    p.add_argument("--additive-sigmas", default=None, help="additive Gaussian noise levels "
                   "(default: 0.1,0.5 converged, else 0.1,0.3)")
    p.add_argument("--field-sigmas", default=None, help="multiplicative (diffusion=field) "
                   "levels (default: 0.5 converged, else 0.25,0.5)")
    p.add_argument("--variants", default=None, help="names of the variants to run, comma-separated "
                   "(default: all; converged: none and the Gaussian ones)")
    p.add_argument("--input-noise", default="0,0.05,0.1,0.2,0.3", help="test-time input noise levels")
    p.add_argument("--attacks", default="fgsm,pgd", help="fgsm, pgd, both or 'none'")
    p.add_argument("--attack-eps", default="0.01,0.02,0.05,0.1", help="L-inf budgets, pixel units")
    p.add_argument("--pgd-steps", type=int, default=10, help="PGD iterations")
    p.add_argument("--attack-subset", type=int, default=None, help="attacked test images (default: "
                   + ", ".join(f"{k} {v}" for k, v in SUBSETS.items()) + "; 0: all)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--dataset", default=None, help="default: fashion-mnist, cifar10 with --data-dir")
    p.add_argument("--data-dir", default=None, help="directory holding the dataset files")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--subset", type=int, default=None, help="override the recipe's training subset")
    p.add_argument("--test-subset", type=int, default=None, help="override the recipe's test subset")
    p.add_argument("--amp", default=None, choices=("auto", "off", "bf16"),
                   help="mixed precision of every run (default: the recipe's, auto: a start-up probe "
                   "per run times bf16 against fp32)")
    p.add_argument("--sd-samples", type=int, default=4000, help="samples of the SD equivalence check (0: skip)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    add_campaign_arguments(p, report=False)
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


def run_one(variant: str, seed: int, model: str, overrides: dict, recipe: dict, levels: list,
            attacks: dict, attack_subset: int | None) -> dict:
    """Train one variant once, then measure it under input noise and attacks: its record."""
    recipe = Recipe(**recipe)
    test = datasets.load_dataset(recipe.dataset, "test", recipe.data_dir, recipe.test_subset)
    t0 = time.perf_counter()
    row, net = train_one(model, seed, recipe, overrides, keep_model=True)
    row.update(variant=variant, model=model, accuracy=noisy_accuracy(net, test, levels))
    t1 = time.perf_counter()
    row["attacks"] = {a: attack_accuracy(net, test.subset(attack_subset),
                                         [0.0] + [float(e) for e in attacks["eps"]], a,
                                         attacks["pgd_steps"], seed=seed) for a in attacks["names"]}
    row["attack_seconds"], row["wall_seconds"] = time.perf_counter() - t1, time.perf_counter() - t0
    row.pop("coefficients", None)
    print(f"{variant:18s} seed {seed}: " + ", ".join(f"{k}: {v:.3f}" for k, v in row["accuracy"].items())
          + "".join(f"; {a} " + " ".join(f"{v:.3f}" for v in row["attacks"][a].values())
                    for a in attacks["names"]), flush=True)
    return row


def main(argv=None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    dataset = default_dataset(args.dataset, args.data_dir)
    recipe = Recipe.preset(args.config, dataset, data_dir=args.data_dir, epochs=args.epochs,
                           subset=args.subset or (5120 if args.config == "quick" else None),
                           test_subset=args.test_subset, device=args.device, amp=args.amp)
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
    test = datasets.load_dataset(dataset, "test", args.data_dir, recipe.test_subset)
    subset = SUBSETS[args.config] if args.attack_subset is None else (args.attack_subset or None)
    keys = [f"{lv:g}" for lv in levels]
    attacks = dict(names=names, eps=eps if names else [], pgd_steps=args.pgd_steps,
                   images=len(test.subset(subset)) if names else 0)
    setup = dict(depth=args.depth, recipe=recipe.to_dict(), input_noise_levels=keys, attacks=attacks)
    key = recipe_key({**recipe.to_dict(), **{k: v for k, v in setup.items() if k != "recipe"}})
    path = result_path(f"sde_noise_{args.config}", device, args.out_dir)
    check_setup(load_summary(path, ("variant", "seed"), key), setup, path)
    env, extra, last = env_info(device, seeds[0]), dict(sd_equivalence=None), {}

    def summary(records: list, failures: list) -> None:
        runs = [r for r in records if r["recipe_key"] == key]
        finished = [n for n in plan if any(r["variant"] == n for r in runs)]
        todo = len(plan) * len(seeds) - sum(r["seed"] in seeds and r["variant"] in plan for r in runs)
        out = dict(benchmark="sde_noise", config=args.config, env=env,
                   seeds=seeds, **setup, variants=aggregate(runs, plan, keys, attacks),
                   comparisons=compare(runs, finished, keys, attacks), runs=runs,
                   failures=failures, **extra, partial=todo > 0,
                   status="finished" if todo <= 0 else f"running: {todo} run(s) to go",
                   wall_seconds=sum(r["wall_seconds"] for r in runs))
        write_report(out, path, plot, markdown)
        last["out"] = out

    # seed-major: a campaign cut short holds whole seeds for the pairs
    runs = [campaign.Run(f"{name}__s{seed}", dict(variant=name, seed=seed),
                         dict(variant=name, seed=seed, model=model_name, overrides=overrides,
                              recipe=recipe.to_dict(), levels=levels, attacks=attacks,
                              attack_subset=subset))
            for seed in seeds for name, (model_name, overrides) in plan.items()]
    records, failures = drive(path=path, key=key, fn="sde_noise:run_one", runs=runs, args=args,
                              summary=summary, identity=("variant", "seed"), device=env["device"],
                              legacy_key=key, label="sde_noise")
    extra["sd_equivalence"] = sd_equivalence(args.sd_samples, args.depth) if args.sd_samples else None
    summary(records, failures)
    out = last["out"]
    print(markdown(out))
    print(f"wrote {path}, {path.with_suffix('.md').name} and {', '.join(out['plots']) or 'no plots'}")
    return out


if __name__ == "__main__":
    from _common import run_main
    sys.exit(run_main(main))
