"""How OpenMP threads wait, chosen before torch loads libgomp (which reads it once).

libgomp's default lets a thread that reaches a barrier spin for a while before it sleeps: on an
idle machine that is what makes 2 threads fast (resnet20 training step, 2-core Xeon: 168 ms
spinning against 266 ms with ``OMP_WAIT_POLICY=PASSIVE``), but beside busy processes the
spinning threads take the cores the working ones need (same step with one busy loop per core:
3340 ms and 1.84 CPU-s spinning against 736 ms and 0.36 CPU-s passive;
benchmarks/results/levers_cpu.md). So odenets asks for passive waiting only when the machine is
already busy as it starts, and only when nobody chose a policy.
"""
from __future__ import annotations

import os

BUSY = 1.0  # 1-minute load average from which the machine counts as busy (one core's worth)


def wait_policy(load: float | None, environ) -> str | None:
    """'PASSIVE' when the load average ``load`` says other work holds at least one core and
    ``environ`` sets no ``OMP_WAIT_POLICY``; else None (libgomp's default stays)."""
    if "OMP_WAIT_POLICY" in environ or load is None or load < BUSY:
        return None
    return "PASSIVE"


def choose(modules) -> None:
    """Set ``OMP_WAIT_POLICY`` per `wait_policy` if torch is not loaded yet (``modules``:
    ``sys.modules``); after that it would change nothing."""
    if "torch" in modules:
        return
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this system
        load = None
    policy = wait_policy(load, os.environ)
    if policy is not None:
        os.environ["OMP_WAIT_POLICY"] = policy
