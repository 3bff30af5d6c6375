"""Shared helpers for benchmark scripts: run metadata, result paths, JSON output, timing.

    from _common import env_info, result_path, write_json
    payload = {"env": env_info(seed=0), "results": {...}}
    write_json(result_path("solver_overhead", device), payload)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path

import torch

from odenets.campaign.records import git_version

RESULTS = Path(__file__).resolve().parent / "results"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default once: not when its help already names it, nor when it is None."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS, False):
            return text
        return super()._get_help_string(action)


def device_name(device="cpu") -> str:
    """Human-readable device: the GPU's name for CUDA, else the CPU's model (or 'cpu')."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def device_tag(device="cpu") -> str:
    """Short file-name tag: 'cpu', or the GPU name slugged (e.g. 'nvidia_h100_80gb_hbm3')."""
    device = torch.device(device)
    if device.type != "cuda":
        return device.type
    return re.sub(r"[^a-z0-9]+", "_", device_name(device).lower()).strip("_")


def result_path(name: str, device="cpu", out_dir=None) -> Path:
    """<out_dir, default benchmarks/results>/<name>_<device tag>.json"""
    return Path(out_dir or RESULTS) / f"{name}_{device_tag(device)}.json"


def env_info(device="cpu", seed: int | None = None) -> dict:
    """Metadata every result file carries: device, versions, threads, machine load (other
    processes skew CPU timings), seed, command line, git commit, time."""
    device = torch.device(device)
    return {
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15min": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "seed": seed,
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        **git_version(Path(__file__).parent),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def synchronize(device="cpu") -> None:
    """Wait for queued GPU work (no-op on CPU), so wall-clock timings are honest."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, device="cpu", clock: str = "wall") -> float:
    """Seconds one call of ``fn()`` takes, device work included.

    ``clock="wall"``: elapsed time (``perf_counter``, after a GPU sync). ``clock="process"``:
    CPU time of this process (``process_time``), which excludes time spent preempted by other
    processes: on a shared CPU machine it is the stable measure, but it sums over threads, so
    use it with ``torch.set_num_threads(1)`` (and never for GPU work).
    """
    if clock not in ("wall", "process"):
        raise ValueError(f"clock must be 'wall' or 'process', got {clock!r}")
    timer = time.perf_counter if clock == "wall" else time.process_time
    synchronize(device)
    start = timer()
    fn()
    synchronize(device)
    return timer() - start


def run_main(main, argv=None) -> int:
    """``main(argv)`` as a script's entry point: a user's error (a bad flag value, a malformed
    or unwritable results file: ValueError, OSError) is one line, ``<script>: error: ...``,
    exit status 2; ``ODENETS_DEBUG=1`` shows the traceback (as the ``odenets`` command does)."""
    try:
        status = main(argv)
        return status if isinstance(status, int) else 0  # some mains return their results
    except (ValueError, OSError) as e:
        if os.environ.get("ODENETS_DEBUG") or isinstance(e, BrokenPipeError):
            raise
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        return 2


def load_note(env: dict) -> str:
    """' Machine load ...' when other work shared the CPU during the run (1-minute load average
    of at least half the cores), else ''."""
    load, cores = (env.get("load_average_1_5_15min") or [None])[0], env.get("cpu_count") or 1
    if load is None or load < cores / 2:
        return ""
    return (f" The machine was shared during the run (1-minute load average {load:.1f} on {cores} "
            "cores): ratios are interleaved, absolute times less reliable.")
