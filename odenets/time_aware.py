"""Whether a field is called ``f(t, u)`` or ``f(u)``: declared, or read off its signature.

torchdiffeq's and torchsde's fields are written ``forward(self, t, y)``; odenets' own fields
``forward(self, u)``. `takes_time` lets both build without flags.
"""
from __future__ import annotations

import inspect

from torch import nn


def takes_time(field) -> bool:
    """True when ``field`` is to be called ``field(t, u)``.

    An explicit ``time_aware`` attribute (True or False) decides; otherwise the signature of the
    call (``forward`` for an ``nn.Module``) does: two or more positional parameters without
    defaults mean ``(t, u)``. Fields whose signature cannot be read (``*args``, some builtins)
    are called ``field(u)``; set ``time_aware = True`` on them to pass ``t``.
    """
    flag = getattr(field, "time_aware", None)
    if flag is not None:
        return bool(flag)
    fn = field.forward if isinstance(field, nn.Module) else field
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) >= 2


class FunctionField(nn.Module):
    """A plain function ``f(t, u)`` (or ``f(u)``) as a field module without weights, so
    ``odenets.build(f, ...)`` unrolls it like any field (every step calls the same function)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.time_aware = takes_time(fn)

    def forward(self, *args):
        return self.fn(*args)

    def extra_repr(self) -> str:
        return f"{getattr(self.fn, '__qualname__', type(self.fn).__name__)}, time_aware={self.time_aware}"
