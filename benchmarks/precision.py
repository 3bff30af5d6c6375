"""Does bf16 autocast keep the converged accuracy? fp32 and bf16 campaigns, paired by seed.

Reads the fp32 converged campaign (converged_cpu.json) and the bf16 one
(converged_bf16_cpu.json: ``converged.py --amp bf16``), pairs every (model, seed) trained in
both, and gives per model the paired difference d_s = acc_bf16(s) - acc_fp32(s) with its 95%
t-interval and the exact paired-t p. Seed s fixes the data order, augmentation and initial
weights in both precisions, so only the arithmetic differs.

The rule, fixed before the bf16 runs finished: bf16 *keeps the accuracy* of a model when the
lower end of that interval lies above -MARGIN (0.2 points, about twice resnet20's seed-to-seed
standard deviation of 0.11), with >= 3 pairs; it *costs accuracy* when the upper end lies below
0; otherwise the check is undecided. Only then may a campaign use bf16 where the start-up probe
times it faster (levers_<cpu>.md has the speed, measured side by side).

    python benchmarks/precision.py            # writes benchmarks/results/precision_cpu.{json,md}
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HelpFormatter, result_path, write_json  # noqa: E402
from _stats import mean_ci, paired, paired_p  # noqa: E402
from _train_common import markdown_table  # noqa: E402
from family import campaign_runs  # noqa: E402

MARGIN = 0.002  # accuracy (0.2 points): the non-inferiority margin of the rule above
MIN_PAIRS = 3


def rule(cmp: dict) -> str:
    """'keeps accuracy', 'costs accuracy' or 'undecided (...)': the rule of the docstring."""
    lo, hi = cmp["ci95"]
    if cmp["n"] < MIN_PAIRS or lo is None:
        return f"undecided (n={cmp['n']}, needs {MIN_PAIRS} pairs)"
    if hi < 0:
        return "costs accuracy"
    if lo > -MARGIN:
        return "keeps accuracy"
    return f"undecided (interval reaches below -{MARGIN * 100:.1f} points)"


def compare(fp32: dict, bf16: dict) -> list[dict]:
    """Per model in both campaigns: the paired bf16 − fp32 difference, its rule and machines."""
    runs = {"fp32": campaign_runs(fp32), "bf16": campaign_runs(bf16)}
    acc = {p: {m: {s: r["test_acc"] for s, r in per.items()} for m, per in r.items()}
           for p, r in runs.items()}
    a, b = acc["fp32"], acc["bf16"]
    rows = []
    for model in [m for m in b if m in a]:
        cmp = paired(a[model], b[model], "fp32", "bf16")
        rows.append(dict(model=model, fp32=mean_ci(a[model][s] for s in cmp["seeds"]),
                         bf16=mean_ci(b[model][s] for s in cmp["seeds"]), comparison=cmp,
                         p=paired_p(cmp), rule=rule(cmp),
                         **{f"{p}_machines": sorted({str(r.get("device", "?"))
                                                     for r in runs[p][model].values()})
                            for p in runs}))
    return rows


def _pct(v, signed=False):
    return "—" if v is None else (f"{v * 100:+.2f}" if signed else f"{v * 100:.2f}")


def markdown(report: dict) -> str:
    lines = ["# bf16 autocast against fp32 at convergence (paired seeds)", "",
             f"Recipe `converged` in both precisions (fp32 key {report['fp32_key']}, bf16 key "
             f"{report['bf16_key']}); difference = bf16 − fp32 in points on the seeds both have, "
             f"with its 95% t-interval. Rule (fixed before the runs): bf16 keeps the accuracy when "
             f"the interval's lower end lies above −{MARGIN * 100:.1f} points with ≥ {MIN_PAIRS} "
             "pairs. The two campaigns may have run on different machines (as recorded): a seed's pair "
             "may differ in precision and in the machine's rounding.", ""]
    rows = [(r["model"], r["comparison"]["n"], f"{_pct(r['fp32']['mean'])} ± {_pct(r['fp32']['std'])}",
             f"{_pct(r['bf16']['mean'])} ± {_pct(r['bf16']['std'])}",
             _pct(r["comparison"]["mean_diff"], True),
             "—" if r["comparison"]["ci95"][0] is None else
             f"[{_pct(r['comparison']['ci95'][0], True)}, {_pct(r['comparison']['ci95'][1], True)}]",
             "—" if r["p"] is None else f"{r['p']:.3f}", r["rule"],
             "; ".join(r["fp32_machines"]), "; ".join(r["bf16_machines"]))
            for r in report["models"]]
    lines += [markdown_table(("model", "pairs", "fp32 %", "bf16 %", "bf16 − fp32", "95% CI", "p",
                              "verdict", "fp32 machine", "bf16 machine"), rows)]
    return "\n".join(lines) + "\n"


def readme_lines(report: dict) -> list[str]:
    """The README's sentence: each model's bf16 − fp32 difference, interval and verdict."""
    return ["**bf16 against fp32** (the same seeds in both campaigns; rule fixed before the bf16 "
            f"runs: bf16 keeps the accuracy when the 95% interval of bf16 − fp32 lies above "
            f"−{report['margin'] * 100:.1f} points): " + "; ".join(
                f"{r['model']} {r['comparison']['mean_diff'] * 100:+.2f} points "
                f"[{r['comparison']['ci95'][0] * 100:+.2f}, {r['comparison']['ci95'][1] * 100:+.2f}], "
                f"n={r['comparison']['n']}: {r['rule']}" for r in report["models"]
                if r["comparison"]["ci95"][0] is not None) + ".", ""]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--out-dir", default=None, help="results directory (default benchmarks/results)")
    args = p.parse_args(argv)
    paths = {amp: result_path("converged" + suffix, "cpu", args.out_dir)
             for amp, suffix in (("fp32", ""), ("bf16", "_bf16"))}
    for amp, path in paths.items():
        if not path.exists():
            raise SystemExit(f"precision.py: no {amp} campaign at {path}")
    fp32, bf16 = (json.loads(paths[a].read_text()) for a in ("fp32", "bf16"))
    report = dict(benchmark="precision", fp32_key=fp32.get("recipe_key"), bf16_key=bf16.get("recipe_key"),
                  margin=MARGIN, models=compare(fp32, bf16))
    out = result_path("precision", "cpu", args.out_dir)
    write_json(out, report)
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    from _common import run_main
    sys.exit(run_main(main))
