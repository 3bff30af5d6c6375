"""Local executor: N worker processes on this machine, each taking the next unclaimed run.

``workers == 1`` runs in this process (no start-up cost; what a test monkeypatches is what
runs). Otherwise workers are spawned processes (``multiprocessing`` 'spawn': no forked torch
state); each sets ``torch.set_num_threads(threads)`` and, given ``gpus``, sees only its own
GPU (``CUDA_VISIBLE_DEVICES``), so a server with 4 GPUs runs 4 trainings at once. The parent
rebuilds the summary whenever a record appears.
"""
from __future__ import annotations

import multiprocessing
import os
import time

from .engine import Campaign, worker_loop
from .records import RECORDS

# Cores per local worker when --workers is not given (None: one worker using every core). Set
# from benchmarks/campaign_throughput.py (results/campaign_throughput_cpu.md): on 2 CPU cores,
# 2 workers x 1 thread ran 24.2 converged-recipe runs/hour against 19.9 for 1 worker x 2
# threads (1.22x; the step-level levers.py gave 1.29x): one worker per core.
DEFAULT_CORES_PER_WORKER: int | None = 1


def available_cores() -> int:
    """Cores this process may run on (its affinity mask: taskset, cgroups, SLURM)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_layout(workers: int | None, threads: int | None, gpus: list | None = None) -> tuple:
    """``(workers, threads per worker)``: one worker per GPU when ``gpus`` are given; else
    ``DEFAULT_CORES_PER_WORKER`` cores each; threads default to the cores split evenly (None
    for a single worker: torch's own default)."""
    cores = available_cores()
    if workers is None:
        workers = len(gpus) if gpus else (
            1 if DEFAULT_CORES_PER_WORKER is None else max(1, cores // DEFAULT_CORES_PER_WORKER))
    if threads is None and workers > 1:
        threads = max(1, cores // workers)
    return workers, threads


def _spawned(campaign: Campaign, names: list, threads, workers: int, gpu) -> None:
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    worker_loop(campaign, names, threads, workers)


def _record_count(campaign: Campaign) -> int:
    folder = os.path.join(campaign.directory, RECORDS)
    return len(os.listdir(folder)) if os.path.isdir(folder) else 0


def run_local(campaign: Campaign, names: list, workers: int, threads: int | None,
              on_change, gpus: list | None = None, poll_s: float = 2.0) -> None:
    """Run ``names`` on ``workers`` local workers; ``on_change()`` after each new record."""
    if workers == 1:
        if gpus:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus[0])
        worker_loop(campaign, names, threads, 1, on_record=on_change)
        return
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_spawned, name=f"campaign-worker-{i}",
                         args=(campaign, names, threads, workers,
                               gpus[i % len(gpus)] if gpus else None))
             for i in range(workers)]
    for p in procs:
        p.start()
    seen = _record_count(campaign)
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(poll_s)
            now = _record_count(campaign)
            if now != seen:
                seen = now
                on_change()
    finally:
        for p in procs:
            p.join()
    bad = [f"{p.name} exit code {p.exitcode}" for p in procs if p.exitcode]
    if bad:
        print(f"campaign: {', '.join(bad)} (its run, if any, left no record and is retried "
              "next time)", flush=True)
