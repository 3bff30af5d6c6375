"""Write benchmarks/results/RESULTS.md from the committed benchmark JSON files.

Reads every ``compare_schemes_*.json``, ``speed_*.json``, ``sde_noise_*.json`` (and, when
present, ``solver_overhead_*.json``) under benchmarks/results/ and renders their tables, the
goals of the speed benchmark (met / not met), links to the plots, and the paper's CIFAR-10
numbers (Lu et al. 2018, docs/schemes.md §6): beside ours where the setting matches (CIFAR-10,
full recipe), otherwise in a separate reference table with the parameter counts of our CIFAR-10
presets, which do not depend on the training setting.

    python benchmarks/report.py            # rewrites benchmarks/results/RESULTS.md
    python benchmarks/report.py --readme   # ... and the results section of README.md

Also home of the speed benchmark's goal checks and markdown (`speed_goals`, `speed_markdown`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _goals  # noqa: E402
from _common import RESULTS, load_note  # noqa: E402
from _train_common import markdown_table, pyplot  # noqa: E402

# docs/schemes.md §6: CIFAR-10 test accuracy %, basic blocks, and ResNet parameter counts.
PAPER_CIFAR10 = {20: (91.25, 91.67, "0.27M"), 32: (92.49, 92.82, "0.46M"), 44: (92.83, 92.98, "0.66M"),
                 56: (93.03, 93.69, "0.85M"), 110: (93.63, None, "1.7M")}
PAPER = "Lu, Zhong, Li, Dong, ICML 2018, Table (CIFAR-10, basic blocks)"


# -- speed: goals and markdown ---------------------------------------------------------------------
def plot_memory(memory: dict, stem: Path) -> str:
    """memory-vs-depth PNG beside ``stem``; returns its file name."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for family, label, marker in (("resnet", "resnet (Euler)", "o"),
                                  ("rev_resnet", "rev_resnet (reversible)", "s")):
        depths = sorted(memory[family], key=int)
        ax.plot([int(d) for d in depths], [memory[family][d]["saved_tensor_bytes"] / 2**20 for d in depths],
                marker=marker, label=label)
    ax.set_xlabel("depth")
    ax.set_ylabel("activation memory (MiB saved for backward)")
    ax.set_title("activation memory vs depth (one training forward)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = stem.with_name(f"{stem.name}_memory_vs_depth.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def speed_markdown(payload: dict) -> str:
    env, cfg = payload["env"], payload["config"]
    lines = [f"# Training-step speed and memory ({env['device']})", "",
             f"torch {env['torch']}, {env['torch_threads']} thread(s), batch {cfg['batch']}, channels_last "
             f"{cfg['channels_last']}; {cfg['rounds']} interleaved rounds of {cfg['iters']} step(s) after "
             f"{cfg['warmup']} warm-up steps; medians. {payload['note']}" + load_note(env),
             f"Command: `{env['command']}`", ""]
    skipped = [k for k, v in payload["skipped"].items() if v]
    if skipped:
        lines += [f"Skipped (not installed): {', '.join(skipped)}.", ""]
    lines += ["## Goals", "", _goals.markdown(payload["goals"]), ""]
    for key, rows in payload["results"].items():
        gpu = any(r.get("peak_allocated_bytes") for r in rows.values())
        errors = {name: r["error"] for name, r in rows.items() if "error" in r}
        rows = {name: r for name, r in rows.items() if "error" not in r}
        head = ["model", "ms/step", "IQR ms", "img/s", "params", "MMACs/img", "activations MiB"]
        cpu_peak = not gpu and any(r.get("fraction_of_peak") for r in rows.values())
        head += ["peak MiB", "TFLOP/s", "of peak"] if gpu else ["GFLOP/s"] + (["of peak"] if cpu_peak else [])
        body = []
        for name, r in rows.items():
            row = [name, f"{1e3 * r['s_per_step']:.1f}", f"{1e3 * r['iqr_s']:.1f}", f"{r['img_per_s']:.0f}",
                   f"{r['params']:,}", f"{r['macs_per_image'] / 1e6:.1f}", f"{r['saved_tensor_bytes'] / 2**20:.1f}"]
            if gpu:
                frac = r.get("fraction_of_peak")
                row += [f"{r['peak_allocated_bytes'] / 2**20:.0f}", f"{r['achieved_tflops']:.1f}",
                        "—" if frac is None else f"{100 * frac:.1f}%"]
            else:
                frac = r.get("fraction_of_peak")
                row += [f"{1e3 * r['achieved_tflops']:.1f}"] + (
                    ["—" if frac is None else f"{100 * frac:.1f}%"] if cpu_peak else [])
            body.append(row)
        lines += [f"## {key}", "", markdown_table(head, body), ""]
        lines += [f"- {name} failed: `{err}`" for name, err in errors.items()] + ([""] if errors else [])
    mem = payload.get("memory_vs_depth") or {}
    if mem:
        depths = sorted(mem["resnet"], key=int)
        lines += ["## Activation memory vs depth (MiB saved for backward, one forward)", "",
                  markdown_table(["depth"] + depths,
                                 [[f] + [f"{mem[f][d]['saved_tensor_bytes'] / 2**20:.1f}" for d in depths]
                                  for f in ("resnet", "rev_resnet")]), ""]
        lines += [f"![memory vs depth]({p})" for p in payload.get("plots", [])] + [""]
    return "\n".join(lines)


# -- RESULTS.md ------------------------------------------------------------------------------------
def paper_section(compare: list[dict]) -> str:
    """The paper's CIFAR-10 table, beside our depth sweep where the setting matches."""
    import odenets
    lines = ["## The paper's numbers", "", f"Source: {PAPER} (docs/schemes.md §6)."]
    matching = [p for p in compare if p["recipe"]["dataset"] == "cifar10" and p["config"] == "full"]
    ours = {}
    for p in matching:
        for name, m in p["models"].items():
            ours[name] = f"{100 * m['test_acc']['mean']:.2f} ± {100 * m['test_acc']['std']:.2f}"
    if not matching:
        lines += ["", "No committed run matches the paper's setting (CIFAR-10, full recipe) yet: the "
                  "committed runs are short CPU runs on Fashion-MNIST, so only the architecture "
                  "(parameter counts, which do not depend on the training) is compared here.", ""]
    head = ["depth", "paper ResNet %", "paper LM-ResNet %", "paper params", "our resnet params (CIFAR-10)",
            "our lm_resnet params"]
    if matching:
        head += ["our ResNet %", "our LM-ResNet %"]
    rows = []
    for depth, (res, lm, params) in PAPER_CIFAR10.items():
        row = [depth, f"{res:.2f}", "—" if lm is None else f"{lm:.2f}", params]
        for fam in ("resnet", "lm_resnet"):
            row.append(f"{odenets.info(f'{fam}{depth}', input_size=(1, 3, 32, 32))['params'] / 1e6:.3f}M")
        if matching:
            row += [ours.get(f"resnet{depth}", "—"), ours.get(f"lm_resnet{depth}", "—")]
        rows.append(row)
    return "\n".join(lines + [markdown_table(head, rows), ""])


def load(pattern: str, results: Path) -> list[dict]:
    out = []
    for path in sorted(results.glob(pattern)):
        if "_tiny_" in path.name:  # smoke-test output, not results
            continue
        payload = json.loads(path.read_text())
        payload["_file"] = path.name
        out.append(payload)
    return out


def other_recipe(payload: dict) -> str | None:
    """The named training recipe (`odenets.train.recipes`) of a converged.py campaign other
    than ``converged`` itself (``long``), else None."""
    from odenets.train.recipes import RECIPES
    name = payload.get("recipe_name")
    return name if name in RECIPES and name != "converged" else None


def campaign_order(payload: dict) -> tuple:
    """The 10-epoch converged campaigns first (fp32, then bf16), then other recipes (``long``):
    each campaign is its own table, never merged with another recipe's runs."""
    return (other_recipe(payload) is not None, payload["recipe"].get("amp") == "bf16")


def demote(text: str) -> str:
    """Lower every markdown heading one level (sections inside RESULTS.md)."""
    return "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())


def build_report(results: Path = RESULTS) -> str:
    import compare_schemes
    import converged
    import cross_solver
    import family
    import precision
    import momentum_flows
    import sde_noise
    compare = load("compare_schemes_*.json", results)
    speed = load("speed_*.json", results)
    sde = load("sde_noise_*.json", results)
    devices = sorted({p["env"]["device_type"] for p in compare + speed + sde})
    lines = ["# Benchmark results", "",
             "Generated by `python benchmarks/report.py` from the JSON files in this directory; do "
             "not edit by hand. Each section names its device, torch version, seeds and command.", ""]
    if devices == ["cpu"]:
        lines += ["No GPU was available when these results were made: all numbers are from CPU "
                  "runs (short training runs on Fashion-MNIST for the accuracy benchmarks). The "
                  "scripts are GPU-ready (CUDA-event timing, max_memory_allocated, bf16 autocast, "
                  "torch.compile, device-named result files); the full configurations are meant "
                  "for a GPU.", ""]
    for p in load("family_*.json", results):
        lines += [demote(family.markdown(p)), ""]
    for p in load("precision_*.json", results):
        lines += [demote(precision.markdown(p)), ""]
    for p in sorted(load("converged_*.json", results), key=lambda p: campaign_order(p)[0]):
        lines += [demote(converged.markdown(p)), ""]
        lines += [f"![{name}]({name})" for name in p.get("plots", [])] + [""]
    if compare:
        lines += ["## Smoke runs (short, under-trained)", "",
                  "The runs below train for 1-3 epochs, mostly on subsets: they check that every "
                  "scheme trains and measure its cost, but their accuracy differences sit inside "
                  "seed noise and say nothing about the schemes. The converged comparison above "
                  "is the evidence.", ""]
    for p in compare:
        lines += [demote(demote(compare_schemes.markdown(p))), ""]
        lines += [f"![{name}]({name})" for name in p.get("plots", [])] + [""]
    lines += [paper_section(compare)]
    for p in sde:
        lines += [demote(sde_noise.markdown(p)), ""]
        lines += [f"![{name}]({name})" for name in p.get("plots", [])] + [""]
    for p in load("cross_solver_*.json", results):
        lines += [demote(cross_solver.markdown(p)), ""]
        lines += [f"![{name}]({name})" for name in p.get("plots", [])] + [""]
    # the current campaign first, superseded ones after it (their headings say so)
    for p in sorted(load("momentum_flows_*.json", results), key=lambda p: bool(p.get("superseded_by"))):
        lines += [demote(momentum_flows.markdown(p)), ""]
        lines += [f"![{name}]({name})" for name in p.get("plots", [])] + [""]
    for p in speed:
        lines += [demote(speed_markdown(p)), ""]
    for p in load("solver_overhead_*.json", results):
        rows = [[mode, k, "—" if v is None else f"{v:.2f}"] for mode, s in p["summary"].items() for k, v in s.items()]
        lines += [f"## Solver overhead per step ({p['env']['device']}, from `{p['_file']}`)", "",
                  markdown_table(["mode", "quantity", "value"], rows), ""]
    return "\n".join(lines).rstrip() + "\n"


# -- README.md -------------------------------------------------------------------------------------
README = RESULTS.parent.parent / "README.md"
MARKERS = ("<!-- results:start -->", "<!-- results:end -->")


def first_table(markdown: str) -> str:
    """The first markdown table of a text (its header, rule and rows)."""
    lines = markdown.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        return ""
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def seeds_text(seeds) -> str:
    """'0, 1, 2' (no Python list in the text)."""
    return ", ".join(map(str, seeds))


def noise_injection_lines(payloads: list) -> list[str]:
    """README lines of the converged noise-injection runs. The rule, stated in the text: the
    clean comparison of each noisy variant, and every comparison whose 95% interval excludes 0."""
    from _stats import significant, verdict
    out = []
    for p in payloads:
        cmps = p.get("comparisons", [])
        shown = [c for c in cmps if c["metric"] == "clean" or significant(c)]
        status = "" if not p.get("partial") else f"; partial: {p.get('status')}"
        out += [f"**Noise injection at convergence** (resnet{p['depth']}, Euler-Maruyama noise in "
                f"training, {p['recipe']['dataset']}, seeds {seeds_text(p['seeds'])}, recipe "
                f"`converged`{status}; paired against sigma = 0; 95% t-intervals without a "
                f"correction for the {len(cmps)} comparisons). Shown: the clean accuracy and every "
                f"comparison whose interval excludes 0 ({len(shown)} of {len(cmps)}; all in "
                "RESULTS.md):", ""]
        out += [f"- {c['metric']}: {verdict(c)}" for c in shown] + [""]
    return out


def cross_solver_lines(payloads: list) -> list[str]:
    """README lines of the converged cross-solver runs: setting and verdict."""
    return [line for p in payloads for line in (
        f"**Is it an ODE?** ({p['model']} tied, trained with K forward-Euler steps per flow, "
        f"recipe `{p['config']}`, seeds {seeds_text(p['seeds'])}; re-solved with "
        f"{', '.join(p['eval_solvers'])} on {', '.join(map(str, p['eval_steps']))} steps by "
        f"`odenets eval RUN --solver S --steps N`): {p['verdict'].removeprefix('Verdict: ')}", "")]


def momentum_lines(payloads: list) -> list[str]:
    """README lines of the momentum-flow runs: paired verdicts and the comparison with the
    heavy-ball anchor."""
    out = []
    for p in payloads:
        models, runs = list(p.get("models", {})), p["runs"]
        out += [f"**Momentum flows** ({' vs '.join(models)}, dopri5, recipe `{p['config']}`: "
                f"{p['recipe']['epochs']} epochs on {p['recipe'].get('subset') or 'all'} training "
                f"images, seeds {seeds_text(sorted({r['seed'] for r in runs}))}; per training step, last "
                "epoch):", ""]
        out += [f"- {c['metric']}: {c['verdict']}" for c in p.get("comparisons", [])]
        out += [f"- against the anchor: {v}" for v in p.get("anchor_verdict", [])] + [""]
    return out


def readme_section(results: Path = RESULTS) -> str:
    """A short results section for README.md: headline tables, each with its device, and a link
    to the full RESULTS.md."""
    import converged
    import family
    import precision
    out = ["Generated by `python benchmarks/report.py --readme` from the committed JSON in "
           "`benchmarks/results/` (full tables, commands and plots: "
           "[RESULTS.md](benchmarks/results/RESULTS.md)).", ""]
    out += family.readme_lines(sorted(load("family_*.json", results),  # fp32 first
                                      key=lambda p: p.get("precision") == "bf16"))
    for p in sorted(load("converged_*.json", results), key=campaign_order):
        recipe, runs = p["recipe"], p["runs"]
        minutes = sum(r["seconds"] for r in runs) / max(len(runs), 1) / 60
        machines = " / ".join(sorted({str(r.get("device", "?")) for r in runs})) or p["env"]["device"]
        name = other_recipe(p)
        title = f"{name.capitalize()} recipe ({recipe['epochs']} epochs)" if name else "Converged"
        out += [f"**{title}, paired seeds, {'bf16' if recipe.get('amp') == 'bf16' else 'fp32'}** "
                f"({recipe['dataset']}, recipe `{p['recipe_name']}`: "
                f"{recipe['epochs']} epochs on {runs[0]['train_images'] if runs else '?'} images, "
                f"{recipe['val_split']} held out for validation, {recipe['schedule']} lr "
                f"{recipe['lr']}, label smoothing {recipe['label_smoothing']}; {minutes:.1f} min per "
                f"run on {machines}, torch {p['env']['torch']}; final-epoch test "
                f"accuracy):", "", first_table(converged.markdown(p)), ""]
        out += [f"- {c['verdict']}" for c in p.get("comparisons", [])] + [""]
    for p in load("precision_*.json", results):
        out += precision.readme_lines(p)
    out += noise_injection_lines(load("sde_noise_converged_*.json", results))
    out += cross_solver_lines(load("cross_solver_converged_*.json", results))
    out += momentum_lines([p for p in load("momentum_flows_*.json", results)
                           if not p.get("superseded_by")])
    smoke = load("compare_schemes_*.json", results)
    if smoke:
        out += ["Short CPU smoke runs of every scheme (1-3 epochs; differences inside seed noise: "
                "they show cost, not accuracy): " + ", ".join(
                    f"`{p['_file'].replace('.json', '.md')}`" for p in smoke) + " in RESULTS.md.", ""]
    out += _goals.readme_speed(load("speed_*.json", results))
    more = _goals.more_goals(results)
    if more:
        out += ["**More speed goals** (solver_overhead_*.json, levers_cpu.json; the machines and "
                "settings are in their markdown):", "", _goals.markdown(more), ""]
    out += [paper_section(load("compare_schemes_*.json", results)).replace("## ", "**", 1)
            .replace("\n", "**\n", 1)]
    return "\n".join(out).rstrip() + "\n"


def update_readme(readme: Path = README, results: Path = RESULTS) -> Path:
    """Replace the text between the results markers of README.md."""
    text = readme.read_text()
    start, end = (text.find(m) for m in MARKERS)
    if start < 0 or end < start:
        raise ValueError(f"{readme}: missing the markers {MARKERS[0]} ... {MARKERS[1]}")
    readme.write_text(text[:start + len(MARKERS[0])] + "\n" + readme_section(results)
                      + text[end:])
    return readme


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", default=str(RESULTS), help="directory holding the JSON files")
    p.add_argument("--out", default=None, help="output file (default RESULTS/RESULTS.md)")
    p.add_argument("--readme", action="store_true", help="also rewrite the results section of "
                   "README.md (only from the committed results directory)")
    args = p.parse_args(argv)
    results = Path(args.results)
    out = Path(args.out) if args.out else results / "RESULTS.md"
    out.write_text(build_report(results))
    print(f"wrote {out}")
    # README.md shows the committed results only, never those of another --results directory
    if args.readme:
        if results.resolve() != RESULTS.resolve() or not README.exists():
            raise ValueError(f"--readme rewrites {README} from the committed results in {RESULTS} "
                             f"only, not from {results}")
        print(f"updated {update_readme(README, results)}")
    return out


if __name__ == "__main__":
    from _common import run_main
    sys.exit(run_main(main))
