"""Benchmark campaigns: independent runs, one record file each, on local workers or SLURM.

    campaign = Campaign(directory="results/converged_cpu", key=key, fn="converged:run_one",
                        runs=[Run("resnet20__s0", dict(model="resnet20", seed=0), {...}), ...],
                        path=["benchmarks"])
    records, failures = run_campaign(campaign, args, on_change=rewrite_summary)

`add_arguments` adds the executor flags (``--executor local|slurm``, ``--workers``,
``--threads-per-worker``, ``--gpus``, ``--slurm-*``). See docs/campaigns.md.
"""
from __future__ import annotations

import argparse

from .engine import Campaign, Run, collect, execute_one, pending
from .local import DEFAULT_CORES_PER_WORKER, available_cores, default_layout, run_local
from .records import git_version, provenance_line, read_legacy
from .slurm import SBATCH_OPTIONS, run_slurm

__all__ = ["Campaign", "Run", "add_arguments", "run_campaign", "collect", "execute_one",
           "pending", "git_version", "provenance_line", "read_legacy", "available_cores",
           "DEFAULT_CORES_PER_WORKER", "SBATCH_OPTIONS"]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("campaign execution (docs/campaigns.md)")
    g.add_argument("--executor", default="local", choices=("local", "slurm"),
                   help="local: worker processes here; slurm: a job array via submitit")
    g.add_argument("--workers", type=_positive, default=None, help="local worker processes "
                   "(default: one per GPU with --gpus, else one using every core)")
    g.add_argument("--threads-per-worker", type=_positive, default=None,
                   help="torch CPU threads per local worker (default: cores / workers)")
    g.add_argument("--gpus", default=None, help="local: comma-separated GPU ids, one worker each "
                   "(CUDA_VISIBLE_DEVICES per worker), e.g. 0,1,2,3")
    for flag, kind, text in (("partition", str, "sbatch --partition"),
                             ("time", _positive, "sbatch --time, minutes per run"),
                             ("cpus-per-task", _positive, "sbatch --cpus-per-task (= torch threads)"),
                             ("gpus-per-task", _positive, "sbatch --gpus-per-task"),
                             ("mem", str, "sbatch --mem, e.g. 8G"),
                             ("array-parallelism", _positive, "at most this many tasks at once "
                              "(sbatch --array=0-N%%P)")):
        g.add_argument(f"--slurm-{flag}", type=kind, default=None, help=text)


def run_campaign(campaign: Campaign, args, on_change, max_runs: int | None = None,
                 label: str = "campaign") -> tuple[list, list]:
    """Run every pending run of ``campaign`` on the executor ``args`` chose (`add_arguments`);
    ``on_change()`` whenever records appear; ``(records, failures)`` at the end."""
    records, _ = collect(campaign)
    todo = pending(campaign, records)
    for run in campaign.runs:
        if run not in todo:
            print(f"{run.name}: already in {campaign.directory}, skipped", flush=True)
    todo = todo[:max_runs] if max_runs is not None else todo
    names = [r.name for r in todo]
    executor = getattr(args, "executor", "local")
    print(f"{label}: {len(campaign.runs)} runs, {len(campaign.runs) - len(pending(campaign, records))} "
          f"already recorded, {len(names)} to run ({executor})", flush=True)
    if executor == "slurm":
        run_slurm(campaign, names, {k: getattr(args, k, None) for k in SBATCH_OPTIONS}, on_change)
    else:
        gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if getattr(args, "gpus", None) else None
        threads = getattr(args, "threads_per_worker", None) or getattr(args, "threads", None)
        workers, threads = default_layout(getattr(args, "workers", None), threads, gpus)
        run_local(campaign, names, workers, threads, on_change, gpus)
    return collect(campaign)
