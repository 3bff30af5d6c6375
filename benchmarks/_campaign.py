"""The benchmark side of a campaign: summary files rebuilt from run records.

Every campaign script (converged, momentum_flows, sde_noise, cross_solver) declares its runs
and its run function and calls `drive`; the engine (`odenets.campaign`) runs them on the
chosen executor and writes one record per run under ``<results>/<name>_<device>/records/``;
this module rebuilds ``<name>_<device>.json`` (the summary, with every record in ``runs``:
the format report.py, README and RESULTS.md read), its markdown and plots from the records
after each new one. A summary written before records existed counts as the records it holds
(legacy import), so an older campaign continues without re-running anything. A resumable
campaign (``drive(resumable=True)``: converged.py) trains each run in
``<results>/<name>_<device>/partial/<run>__<key>/`` with a checkpoint every epoch: started
again after a kill, the same command continues every unfinished run from its last checkpoint.

    python benchmarks/converged.py --models resnet20,lm_resnet20 --seeds 0-2 --workers 2
    python benchmarks/converged.py --executor slurm --slurm-partition gpu --slurm-time 60
"""
from __future__ import annotations

import hashlib
import json
import sys
import traceback
from pathlib import Path

from odenets.campaign import (Campaign, add_arguments, collect, git_version, read_legacy,
                              run_campaign)
from odenets.campaign.records import read_json, write_atomic, write_json

BENCH = str(Path(__file__).resolve().parent)


def add_campaign_arguments(p, report: bool = True) -> None:
    """``--threads``, ``--out-dir``, (``report``: ``--max-runs``, ``--report-only``) and the
    executor flags of `odenets.campaign.add_arguments`."""
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads of a single "
                   "worker (default: torch's; several workers: --threads-per-worker)")
    p.add_argument("--out-dir", default=None, help="results directory (default benchmarks/results)")
    if report:
        p.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs")
        p.add_argument("--report-only", action="store_true", help="rebuild the summary, markdown "
                       "and plots from the stored records and recipe, training nothing (recipe "
                       "flags ignored)")
    add_arguments(p)


def recipe_key(recipe: dict) -> str:
    """A short fingerprint of a recipe (runs are comparable only under the same one)."""
    fixed = {k: v for k, v in recipe.items() if k not in ("device", "data_dir")}
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:10]


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,2,5' -> [0, 2, 5]."""
    seeds = []
    for part in (t.strip() for t in str(text).split(",") if t.strip()):
        lo, _, hi = part.partition("-")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
        except ValueError:
            raise ValueError(f"bad --seeds item {part!r}; expected N or N-M") from None
    if not seeds:
        raise ValueError(f"empty --seeds {text!r}")
    return sorted(set(seeds))


def load_summary(path: Path, identity: tuple, default_key: str | None = None) -> dict:
    """The stored summary at ``path`` ({} when there is none), its runs checked (one-line
    ValueError naming the file and the fault: not an object, no runs, a null record, no
    recipe key, a non-numeric accuracy, a run stored twice)."""
    path = Path(path)
    if not path.exists():
        return {}
    if not path.is_file():
        raise ValueError(f"{path} is not a file; move it away to start afresh")
    read_legacy(path, identity, default_key)
    stored = read_json(path)
    if not isinstance(stored.get("recipe_key", ""), str):
        raise ValueError(f"{path}: recipe_key is {stored['recipe_key']!r}, expected a string")
    return stored


def report_header(stored: dict, header: dict, path: Path, report_only: bool) -> tuple[dict, str]:
    """``(header, recipe key)`` of the summary: ``header`` (built from the flags) for a
    campaign; for ``--report-only`` the stored values of its keys (recipe, key, env...), since
    a report must never change what the records were run with."""
    if not report_only:
        return header, header["recipe_key"]
    if not stored.get("recipe_key"):
        raise ValueError(f"--report-only: {path} holds no campaign to report")
    if stored["recipe_key"] != header["recipe_key"]:
        print(f"--report-only reports the stored recipe (key {stored['recipe_key']}); the recipe "
              f"flags (key {header['recipe_key']}) are ignored", flush=True)
    return {**header, **{k: stored[k] for k in header if k in stored}}, stored["recipe_key"]


def check_setup(stored: dict, setup: dict, path: Path) -> None:
    """ValueError when ``stored`` was made with another ``setup`` (each differing key named)."""
    if not stored:
        return
    differs = {k: (stored.get(k), v) for k, v in setup.items()
               if json.loads(json.dumps(v)) != stored.get(k)}
    if differs:
        what = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in differs.items())
        raise ValueError(f"{path} holds runs of another setup ({what}); pass another --out-dir "
                         f"or move the file and its folder away to start afresh")


def write_report(payload: dict, path: Path, plot_fn, markdown_fn) -> None:
    """Summary JSON first (atomically), then the plots of ``plot_fn(payload, stem)`` (a plot
    that fails never costs the results: ``plot_error``) and the markdown."""
    stem = Path(path).with_suffix("")
    try:
        payload["plots"] = plot_fn(payload, stem) if payload.get("runs") else []
    except Exception as e:  # no matplotlib (a bare GPU image), a full disk: the results count
        if not isinstance(e, (OSError, ValueError)):
            traceback.print_exc()
        print(f"plots not written: {e}", file=sys.stderr, flush=True)
        payload["plots"], payload["plot_error"] = [], f"{type(e).__name__}: {e}"
    write_json(path, payload)
    write_atomic(stem.with_suffix(".md"), markdown_fn(payload) + "\n")


def drive(*, path: Path, key: str, fn: str, runs: list, args, summary, identity=("model", "seed"),
          device: str = "cpu", legacy_key: str | None = None, keep_weights: bool = False,
          resumable: bool = False, report_only: bool = False, max_runs: int | None = None, label: str = "campaign") -> list:
    """Run ``runs`` (`odenets.campaign.Run`) of ``fn`` ("module:function" in benchmarks/)
    under recipe ``key`` on the executor of ``args``, rewriting the summary at ``path`` with
    ``summary(records, failures of this key)`` after each new record and at the end; ``(records,
    failures)``. ``legacy_key``: the key of stored runs without one (files checked whole
    by `check_setup`). ``resumable``: ``fn`` takes ``work_dir`` and continues a killed run there
    (``<results>/<name>_<device>/partial/<run>__<key>/``, removed once the record is written)."""
    path = Path(path)
    campaign = Campaign(directory=str(path.with_suffix("")), key=key, fn=fn, runs=runs,
                        identity=tuple(identity), path=[BENCH], legacy=str(path),
                        legacy_key=legacy_key, keep_weights=keep_weights, resumable=resumable,
                        stamp=dict(device=device, **git_version(BENCH)))

    def refresh() -> tuple[list, list]:
        records, failures = collect(campaign)
        failures = [f for f in failures if f["recipe_key"] == key]  # of this recipe only
        summary(records, failures)
        return records, failures

    if not report_only:
        run_campaign(campaign, args, refresh, max_runs=max_runs, label=label)
    return refresh()
