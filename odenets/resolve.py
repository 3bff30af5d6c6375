"""Re-solving a trained network: the same field weights unrolled by another scheme or grid.

    new, notes = with_solver(model, "rk4")            # a ResNet trained as Euler, run as RK4
    new, notes = with_solver(model, None, steps=64)   # a tied flow trained on 4 steps, run on 64

If the trained network is a discretisation of an ODE u' = f(t, u), changing the solver (or,
for tied flows, refining the grid) converges to the same flow map and the accuracy holds; if
the weights fit the training grid's discretisation error instead, it collapses (Ott et al.,
ICLR 2021, "ResNet After All?"; Queiruga et al. 2020). The answer is returned as a new module;
``model`` is left untouched (its flows are rebuilt inside a deep copy).

Rules, per flow (`odenets.flow.Flow`, or a continuous `ODEFlow`):

* scheme: a name (with ``solver_opts``), or None for each flow's own; the run's own scheme
  name without options keeps the run's options (e.g. LM's per_channel, lmm's history).
* steps: untied flows (one field per step) keep their number of steps: ``steps`` must be None
  or equal to it (there is no field for an extra step). Tied flows keep their time interval
  [t0, t1] and take dt = (t1 - t0) / steps. None keeps each flow's trained steps.
* learnable coefficients of the new scheme (LM's k_n): copied when the run learned the same
  coefficient of the same shape (same scheme and steps); otherwise refused with a ValueError,
  since a value the run never learned is not the trained network. Fix them by solver options
  instead (``with_solver(model, "lm", k=-0.05)``). Learned coefficients the new scheme does
  not declare are dropped and listed in ``notes`` (e.g. LM's k when re-solved as Euler).
* fixed coefficient schedules (stochastic depth's survival p_n) pass on when the new scheme
  declares them and the steps are unchanged; otherwise ValueError.
* BatchNorm statistics are the trained ones: a field trained with one set of statistics uses it
  for every evaluation of the new scheme; one trained with per-evaluation statistics (RK,
  backward Euler) gives call j of a step slot min(j, slots - 1).
* continuous solvers (``dopri5``, ``ode:rk4``...) need a tied flow without post-activation;
  a continuous flow re-solved on a fixed grid needs ``steps`` unless its own grid was fixed.
* transitions between stages follow the new scheme's history rule (LM's projected start step
  only when the new scheme keeps a history).
"""
from __future__ import annotations

import ast
import copy

from torch import nn

import solvers
from solvers import checks

from .build import build, is_fixed_grid
from .flow import Flow
from .models.transitions import Transition


def with_solver(model: nn.Module, solver=None, steps: int | None = None,
                **solver_opts) -> tuple[nn.Module, list[str]]:
    """``(new_model, notes)``: a deep copy of ``model`` whose every flow is re-unrolled by
    ``solver`` (a scheme name, a continuous solver name, or None for each flow's own scheme)
    on ``steps`` steps (None: the trained ones), with the rules of the module docstring.
    ``notes`` lists what the re-solve changed beyond the grid (dropped coefficients)."""
    if steps is not None and (not checks.is_int(steps, 1)):
        raise ValueError(f"steps must be an integer >= 1 or None, got {steps!r}")
    if solver is None and solver_opts:
        raise ValueError(f"solver options {sorted(solver_opts)} need a solver name")
    # shared: the one scheme object of every flow, as `Network` builds them
    new, notes, shared = copy.deepcopy(model), [], None
    if _is_flow(new):
        flow, _ = _resolve_flow("", new, solver, steps, solver_opts, None, notes)
        return flow.train(model.training), notes
    flows = [(name, m) for name, m in new.named_modules() if _is_flow(m)]
    if not flows:
        raise ValueError(f"{type(model).__name__} has no flow (odenets Flow or continuous ODEFlow) "
                         f"to re-solve")
    for name, old in flows:
        flow, shared = _resolve_flow(name, old, solver, steps, solver_opts, shared, notes)
        _replace(new, name, flow)
    for name, t in [(n, m) for n, m in new.named_modules() if isinstance(m, Transition)]:
        if solver is not None and t.scheme is not None:  # the next flow's scheme changed
            _replace(new, name, Transition(t.field, t.shortcut, shared, t.history, t.activation))
    new.train(model.training)
    return new, notes


def parse_options(items) -> dict:
    """``["k=-0.05", "noise=gaussian"]`` -> ``{"k": -0.05, "noise": "gaussian"}`` (Python
    literals where they parse, strings otherwise); ValueError for an item without '='."""
    out = {}
    for item in items or ():
        key, sep, text = str(item).partition("=")
        if not sep or not key or not text:
            raise ValueError(f"solver option {item!r} must be KEY=VALUE (--solver-opt), e.g. "
                             f"k=-0.05")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def _is_flow(m) -> bool:
    return isinstance(m, Flow) or getattr(m, "continuous", False) is True and hasattr(m, "func")


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def _is_continuous(solver) -> bool:
    from . import continuous  # torchdiffeq: only for a solver that is no fixed-grid scheme
    return isinstance(solver, str) and continuous.is_continuous(solver)


def _resolve_flow(name, old, solver, steps, opts, shared, notes):
    where = name or "the model"
    target_continuous = not is_fixed_grid(solver) and _is_continuous(solver)
    if not isinstance(old, Flow):  # a continuous ODEFlow: one tied field over t_span
        return _from_continuous(where, old, solver, steps, opts, target_continuous, notes), shared
    tied, t0 = old.tied, old.t0
    t1 = t0 + old.steps * old.dt
    if steps is not None and steps != old.steps and not tied:
        raise ValueError(f"{where}: an untied flow has one field per step, so it keeps its "
                         f"{old.steps} steps; got steps={steps} (only tied flows, one shared "
                         f"field, can be re-solved on another grid; omit --steps)")
    n = old.steps if steps is None else steps
    if target_continuous:
        if not tied or old.activation is not None:
            why = "untied (one field per step)" if not tied else \
                f"post-activated ({old.activation!r} after every step)"
            raise ValueError(f"{where}: a continuous solver ({solver!r}) integrates one field; "
                             f"this flow is {why}: re-solve it with a fixed-grid scheme")
        grid = {"steps": steps} if steps is not None else {}
        return build(old.blocks[0], solver, tied=True, t_span=(t0, t1), **grid, **opts), shared
    if solver is None or (solver == old.scheme.name and not opts):  # the run's scheme, options
        scheme = old.scheme if solver is None else (shared or old.scheme)
    else:
        scheme = shared or solvers.get(solver, **opts)
    fixed = {}
    for c_name in old._fixed:
        declared = {c.name for c in scheme.coefficients}
        if c_name not in declared or n != old.steps:
            why = (f"{scheme.name} declares {sorted(declared) or 'no coefficients'}"
                   if c_name not in declared else f"it has one value per trained step ({old.steps})")
            raise ValueError(f"{where}: the run fixes coefficient {c_name!r} per step, which "
                             f"cannot pass on: {why}")
        fixed[c_name] = getattr(old, f"coef_{c_name}").tolist()
    learned = {c.name: old.raw[c.name] for c in old._learnable}
    fields = old.blocks[0] if tied else list(old.blocks)
    new = build(fields, scheme, n, tied=tied, t_span=(t0, t1), activation=old.activation,
                coefficients=fixed or None, channels=_channels(old, learned),
                per_evaluation_norm=True)
    if getattr(old, "_history_in", None) is not None:  # as the network built the run's flow
        new.drop_unreachable_coefficients(old._history_in)
    for c in new._learnable:
        raw = learned.get(c.name)
        if raw is None or raw.shape != new.raw[c.name].shape or not _same_family(old, new):
            have = {k: tuple(v.shape) for k, v in learned.items()}
            _refuse_unlearned(where, new, c, f"{have or 'none'} with {old.scheme.name} on "
                                             f"{old.steps} steps")
        new.raw[c.name].data.copy_(raw.data)
    dropped = sorted(set(learned) - {c.name for c in new._learnable})
    fixed_now = {c.name: v for c in new.scheme.coefficients if c.name in dropped
                 for v in [getattr(new.scheme, c.name, None)] if v is not None}
    if fixed_now:  # the new scheme declares them but a solver option fixes their value
        values = ", ".join(f"{k}={v:g}" for k, v in fixed_now.items())
        notes.append(f"{where}: learned coefficient(s) {sorted(fixed_now)} of {old.scheme.name} "
                     f"replaced by the fixed {values} (--solver-opt)")
    dropped = [name for name in dropped if name not in fixed_now]
    if dropped:
        notes.append(f"{where}: learned coefficient(s) {dropped} of {old.scheme.name} dropped "
                     f"({new.scheme.name} does not use them)")
    return new, (shared or new.scheme) if solver is not None else None


def _refuse_unlearned(where, new: Flow, c, have: str):
    """Raise: ``new`` would learn coefficient ``c``, which the trained run did not (its values
    would be a fresh random draw, not the trained network)."""
    raise ValueError(
        f"{where}: {new.scheme.name} learns coefficient {c.name!r} (shape "
        f"{tuple(new.raw[c.name].shape)}), which this run did not learn (it learned {have}); "
        f"fix it by a solver option (e.g. --solver-opt {c.name}={c.default}) or use a scheme "
        f"without learnable coefficients")


def _channels(old: Flow, learned: dict) -> int | None:
    for raw in learned.values():
        if raw.dim() == 2:
            return raw.shape[1]
    for m in old.blocks[0].modules():  # per-channel coefficients of the new scheme: dim 1 of u
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return m.num_features
    return None


def _same_family(old: Flow, new: Flow) -> bool:
    return old.scheme.name == new.scheme.name


def _from_continuous(where, old, solver, steps, opts, target_continuous, notes):
    field, t_span = old.func.field, old.t_span
    if hasattr(old, "sde"):
        notes.append(f"{where}: the SDE flow's noise is dropped: its drift is re-solved")
    if solver is None:
        raise ValueError(f"{where}: a continuous flow ({old.solver_name}) keeps its own grid "
                         f"control; name a solver to re-solve it")
    if target_continuous:
        grid = {"steps": steps} if steps is not None else {}
        return build(field, solver, tied=True, t_span=t_span, **grid, **opts)
    if steps is None:
        step = getattr(getattr(old, "options", {}).get("grid_constructor"), "step", None)
        if step is None:
            raise ValueError(f"{where}: the run's flow is adaptive ({old.solver_name}); give the "
                             f"number of fixed-grid steps (--steps N)")
        steps = max(1, round(abs(t_span[1] - t_span[0]) / step))
    new = build(field, solver, steps, tied=True, t_span=t_span, **opts)
    for flow in [m for m in new.modules() if isinstance(m, Flow)]:  # MomentumFlow holds one
        for c in flow._learnable:  # a continuous run learns no scheme coefficients
            _refuse_unlearned(where, flow, c, f"none with {old.solver_name}")
    return new
