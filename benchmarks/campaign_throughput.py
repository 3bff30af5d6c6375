"""Local campaign layout: one worker with every core, or one worker per core?

Runs the same slice of the converged campaign (``--epochs 1`` of the converged recipe, resnet20
and lm_resnet20, seeds 0-1 by default: 4 runs) under each layout ``WORKERSxTHREADS`` (default
1x2 and 2x1 on a 2-core machine), each round in a fresh results directory, layouts interleaved
and their order alternated between rounds (machine load drifts). Reports per layout the median
campaign wall time, runs per hour, and each run's test accuracy (threads change the order of
float reductions, so accuracies may differ in the last digits; a larger gap is a defect).
The faster layout sets ``odenets.campaign.local.DEFAULT_CORES_PER_WORKER``.

    python benchmarks/campaign_throughput.py                         # 1x2 vs 2x1, 2 rounds
    python benchmarks/campaign_throughput.py --layouts 1x16,4x4,16x1 --rounds 3

Writes benchmarks/results/campaign_throughput_<device>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HelpFormatter, env_info, result_path, write_json  # noqa: E402
from _train_common import markdown_table, parse_list  # noqa: E402

from odenets.campaign import available_cores  # noqa: E402

HERE = Path(__file__).resolve().parent


def parse_layout(text: str) -> tuple[int, int]:
    try:
        workers, threads = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"bad layout {text!r}; expected WORKERSxTHREADS, e.g. 2x1") from None
    if workers < 1 or threads < 1:
        raise ValueError(f"bad layout {text!r}: workers and threads must be >= 1")
    return workers, threads


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    cores = available_cores()
    p.add_argument("--layouts", default=f"1x{cores},{cores}x1", help="WORKERSxTHREADS, comma-separated")
    p.add_argument("--models", default="resnet20,lm_resnet20")
    p.add_argument("--seeds", default="0-1")
    p.add_argument("--epochs", type=int, default=1, help="epochs of the converged recipe per run")
    p.add_argument("--rounds", type=int, default=2, help="repetitions of every layout")
    p.add_argument("--extra", default="", help="more converged.py flags, e.g. '--dataset synthetic'")
    p.add_argument("--out-dir", default=None)
    return p.parse_args(argv)


def one_campaign(workers: int, threads: int, args) -> dict:
    """Wall seconds of one campaign under this layout, and each run's test accuracy."""
    with tempfile.TemporaryDirectory(prefix="odenets-throughput-") as out:
        cmd = [sys.executable, str(HERE / "converged.py"), "--models", args.models, "--seeds",
               args.seeds, "--epochs", str(args.epochs), "--workers", str(workers),
               "--threads-per-worker", str(threads), "--out-dir", out, *args.extra.split()]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        records = [json.loads(p.read_text()) for p in Path(out).glob("*/records/*.json")
                   if not p.name.endswith(".failed.json")]
    return dict(wall_seconds=wall, runs=len(records),
                test_acc={f"{r['model']}/s{r['seed']}": r["test_acc"] for r in records})


def main(argv=None) -> dict:
    args = parse_args(argv)
    layouts = [parse_layout(t) for t in parse_list(args.layouts)]
    results = {f"{w}x{t}": [] for w, t in layouts}
    for round_ in range(args.rounds):
        order = layouts if round_ % 2 == 0 else layouts[::-1]
        for w, t in order:
            r = one_campaign(w, t, args)
            results[f"{w}x{t}"].append(r)
            print(f"round {round_}: {w} worker(s) x {t} thread(s): {r['wall_seconds']:.0f} s for "
                  f"{r['runs']} runs", flush=True)
    summary = {name: dict(median_wall_seconds=statistics.median(r["wall_seconds"] for r in rs),
                          runs_per_hour=3600 * rs[0]["runs"] / statistics.median(r["wall_seconds"] for r in rs),
                          test_acc=rs[0]["test_acc"]) for name, rs in results.items()}
    fastest = max(summary, key=lambda k: summary[k]["runs_per_hour"])
    payload = dict(benchmark="campaign_throughput", env=env_info("cpu"), cores=available_cores(),
                   models=args.models, seeds=args.seeds, epochs=args.epochs, rounds=args.rounds,
                   results=results, summary=summary, fastest=fastest)
    path = result_path("campaign_throughput", "cpu", args.out_dir)
    write_json(path, payload)
    rows = [(name, f"{s['median_wall_seconds']:.0f}", f"{s['runs_per_hour']:.1f}",
             ", ".join(f"{k}: {v * 100:.2f}" for k, v in sorted(s["test_acc"].items())))
            for name, s in summary.items()]
    md = "\n".join([f"# Campaign throughput: workers x threads ({available_cores()} cores)", "",
                    f"{args.epochs} epoch(s) of the converged recipe{(' (' + args.extra + ')') if args.extra else ''}, {args.models}, seeds "
                    f"{args.seeds}; median of {args.rounds} interleaved rounds.", "",
                    markdown_table(("layout", "median wall s", "runs/hour", "test acc % per run"), rows),
                    "", f"Fastest: {fastest}. Command: `{payload['env']['command']}`.", ""])
    path.with_suffix(".md").write_text(md)
    print(md)
    return payload


if __name__ == "__main__":
    from _common import run_main
    sys.exit(run_main(main))
