"""How freed memory goes back to the system: keep large freed blocks for reuse (glibc).

PyTorch's CPU tensors come from ``malloc``. glibc serves a block above its mmap threshold
(128 KiB, raised on the fly towards 32 MiB as such blocks are freed) with fresh pages, and
returns the top of the heap to the kernel whenever more than the trim threshold (twice the mmap
threshold) lies free there. A solver that allocates and frees state-sized tensors at every
stage (a resnet20 stage-0 state at batch 128 is 8 MiB; the heavy-ball state (u, v) 16 MiB) then
page-faults on every 4 KiB page it writes, and the kernel zeroes each one: one dopri5 forward
of that heavy-ball flow took ~150,000 minor faults (~0.5 s of system time, 2-core EPYC), the
plain one ~60,000, the faults rather than the arithmetic being what made the heavy-ball solve
cost ~3x per state element (benchmarks/solver_overhead.py --flows). With both thresholds
raised, a solve reuses the blocks the previous stage freed and faults ~0 times.

So odenets sets ``M_MMAP_THRESHOLD`` = 32 MiB (glibc's largest) and ``M_TRIM_THRESHOLD`` =
1 GiB once, at import, on glibc systems: the process keeps up to that much freed memory instead
of handing it back between steps (its peak is reached again every step anyway). Nothing is set
when the user chose glibc's tunables (``MALLOC_*_`` variables, ``GLIBC_TUNABLES``) or
``ODENETS_MALLOC=system``.
"""
from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit systems
TRIM_THRESHOLD = 1 << 30
CHOICES = ("keep", "system")  # ODENETS_MALLOC: keep freed blocks (default), or glibc's default

applied = False  # whether `choose` changed malloc's thresholds in this process


def wanted(environ) -> bool:
    """Whether odenets should raise the thresholds: glibc, and no choice of the user's."""
    choice = environ.get("ODENETS_MALLOC", "keep")
    if choice not in CHOICES:
        raise ValueError(f"ODENETS_MALLOC must be one of {', '.join(CHOICES)}, got {choice!r}")
    user = any(k.startswith("MALLOC_") and k.endswith("_") for k in environ) or \
        "glibc.malloc" in environ.get("GLIBC_TUNABLES", "")
    return choice == "keep" and not user and platform.libc_ver()[0] == "glibc"


def choose(environ=os.environ) -> bool:
    """Raise glibc's mmap and trim thresholds per `wanted`; returns whether they were set."""
    global applied
    if applied or not wanted(environ):
        return applied
    try:
        libc = ctypes.CDLL(None)
        applied = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
            bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):  # no mallopt: not glibc after all
        applied = False
    return applied
