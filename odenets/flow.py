"""`Flow`: a field unrolled by a fixed-grid scheme into a network, u_0 -> u_N.

The flow owns the per-step field modules and the scheme's learnable coefficients (LM's k_n as
one raw parameter tensor of shape (steps,) or (steps, C)); the scheme owns the update rule and
the loop (`Scheme.solve`). Built by `odenets.build`.
"""
from __future__ import annotations

import torch
from torch import nn

from solvers.base import DivergenceError, Scheme, time_grid
from solvers.integrate import shape_checked, shape_message
from solvers.odeint import odeint as solvers_odeint

from .evaluation_norm import EvaluationIndex, _PerEvaluationStats
from .evaluation_norm import per_evaluation_norm as per_evaluation_norm_
from .time_aware import takes_time

ACTIVATIONS = {"relu": torch.relu}


class _Call(nn.Module):
    """Adapts a field ``module(u)`` to the scheme's calling convention ``f(t, u)``. An
    `nn.Module` (not a closure) so reversible solves can find the step's parameters.

    With ``index`` (the `EvaluationIndex` read by the field's per-evaluation norms) it counts
    its calls since the flow's forward began and publishes the count before each call: one
    `_Call` per step, so the count is the call's index within the step."""

    def __init__(self, module: nn.Module, index: EvaluationIndex | None = None):
        super().__init__()
        self.module, self.index = module, index
        self.calls = EvaluationIndex() if index is not None else None
        self._norms = [m for m in module.modules() if isinstance(m, _PerEvaluationStats)]

    @property
    def order_dependent(self) -> bool:
        """True while a per-evaluation norm of the field is in eval mode: it then normalises
        with the statistics of the call's index, so the field computes differently when called
        in another order (as a reversible backward does, see `solvers.reversible`)."""
        return any(not m.training for m in self._norms)

    def _count(self):
        if self.index is not None:
            self.index.value = self.calls.value
            self.calls.value += 1

    def forward(self, t, u):
        self._count()
        return self.module(u)


class _TimeCall(_Call):
    """Adapts a time-aware field ``module(t, u)`` (``time_aware = True``, or a ``forward(self,
    t, y)`` as torchdiffeq writes it: see `odenets.time_aware.takes_time`)."""

    def forward(self, t, u):
        self._count()
        return self.module(t, u)


def _wrap(module: nn.Module, index: EvaluationIndex | None = None) -> nn.Module:
    return (_TimeCall if takes_time(module) else _Call)(module, index)


class PostActivated(Scheme):
    """The inner scheme's step followed by an activation: u_{n+1} = sigma(Phi_n(u_n)).

    This is the post-activation ResNet of He et al. (2016a), ``relu(u + f(u))``: a forward-Euler
    step composed with the projection sigma (for ReLU, onto the non-negative orthant). The
    history of multistep schemes holds the activated states. Coefficients, order and
    evaluations are the inner scheme's. Schemes with their own ``solve`` (lmm's vectorised loop,
    leapfrog's memory-saving reversible loop) are run one step at a time through it; a
    reversible scheme then loses its memory saving, since sigma is not invertible.
    """

    def __init__(self, inner: Scheme, activation):
        self.inner, self.activation = inner, activation
        self._own_solve = type(inner).solve is not Scheme.solve
        for attr in ("name", "order", "evaluations", "coefficients", "stochastic", "implicit",
                     "paired_field", "nodes"):
            setattr(self, attr, getattr(inner, attr))

    @property
    def field_calls(self) -> int:
        return self.inner.field_calls

    def step(self, f, t, dt, u, state, **kwargs):
        u, state = self.inner.step(f, t, dt, u, state, **kwargs)
        return self.activation(u), state

    def solve(self, fields, u0, t0=0.0, dt=1.0, coefficients=None, state=None,
              return_path=False, training=True):
        if not self._own_solve:
            return super().solve(fields, u0, t0, dt, coefficients, state, return_path, training)
        values = self.inner._per_step(coefficients, len(fields))
        u, path = u0, [u0] if return_path else None
        times = time_grid(t0, dt, len(fields), u0)
        for n, f in enumerate(fields):
            coeffs = {k: v[n:n + 1] if per_step else v for k, (v, per_step) in values.items()}
            u, state = self.inner.solve([f], u, times[n], dt, coeffs, state, training=training)
            u = self.activation(u)
            if return_path:
                path.append(u)
        return (torch.stack(path) if return_path else u), state

    def map_state(self, state, fn):
        return self.inner.map_state(state, fn)

    def fixed_coefficients(self):
        return self.inner.fixed_coefficients()

    def learnable_coefficients(self):
        return self.inner.learnable_coefficients()

    def options(self):
        return self.inner.options()


class Flow(nn.Module):
    """u_N = Phi_{N-1} o ... o Phi_0 (u_0): ``steps`` steps of ``scheme`` on the fields.

    Step n uses ``fields[n]`` at time ``t_n = t0 + n dt`` (one shared module when ``tied``).
    ``forward(u, state=None, return_state=False)`` accepts and returns the scheme's history
    (e.g. LM's u_{n-1}) so a network can carry it across stage transitions.

    Coefficients: every `solvers.Coefficient` the scheme declares learnable (and not fixed here)
    is one raw parameter ``raw[name]`` of shape (steps,) — (steps, channels) when the scheme has
    ``per_channel=True`` — mapped into its open bounds by ``Coefficient.to_value`` (a sigmoid)
    once per forward. So a learnable LM k_n always lies in (-1, 1) (zero-stability; in float32
    a raw value beyond about +-17 rounds onto the bound itself); fixed values outside the
    bounds are rejected with a ValueError, nothing is clamped. Fixed per-step schedules (e.g. the
    survival probabilities p_n of stochastic depth) are buffers ``coef_<name>``.

    Normalisation: when the scheme calls a field more than once per step (``field_calls`` > 1:
    RK, backward Euler, Verlet) and ``per_evaluation_norm`` (default), the fields' BatchNorms keep
    running statistics per call within the step (`odenets.evaluation_norm`), so eval mode
    matches training call by call.
    """

    def __init__(self, fields, scheme: Scheme, steps: int, tied: bool = False, t0: float = 0.0,
                 dt: float = 1.0, activation=None, coefficients=None, channels: int | None = None,
                 per_evaluation_norm: bool = True):
        super().__init__()
        self.scheme, self.steps, self.tied = scheme, steps, bool(tied)
        self.t0, self.dt = float(t0), float(dt)
        self.activation = activation
        self._stepper = scheme if activation is None else PostActivated(scheme, ACTIVATIONS.get(
            activation, activation))
        self.blocks = nn.ModuleList(fields)
        slots = scheme.field_calls if per_evaluation_norm else 1
        indices = {}  # id(block) -> the EvaluationIndex of its converted norms (each block once)
        for m in self.blocks:
            if slots > 1 and id(m) not in indices:
                indices[id(m)] = per_evaluation_norm_(m, slots)
        self._indices = [i for i in indices.values() if i is not None]
        pair = scheme.paired_field  # leapfrog's (F, G), shake noise's (f1, f2)
        per_step = [self.blocks[0]] * steps if self.tied else list(self.blocks)
        self._calls = [self._calls_for(m, pair, indices.get(id(m))) for m in per_step]
        self._counters = [c.calls for call in self._calls
                          for c in (call if isinstance(call, tuple) else (call,))
                          if c.calls is not None]
        # the first step checks its fields' output shapes (metadata only: no sync, no per-step cost)
        what = f"the field {type(self.blocks[0]).__name__}"
        self._calls = [shape_checked(self._calls[0], scheme.name, what), *self._calls[1:]]
        self._fixed = self._register_fixed(coefficients or {})
        self._learnable = tuple(c for c in scheme.learnable_coefficients()
                                if c.name not in self._fixed)
        self.raw = nn.ParameterDict()
        per_channel = bool(getattr(scheme, "per_channel", False))
        if per_channel and self._learnable and not channels:
            raise ValueError(f"{scheme.name}: per_channel=True needs channels= (the size of "
                             f"dim 1 of u) to shape one coefficient per channel")
        shape = (steps, channels) if per_channel else (steps,)
        for c in self._learnable:
            self.raw[c.name] = nn.Parameter(c.init_raw(shape))

    # -- construction helpers -------------------------------------------------------------------
    def _calls_for(self, module, pair, index=None):
        if not pair:
            return _wrap(module, index)
        if not hasattr(module, "branches"):
            raise ValueError(
                f"solver {self.scheme.name!r} ({self.scheme!r}) takes a pair of fields per step, "
                f"but the field {type(module).__name__} has no `branches`; use "
                f"odenets.fields.Coupled(F, G) for leapfrog or TwoBranch(f1, f2) for shake noise")
        return tuple(_wrap(b, index) for b in module.branches)

    def _register_fixed(self, coefficients):
        declared = {c.name: c for c in self.scheme.coefficients}
        fixed = []
        for name, value in coefficients.items():
            if name not in declared:
                raise ValueError(f"{self.scheme.name}: unknown coefficient {name!r}; this scheme "
                                 f"declares {sorted(declared) or 'none'}")
            try:
                values = torch.as_tensor(value, dtype=torch.float32).flatten()
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"{self.scheme.name}: coefficient {name} must be a number or "
                                 f"steps={self.steps} numbers, got {value!r}") from None
            if values.numel() == 1:
                values = values.expand(self.steps).clone()
            if values.numel() != self.steps:
                raise ValueError(f"{self.scheme.name}: coefficient {name} has {values.numel()} "
                                 f"values for steps={self.steps}")
            for v in values.tolist():
                declared[name].check(v, self.scheme.name)
            self.register_buffer(f"coef_{name}", values)
            fixed.append(name)
        return tuple(fixed)

    # -- forward ----------------------------------------------------------------------------------
    def coefficient_values(self, like: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Current per-step values (with grad): learnable ones through their sigmoid map,
        fixed schedules as stored. Per-channel values are shaped to broadcast against ``like``."""
        values = {}
        for c in self._learnable:
            v = c.to_value(self.raw[c.name])
            if v.dim() == 2 and like is not None:
                v = v.view(v.shape + (1,) * (like.dim() - 2))
            values[c.name] = v
        for name in self._fixed:
            values[name] = getattr(self, f"coef_{name}")
        return values

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
        for counter in self._counters:  # per-evaluation norms: calls are counted per step
            counter.value = 0
        coeffs = {name: v.unbind(0) for name, v in self.coefficient_values(u).items()}
        try:
            u, state = self._stepper.solve(self._calls, u, self.t0, self.dt, coeffs, state,
                                           training=self.training)
        except RuntimeError as error:  # a later step's field of the wrong shape: say which
            self._diagnose_shapes(u, error)
            raise
        finally:
            for index in self._indices:  # a field called on its own afterwards uses slot 0
                index.value = 0
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
        for counter in self._counters:
            counter.value = 0
        try:
            return solvers_odeint(self._calls[0], u, times, method=self._stepper,
                                  options={"step_size": abs(self.dt)})
        finally:
            for index in self._indices:
                index.value = 0

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
        """The per-step field modules (the same module ``steps`` times when tied)."""
        return list(self.blocks) * self.steps if self.tied else list(self.blocks)

    @property
    def evaluations(self) -> float:
        """Field evaluations per forward: steps x the scheme's evaluations per step."""
        return self.steps * self.scheme.evaluations

    def coefficients(self) -> dict[str, torch.Tensor]:
        """Detached current values of the learnable coefficients, shape (steps,) or (steps, C)."""
        return {c.name: c.to_value(self.raw[c.name]).detach() for c in self._learnable}

    @torch.no_grad()
    def set_coefficients(self, **values):
        """Set learnable coefficients (scalar or per-step values strictly inside their bounds)."""
        learnable = {c.name: c for c in self._learnable}
        for name, value in values.items():
            if name not in learnable:
                raise ValueError(f"{self.scheme.name}: {name!r} is not a learnable coefficient of "
                                 f"this flow; learnable: {sorted(learnable) or 'none'}")
            c, raw = learnable[name], self.raw[name]
            try:
                value = torch.as_tensor(value, dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"{self.scheme.name}: {name} must be a number or a tensor/sequence "
                                 f"of numbers, got {value!r}") from None
            for v in value.flatten().tolist():
                c.check(v, self.scheme.name)
            if value.dim() == 1 and raw.dim() == 2 and len(value) == self.steps:
                value = value[:, None]   # one value per step for every channel
            try:
                value = value.expand_as(raw)
            except RuntimeError:
                raise ValueError(f"{self.scheme.name}: {name} needs a scalar or values of shape "
                                 f"{tuple(raw.shape)} (steps={self.steps}), got shape "
                                 f"{tuple(value.shape)}") from None
            raw.copy_(c.to_raw(value.to(raw.device)).to(raw.dtype))

    def extra_repr(self):
        act = f", activation={self.activation!r}" if self.activation is not None else ""
        return (f"solver={self.scheme!r}, steps={self.steps}, tied={self.tied}, t0={self.t0:g}, "
                f"dt={self.dt:g}{act}")
