"""Atomic file writes: a temp file beside the target, renamed over it (`os.replace`), so a
reader sees the old or the whole new file, never a part; a failed write (disk full, ...) leaves
no temp file and raises a one-line ValueError naming the file."""
from __future__ import annotations

import os
import socket
from pathlib import Path


def temp_path(path) -> Path:
    """Where an atomic write of ``path`` puts its data before the rename:
    ``.<name>.<host>.<pid>.tmp`` beside it, unique across the hosts of a cluster sharing the
    folder (`odenets.train.rundir.stale_temps` finds those a killed process left)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


def write_atomic(path, write, binary: bool = False, sync: bool = False, parents: bool = False) -> Path:
    """Call ``write(file)`` on a temp file beside ``path``, then rename it over ``path``
    (``sync``: flushed to the disk first; ``parents``: missing folders made). A failed write
    removes the temp file and raises a one-line ValueError naming ``path``."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb" if binary else "w") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise ValueError(f"cannot write {path} (disk full or not writable?): "
                         f"{e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path, text: str) -> Path:
    """`write_atomic` of a text."""
    return write_atomic(path, lambda f: f.write(text))


def save_figure(fig, path, **savefig_kwargs) -> Path:
    """``fig.savefig(path, format="png", ...)`` written atomically (no 0-byte PNG on a full disk)."""
    return write_atomic(path, lambda f: fig.savefig(f, format="png", **savefig_kwargs), binary=True)
