"""Functional entry point: integrate any callable on a uniform grid."""
from __future__ import annotations

import itertools
import math
import os

import torch

from . import checks
from .base import Repeat
from .registry import get
from .reversible import params_known

MAX_STEPS = 10 ** 9  # as solvers.odeint: a larger count is a typo, refused before any work


def integrate(f, u0: torch.Tensor, steps: int, scheme=None, t0: float = 0.0, t1: float = 1.0,
              return_path: bool = False, coefficients: dict | None = None, training: bool = True,
              *, method=None, **options):
    """Integrate ``du/dt = f(t, u)`` from ``t0`` to ``t1`` in ``steps`` uniform steps of
    ``dt = (t1 - t0) / steps``.

    ``f`` is a callable ``f(t, u)`` (torchdiffeq's convention) returning a tensor of ``u``'s
    shape, a pair ``(f1, f2)`` for two-field schemes (leapfrog, shake noise), or a *list* of
    ``steps`` such fields, one per step (untied networks). ``scheme`` (alias ``method``, as in
    torchdiffeq) is a registry name (default ``"euler"``) or a `Scheme`; ``options`` go to
    `solvers.get`. Only fixed-grid schemes: adaptive methods (dopri5...) are in
    ``odenets.build(field, solver="dopri5")`` or ``torchdiffeq.odeint``. ``coefficients``
    overrides the scheme's per-step coefficients (scalars or per-step sequences, e.g.
    ``{"k": torch.full((steps,), 0.3)}``). Stochastic schemes draw noise when ``training`` and
    use its mean otherwise.

    Returns the endpoint ``u(t1)`` only (unlike ``odeint``, which returns u at every time of
    ``t``), or with ``return_path`` a tensor of shape ``(steps + 1, *u0.shape)`` holding ``u`` at
    every grid point ``t0 + n dt`` (``u0`` first). Each distinct field's output shape is checked
    on its first call (a wrong shape raises a ValueError instead of broadcasting).
    """
    if "t" in options:
        raise ValueError("integrate takes no t=: it steps on the uniform grid t0 + n (t1 - t0) / "
                         "steps, so pass t0=, t1= and steps= (return_path=True gives u at every "
                         "grid point); for outputs at given times use solvers.odeint(f, u0, t, "
                         "method=..., options={'step_size': h}) (torchdiffeq's signature)")
    if method is not None and scheme is not None:
        raise ValueError(f"give scheme= or its alias method=, not both (got scheme={scheme!r}, "
                         f"method={method!r})")
    scheme = get(scheme if scheme is not None else method if method is not None else "euler",
                 **options)
    steps = checks.integer(scheme.name, "steps", steps)
    t0, t1 = check_times(scheme.name, t0, t1)
    checks.boolean(scheme.name, "training", training)
    checks.boolean(scheme.name, "return_path", return_path)
    check_coefficients(scheme, coefficients)
    if not torch.is_tensor(u0):
        raise ValueError(f"{scheme.name}: u0 must be a tensor, got {type(u0).__name__}")
    if not u0.is_floating_point():
        raise ValueError(f"{scheme.name}: u0 must be a floating-point tensor, got {u0.dtype}")
    if return_path:
        check_path_size(scheme.name, steps, u0)
    if steps > MAX_STEPS:
        raise ValueError(f"{scheme.name}: steps={steps:.3g} is more than anyone can mean; at most "
                         f"{MAX_STEPS:.0e} are allowed")
    if not math.isfinite((t1 - t0) / steps):
        raise ValueError(f"{scheme.name}: the step dt = (t1 - t0) / steps overflows (t0={t0!r}, "
                         f"t1={t1!r}, steps={steps}); use a shorter time span")
    if isinstance(f, list) and len(f) != steps:
        raise ValueError(f"{scheme.name}: got {len(f)} per-step fields for steps={steps}")
    for field in (f if isinstance(f, list) else (f,)):
        parts = field if isinstance(field, tuple) else (field,)
        if not all(callable(p) for p in parts):
            raise ValueError(f"{scheme.name}: the field must be callable f(t, u), got {field!r}")
    if isinstance(f, list):
        checked, seen = [], set()  # check each distinct field (or pair) at its first step only
        for field in f:
            checked.append(field if id(field) in seen else
                           shape_checked(field, scheme.name, check_dtype=True))
            seen.add(id(field))
    else:  # one field every step: no per-step list (memory independent of steps)
        checked = FirstThenRepeat(shape_checked(f, scheme.name, check_dtype=True), f, steps)
    out, _ = scheme.solve(checked, u0, t0, (t1 - t0) / steps, coefficients, None, return_path,
                          training)
    return out


class FirstThenRepeat(Repeat):
    """``[first] + [item] * (n - 1)`` without the list: step 0 runs the shape-checked field,
    the others the field itself (no per-step cost)."""

    def __init__(self, first, item, n: int):
        super().__init__(item, n)
        self.first = first

    def __getitem__(self, i):
        item = super().__getitem__(i)
        return self.first if i in (0, -self.n) else item

    def __iter__(self):
        if self.n:
            yield self.first
            yield from itertools.repeat(self.item, self.n - 1)

    def distinct(self) -> list:
        return [self.first, self.item][: min(self.n, 2)]


def check_path_size(name: str, steps: int, u0: torch.Tensor) -> None:
    """Refuse ``return_path`` when the path, ``(steps + 1) x u0`` values, exceeds the memory of
    ``u0``'s device (a one-line error instead of swapping or an out-of-memory kill later)."""
    need = (steps + 1) * u0.numel() * u0.element_size()
    have = device_memory(u0.device)
    if have is not None and need > have:
        raise ValueError(f"{name}: return_path=True would keep {steps + 1} states of "
                         f"{tuple(u0.shape)} ({need / 2**30:.3g} GiB), more than the "
                         f"{have / 2**30:.3g} GiB of {u0.device}; take fewer steps or ask for "
                         f"u at chosen times (solvers.odeint)")


def device_memory(device: torch.device) -> int | None:
    """Total memory of ``device`` in bytes (CPU: physical RAM), or None when unknown."""
    try:
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device).total_memory
        if device.type == "cpu":
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, RuntimeError, AttributeError):
        pass
    return None


def check_coefficients(scheme, coefficients) -> None:
    """Check tensor coefficient values against the scheme's bounds as numbers are (`Scheme.solve`
    leaves tensors to the caller, so a training loop pays no host sync; a network's learned
    values are kept in bounds by their sigmoid map). One host sync per tensor, here only."""
    if coefficients is None:
        return
    if not isinstance(coefficients, dict):
        raise ValueError(f"{scheme.name}: coefficients must be a dict {{name: value}}, got "
                         f"{coefficients!r}")
    specs = {c.name: c for c in scheme.coefficients}
    for name, value in coefficients.items():
        if name not in specs:  # `Scheme.solve` names the valid ones
            continue
        for v in (value if isinstance(value, (list, tuple)) else (value,)):
            if torch.is_tensor(v):
                if v.is_complex():
                    raise ValueError(f"{scheme.name}: coefficient {name} must be real, got {v!r}")
                for x in v.detach().flatten().tolist():
                    specs[name].check(x, scheme.name)


def check_times(name: str, t0, t1) -> tuple[float, float]:
    """``(t0, t1)`` as two finite, distinct floats (else a ValueError naming the problem); real
    numbers or one-element real tensors (a string such as '1' is no time)."""
    try:
        if not all(checks.is_real(t) or (torch.is_tensor(t) and t.numel() == 1
                                         and not t.is_complex()) for t in (t0, t1)):
            raise TypeError
        t0, t1 = float(t0), float(t1)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name}: t0 and t1 must be real numbers, got t0={t0!r}, "
                         f"t1={t1!r}") from None
    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 == t1:
        raise ValueError(f"{name}: t0 and t1 must be two distinct finite times, got t0={t0!r}, "
                         f"t1={t1!r}")
    return t0, t1


class ShapeChecked(torch.nn.Module):
    """``f(t, u)`` that raises a ValueError when the result is not a tensor of ``u``'s shape
    (instead of letting the scheme broadcast it). Shapes are metadata: no device sync.

    An `nn.Module` holding ``f`` (or the module a bound method belongs to), so reversible solves
    still find the step's parameters through it."""

    def __init__(self, f, name: str, what: str = "the field", check_dtype: bool = False):
        super().__init__()
        self.f, self.name, self.what, self.check_dtype = f, name, what, check_dtype
        owner = getattr(f, "__self__", None)
        if not isinstance(f, torch.nn.Module) and isinstance(owner, torch.nn.Module):
            self.owner = owner

    @property
    def order_dependent(self) -> bool:  # see `reversible.order_dependent`
        return bool(getattr(self.f, "order_dependent", False))

    def forward(self, t, u):
        out = self.f(t, u)
        if getattr(self.f, "returns_pair", False):  # one call computing both parts (f1, f2)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise ValueError(f"{self.name}: {self.what} must return a pair (f1, f2) of "
                                 f"tensors shaped like u ({tuple(u.shape)}), but it returned "
                                 f"{type(out).__name__}")
            for part in out:
                self._check(u, part)
            return out
        self._check(u, out)
        return out

    def _check(self, u, out):
        if not torch.is_tensor(out) or out.shape != u.shape:
            raise ValueError(shape_message(self.name, self.what, u, out))
        if (self.check_dtype and out.dtype != u.dtype
                and not torch.is_autocast_enabled(u.device.type)):
            raise ValueError(f"{self.name}: {self.what} returned {out.dtype} for a {u.dtype} "
                             f"state; the solve would silently change precision: return "
                             f"{u.dtype} (or pass u0 in {out.dtype})")

    @property
    def params_known(self) -> bool:  # see `reversible.params_known`
        return params_known(self.f)


def shape_checked(field, name: str, what: str = "the field", check_dtype: bool = False):
    """``field`` (a callable or a pair of them) with its output shapes checked (`ShapeChecked`);
    with ``check_dtype`` (`integrate`) its dtype too."""
    if isinstance(field, (tuple, list)):
        return type(field)(ShapeChecked(p, name, what, check_dtype) for p in field)
    return ShapeChecked(field, name, what, check_dtype)


def shape_message(name: str, what: str, u, out) -> str:
    got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
    return (f"{name}: {what} must return a tensor shaped like u (its input, {tuple(u.shape)}), "
            f"but it returned {got}")
