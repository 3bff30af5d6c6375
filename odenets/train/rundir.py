"""The files of a run directory.

    config.json      the TrainConfig (what ``--resume`` reads back)
    checkpoint.pt    the last completed epoch (see `checkpoint`)
    metrics.jsonl    one JSON record per epoch: losses, accuracies, lr, time, img/s, coefficients
    metrics.csv      the same records as a table (spreadsheets, pandas): nested values flattened,
                     e.g. ``coefficients/stages.0.flow.k/0`` for the first k_n of stage 0;
                     without ``train_curve`` (loss, accuracy and lr at points within the epoch)
    summary.json     written at the end (status "finished", "diverged" or "failed")
    .odenets-run     marker written when odenets creates the run (`claim`)
    .odenets-lock    the PID of the process writing the run; flock-ed while it runs. It stays
                     after the run ends: the lock is the flock, not the file, so a file whose
                     PID is dead is harmless (deleting it while a run holds it would let a
                     second process lock a new file beside the first)

A directory is used as a run directory only when it is new, empty, or already an odenets run
(its marker; for runs from before the marker, a checkpoint.pt on ``--resume``), so no file of
the user's is overwritten; one process at a time writes a run (`claim`).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from pathlib import Path

from ..atomic import temp_path, write_text

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None

CONFIG, METRICS, METRICS_CSV, SUMMARY = "config.json", "metrics.jsonl", "metrics.csv", "summary.json"
CSV_SKIP = ("train_curve",)  # lists of points within an epoch: metrics.jsonl only
MARKER, LOCK = ".odenets-run", ".odenets-lock"
CHECKPOINT = "checkpoint.pt"  # = checkpoint.NAME (that module imports this one)


def default_run_dir(cfg) -> Path:
    model = cfg.model.replace(":", "_").replace("/", "_")
    return Path("runs") / f"{model}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_dir(run_dir, resume: bool) -> None:
    """Raise ValueError unless ``run_dir`` may be used: without ``resume`` it must be new or
    empty (a run there needs --resume); with ``resume`` it must be an odenets run."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--run-dir {run_dir} is a file, not a directory")
    if not run_dir.is_dir():
        return
    entries = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK or not _our_lock(p))
    is_run = MARKER in entries or (resume and CHECKPOINT in entries)
    if resume and entries and not is_run:
        raise ValueError(f"{run_dir} is not an odenets run directory (no {MARKER} marker or "
                         f"{CHECKPOINT}); refusing to write into it")
    if not resume and (CHECKPOINT in entries or MARKER in entries):
        raise ValueError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or "
                         "choose another --run-dir")
    if not resume and entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise ValueError(f"{run_dir} is not empty ({shown}) and is not an odenets run directory; "
                         "refusing to overwrite its files: choose a new or empty --run-dir")


def run_marker(directory) -> str | None:
    """The file that shows ``directory`` is a training run: `MARKER`, `CHECKPOINT`, or
    `CONFIG` beside `METRICS` or `SUMMARY` (a run from before the marker); None if it is not
    a run directory (or does not exist). A lone config.json may be a file of the user's."""
    directory = Path(directory)
    for name in (MARKER, CHECKPOINT):
        if (directory / name).is_file():
            return name
    if (directory / CONFIG).is_file() and any((directory / n).is_file() for n in (METRICS, SUMMARY)):
        return CONFIG
    return None


def _our_lock(path: Path) -> bool:
    """Whether ``path`` (named `LOCK`) is a lock file odenets wrote: a regular file holding a
    PID line, or empty (just created by a process about to write its PID). Anything else is a
    file of the user's, never truncated."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 32:
            return False
        text = path.read_bytes()
    except OSError:
        return False
    return text == b"" or (text.endswith(b"\n") and text[:-1].isdigit())


@contextlib.contextmanager
def claim(run_dir, resume: bool):
    """Create ``run_dir`` if needed, hold an exclusive lock on it (``flock`` on ``.odenets-lock``,
    which holds our PID) until the context exits, check it (`check_run_dir`) under the lock and
    mark it as an odenets run. A run another process holds raises ValueError naming its PID."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir, resume)  # before creating anything in a directory of the user's
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as e:
        raise ValueError(f"cannot write the run directory {run_dir} (--run-dir): "
                         f"{e.strerror or e}") from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                raise ValueError(f"{run_dir} is in use by another odenets process (PID {holder}, "
                                 f"which holds {run_dir / LOCK}); wait for it to finish or choose "
                                 "another --run-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        check_run_dir(run_dir, resume)
        if not (run_dir / MARKER).exists():
            _write_text_atomic(run_dir / MARKER, "odenets run directory\n")
        yield run_dir
    finally:
        os.close(fd)  # releases the lock


def stale_temps(path: Path) -> list[Path]:
    """Temp files of atomic writes of ``path`` (any process's) that were never renamed."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def _write_text_atomic(path, text: str) -> None:
    write_text(path, text)


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
    except (RecursionError, UnicodeDecodeError) as e:  # hostile nesting, binary data
        raise ValueError(f"{path}: not a readable JSON file ({type(e).__name__})") from None


def append_metrics(run_dir, record: dict) -> None:
    try:
        with open(Path(run_dir) / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:
        raise ValueError(f"cannot write {Path(run_dir) / METRICS} (disk full or not writable?): "
                         f"{e.strerror or e}") from None


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
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}): not a metrics file "
                         "written by odenets") from None
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except RecursionError:
            raise ValueError(f"{path}, line {number}: JSON nested too deeply") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {number}: not valid JSON ({e.msg} at column "
                             f"{e.colno}): {line[:60]!r}") from None
    return records
