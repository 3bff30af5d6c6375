"""``--amp auto`` and ``--compile auto``: chosen by timing a few training steps each way at
start-up, on the run's own model and batch size, rather than from CPU flags.

Why measure: whether bf16 autocast pays depends on the kernels this CPU gets, not on one flag.
resnet20 training steps (batch 128, 28x28, channels_last, 2 threads) ran under bf16 autocast
1.53x *faster* on an AMD CPU with ``avx512_bf16``, 1.38x slower on a Xeon with ``avx512_bf16``
and no AMX, and 12.7x slower on an AVX2-only AMD CPU; ``torch.compile`` was 1.03x faster there
and slower than eager on another machine.

A probe step is a forward, the cross-entropy loss and a backward on a random batch of the run's
shape, without the optimiser's update, on a deep copy of the model for precision (the model
itself for compile, whose compiled code is kept); the model's BatchNorm buffers, its gradients,
the torch RNG and its noise generators are restored afterwards, so the run trains exactly as it would have
with the chosen settings given explicitly. Candidates are timed interleaved, one step each per
round, after a warm-up step each; a candidate whose median is more than ``drop`` times the best
one's is dropped at once, and the rounds stop at ``budget_s`` seconds of timed steps. Precision
candidates warm up on an eighth of the batch, and one more than 4x slower there is dropped
before any full step (bf16 on the AVX2 CPU: ~1.5 s instead of ~10 s per full step, 1 thread).
bf16 (compile) is chosen only when its median step is more than 10% below fp32's (eager's):
near-ties keep the default, so machine noise rarely flips the choice between two runs. Precision is chosen first, in eager mode (the
bf16/fp32 ratio measured compiled was the eager one: 12.7x vs 13.0x on the AVX2 CPU), then
compile with the chosen precision; the compiled model of the probe is the one that trains, so
its compilation is not repeated.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from . import checkpoint, distributed

AMPS = ("off", "bf16")  # what amp='auto' resolves to


def autocast(device: torch.device, amp: str):
    """bf16 autocast when ``amp`` is 'bf16' (or 'auto' not resolved by a probe, on CUDA);
    otherwise a no-op context. `choose` resolves 'auto' for a training run."""
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def time_candidates(steps: dict, budget_s: float = 2.0, rounds: int = 5, drop: float = 1.5,
                    warmups: dict | None = None, warmup_drop: float = 4.0, keep: tuple = (),
                    clock=time.perf_counter) -> dict:
    """Per candidate name, the seconds of its timed calls: ``steps`` maps names to functions
    running one step (synchronised). Each is first warmed up: ``warmups[name]()`` when given
    (a cheaper step, e.g. on a slice of the batch: timed, and a candidate whose warm-up took
    more than ``warmup_drop`` times the fastest warm-up is dropped before any full step), else
    one untimed ``steps[name]()``. Then one timed call each per round, interleaved, for at most
    ``rounds`` rounds or until ``budget_s`` seconds of timed calls; after each round a candidate
    whose median exceeds ``drop`` times the best median is dropped. Candidates in ``keep`` (the
    default setting) are never dropped: one slow sample (a preempted step on a busy machine)
    must not leave the alternative unopposed. The warm-up times, when timed, are under the key
    ``'warmup'``; a candidate dropped there has no step times."""
    times = {name: [] for name in steps}
    alive = list(steps)
    if warmups is not None:
        first = {}
        for name in steps:
            start = clock()
            warmups[name]()
            first[name] = clock() - start
        alive = [n for n in steps if n in keep or first[n] <= warmup_drop * min(first.values())]
    else:
        for step in steps.values():
            step()
    spent = 0.0
    for _ in range(rounds):
        for name in alive:
            start = clock()
            steps[name]()
            times[name].append(clock() - start)
            spent += times[name][-1]
        best = min(statistics.median(times[n]) for n in alive)
        alive = [n for n in alive if n in keep or statistics.median(times[n]) <= drop * best]
        if len(alive) == 1 or spent >= budget_s:
            break
    return times if warmups is None else {**times, "warmup": first}


def fastest(times: dict, default: str | None = None, margin: float = 0.1) -> str:
    """The timed candidate (of `time_candidates`'s result) with the smallest median time; with
    a ``default``, another one only if its median is more than ``margin`` (a fraction) below the
    default's (so near-ties, where machine noise would decide, keep the default)."""
    timed = [name for name, t in times.items() if name != "warmup" and t]
    best = min(timed, key=lambda name: statistics.median(times[name]))
    if default in timed and statistics.median(times[best]) > (1 - margin) * statistics.median(times[default]):
        return default
    return best


@contextlib.contextmanager
def restored(model: torch.nn.Module):
    """Run the body, then put back ``model``'s buffers (BatchNorm statistics), the torch RNG
    and the model's noise generators, and clear its gradients."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    rng = checkpoint.rng_state(model)
    try:
        yield
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        checkpoint.set_rng_state(rng, model)
        model.zero_grad(set_to_none=True)


def _step_fn(model, x, y, device, amp):
    def step():
        with autocast(device, amp):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return step


def choose(raw: torch.nn.Module, cfg, batch_shape: tuple, num_classes: int,
           device: torch.device, info: distributed.Dist | None = None, chosen: dict | None = None,
           budget_s: float = 2.0) -> tuple[dict, torch.nn.Module]:
    """`probe` on every rank, then rank 0's choice everywhere (printed on rank 0 when
    something was timed); returns it and the model to train (compiled or ``raw``). A resumed
    run passes the choice it made as ``chosen`` (from its checkpoint): its 'auto' settings take
    those values again, unprobed, so the resumed run replays the original one."""
    if isinstance(chosen, dict) and chosen.get("amp") in AMPS and isinstance(chosen.get("compile"), bool):
        cfg = dataclasses.replace(cfg, **{k: chosen[k] for k in ("amp", "compile") if getattr(cfg, k) == "auto"})
    choice, model = probe(raw, cfg, batch_shape, num_classes, device, budget_s)
    if info is not None and info.enabled and choice["probe"]:
        choice = distributed.broadcast_object(choice, info)
        model = torch.compile(raw) if choice["compile"] else raw
    if choice["probe"] and (info is None or info.main):
        print(f"odenets: {describe(choice)}", file=sys.stderr)
    elif chosen and chosen.get("probe"):  # keep the original probe's record
        choice["probe"] = chosen["probe"]
    return choice, model


def probe(raw: torch.nn.Module, cfg, batch_shape: tuple, num_classes: int,
          device: torch.device, budget_s: float = 2.0) -> tuple[dict, torch.nn.Module]:
    """Resolve ``cfg.amp`` ('auto' -> 'bf16' or 'off') and ``cfg.compile`` ('auto' -> True or
    False) by timing training steps of ``raw`` on a random batch of ``batch_shape``. Returns the
    choice ``dict(amp=, compile=, probe=...)`` (probe: per candidate, its median and all step
    times in ms; empty when nothing was 'auto') and the model to train (compiled or ``raw``)."""
    compiled = torch.compile(raw) if cfg.compile in (True, "auto") else None
    choice = dict(amp=cfg.amp, compile=cfg.compile, probe={})
    if cfg.amp != "auto" and cfg.compile != "auto":
        return choice, compiled if cfg.compile else raw
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch_shape, generator=generator).to(
        device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    y = torch.randint(num_classes, (batch_shape[0],), generator=generator).to(device)
    raw.train()
    with restored(raw):
        if cfg.amp == "auto":
            amps = AMPS  # warm-up on an eighth of the batch: the slow side is cut short
            part, subject = max(1, len(x) // 8), _copy(raw)
            try:
                times = time_candidates({a: _step_fn(subject, x, y, device, a) for a in amps},
                                        warmups={a: _step_fn(subject, x[:part], y[:part], device, a)
                                                 for a in amps}, keep=("off",), budget_s=budget_s)
            except RuntimeError as e:  # e.g. no bf16 kernels on this device: fp32
                choice["amp"], choice["probe"]["amp_error"] = "off", f"{type(e).__name__}: {e}"[:300]
            else:
                choice["amp"] = fastest(times, default="off")
                choice["probe"].update({f"amp={a}": _summary(times[a], times["warmup"][a]) for a in amps})
        if cfg.compile == "auto":
            times = time_candidates({name: _step_fn(m, x, y, device, choice["amp"]) for name, m in
                                     (("eager", raw), ("compiled", compiled))}, keep=("eager",),
                                    budget_s=budget_s)
            choice["compile"] = fastest(times, default="eager") == "compiled"
            choice["probe"].update({f"compile={n}": _summary(t) for n, t in times.items()})
    return choice, compiled if choice["compile"] else raw


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``model`` to time precision on (state kept in Python attributes, such as
    counters, stays untouched), or ``model`` itself when it cannot be copied."""
    try:
        return copy.deepcopy(model)
    except Exception:  # e.g. a module holding a lock or an open file
        return model


def _summary(times: list, warmup: float | None = None) -> dict:
    """Median and step times in ms (median None: dropped after its warm-up)."""
    out = dict(median_ms=round(1e3 * statistics.median(times), 2) if times else None,
               step_ms=[round(1e3 * t, 2) for t in times])
    return out if warmup is None else dict(out, warmup_ms=round(1e3 * warmup, 2))


def describe(choice: dict) -> str:
    """One line for the log: 'speed: amp=off compile=False (probe, median per step: ...)'."""
    def shown(name, v):
        if isinstance(v, str):  # amp_error
            return f"bf16 failed ({v})"
        if v["median_ms"] is None:
            return f"{name} dropped after a {v['warmup_ms']:.0f} ms warm-up on 1/8 batch"
        return f"{name} {v['median_ms']:.0f} ms"
    timed = ", ".join(shown(name, v) for name, v in choice["probe"].items())
    parts = [f"{k}={choice[k]}" for k in ("amp", "compile")]
    return "speed: " + " ".join(parts) + (f" (probe, median per step: {timed})" if timed else "")
