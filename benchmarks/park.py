"""Carry unfinished campaign runs to the next machine: park them in git.

A resumable campaign's run checkpoints after every epoch in
``<results>/<campaign>/partial/<run>__<key>/`` (`_partial`); that folder is machine-local
(gitignored), so a run still training when a session ends would start over on the next
machine. Parking closes each unfinished run's open piece at its last checkpoint (while the
checkpoint's mtime still says when that was: a checkout rewrites mtimes) and stages the few
files that carry it (pieces.json, the checkpoint, config.json, metrics.jsonl, the run marker;
~2 MB for a resnet20). Commit them; the same campaign command, run from a clone that holds
them, continues each run where it stopped, and removes its folder once the record is written
(commit that removal with the record).

    kill <campaign PIDs>                              # first stop what trains
    python benchmarks/park.py --git-add              # then park; commit what it staged
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _partial  # noqa: E402
from _common import RESULTS, HelpFormatter  # noqa: E402


def park_all(results: Path) -> list[tuple[Path, int, list[Path]]]:
    """Park every unfinished run under ``results/*/partial/``: ``(work dir, epochs, files)``
    for each run that has something to carry."""
    parked = []
    for work in sorted(Path(results).glob("*/partial/*")):
        if work.is_dir():
            epochs, files = _partial.park(work)
            if files:
                parked.append((work, epochs, files))
    return parked


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--out-dir", default=str(RESULTS), help="results directory (default "
                   "benchmarks/results)")
    p.add_argument("--git-add", action="store_true", help="stage the parked files (git add -f: "
                   "partial/ is gitignored so that only parked runs are committed)")
    args = p.parse_args(argv)
    results = Path(args.out_dir)
    if not results.is_dir():
        raise ValueError(f"--out-dir {results} is not a directory")
    parked = park_all(results)
    for work, epochs, files in parked:
        size = sum(f.stat().st_size for f in files) / 2 ** 20
        print(f"parked {work.relative_to(results)}: {epochs} epochs done, {len(files)} files, "
              f"{size:.1f} MiB", flush=True)
    if not parked:
        print(f"no unfinished run with a checkpoint under {results}/*/partial/")
    if args.git_add and parked:
        files = [str(f) for _, _, fs in parked for f in fs]
        done = subprocess.run(["git", "add", "-f", "--", *files], cwd=results,
                              capture_output=True, text=True)
        if done.returncode:
            raise ValueError(f"git add failed: {done.stderr.strip() or done.returncode}")
        print(f"staged {len(files)} files: commit them to carry the runs")
    return 0


if __name__ == "__main__":
    from _common import run_main
    sys.exit(run_main(main))
