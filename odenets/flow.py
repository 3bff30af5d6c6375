"""`Flow`: a field unrolled by a fixed-grid scheme into a network, u_0 -> u_N.

The flow owns the per-step field modules and the scheme's learnable coefficients (LM's k_n as
one raw parameter tensor of shape (steps,) or (steps, C)); the scheme owns the update rule and
the loop (`Scheme.solve`). Built by `odenets.build`.
"""
from __future__ import annotations

import torch
from torch import nn

from collections.abc import Sequence

from solvers.base import CACHED_POINTS, PAIRS, DivergenceError, Repeat, Scheme, time_grid
from solvers.integrate import shape_checked, shape_message
from solvers.odeint import odeint as solvers_odeint

from .coefficients import SchemeCoefficients
from .evaluation_norm import MAX_SLOTS, CallIndex, _PerEvaluationStats
from .evaluation_norm import per_evaluation_norm as convert_norms
from .time_aware import takes_time

ACTIVATIONS = {"relu": torch.relu}


class _Call(nn.Module):
    """Adapts a field ``module(u)`` to the scheme's calling convention ``f(t, u)``. An
    `nn.Module` (not a closure) so reversible solves can find the step's parameters.

    With ``call_index`` (the `CallIndex` the field's per-evaluation norms read) it counts its
    calls in ``calls_in_step`` and publishes the count before each call: one `_Call` per step,
    so the count is the call's index within the step (the flow zeroes it before each solve; a
    tied flow's one `_Call` is zeroed as each step begins, `_TiedCalls`)."""

    def __init__(self, module: nn.Module, call_index: CallIndex | None = None):
        super().__init__()
        self.module, self.call_index, self.calls_in_step = module, call_index, 0
        self._norms = [m for m in module.modules() if isinstance(m, _PerEvaluationStats)]

    @property
    def order_dependent(self) -> bool:
        """True while a per-evaluation norm of the field is in eval mode: it then normalises
        with the statistics of the call's index, so the field computes differently when called
        in another order (as a reversible backward does, see `solvers.reversible`)."""
        return any(not m.training for m in self._norms)

    def _count(self):
        if self.call_index is not None:
            self.call_index.value = self.calls_in_step
            self.calls_in_step += 1

    def forward(self, t, u):
        self._count()
        return self.module(u)


class _TimeCall(_Call):
    """Adapts a time-aware field ``module(t, u)`` (``time_aware = True``, or a ``forward(self,
    t, y)`` as torchdiffeq writes it: see `odenets.time_aware.takes_time`)."""

    def forward(self, t, u):
        self._count()
        return self.module(t, u)


class _PairCall(_Call):
    """Adapts a two-part field computed in one pass, ``module.branch_outputs(u) -> (f1, f2)``,
    to ``f(t, u) -> (f1, f2)`` (`ShakeBasicPair`; the scheme takes either form of a pair)."""

    returns_pair = True  # for `solvers.integrate.ShapeChecked`

    def forward(self, t, u):
        self._count()
        return self.module.branch_outputs(u)


def _wrap(module: nn.Module, call_index: CallIndex | None = None) -> nn.Module:
    return (_TimeCall if takes_time(module) else _Call)(module, call_index)


class Flow(SchemeCoefficients, nn.Module):
    """u_N = Phi_{N-1} o ... o Phi_0 (u_0): ``steps`` steps of ``scheme`` on the fields.

    Step n uses ``fields[n]`` at time ``t_n = t0 + n dt`` (one shared module when ``tied``),
    followed by ``activation`` when given (post-activation ResNets: ``Scheme.solve``'s
    ``activation``). ``forward(u, state=None, return_state=False)`` accepts and returns the
    scheme's history (e.g. LM's u_{n-1}) so a network can carry it across stage transitions.

    Coefficients: learnable ones are raw parameters ``raw[name]`` mapped into their bounds, fixed
    schedules buffers ``coef_<name>`` (`odenets.coefficients`).

    Normalisation: when the scheme calls a field more than once per step
    (``max_calls_per_field`` > 1: RK, backward Euler, Verlet) and ``per_evaluation_norm``
    (default), the fields' BatchNorms keep running statistics per call within the step
    (`odenets.evaluation_norm`), so eval mode matches training call by call.
    """

    def __init__(self, fields, scheme: Scheme, steps: int, tied: bool = False, t0: float = 0.0,
                 dt: float = 1.0, activation=None, coefficients=None, channels: int | None = None,
                 per_evaluation_norm: bool = True):
        super().__init__()
        self.scheme, self.steps, self.tied = scheme, steps, bool(tied)
        self.t0, self.dt = float(t0), float(dt)
        self.activation = activation
        self._activation = ACTIVATIONS.get(activation, activation)
        self.blocks = nn.ModuleList(fields)
        slots = min(scheme.max_calls_per_field, MAX_SLOTS) if per_evaluation_norm else 1
        call_indices = {}  # id(block) -> the CallIndex of its converted norms (each block once)
        for m in self.blocks:
            if slots > 1 and id(m) not in call_indices:
                call_indices[id(m)] = convert_norms(m, slots)
        calls = [self._calls_for(m, call_indices.get(id(m))) for m in self.blocks]
        self._counted = [c for call in calls for c in (call if isinstance(call, tuple) else (call,))
                         if c.call_index is not None]  # the calls that publish a CallIndex
        # the first step checks its fields' output shapes (metadata only: no sync, no per-step cost)
        first = shape_checked(calls[0], scheme.name, f"the field {type(self.blocks[0]).__name__}")
        # tied: one call for every step, no per-step list (memory independent of steps)
        self._calls = (_TiedCalls(first, calls[0], steps) if self.tied
                       else [first, *calls[1:]])
        self._setup_coefficients(coefficients, channels)

    def _calls_for(self, module, call_index=None):
        if not self.scheme.paired_field:  # else leapfrog's (F, G), shake noise's (f1, f2)
            return _wrap(module, call_index)
        if not hasattr(module, "branches"):
            raise ValueError(
                f"solver {self.scheme.name!r} ({self.scheme!r}) takes a pair of fields per step, "
                f"but the field {type(module).__name__} has no `branches`; use "
                f"odenets.fields.Coupled(F, G) for leapfrog or TwoBranch(f1, f2) for shake noise")
        have, want = getattr(module, "pair", None), self.scheme.pair
        if have is not None and want is not None and have != want:
            takes = {"coupled": "leapfrog", "force_damping": "damped_leapfrog (or momentum=True "
                     "with leapfrog)", "branches": "euler_maruyama with noise='shake'"}
            raise ValueError(
                f"solver {self.scheme.name!r} reads the pair of fields of a step as "
                f"{PAIRS[want]}, but the field {type(module).__name__} is a pair {PAIRS[have]}: "
                f"the meanings differ; solve it with {takes.get(have, 'its own scheme')} or a "
                f"one-field scheme (euler, rk4, ...)")
        if callable(getattr(module, "branch_outputs", None)):  # both parts in one call
            return _PairCall(module, call_index)
        return tuple(_wrap(b, call_index) for b in module.branches)

    def _counting(self):
        """Context of one solve: each step's calls counted from 0; afterwards the norms' index
        is back at slot 0 (a field called on its own uses slot 0)."""
        return _Counting(self._counted)

    # -- evaluation counts (torchdiffeq users' `block.nfe`) ----------------------------------------
    @property
    def nfe(self) -> dict:
        """Field evaluations since the last reset, ``{"forward": n, "backward": 0}``: forwards
        times ``steps x evals_per_step`` (a fixed grid's cost; not counted while compiling).
        ``flow.nfe = 0`` resets."""
        per = round(self.steps * self.scheme.evals_per_step)
        return {"forward": getattr(self, "_forwards", 0) * per, "backward": 0}

    @nfe.setter
    def nfe(self, value) -> None:
        if isinstance(value, bool) or value != 0:
            raise ValueError(f"nfe can only be set to 0 (a reset of the counter), got {value!r}")
        self._forwards = 0

    def reset_nfe(self) -> None:
        self._forwards = 0

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, u, times=None, *, state=None, return_state: bool = False):
        """u_N from u = u_0 (and with ``return_state`` the pair ``(u_N, state)``). ``state`` is
        None or the history a previous flow returned: a tuple of tensors shaped like ``u``.

        ``times`` (tied flows): the solution at those times instead, shape
        ``(len(times), *u.shape)``, with ``u`` the state at ``times[0]`` (as
        ``ODEFlow(u0, times)``): steps of at most ``|dt|`` between consecutive times, each
        requested time a grid point (`solvers.odeint`). Needs a flow without per-step
        coefficients (they belong to the flow's own grid)."""
        if times is not None:
            return self._at_times(u, times, state, return_state)
        if state is not None:
            self._check_state(u, state)
        if not torch.compiler.is_compiling():
            self._forwards = getattr(self, "_forwards", 0) + 1
        # per-step values: unbound once (cheaper than indexing each step), or for a long flow
        # the tensor itself, indexed per step (no `steps` tensor objects)
        coeffs = {name: v.unbind(0) if len(v) <= CACHED_POINTS else v
                  for name, v in self.coefficient_values(u).items()}
        try:
            with self._counting():
                u, state = self.scheme.solve(self._calls, u, self.t0, self.dt, coeffs, state,
                                             training=self.training, activation=self._activation)
        except RuntimeError as error:  # a later step's field of the wrong shape: say which
            self._diagnose_shapes(u, error)
            raise
        return (u, state) if return_state else u

    def _at_times(self, u, times, state, return_state):
        if not self.tied:
            raise ValueError(f"{self.scheme.name}: times= needs a tied flow (one field, an ODE); "
                             f"this flow has {self.steps} per-step fields on its own grid")
        if state is not None or return_state:
            raise ValueError(f"{self.scheme.name}: times= returns the path; it takes no state= "
                             f"or return_state=")
        if self._learnable or self._fixed:
            raise ValueError(f"{self.scheme.name}: times= needs a flow without per-step "
                             f"coefficients; this one has "
                             f"{sorted([c.name for c in self._learnable] + list(self._fixed))}")
        if self.scheme.stochastic:
            raise ValueError(f"{self.scheme.name}: times= integrates deterministic flows; for "
                             f"noise use solvers.sdeint or an sde:<method> flow")
        if self.activation is not None:
            raise ValueError(f"{self.scheme.name}: times= integrates an ODE; a post-activated "
                             f"flow (activation={self.activation!r} after every step) is not one")
        with self._counting():
            return solvers_odeint(self._calls[0], u, times, method=self.scheme,
                                  options={"max_step": abs(self.dt)})

    def _check_state(self, u, state):
        if isinstance(state, tuple) and all(torch.is_tensor(s) and s.shape == u.shape
                                            for s in state):
            return
        got = type(state).__name__ if not isinstance(state, tuple) else "a tuple of " + ", ".join(
            str(tuple(s.shape)) if torch.is_tensor(s) else type(s).__name__ for s in state)
        raise ValueError(f"{self.scheme.name}: state must be None or a tuple of tensors shaped "
                         f"like u {tuple(u.shape)} (the history from forward(u, "
                         f"return_state=True)), got {got}")

    @torch.no_grad()
    def _diagnose_shapes(self, u, error):
        """After a failed solve: evaluate each step's field once on ``u`` (in eval mode, so no
        statistics change) and raise a ValueError naming the first step whose output is not
        shaped like ``u``. Returns quietly when every field is fine or cannot tell."""
        if self.scheme.paired_field or isinstance(error, (DivergenceError,
                                                          torch.cuda.OutOfMemoryError)):
            return
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            times = time_grid(self.t0, self.dt, len(self.blocks), u)
            for n, block in enumerate(self.blocks):  # block n is step n's (tied: one block)
                try:
                    out = _wrap(block)(times[n], u)
                except Exception:  # the field fails on u: its own error is the one to show
                    return
                if not torch.is_tensor(out) or out.shape != u.shape:
                    raise ValueError(shape_message(
                        self.scheme.name, f"the field {type(block).__name__} of step {n}", u,
                        out)) from error
        finally:
            for m, mode in modes:  # each module's own mode (a frozen BatchNorm stays frozen)
                m.training = mode

    # -- accessors --------------------------------------------------------------------------------
    @property
    def fields(self) -> list[nn.Module]:
        """The per-step field modules: a list, or when tied the one module ``steps`` times (a
        `solvers.base.Repeat` sequence, not a list of ``steps`` items)."""
        return Repeat(self.blocks[0], self.steps) if self.tied else list(self.blocks)

    @property
    def evals_per_forward(self) -> float:
        """Field evaluations per forward: steps x the scheme's ``evals_per_step``."""
        return self.steps * self.scheme.evals_per_step

    def extra_repr(self):
        act = f", activation={self.activation!r}" if self.activation is not None else ""
        return (f"solver={self.scheme!r}, steps={self.steps}, tied={self.tied}, t0={self.t0:g}, "
                f"dt={self.dt:g}{act}")


class _TiedCalls(Sequence):
    """The fields of a tied flow's ``steps`` steps: ``first`` (the call with its output shape
    checked) at step 0, ``call`` at every other, without a per-step list. Handing out a step's
    field zeroes the call's ``calls_in_step``, so the per-evaluation norms read the index of
    the call within its step (as one `_Call` per step would)."""

    def __init__(self, first, call, steps: int):
        self.first, self.call, self.steps = first, call, steps
        self._counters = call if isinstance(call, tuple) else (call,)

    def __len__(self) -> int:
        return self.steps

    def _begin(self, n: int):
        for c in self._counters:
            c.calls_in_step = 0
        return self.first if n == 0 else self.call

    def __getitem__(self, n):
        if not isinstance(n, int) or not -self.steps <= n < self.steps:
            raise IndexError(f"step {n!r} out of range for {self.steps} steps")
        return self._begin(n % self.steps)

    def __iter__(self):
        return map(self._begin, range(self.steps))

    def distinct(self) -> list:
        return [self.first, self.call][: min(self.steps, 2)]


class _Counting:
    """``with``: zero every call's ``calls_in_step`` before a solve; reset the norms' shared
    `CallIndex` to slot 0 after it (even when the solve raises)."""

    def __init__(self, calls):
        self.calls = calls

    def __enter__(self):
        for call in self.calls:
            call.calls_in_step = 0

    def __exit__(self, *exc):
        for call in self.calls:
            call.call_index.value = 0
        return False
