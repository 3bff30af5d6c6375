"""Training progress: a tqdm bar on a terminal, plain periodic lines anywhere else.

A bar redraws itself with carriage returns, which end up as ``\\r`` fragments in a log file or
a pipe (``make demo > log 2>&1``). `progress(total)` therefore returns tqdm's bar only when its
stream (stderr) is a terminal, and otherwise a `LineProgress`, which prints one line every
``interval`` seconds (the training loop and `evaluate` advance it every batch, so a line is at
most one batch late):

    epoch 1/2 step 120/235 | loss 0.6123 acc 0.7791 | 840 img/s | ETA 0:52

Both offer the part of tqdm's interface the training loop uses (``n``, ``reset``,
``set_description``, ``set_postfix``, ``update``, ``write``, ``close``), so the loop does not
know which one it has.

`epoch_curve` condenses an epoch's per-step losses into a few points for the run's metrics
(``train_curve``), so curves.png shows the training within epochs.
"""
from __future__ import annotations

import sys
import time

INTERVAL = 30.0  # seconds between two plain progress lines


def progress(total: int, *, stream=None, interval: float | None = None, out=None):
    """A tqdm bar on ``stream`` (default stderr) if it is a terminal, else a `LineProgress`
    printing to ``out`` (default stdout) every ``interval`` seconds (default `INTERVAL`)."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm.auto import tqdm
        return tqdm(total=total, unit="step", dynamic_ncols=True, leave=False, file=stream)
    return LineProgress(total, interval=INTERVAL if interval is None else interval, out=out)


def epoch_curve(step_losses, step_correct, batch: int, epoch: int, lrs, points: int = 10) -> dict:
    """Training loss, accuracy and learning rate within epoch ``epoch`` (0-based), averaged
    over up to ``points`` equal runs of steps: ``{"epoch": [x...], "loss": [...], "acc": [...],
    "lr": [...]}`` where x = epoch + (steps done) / (steps per epoch), so x = e + 1 is the end
    of the epoch whose record has ``"epoch": e + 1``. ``lrs`` holds each step's learning rate."""
    losses, correct = [float(v) for v in step_losses], [int(v) for v in step_correct]
    steps = len(losses)
    k = min(points, steps)
    ends = sorted({max(1, round(steps * (j + 1) / k)) for j in range(k)})
    curve = dict(epoch=[], loss=[], acc=[], lr=[])
    start = 0
    for end in ends:
        curve["epoch"].append(epoch + end / steps)
        curve["loss"].append(sum(losses[start:end]) / (end - start))
        curve["acc"].append(sum(correct[start:end]) / ((end - start) * batch))
        curve["lr"].append(lrs[end - 1])
        start = end
    return curve


def format_eta(seconds: float) -> str:
    """'0:52', '12:05', '1:02:09' (h:mm:ss above an hour)."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class LineProgress:
    """Progress as plain lines: the step, the postfix values (loss, acc, img/s) and the time
    left in the epoch, printed at most every ``interval`` seconds (never a ``\\r``)."""

    def __init__(self, total: int, *, interval: float = INTERVAL, out=None):
        self.total, self.interval, self.out = total, interval, out
        self.desc, self.postfix, self.n = "", {}, 0
        self._start = self._last = time.perf_counter()

    def reset(self, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        self.n, self.postfix = 0, {}
        self._start = self._last = time.perf_counter()

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.postfix = values

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._last < self.interval or self.n >= self.total:
            return  # the epoch's summary line follows its last step
        self._last = now
        self.write(self.line(now - self._start))

    def line(self, elapsed: float) -> str:
        parts = [f"{self.desc} step {self.n}/{self.total}".strip()]
        values = " ".join(f"{k} {v}" for k, v in self.postfix.items() if k != "img_s")
        if values:
            parts.append(values)
        if "img_s" in self.postfix:
            parts.append(f"{self.postfix['img_s']} img/s")
        if self.n:
            parts.append(f"ETA {format_eta(elapsed / self.n * (self.total - self.n))}")
        return " | ".join(parts)

    def write(self, line: str) -> None:
        print(line, file=self.out or sys.stdout, flush=True)

    def close(self) -> None:
        pass
