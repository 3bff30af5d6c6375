"""The files of a run directory.

    config.json      the TrainConfig (what ``--resume`` reads back)
    checkpoint.pt    the last completed epoch (see `checkpoint`)
    metrics.jsonl    one JSON record per epoch: losses, accuracies, lr, time, img/s, coefficients
    metrics.csv      the same records as a table (spreadsheets, pandas): nested values flattened,
                     e.g. ``coefficients/stages.0.flow.k/0`` for the first k_n of stage 0;
                     without ``train_curve`` (loss, accuracy and lr at points within the epoch)
    summary.json     written at the end (status "finished" or "diverged")
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

CONFIG, METRICS, METRICS_CSV, SUMMARY = "config.json", "metrics.jsonl", "metrics.csv", "summary.json"
CSV_SKIP = ("train_curve",)  # lists of points within an epoch: metrics.jsonl only


def default_run_dir(cfg) -> Path:
    model = cfg.model.replace(":", "_").replace("/", "_")
    return Path("runs") / f"{model}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def temp_path(path: Path) -> Path:
    """Where an atomic write of ``path`` puts its data before the rename: ``.<name>.<pid>.tmp``
    beside it (`stale_temps` finds those a killed process left)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def stale_temps(path: Path) -> list[Path]:
    """Temp files of atomic writes of ``path`` (any process's) that were never renamed."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def _write_text_atomic(path, text: str) -> None:
    path = Path(path)
    tmp = temp_path(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically (temp file + rename)."""
    _write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: is {path.parent} a run directory?") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def append_metrics(run_dir, record: dict) -> None:
    with open(Path(run_dir) / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")


def rewrite_metrics(run_dir, history: list[dict]) -> None:
    """Make metrics.jsonl and metrics.csv hold exactly ``history`` (used on resume, from the
    checkpoint)."""
    _write_text_atomic(Path(run_dir) / METRICS, "".join(json.dumps(r) + "\n" for r in history))
    write_metrics_csv(run_dir, history)


def flatten(record: dict, prefix: str = "") -> dict:
    """``{"a": {"b": [1, 2]}}`` -> ``{"a/b/0": 1, "a/b/1": 2}`` (the CSV's column names)."""
    flat = {}
    items = record.items() if isinstance(record, dict) else enumerate(record)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list, tuple)):
            flat.update(flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat


def write_metrics_csv(run_dir, history: list[dict]) -> None:
    """metrics.csv: one row per epoch of ``history``, columns in order of first appearance
    (nested values flattened by `flatten`; a column an epoch lacks is left empty). Rewritten
    whole, atomically, after every epoch."""
    rows = [flatten({k: v for k, v in r.items() if k not in CSV_SKIP}) for r in history]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _write_text_atomic(Path(run_dir) / METRICS_CSV, text.getvalue() if columns else "")


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a run directory?")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {number}: not valid JSON ({e.msg} at column "
                             f"{e.colno}): {line[:60]!r}") from None
    return records
