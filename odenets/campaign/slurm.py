"""SLURM executor: one job-array task per run, submitted through submitit.

Each array task unpickles the `Campaign` (plain values: the engine is imported from the
installed ``odenets`` on the node, the experiment module from ``campaign.path``), claims its
run and writes its record into the campaign directory, which must be on a file system shared
by the nodes and the submitting machine. Flags map to sbatch options (`SBATCH_OPTIONS`).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .engine import Campaign, execute_one

# our flag -> (submitit SlurmExecutor parameter, the sbatch option it writes)
SBATCH_OPTIONS = {
    "slurm_partition": ("partition", "--partition"),
    "slurm_time": ("time", "--time (minutes)"),
    "slurm_cpus_per_task": ("cpus_per_task", "--cpus-per-task"),
    "slurm_gpus_per_task": ("gpus_per_task", "--gpus-per-task"),
    "slurm_mem": ("mem", "--mem"),
    "slurm_array_parallelism": ("array_parallelism", "--array=0-N%P (P)"),
}


def slurm_task(campaign: Campaign, name: str) -> str:
    """One array task: run ``name`` with the task's CPUs as torch threads."""
    threads = int(os.environ.get("SLURM_CPUS_PER_TASK", "0")) or None
    if threads:
        import torch
        torch.set_num_threads(threads)
    run = next(r for r in campaign.runs if r.name == name)
    return execute_one(campaign, run, workers=1, executor="slurm")


def run_slurm(campaign: Campaign, names: list, options: dict, on_change, poll_s: float = 5.0) -> list:
    """Submit ``names`` as one array; wait for it, calling ``on_change()`` as records appear.
    ``options``: `SBATCH_OPTIONS` keys (None: SLURM's default). The tasks' outcomes."""
    try:
        import submitit
    except ImportError:
        raise ValueError("--executor slurm needs submitit: pip install 'odenets[cluster]'") from None
    if not names:
        return []
    folder = Path(campaign.directory) / "slurm" / "%j"
    executor = submitit.SlurmExecutor(folder=folder)
    params = {SBATCH_OPTIONS[k][0]: v for k, v in options.items() if v is not None}
    executor.update_parameters(job_name=f"campaign-{Path(campaign.directory).name}", **params)
    jobs = executor.map_array(slurm_task, [campaign] * len(names), list(names))
    print(f"campaign: submitted SLURM array {jobs[0].job_id.split('_')[0]} ({len(jobs)} tasks); "
          f"logs in {folder.parent}", flush=True)
    seen = 0
    while not all(j.done() for j in jobs):
        time.sleep(poll_s)
        done = sum(j.done() for j in jobs)
        if done != seen:
            seen = done
            on_change()
    outcomes = []
    for name, job in zip(names, jobs):
        try:
            outcomes.append(job.result())
        except Exception as e:  # the task itself died (node failure, time limit): no record
            print(f"campaign: SLURM task {job.job_id} ({name}) failed: {type(e).__name__}: "
                  f"{str(e).splitlines()[0] if str(e) else ''}", flush=True)
            outcomes.append("lost")
    return outcomes
