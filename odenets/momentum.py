"""Momentum (heavy-ball) flows: u'' + gamma u' = f(u) as a first-order system any solver takes.

    flow = odenets.build(field, "rk4", steps=8, momentum=True, damping=0.5)   # fixed gamma
    flow = odenets.build(field, "dopri5", momentum=True, damping=None)        # learnable gamma
    flow = odenets.build(field, "leapfrog", steps=8, momentum=True)           # reversible, O(1) memory

The state is z = (u, v), u and v concatenated along dim 1 (channels; dim 0 for 1-D states) or,
inside a torchdiffeq flow, along dim 0 (the batch: both halves stay contiguous in any memory
format, so the field reads u without a copy and (v, a) joins as two block copies), and

    u' = v,    v' = f(t, u) - gamma v,    u(t0) = u0,   v(t0) = v0 (default 0);

the flow takes u0 and returns u(t1) (`MomentumFlow`). This is the heavy-ball neural ODE of Xia
et al. (NeurIPS 2021), and the continuous counterpart of LM-ResNet: LM's step with coefficient
k and step dt is consistent, to O(dt^2), with (1 + k) u' + (1 - k) dt / 2 u'' = f(u), i.e.
u'' + gamma u' = 2 f(u) / ((1 - k) dt) with gamma = 2 (1 + k) / ((1 - k) dt) (docs/momentum.md).

Damping: a float >= 0 (fixed), or None = learnable, gamma = softplus(raw) > 0 (initialised at
``DAMPING_INIT``): one per flow when tied, one per step when untied (each step's field has its
own). ``leapfrog`` becomes ``damped_leapfrog`` (`solvers.damped_leapfrog`), which splits the
damping off exactly and keeps the memory-saving reversible backward. Continuous solvers count
NFE as for any flow: one evaluation of the system = one evaluation of f.
"""
from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

import solvers
from solvers import checks

DAMPING_INIT = 0.5  # gamma of a learnable damping at initialisation


def _check_damping(damping):
    if damping is None:
        return None
    if not checks.is_real(damping) or \
            not math.isfinite(damping) or damping < 0:
        raise ValueError(f"damping must be a float >= 0 (fixed gamma) or None (learnable, kept "
                         f"> 0 by a softplus), got {damping!r}")
    return float(damping)


def _takes_time(fn) -> bool:
    """Whether a field is called f(t, u): ``time_aware = True``, or two required arguments."""
    if hasattr(fn, "time_aware"):
        return bool(fn.time_aware)
    try:
        params = inspect.signature(fn.forward if isinstance(fn, nn.Module) else fn).parameters
    except (TypeError, ValueError):
        return False
    required = [p for p in params.values() if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) >= 2


def split_dim(z: torch.Tensor, batch: bool = False) -> int:
    """The dim along which (u, v) are concatenated: 1 (channels), or 0 for a 1-D state or when
    ``batch`` (the layout of a torchdiffeq flow, whose solver treats the state as one vector)."""
    return 1 if z.dim() > 1 and not batch else 0


class Damping(nn.Module):
    """The damping rate gamma >= 0: a fixed buffer, or learnable gamma = softplus(raw).
    ``forward(z)`` returns gamma broadcast to z's shape (the rates ``damped_leapfrog`` takes)."""

    def __init__(self, damping=0.0):
        super().__init__()
        damping = _check_damping(damping)
        self.learnable = damping is None
        if self.learnable:
            self.raw = nn.Parameter(torch.empty(()))
            self.reset_parameters()
        else:
            self.register_buffer("fixed", torch.tensor(damping))

    def reset_parameters(self):
        if self.learnable:
            with torch.no_grad():  # softplus^{-1}(g) = log(exp(g) - 1)
                self.raw.fill_(math.log(math.expm1(DAMPING_INIT)))

    def value(self) -> torch.Tensor:
        return F.softplus(self.raw) if self.learnable else self.fixed

    def forward(self, z):
        return self.value().to(z.dtype).expand_as(z)

    def extra_repr(self):
        return "learnable" if self.learnable else f"gamma={float(self.fixed):g}"


class MomentumField(nn.Module):
    """The first-order field of u'' + gamma u' = f(u) on z = (u, v): (v, f(u) - gamma v).

    ``field`` is f: an nn.Module or a function, called f(u), or f(t, u) when it is time-aware
    (``time_aware = True`` or two required arguments). ``branches = (field, damping)`` is the
    pair (G, c) that ``damped_leapfrog`` takes."""

    time_aware = True  # called f(t, z): the inner field may need t
    pair = "force_damping"  # what `branches` means (`solvers.base.PAIRS`)
    batch_split = False  # (u, v) along dim 0 instead of 1 (`split_dim`); set by build_momentum

    def __init__(self, field, damping=0.0):
        super().__init__()
        if not callable(field):
            raise ValueError(f"momentum: the field must be an nn.Module or a function f(u), got "
                             f"{type(field).__name__}")
        self.field = field
        self.damping = Damping(damping)
        self._field_takes_time = _takes_time(field)

    @property
    def branches(self):
        return (self.field, self.damping)

    def forward(self, t, z):
        dim = split_dim(z, self.batch_split)
        u, v = z.chunk(2, dim)
        a = self.field(t, u) if self._field_takes_time else self.field(u)
        gamma = self.damping.value().to(v.dtype)
        if torch.is_grad_enabled() and (a.requires_grad or v.requires_grad or gamma.requires_grad) \
                or a.dtype != z.dtype or a.shape != v.shape:
            return torch.cat((v, torch.addcmul(a, v, gamma, value=-1)), dim)
        # without a graph: written into its halves, no temporary for f - gamma v (same values)
        out = torch.empty_like(z)
        out_v, out_a = out.chunk(2, dim)
        out_v.copy_(v)
        torch.addcmul(a, v, gamma, value=-1, out=out_a)
        return out


class MomentumFlow(nn.Module):
    """``forward(u0) = u(t1)`` of u'' + gamma u' = f(u), u(t0) = u0, u'(t0) = v0 (default 0):
    the inner ``flow`` (a `Flow` or a continuous flow) integrates z = (u, v).

    ``forward(u0, times=None, v0=None, return_velocity=False)``: ``times`` goes to continuous
    flows (states at those times, shape (len(times), *u0.shape)); ``return_velocity`` returns
    ``(u, v)``. ``nfe``/``reset_nfe`` (continuous) and ``scheme``/``steps``/``evals_per_forward``
    (fixed grid) are the inner flow's; `damping` gives gamma per field (one when tied)."""

    def __init__(self, flow: nn.Module, batch_split: bool = False):
        super().__init__()
        self.flow, self.batch_split = flow, batch_split
        for field in self._fields():
            field.batch_split = batch_split

    def _fields(self):
        return [m for m in self.flow.modules() if isinstance(m, MomentumField)]

    def damping(self) -> torch.Tensor:
        """gamma of each distinct field (per step untied, one value tied), detached."""
        return torch.stack([m.damping.value().detach().float() for m in self._fields()])

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("nfe", "reset_nfe", "scheme", "steps", "evals_per_forward", "tied", "dt",
                        "t_span", "coefficients"):
                return getattr(self._modules["flow"], name)
            raise

    def forward(self, u0, times=None, *, v0=None, return_velocity: bool = False):
        if not torch.is_tensor(u0) or not u0.is_floating_point():
            raise ValueError(f"momentum: the input must be a floating-point tensor, got "
                             f"{u0.dtype if torch.is_tensor(u0) else type(u0).__name__}")
        if v0 is None:
            v0 = torch.zeros_like(u0)
        elif not torch.is_tensor(v0) or v0.shape != u0.shape:
            raise ValueError(f"momentum: v0 must be a tensor shaped like u0 {tuple(u0.shape)}, got "
                             f"{tuple(v0.shape) if torch.is_tensor(v0) else type(v0).__name__}")
        dim = split_dim(u0, self.batch_split)
        z = self.flow(torch.cat((u0, v0.to(u0.dtype)), dim)) if times is None else \
            self.flow(torch.cat((u0, v0.to(u0.dtype)), dim), times)
        u, v = z.chunk(2, dim + (z.dim() - u0.dim()))  # a path has a leading time dim
        return (u, v) if return_velocity else u


def _wrap_fields(field, damping):
    """The user's field(s) with the momentum system around each."""
    if isinstance(field, (list, tuple)):
        return [MomentumField(m, damping) if isinstance(m, nn.Module) else m for m in field]
    if isinstance(field, nn.Module):
        return MomentumField(field, damping)
    if callable(field):
        try:
            required = [p for p in inspect.signature(field).parameters.values()
                        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                               p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            required = [None]
        if not required:  # a zero-argument factory: one wrapped module per call
            return lambda: MomentumField(field(), damping)
        return MomentumField(field, damping)  # a plain function f(u) or f(t, u)
    return field  # build names the problem


def _scheme(solver, solver_opts):
    """``leapfrog`` -> ``damped_leapfrog``: Verlet on (u, v) with the damping split off."""
    if isinstance(solver, solvers.Scheme) and solver.name == "leapfrog":
        raise ValueError("momentum=True with a Leapfrog scheme object: pass solver='leapfrog' or "
                         "'damped_leapfrog' (damping makes v' depend on v, which plain leapfrog "
                         "cannot invert)")
    if solver != "leapfrog":
        return solver, solver_opts
    opts = dict(solver_opts)
    if opts.pop("variant", "verlet") != "verlet":
        raise ValueError(f"momentum=True with leapfrog supports variant='verlet' only (it becomes "
                         f"damped_leapfrog), got variant={solver_opts['variant']!r}")
    return "damped_leapfrog", opts


def build_momentum(build, field, solver, steps, tied, *, damping=0.0, activation=None,
                   channels=None, **kwargs) -> MomentumFlow:
    """``build(...)`` of the momentum system of ``field`` (see the module docstring), wrapped
    so that it maps u0 to u(t1). ``build`` is `odenets.build` (passed in to avoid a cycle)."""
    damping = _check_damping(damping)
    if activation is not None:
        raise ValueError(f"momentum=True: activation={activation!r} would also act on the "
                         f"velocity v; use activation=None (networks: post_activation=False)")
    solver, kwargs = _scheme(solver, kwargs)
    fields = _wrap_fields(field, damping)
    flow = build(fields, solver, steps, tied, channels=None if channels is None else 2 * channels,
                 **kwargs)
    # a solver that steps the state as one vector (torchdiffeq) takes (u, v) along the batch
    return MomentumFlow(flow, batch_split=bool(getattr(flow, "whole_state", False)))


def lm_momentum(k, dt: float = 1.0) -> dict:
    """The momentum flow that an LM step with coefficient k and step dt approximates.

    LM's modified equation (`odenets.analysis.modified_equation`, to O(dt^2)) is
    (1 + k) u' + (1 - k) dt / 2 u'' = f(u); dividing by (1 - k) dt / 2 gives

        u'' + gamma u' = scale f(u),   gamma = 2 (1 + k) / ((1 - k) dt),   scale = 2 / ((1 - k) dt).

    Returns ``{"k", "gamma", "scale"}`` as float64 tensors shaped like ``k`` (every k in (-1, 1)).
    LM-ResNet (dt = 1): k = 0 gives gamma = 2; k -> 1 gives gamma -> infinity (the inertia
    vanishes: a first-order flow), k -> -1 gives gamma -> 0 (undamped oscillation).
    """
    k = torch.as_tensor(k, dtype=torch.float64)
    if not bool(((k > -1) & (k < 1)).all()):
        raise ValueError(f"LM coefficients k must lie in (-1, 1) (zero-stability), got {k.tolist()}")
    if not checks.is_real(dt) or not dt > 0:
        raise ValueError(f"dt must be a number > 0, got {dt!r}")
    return dict(k=k, gamma=2 * (1 + k) / ((1 - k) * dt), scale=2 / ((1 - k) * dt))
