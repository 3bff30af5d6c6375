"""Atomic per-run claims: two campaigns over one directory never run the same run twice.

A claim is a file ``claims/<run>__<key>.claim`` created with ``O_CREAT | O_EXCL`` (atomic on
local file systems and on NFSv3+), holding ``{"host", "boot", "pid", "time", "campaign"}``.
Whoever creates it runs the run; the others skip it. The claimant writes the record, then
removes the claim, so whoever claims later finds the record and skips too
(`engine.execute_one` checks the record again after claiming). A claim of a dead process on
this host (crash, kill -9) is stale and taken over, and so is one made on this host before its
last boot (``boot``: the kernel's boot id; a machine restarted between work sessions may reuse
the PID); a claim made on another host is respected (its process cannot be seen from here):
after a crashed cluster campaign, delete ``claims/`` by hand. The run then continues from its
partial checkpoint (`engine`, resumable campaigns).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from .records import CLAIMS


def boot_id() -> str | None:
    """The kernel's boot id (Linux; new at every boot), None where there is none."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@contextmanager
def _locked(folder: Path):
    """An exclusive flock on ``folder/.lock`` around check-and-take of stale claims."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def stale(path: Path) -> bool:
    """Whether the claim at ``path`` belongs to a dead process on this host, or was made on
    this host before its last boot."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):  # being written, or garbage: old garbage is stale
        try:
            return time.time() - path.stat().st_mtime > 60
        except OSError:
            return False
    if holder.get("host") != socket.gethostname():
        return False
    boot = boot_id()
    if holder.get("boot") and boot and holder["boot"] != boot:
        return True
    return not _alive(int(holder.get("pid", -1)))


def claim(directory: Path, name: str, campaign: str = "") -> Path | None:
    """Claim run ``name`` (a `records.stem`) in ``directory``: the claim's path, or None when
    a live process holds it."""
    folder = Path(directory) / CLAIMS
    path = folder / f"{name}.claim"
    with _locked(folder):
        if path.exists() and stale(path):
            path.unlink(missing_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        with os.fdopen(fd, "w") as f:
            json.dump(dict(host=socket.gethostname(), boot=boot_id(), pid=os.getpid(), campaign=campaign,
                           time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())), f)
    return path


def release(path: Path) -> None:
    Path(path).unlink(missing_ok=True)


def held(directory: Path) -> set[str]:
    """Names of the runs claimed right now (stale claims left out)."""
    folder = Path(directory) / CLAIMS
    if not folder.is_dir():
        return set()
    return {p.name[:-len(".claim")] for p in folder.glob("*.claim") if not stale(p)}
