"""The campaign engine: a set of independent runs -> one record file per run.

A campaign is (directory, recipe key, run function, runs). Each `Run` names one training
(e.g. ``resnet20__s0``), the fields that identify it in its record (``model``, ``seed``) and
the keyword arguments of the run function. `execute_one` claims a run (`claims`), calls the
function, stamps the record (recipe key, provenance, host, threads) and writes it atomically
(`records`); a run that raises leaves a ``.failed.json`` record and the campaign goes on.
A ``resumable`` campaign also hands the run function a persistent ``work_dir``
(``<dir>/partial/<run>__<key>/``) to checkpoint into: a run killed at any moment (SIGKILL, a
session's end, a SLURM time limit) continues there when the campaign is started again, and the
folder is removed once the record is written.
Executors (`local`, `slurm`) only decide *where* `execute_one` is called; every executor,
and every campaign started at once over the same directory, coordinates through the claims,
so each run is done exactly once.

Why in the package and not in ``benchmarks/``: a SLURM array task (submitit pickles the call)
or a spawned worker must import the engine on any node from the installed ``odenets``; the
experiment definitions stay in ``benchmarks/`` and are named by ``"module:function"`` plus the
folder that holds the module, so nothing is pickled by value.
"""
from __future__ import annotations

import dataclasses
import importlib
import shutil
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import claims
from .records import (PARTIAL, RECORDS, host_info, read_legacy, read_records, save_weights, stem,
                      write_json)


@dataclass(frozen=True)
class Run:
    """One run: ``name`` (unique in its campaign), the record fields that identify it
    (``ident``) and the run function's keyword arguments (JSON-like values)."""

    name: str
    ident: dict
    kwargs: dict


@dataclass
class Campaign:
    """What a campaign runs and where its records go (picklable: plain values only)."""

    directory: str                      # holds records/ and claims/
    key: str                            # recipe key: records of other keys are not reused
    fn: str                             # "module:function" returning the record of one run
    runs: list                          # the `Run`s, in the order they should start
    identity: tuple = ("model", "seed")  # record fields naming a run
    path: list = field(default_factory=list)   # sys.path entries the module needs
    stamp: dict = field(default_factory=dict)  # fields added to every record (device, git...)
    legacy: str | None = None           # a summary file whose ``runs`` count as records
    legacy_key: str | None = None       # key of legacy runs stored without one
    keep_weights: bool = False          # save a returned ``state_dict`` beside the record
    resumable: bool = False             # pass ``work_dir=`` (`partial_path`): runs survive a kill
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])  # this invocation

    def record_path(self, run: Run, suffix: str = ".json") -> Path:
        return Path(self.directory) / RECORDS / (stem(run.name, self.key) + suffix)

    def partial_path(self, run: Run) -> Path:
        """The work directory of an unfinished ``run`` (``resumable`` campaigns)."""
        return Path(self.directory) / PARTIAL / stem(run.name, self.key)


def resolve(fn: str, path: list = ()):
    """The function named ``"module:function"`` (``path`` entries put on sys.path first)."""
    for entry in reversed(list(path)):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    module, _, name = fn.partition(":")
    return getattr(importlib.import_module(module), name)


def execute_one(campaign: Campaign, run: Run, *, workers: int = 1, executor: str = "local") -> str:
    """Run ``run`` unless it is recorded or claimed: 'done', 'failed', 'recorded' or 'claimed'.
    A ``resumable`` campaign's run gets ``work_dir``; the folder is kept when the run fails or
    is killed (the next attempt continues there) and removed once its record is written."""
    out = campaign.record_path(run)
    if out.exists():
        _remove_partial(campaign, run)  # left by a process killed between record and clean-up
        return "recorded"
    claim = claims.claim(campaign.directory, stem(run.name, campaign.key), campaign.id)
    if claim is None:
        return "claimed"
    try:
        if out.exists():  # finished by another process between our check and our claim
            return "recorded"
        start = time.perf_counter()
        kwargs = dict(run.kwargs)
        if campaign.resumable:
            kwargs["work_dir"] = str(campaign.partial_path(run))
        try:
            record = dict(resolve(campaign.fn, campaign.path)(**kwargs))
        except Exception as e:  # recorded; the campaign goes on
            traceback.print_exc()
            write_json(campaign.record_path(run, ".failed.json"), dict(
                **run.ident, recipe_key=campaign.key, error=f"{type(e).__name__}: {e}",
                campaign=campaign.id, **campaign.stamp, **host_info(workers=workers, executor=executor)))
            return "failed"
        state = record.pop("state_dict", None)
        record = {**run.ident, **record, "recipe_key": campaign.key, **campaign.stamp,
                  **host_info(workers=workers, executor=executor)}
        record.setdefault("seconds", time.perf_counter() - start)
        if campaign.keep_weights and state is not None:
            save_weights(campaign.record_path(run, ".pt"), state)
            record["weights"] = campaign.record_path(run, ".pt").name
        write_json(out, record)
        campaign.record_path(run, ".failed.json").unlink(missing_ok=True)
        _remove_partial(campaign, run)
        return "done"
    finally:
        claims.release(claim)


def _remove_partial(campaign: Campaign, run: Run) -> None:
    """Delete ``run``'s work directory, and ``partial/`` once it is empty."""
    if campaign.resumable:
        folder = campaign.partial_path(run)
        shutil.rmtree(folder, ignore_errors=True)
        try:
            folder.parent.rmdir()
        except OSError:  # other runs' partial folders, or none
            pass


def collect(campaign: Campaign) -> tuple[list, list]:
    """``(records, failures)``: the legacy summary's runs, then the record files (a file
    replaces the legacy entry of the same run and key), then failures of runs not recorded."""
    ident = lambda r: tuple(r[f] for f in campaign.identity) + (r["recipe_key"],)  # noqa: E731
    legacy = read_legacy(campaign.legacy, campaign.identity, campaign.legacy_key) if campaign.legacy else []
    files, failed = read_records(campaign.directory, campaign.identity)
    order = {tuple(r.ident[f] for f in campaign.identity) + (campaign.key,): i
             for i, r in enumerate(campaign.runs)}
    files.sort(key=lambda r: (order.get(ident(r), len(order)), str(r.get("finished")), r["_file"]))
    merged = {ident(r): r for r in legacy}
    for r in files:
        merged[ident(r)] = {k: v for k, v in r.items() if k != "_file"}
    failures = [{k: v for k, v in f.items() if k != "_file"} for f in failed if ident(f) not in merged]
    return list(merged.values()), failures


def pending(campaign: Campaign, records: list) -> list:
    """The runs without a record under the campaign's key, in order."""
    done = {tuple(r[f] for f in campaign.identity) for r in records if r["recipe_key"] == campaign.key}
    return [r for r in campaign.runs if tuple(r.ident[f] for f in campaign.identity) not in done]


def worker_loop(campaign: Campaign, names: list, threads: int | None, workers: int,
                executor: str = "local", on_record=None) -> dict:
    """Go through ``names`` once, running every run nobody has recorded or claimed; the count
    of each outcome. ``on_record()`` is called after each run this loop finished or failed."""
    if threads:
        torch.set_num_threads(threads)
    counts: dict[str, int] = {}
    for run in (r for r in campaign.runs if r.name in set(names)):
        status = execute_one(campaign, run, workers=workers, executor=executor)
        counts[status] = counts.get(status, 0) + 1
        if status == "claimed":
            print(f"{run.name}: claimed by another process, skipped", flush=True)
        if on_record is not None and status in ("done", "failed"):
            on_record()
    return counts


def with_stamp(campaign: Campaign, **fields) -> Campaign:
    return dataclasses.replace(campaign, stamp={**campaign.stamp, **fields})
