"""Where datasets are looked for: ``--data-dir`` alone when given, else ``$ODENETS_DATA``, then
system copies.

Each root is tried as given and with the dataset's usual sub-directory appended (e.g. a
``--data-dir ~/data`` holding ``cifar-10-batches-py/`` works, and so does pointing at
``cifar-10-batches-py/`` itself). An explicit directory is never silently replaced by another
copy: if the files are not there, loading fails naming it. Nothing is ever downloaded.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .base import DatasetNotFoundError

ENV_VAR = "ODENETS_DATA"


def candidate_dirs(data_dir, subdirs, system_dirs=()) -> list[Path]:
    """Directories to search, in order, without duplicates: ``data_dir`` and its ``subdirs``
    when ``data_dir`` is given; else ``$ODENETS_DATA`` and its ``subdirs``, then ``system_dirs``."""
    if data_dir:
        roots = [Path(data_dir).expanduser()]
    else:
        roots = [Path(os.environ[ENV_VAR]).expanduser()] if os.environ.get(ENV_VAR) else []
    out = []
    for root in roots:
        out += [root] + [root / s for s in subdirs]
    if not data_dir:
        out += [Path(d) for d in system_dirs]
    seen, unique = set(), []
    for d in out:
        if d not in seen:
            seen.add(d)
            unique.append(d)
    return unique


def find_dir(title: str, required, data_dir, subdirs=(), system_dirs=(), how_to_get: str = "") -> Path:
    """The first candidate directory holding every file in ``required``.

    ``required`` is a list of alternatives per file: ``[("a.gz", "a"), ...]`` means the directory
    must hold ``a.gz`` or ``a``. Raises `DatasetNotFoundError` listing the places searched; when
    ``data_dir`` is given only it (and ``data_dir/<subdir>``) is searched, and the error names it.
    """
    searched = candidate_dirs(data_dir, subdirs, system_dirs)
    for d in searched:
        if all(any((d / name).is_file() for name in alternatives) for alternatives in required):
            return d
    wanted = ", ".join(alts[0] for alts in required)
    where = "\n".join(f"  {d}" for d in searched) or "  (nowhere: no --data-dir given and $ODENETS_DATA unset)"
    if data_dir:
        root = Path(data_dir).expanduser()
        missing = "" if root.is_dir() else " (no such directory)"
        head = (f"{title} not found in --data-dir {data_dir}{missing} ($ODENETS_DATA and system "
                f"copies are searched only without --data-dir)")
    else:
        head = f"{title} not found"
    raise DatasetNotFoundError(f"{head}. Looked for {wanted} in:\n{where}\n{how_to_get}")


def dpkg_dir(package: str, filename: str) -> list[str]:
    """Directories where the Debian ``package`` installed ``filename`` (empty if not installed or
    not a Debian system); used when the usual location is missing."""
    if shutil.which("dpkg") is None:
        return []
    try:
        listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True,
                                 timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({str(Path(line).parent) for line in listing.splitlines()
                   if line.endswith("/" + filename)})
