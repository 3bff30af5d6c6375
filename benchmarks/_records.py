"""Resumable benchmark results: one JSON file whose ``runs`` grow by one record per finished run.

    runs = load_runs(path, setup)            # [] or the records of an earlier, identical setup
    if not done(runs, variant="none", seed=0): ... runs.append(row); write_json(path, payload)

A campaign killed half-way keeps every finished run; re-running the same command skips them.
``setup`` (model, recipe, evaluation settings...) must equal the stored one, so records of
different recipes never mix in one table.
"""
from __future__ import annotations

import json
from pathlib import Path


def load_runs(path: Path, setup: dict) -> list:
    """The records of the earlier run at ``path`` (``[]`` when there is none); ValueError when
    the file was made with another ``setup`` (each differing key is named)."""
    path = Path(path)
    if not path.is_file():
        return []
    old = json.loads(path.read_text())
    differs = {k: (old.get(k), v) for k, v in setup.items()
               if json.loads(json.dumps(v)) != old.get(k)}
    if differs:
        what = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in differs.items())
        raise ValueError(f"{path} holds runs of another setup ({what}); pass another --out-dir "
                         f"or move the file away to start afresh")
    return list(old.get("runs", []))


def done(runs: list, **key) -> bool:
    """Whether a record with all of ``key``'s values (e.g. variant=..., seed=...) exists."""
    return any(all(r.get(k) == v for k, v in key.items()) for r in runs)
