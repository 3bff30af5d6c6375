"""A benchmark run that survives being killed: a persistent work directory, continued later.

A resumable campaign (`odenets.campaign`, ``Campaign(resumable=True)``) gives each run a work
directory ``<campaign>/partial/<run>__<key>/``; `_train_common.train_one` trains there::

    <work_dir>/run/          an odenets run directory: checkpoint.pt after every epoch (atomic,
                             with the RNG states), config.json, metrics.jsonl
    <work_dir>/pieces.json   {"pieces": [{"from_epoch", "to_epoch", "seconds", "host", "started"}],
                              "discarded": [why an unusable partial run was thrown away]}

When the same run starts again (a later session, another node after a stale claim), `prepare`
checks the checkpoint (zip CRC-32 and keys, `odenets.train.checkpoint.load`; the config it was
written with; weights, optimiser and noise generators loaded into a copy of the model) and
continues from it: `train(resume=True)`
restores weights, optimiser, schedule position and RNG states, so on the deterministic CPU path
the finished run is bit-identical to an uninterrupted one. An unusable checkpoint or
pieces.json is named in one line and the run restarts from epoch 0.

Seconds: a piece counts from its start to its last checkpoint (the file's mtime); the work a
killed piece did after its last checkpoint is lost and cannot be timed afterwards, so it is not
counted. The epochs' own ``train_seconds`` live in the checkpoint's history and add up exactly.

A work directory lives on one machine. To continue on another one (a later session gets a
fresh clone), `park` closes its open piece at the last checkpoint, while the file's mtime still
tells when that was, and names the files that carry the run (`PARKED`), for committing them
(benchmarks/park.py).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import time
from pathlib import Path

import torch

from odenets import atomic
from odenets.train import checkpoint
from odenets.train.optim import build_optimizer

RUN, PIECES = "run", "pieces.json"
# what a parked run carries to another machine (its run directory's other files are rewritten)
PARKED = (PIECES, f"{RUN}/{checkpoint.NAME}", f"{RUN}/config.json", f"{RUN}/metrics.jsonl",
          f"{RUN}/.odenets-run")
# config fields that may differ between the pieces of one run (where it runs, how it reports)
MAY_DIFFER = ("run_dir", "device", "data_dir", "threads", "progress", "log_every", "tensorboard")


def _config_difference(saved, cfg: dict) -> str | None:
    """'epochs: 2 there, 3 now' for the first fields that differ, else None."""
    if not isinstance(saved, dict):
        return "it holds no config"
    differs = [f"{k}: {saved.get(k)!r} there, {v!r} now" for k, v in cfg.items()
               if k not in MAY_DIFFER and json.loads(json.dumps(saved.get(k))) != json.loads(json.dumps(v))]
    return "its config differs (" + "; ".join(differs[:3]) + ")" if differs else None


def _restore_difference(state: dict, cfg, model: torch.nn.Module, path: Path) -> str | None:
    """Why `train(resume=True)` could not restore ``state`` into ``model`` (weights, optimiser,
    noise generators), tried on a copy so that ``model`` and the RNGs stay untouched."""
    trial = copy.deepcopy(model)
    try:
        checkpoint.load_model_state(trial, state["model"], path)
        build_optimizer(trial, cfg).load_state_dict(state["optimizer"])
    except ValueError as e:
        return str(e)
    except (KeyError, TypeError, RuntimeError) as e:
        return f"its optimizer state does not fit this model's optimizer ({type(e).__name__})"
    rng = state["rng"][0] if isinstance(state["rng"], list) and state["rng"] else None
    if not isinstance(rng, dict) or "cpu" not in rng:
        return "it holds no RNG state"
    if "noise" in rng and len(rng["noise"]) != len(checkpoint.noise_sources(trial)):
        return "it holds the states of another number of noise generators"
    return None


def checkpoint_problem(run_dir: Path, cfg, model: torch.nn.Module) -> tuple[int, str | None]:
    """``(completed epochs, None)`` for a checkpoint in ``run_dir`` that run ``cfg`` (a
    `TrainConfig`) can continue, ``(0, None)`` when there is none, ``(0, why)`` when it cannot
    be continued."""
    path = Path(run_dir) / checkpoint.NAME
    if not path.is_file():
        return 0, None
    try:
        state = checkpoint.load(path, keys=checkpoint.KEYS)
    except ValueError as e:
        return 0, str(e)
    why = (_config_difference(state.get("config"), cfg.to_dict())
           or (f"it holds {state['epoch']} epochs, more than the recipe's {cfg.epochs}"
               if state["epoch"] > cfg.epochs else None)
           or _restore_difference(state, cfg, model, path))
    return (0, why) if why else (state["epoch"], None)


def read_pieces(work_dir: Path) -> tuple[dict, str | None]:
    """The stored ``{"pieces", "discarded"}`` (empty when absent) and why it is unusable."""
    path = Path(work_dir) / PIECES
    empty = dict(pieces=[], discarded=[])
    if not path.exists():
        return empty, None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return empty, f"{path} is unreadable ({type(e).__name__})"
    if not (isinstance(stored, dict) and isinstance(stored.get("pieces"), list)
            and isinstance(stored.get("discarded", []), list)
            and all(isinstance(p, dict) and isinstance(p.get("from_epoch"), int)
                    for p in stored["pieces"])):
        return empty, f"{path} is not a pieces record"
    return dict(empty, **stored), None


def _write_pieces(work_dir: Path, state: dict) -> None:
    atomic.write_atomic(Path(work_dir) / PIECES, lambda f: f.write(json.dumps(state, indent=1)),
                        sync=True, parents=True)


def close_piece(piece: dict, epoch: int, ckpt: Path) -> dict:
    """A piece killed earlier, closed at its last checkpoint (``epoch`` completed epochs)."""
    if "to_epoch" in piece:
        return piece
    if epoch <= piece["from_epoch"]:  # no checkpoint of its own: it kept nothing
        return dict(piece, to_epoch=piece["from_epoch"], seconds=0.0)
    seconds = max(0.0, ckpt.stat().st_mtime - piece.get("started", ckpt.stat().st_mtime))
    return dict(piece, to_epoch=epoch, seconds=seconds)


def prepare(work_dir, cfg, model: torch.nn.Module, label: str) -> tuple[bool, dict]:
    """Make ``work_dir`` ready for the next piece of run ``label`` (``cfg``: its `TrainConfig`;
    ``model``: built, not yet trained): ``(resume, state)``, ``state`` being the pieces record
    with this piece opened (written to pieces.json). A checkpoint or pieces.json that cannot be
    continued is reported in one line and the run restarts from epoch 0."""
    work_dir = Path(work_dir)
    run_dir = work_dir / RUN
    epoch, why = checkpoint_problem(run_dir, cfg, model)
    state, pieces_why = read_pieces(work_dir)
    why = why or (pieces_why if epoch else None)
    if why:
        print(f"{label}: partial run in {work_dir} cannot be continued: {why}; restarting this run "
              "from epoch 0", flush=True)
        state = dict(pieces=[], discarded=state["discarded"] + [why])
        epoch = 0
    if not epoch:  # nothing to continue (none yet, killed in epoch 1, or unusable): start afresh
        shutil.rmtree(run_dir, ignore_errors=True)
        state["pieces"] = []
    else:
        print(f"{label}: continuing from the checkpoint of epoch {epoch}/{cfg.epochs} in "
              f"{run_dir}", flush=True)
    closed = [close_piece(p, epoch, run_dir / checkpoint.NAME) for p in state["pieces"]]
    state["pieces"] = [p for p in closed if p["to_epoch"] > p["from_epoch"]] + [
        dict(from_epoch=epoch, host=socket.gethostname(), pid=os.getpid(), started=time.time())]
    _write_pieces(work_dir, state)
    return bool(epoch), state


def finish(state: dict, epochs_done: int, seconds: float) -> dict:
    """The record's view of the pieces: ``resumed_from_epoch`` (where the last piece started;
    0: never interrupted), ``pieces`` (each ``from_epoch``, ``to_epoch``, ``seconds``, ``host``)
    with the current one closed after ``seconds``, and ``discarded`` partial runs."""
    pieces = [dict(p) for p in state["pieces"]]
    pieces[-1].update(to_epoch=epochs_done, seconds=seconds)
    pieces = [{k: p[k] for k in ("from_epoch", "to_epoch", "seconds", "host") if k in p}
              for p in pieces]
    return dict(resumed_from_epoch=pieces[-1]["from_epoch"], pieces=pieces,
                discarded=list(state.get("discarded", [])))


def park(work_dir) -> tuple[int, list[Path]]:
    """Close the open piece of the run in ``work_dir`` at its last checkpoint and return
    ``(completed epochs, files that carry it)``; ``(0, [])`` when it has no usable checkpoint
    (nothing to carry: it restarts wherever it runs next). Run it after the run's process has
    stopped: a piece still training would go on past the checkpoint parked here."""
    work_dir = Path(work_dir)
    ckpt = work_dir / RUN / checkpoint.NAME
    try:
        epoch = int(checkpoint.load(ckpt, keys=checkpoint.KEYS)["epoch"]) if ckpt.is_file() else 0
    except ValueError as e:
        print(f"{work_dir.name}: not parked: {e}", flush=True)
        return 0, []
    state, why = read_pieces(work_dir)
    if not epoch or why:
        print(f"{work_dir.name}: not parked: " + (why or "no checkpoint yet"), flush=True)
        return 0, []
    state["pieces"] = [close_piece(p, epoch, ckpt) for p in state["pieces"]]
    _write_pieces(work_dir, state)
    return epoch, [work_dir / name for name in PARKED if (work_dir / name).is_file()]
