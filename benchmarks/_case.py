"""One model under measurement in `speed.py`: its training step, timed, and its activation memory."""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import synchronize  # noqa: E402

from odenets.info import count_macs  # noqa: E402


def loss_of(out, y):
    return F.cross_entropy(out.float(), y) if out.dim() == 2 else out.float().square().mean()


class Case:
    """A model, its optimiser and a fixed batch; ``step()`` is one training step."""

    def __init__(self, factory, shape, batch, device, mode, dtype, channels_last):
        torch.manual_seed(0)
        self.model = factory().to(device)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=fmt)
        self.macs = count_macs(self.model, (1, *shape))
        self.params = sum(p.numel() for p in self.model.parameters())
        self.x = torch.randn(batch, *shape, device=device).contiguous(memory_format=fmt)
        self.y = torch.randint(0, 10, (batch,), device=device)
        self.batch, self.device = batch, torch.device(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.run = torch.compile(self.model) if mode == "compile" else self.model
        self.autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if dtype == "bf16"
                         else contextlib.nullcontext())
        self.model.train()

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        with self.autocast:
            loss = loss_of(self.run(self.x), self.y)
        loss.backward()
        self.opt.step()

    def timed(self, iters, clock=time.perf_counter) -> float:
        """Seconds per step over ``iters`` steps (CUDA events on GPU, else ``clock``: e.g.
        ``time.process_time`` on a shared CPU, where elapsed time measures the other processes)."""
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                self.step()
            end.record()
            torch.cuda.synchronize(self.device)
            return start.elapsed_time(end) / 1e3 / iters
        t = clock()
        for _ in range(iters):
            self.step()
        return (clock() - t) / iters

    def memory(self) -> dict:
        """Activation memory of one step: saved-tensor bytes (eager model); on CUDA also the peak
        allocated during one step of what is timed (compiled or not)."""
        out = dict(saved_tensor_bytes=saved_bytes(self.model, self.x, self.y, self.autocast))
        if self.device.type == "cuda":
            synchronize(self.device)
            base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.step()
            synchronize(self.device)
            out.update(peak_allocated_bytes=torch.cuda.max_memory_allocated(self.device),
                       peak_above_resident_bytes=torch.cuda.max_memory_allocated(self.device) - base)
        return out


def saved_bytes(model, x, y=None, autocast=contextlib.nullcontext()) -> int:
    """Bytes of the distinct non-parameter storages autograd saves in one forward of ``model``."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        try:
            storage = t.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
        except (RuntimeError, NotImplementedError):  # e.g. tensors without storage
            key, size = id(t), t.numel() * t.element_size()
        if key not in params:
            seen[key] = max(seen.get(key, 0), size)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        out = model(x)
        loss = loss_of(out, y) if y is not None else out.float().sum()
    del loss, out
    return sum(seen.values())


def interleaved(cases: dict, rounds: int, warmup: int = 0, iters: int = 1) -> dict:
    """``{name: [seconds per step, one per round]}``: ``warmup`` steps of every case, then
    ``rounds`` rounds timing ``iters`` steps of each case in turn, the order rotated each round
    (machine load hits every case alike; per-round ratios are paired samples)."""
    for c in cases.values():
        for _ in range(warmup):
            c.step()
    names, times = list(cases), {name: [] for name in cases}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(cases[name].timed(iters))
    return times
