"""Checkpoints: written atomically, restored exactly.

A checkpoint is one ``torch.save`` dict::

    {"epoch": completed epochs, "model": state_dict, "optimizer": state_dict,
     "schedule": {"name", "step", "total"}, "rng": [per-rank RNG states], "history": [per-epoch
     metric records], "config": TrainConfig dict, "version": 1}

`save_atomic` writes to a temporary file in the same directory, flushes and fsyncs it, then
``os.replace``s it over the target (atomic on POSIX): a crash at any moment leaves either the old
or the new checkpoint, never a torn one. RNG states cover torch's CPU generator and every CUDA
device's; the data order and augmentation need none (they are seeded by (seed, epoch, rank),
see `odenets.data.loader`).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

NAME = "checkpoint.pt"


def save_atomic(obj, path) -> Path:
    """``torch.save(obj, path)`` so that ``path`` is always either the old or the new file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def remove_stale_temps(path) -> list[Path]:
    """Delete temp files a killed `save_atomic` left beside ``path``; returns what was removed."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def load(path, map_location="cpu") -> dict:
    """Read a checkpoint (tensors, numbers, strings and containers only: ``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for a bad file
        raise ValueError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None


def load_model_state(model, state_dict: dict, path) -> None:
    """``model.load_state_dict(state_dict)``; a checkpoint of another architecture or other
    model options raises ValueError naming ``path`` instead of torch's RuntimeError."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        raise ValueError(f"{path} does not fit the model built from the config (were --model, "
                         f"--model-arg or --solver changed?): {e}") from None


def rng_state() -> dict:
    """This process's torch RNG states (CPU and, when present, every CUDA device)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
