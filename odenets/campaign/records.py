"""Run records of a campaign: one JSON file per finished run, written atomically.

A campaign directory holds::

    <dir>/records/<run>__<key>.json          the record of run <run> under recipe key <key>
    <dir>/records/<run>__<key>.pt            its final weights (state_dict, fp32), when kept
    <dir>/records/<run>__<key>.failed.json   the last failure of that run (retried next time)
    <dir>/claims/<run>__<key>.claim          held while some process runs it (`claims`)
    <dir>/partial/<run>__<key>/              an unfinished run's checkpoints (resumable campaigns;
                                             removed once its record is written)

A record is a flat dict: the experiment's numbers plus ``recipe_key``, the run's identity
(e.g. ``model``, ``seed``) and its provenance (`provenance`). Files are written to a
temporary name in the same directory and renamed (``os.replace``), so a reader sees either
no record or a whole one, also when several machines write into one shared directory.
Merging the results of several machines is copying their ``records/`` files into one.
"""
from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import torch

from .. import atomic

RECORDS, CLAIMS, PARTIAL = "records", "claims", "partial"
NUMBER_FIELDS = ("test_acc", "val_acc", "seconds", "accuracy", "trained_acc")


# ---- provenance -------------------------------------------------------------------------------
def git_version(where: str | Path | None = None) -> dict:
    """``{"git_commit", "git_dirty"}`` of the checkout holding ``where`` (default: this
    package): dirty when tracked files differ from the commit; None outside a git checkout."""
    cwd = Path(where or __file__).resolve()
    cwd = cwd if cwd.is_dir() else cwd.parent

    def git(*args):
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd, timeout=10)
            return out.stdout.strip() if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return dict(git_commit=git("rev-parse", "--short", "HEAD") or None,
                git_dirty=None if status is None else bool(status))


def has_provenance(record: dict) -> bool:
    return bool(record.get("git_commit"))


def provenance_line(records: list, describe) -> str:
    """'Code: abc1234 (4 runs), def5678+dirty (1 run).' plus the runs recorded without a
    commit, named by ``describe(record)`` (e.g. 'K=1 seed 0'): their code is unknown."""
    counts: dict[str, int] = {}
    for r in records:
        if has_provenance(r):
            tag = str(r["git_commit"]) + ("+dirty" if r.get("git_dirty") else "")
            counts[tag] = counts.get(tag, 0) + 1
    parts = [f"{tag} ({n} run{'s' if n > 1 else ''})" for tag, n in sorted(counts.items())]
    line = "Code: " + (", ".join(parts) if parts else "no run records its commit") + "."
    missing = [describe(r) for r in records if not has_provenance(r)]
    if missing and parts:
        line += (" **No provenance recorded** (run before commits were stored with each run) "
                 f"for: {', '.join(missing)}.")
    elif missing:
        line += " **No provenance recorded** for any run (made before commits were stored)."
    return line


def host_info(threads: int | None = None, workers: int = 1, executor: str = "local") -> dict:
    """Where a run ran: host, torch version, CPU threads, workers beside it, executor."""
    return dict(host=socket.gethostname(), torch=torch.__version__,
                threads=threads or torch.get_num_threads(), workers=workers, executor=executor,
                finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


# ---- files ------------------------------------------------------------------------------------
def safe(text: str) -> str:
    """A file-name-safe form of a run name: letters, digits, '.', '_', '=', '-'."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", str(text))


def stem(name: str, key: str) -> str:
    return f"{safe(name)}__{safe(key)}"


def write_atomic(path: Path, text: str | None = None, obj=None) -> Path:
    """Write ``text`` (or ``torch.save(obj)``) to ``path`` atomically and synced (`odenets.atomic`):
    readers on any host never see half a file; a full disk is one line, the old file kept."""
    if obj is not None:
        return atomic.write_atomic(path, lambda f: torch.save(obj, f), binary=True, sync=True,
                                   parents=True)
    return atomic.write_atomic(path, lambda f: f.write(text), sync=True, parents=True)


def write_json(path: Path, payload) -> Path:
    return write_atomic(path, json.dumps(payload, indent=2) + "\n")


def save_weights(path: Path, state_dict: dict) -> Path:
    """The final weights as a plain state_dict on CPU, fp32 (exact: re-evaluating them
    reproduces the recorded accuracy). Load with ``torch.load(path, weights_only=True)``."""
    return write_atomic(path, obj={k: v.detach().cpu().clone() for k, v in state_dict.items()})


# ---- reading ----------------------------------------------------------------------------------
def check_record(record, where: str, need_key: bool = True) -> dict:
    """``record`` if it is a well-formed record, else ValueError naming ``where`` and the fault."""
    if not isinstance(record, dict):
        raise ValueError(f"{where} is {json.dumps(record)[:40]}, not a run record (a JSON object)")
    if need_key and not isinstance(record.get("recipe_key"), str):
        raise ValueError(f"{where} has no recipe_key (a string): cannot tell which recipe it ran")
    for field in NUMBER_FIELDS:
        value = record.get(field)
        if field in record and value is not None and not isinstance(value, (int, float, dict)):
            raise ValueError(f"{where}: {field} is {value!r} ({type(value).__name__}), expected a number")
        if isinstance(value, bool):
            raise ValueError(f"{where}: {field} is {value!r}, expected a number")
        if isinstance(value, (int, float)) and not (
                math.isfinite(value) and value >= 0 and (field == "seconds" or value <= 1)):
            bound = ">= 0" if field == "seconds" else "in [0, 1]"
            raise ValueError(f"{where}: {field} is {value!r}, expected a finite number {bound}")
    if "seed" in record and not (isinstance(record["seed"], int) and not isinstance(record["seed"], bool)):
        raise ValueError(f"{where}: seed is {record['seed']!r} ({type(record['seed']).__name__}), "
                         f"expected an integer")
    return record


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); move it away to start afresh") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a UTF-8 JSON file; move it away to start afresh") from None


def read_records(directory: Path, identity: tuple) -> tuple[list, list]:
    """``(records, failures)`` in ``directory/records``: every ``*.json`` record (checked) and
    every ``*.failed.json``; each gets ``_file`` (its name) for messages."""
    folder = Path(directory) / RECORDS
    records, failures = [], []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = check_record(read_json(path), str(path))
        for field in identity:
            if field not in record:
                raise ValueError(f"{path} has no {field!r}: not a record of this campaign "
                                 f"(identity {', '.join(identity)})")
        (failures if path.name.endswith(".failed.json") else records).append(
            dict(record, _file=path.name))
    return records, failures


def read_legacy(path: Path, identity: tuple, default_key: str | None = None) -> list:
    """The ``runs`` of a summary file written before one file per run (e.g. the single
    ``converged_cpu.json`` of earlier campaigns), checked. ``default_key``: the key of runs
    stored without one (files whose whole setup was one recipe); None: such a run is an error.
    A (identity, key) stored twice is an error naming both entries."""
    path = Path(path)
    if not path.is_file():
        return []
    payload = read_json(path)
    if not isinstance(payload, dict):
        raise ValueError(f"{path} holds a JSON {type(payload).__name__}, not a results object "
                         "with 'runs'; move it away to start afresh")
    runs = payload.get("runs")
    if not isinstance(runs, list):
        raise ValueError(f"{path} has no 'runs' list (found {type(runs).__name__}); "
                         "move it away to start afresh")
    out, seen = [], {}
    for i, run in enumerate(runs):
        where = f"{path} runs[{i}]"
        if isinstance(run, dict) and default_key is not None and "recipe_key" not in run:
            run = dict(run, recipe_key=default_key)
        check_record(run, where)
        for field in identity:
            if field not in run:
                raise ValueError(f"{where} has no {field!r}")
            if not isinstance(run[field], (str, int, float)):  # a name or a number, hashable
                raise ValueError(f"{where}: {field} is {run[field]!r}, expected a name or a number")
        ident = tuple(run[f] for f in identity) + (run["recipe_key"],)
        if ident in seen:
            named = ", ".join(f"{f} {run[f]}" for f in identity)
            raise ValueError(f"{path} holds {named} twice under recipe key {run['recipe_key']} "
                             f"(runs[{seen[ident]}] and runs[{i}]); remove the one that is wrong")
        seen[ident] = i
        out.append(run)
    return out
