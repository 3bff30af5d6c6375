"""Checkpoints: written atomically, restored exactly.

A checkpoint is one ``torch.save`` dict::

    {"epoch": completed epochs, "model": state_dict, "optimizer": state_dict,
     "schedule": {"name", "step", "total"}, "rng": [per-rank `rng_state`], "history": [per-epoch
     metric records], "config": TrainConfig dict, "version": 1}

`save_atomic` writes to a temporary file in the same directory, flushes and fsyncs it, then
``os.replace``s it over the target (atomic on POSIX): a crash at any moment leaves either the old
or the new checkpoint, never a torn one. RNG states cover torch's CPU generator, every CUDA
device's and, under ``"noise"``, the state of every `solvers.Noise` the model draws from
(`noise_sources`: made by a stochastic scheme's ``seed=`` or ``generator=``, an ``sde:`` flow's
``seed``, or passed as ``noise_source=``), so a resumed stochastic-depth or shake-shake run
continues the same noise stream. Checkpoints without ``"noise"`` (older ones) still load; such
noise then restarts from its seed (and ``"noise_format"`` below 2 marks the older layout of a
seeded ``sde:`` flow's state, still read). The data order and augmentation need no state (they
are seeded by (seed, epoch, rank), see `odenets.data.loader`).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

from solvers import checks
from solvers.noise import Noise

from ..flow import Flow
from .rundir import CHECKPOINT, stale_temps, temp_path

NAME = CHECKPOINT
KEYS = ("epoch", "model", "optimizer", "history", "rng")  # what `--resume` needs
# 2: every noise state is a `solvers.Noise.state_dict`; 1 (no "noise_format"): a seeded sde:
# flow saved its CPU generator as {"generator": state}, now {"cpu": state}
NOISE_FORMAT = 2


def save_atomic(obj, path) -> Path:
    """``torch.save(obj, path)`` so that ``path`` is always either the old or the new file.
    A failed write (disk full, ...) raises a one-line ValueError naming ``path``; the old file
    is left as it was."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as a RuntimeError
        reason = getattr(e, "strerror", None) or _first_line(e)
        raise ValueError(f"cannot save {path} (disk full or not writable?): {reason}; the "
                         f"previous checkpoint, if any, is unchanged") from None
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
    stale = stale_temps(Path(path))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def load(path, map_location="cpu", keys=()) -> dict:
    """Read a checkpoint (tensors, numbers, strings and containers only: ``weights_only``).

    Integrity is verified first: every record of the zip archive ``torch.save`` writes carries a
    CRC-32, which ``torch.load`` itself does not check, so flipped bytes in the tensor data would
    load as wrong weights. A damaged file, one torch cannot read, or one that is not a dict
    holding ``keys`` (`KEYS` for a resume) raises a one-line ValueError naming ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    verify(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for a bad file
        raise ValueError(f"{path} is not a readable torch checkpoint (corrupt or truncated?): "
                         f"{_first_line(e)}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not an odenets checkpoint: it holds a "
                         f"{type(state).__name__}, not a dict" + (f" with {', '.join(keys)}" if keys else ""))
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"{path} is not a complete odenets checkpoint: it lacks "
                         f"{', '.join(map(repr, missing))}")
    if "model" in keys and not (isinstance(state["model"], dict)
                                and all(torch.is_tensor(v) for v in state["model"].values())):
        raise ValueError(f"{path}: 'model' is not a state dict of tensors")
    if "epoch" in keys and not checks.is_int(state["epoch"], 0):
        raise ValueError(f"{path}: 'epoch' must be an integer >= 0, got {state['epoch']!r}")
    return state


def verify(path) -> None:
    """Raise a one-line ValueError naming ``path`` unless it is an intact zip archive (every
    record's CRC-32 matches its data): what ``torch.save`` writes."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise ValueError(f"{path} is not a readable torch checkpoint (corrupt or truncated?): "
                         f"not an intact zip archive ({e})") from None
    if bad is not None:
        raise ValueError(f"{path} is corrupted: the CRC-32 of its record {bad!r} does not match "
                         f"its data; refusing to load it (restore the file or start a new run)")


def _first_line(error: Exception) -> str:
    """The gist of torch.load's error: its first sentence, or what follows "WeightsUnpickler
    error:" (the lines before it advise ``weights_only=False``, unsafe for an unknown file)."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0].split(". ")[0].rstrip(".") if lines else ""
    if not first or "weights_only" in first:
        return type(error).__name__
    return f"{type(error).__name__}: {first}"


def load_model_state(model, state_dict: dict, path) -> None:
    """``model.load_state_dict(state_dict)``; a checkpoint of another architecture or other
    model options raises a short ValueError naming ``path`` and a few of the keys that differ
    instead of torch's RuntimeError listing all of them."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        own = model.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        shapes = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in own
                  if k in state_dict and hasattr(state_dict[k], "shape")
                  and tuple(state_dict[k].shape) != tuple(own[k].shape)]
        parts = [f"{what}: {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''} ({len(keys)})"
                 for what, keys in (("missing", missing), ("unexpected", unexpected),
                                    ("other shape (saved vs model)", shapes)) if keys]
        detail = "; ".join(parts) or _first_line(e)
        raise ValueError(f"{path} does not fit the model built from the config (were --model, "
                         f"--model-arg or --solver changed?): {detail}") from None


def _noise_owners(model) -> list[tuple[Noise, bool]]:
    """``(noise, owned_by_a_scheme)`` for every `solvers.Noise` of ``model``, each once, in
    module order: the ``noise_source`` of every `odenets.flow.Flow`'s scheme and of every other
    module (an ``sde:`` flow)."""
    owners, seen = [], set()
    for m in model.modules():
        owner = m.scheme if isinstance(m, Flow) else m
        noise = getattr(owner, "noise_source", None)
        if isinstance(noise, Noise) and id(noise) not in seen:
            seen.add(id(noise))
            owners.append((noise, owner is not m))
    return owners


def noise_sources(model) -> list[Noise]:
    """The `solvers.Noise` objects ``model`` draws from, each once (a stream shared by several
    flows counts once), in module order."""
    return [noise for noise, _ in _noise_owners(model)]


def decorrelate_noise(model, rank: int) -> None:
    """Give rank ``rank`` of a distributed run its own stream for every seeded `solvers.Noise` of
    ``model`` (seed s -> s + 1,000,003 rank): otherwise every rank would draw the same
    stochastic-depth gates or Brownian increments for its own samples. Rank 0 keeps the seed,
    so a one-process run draws what rank 0 draws. User-supplied generators are left alone."""
    if rank == 0:
        return
    for noise in noise_sources(model):
        if noise.kind == "seed":
            noise.manual_seed(noise.seed + 1_000_003 * rank)


def rng_state(model=None) -> dict:
    """This process's torch RNG states (CPU and, when present, every CUDA device) and, given
    ``model``, its noise generators' (``"noise"``: one dict per `noise_sources` entry)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if model is not None:
        state["noise"] = [noise.state_dict() for noise in noise_sources(model)]
        state["noise_format"] = NOISE_FORMAT
    return state


def _usable(key: str) -> bool:
    """Whether this process can make a generator on device ``key`` (a saved state's key)."""
    if key == "generator":
        return True
    device = torch.device(key)
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    return True


def _on_device(states: dict, device: torch.device) -> dict:
    """Saved generator states to restore on this process: the state of the model's device when
    saved; else a state of another device of the same type (a run resumed on cuda:1, or by
    another rank) continues on the model's device. Devices this process lacks are skipped."""
    out = {}
    for key, value in states.items():
        if key != "generator" and str(device) not in states and torch.device(key).type == device.type:
            key = str(device)
        if _usable(key) and (key == "generator" or torch.device(key).type != device.type
                             or key == str(device)):
            out.setdefault(key, value)
    return out


def set_rng_state(state: dict, model=None, path="the checkpoint") -> None:
    """Restore what `rng_state` returned; ``model``'s noise generators too when the state has
    them. Raises ValueError naming ``path`` when the model's noise sources do not match.
    Generator states of CUDA devices this process lacks are skipped, like the global ones."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if model is None or "noise" not in state:
        return
    sources, saved = _noise_owners(model), state["noise"]
    if len(saved) != len(sources):
        raise ValueError(f"{path} holds the states of {len(saved)} noise generator owner(s) "
                         f"(solvers.Noise objects of stochastic schemes or seeded sde: flows), but the "
                         f"model has {len(sources)}: were --model, --model-arg or --solver changed?")
    device = next(iter(model.parameters()), torch.empty(0)).device
    legacy = state.get("noise_format", 1) < NOISE_FORMAT
    for i, ((noise, in_scheme), states) in enumerate(zip(sources, saved)):
        if legacy and not in_scheme and list(states) == ["generator"] and noise.kind == "seed":
            states = {"cpu": states["generator"]}  # format 1: a seeded sde: flow's CPU generator
        try:
            noise.load_state_dict(_on_device(states, device))
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"{path}: cannot restore noise generator {i} of the model: {e}") from None
