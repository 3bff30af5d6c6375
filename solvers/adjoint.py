"""The discrete adjoint of ``odeint``'s fixed grids by recomputation (`solvers.odeint_adjoint`).

Forward steps the grid without a graph, keeping only what a step needs to be redone: the state
``y_n`` at every grid point and the scheme's history (multistep schemes), or, for a scheme with
an exact ``inverse`` (leapfrog, damped_leapfrog), the final state alone. Backward walks the steps
from the last to the first; step n is recomputed with autograd on from ``(y_n, state_n)`` (for an
inverse scheme ``y_n = inverse(y_{n+1})`` first) and its vector-Jacobian product
``(a_n, b_n, dL/dθ) += (a_{n+1}, b_{n+1}, dL/d(outputs in step n)) d(y_{n+1}, state_{n+1},
outputs) / d(y_n, state_n, θ)`` is taken, one step's graph at a time. The gradients are those of
backpropagation through the steps (`solvers.odeint`), to rounding: saved memory is the states
(O(steps), no per-step activations), or O(1) for inverse schemes; the cost is one more forward.
Only leapfrog's family has an explicit exact inverse (each half-update adds a function of the
other half); undoing an explicit Runge-Kutta or multistep step means solving an implicit
equation whose iteration error would enter the gradients, so those schemes keep the states.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable
from torch.utils import _pytree as pytree

from .grid import advance
from .reversible import _check_reconstruction, _frozen_norm_stats, order_dependent, unknown_leaf


def solve(scheme, f, y0, t, chunks, cubic: bool, params, module, check_leaves: bool = False):
    """``odeint``'s ``_solve`` (outputs stacked, shape ``(len(t), *y0.shape)``) with gradients to
    ``y0`` and ``params`` by the discrete adjoint (module docstring). ``module``: the user's field,
    whose BatchNorm statistics are not updated again by the recomputation. ``check_leaves``: raise
    when the field uses a tensor that requires grad and is not in ``params`` (its gradient would
    be lost)."""
    chunks = list(chunks)  # the grid times are kept too: one number a step
    grid = torch.cat([chunks[0]] + [c[1:] for c in chunks[1:]])
    floats, t_list = grid.tolist(), t.tolist()
    dts = (grid[1:] - grid[:-1]).tolist()  # the step sizes odeint's loop computes
    bounds, j = [1], 1  # step n makes outputs bounds[n] .. bounds[n + 1] - 1
    for b in floats[1:]:
        while j < len(t_list) and b >= t_list[j]:
            j += 1
        bounds.append(j)
    restart = [n == 0 or (scheme.past_states > 0 and dts[n] != dts[n - 1])
               for n in range(len(dts))]
    inverse = (callable(getattr(scheme, "inverse", None)) and not scheme.past_states
               and getattr(scheme, "memory_efficient", True) and not order_dependent([module]))
    values = {n: v for n, (v, _) in scheme.per_step_values(None, 1).items()}
    plan = dict(scheme=scheme, f=f, t=t, dts=dts, bounds=bounds, restart=restart, cubic=cubic,
                values=values, inverse=inverse, module=module, check_leaves=check_leaves)
    params = [p for p in params if p.requires_grad]
    return _DiscreteAdjoint.apply(plan, grid, y0, *params)


class _DiscreteAdjoint(torch.autograd.Function):
    """outputs = odeint's fixed-grid solve of ``y0``; saves the grid points' states only."""

    @staticmethod
    def forward(ctx, plan, grid, y0, *params):
        scheme, f, t, bounds = plan["scheme"], plan["f"], plan["t"], plan["bounds"]
        points, outs, y, state = grid.unbind(0), [y0], y0, None
        store, where, kept = [y0], {id(y0): 0}, []  # unique saved tensors; per step (y, history)

        def put(x):
            if not torch.is_tensor(x):
                return False, x  # a constant of the history, kept as it is
            if id(x) not in where:
                where[id(x)] = len(store)
                store.append(x)
            return True, where[id(x)]

        for n, dt in enumerate(plan["dts"]):
            state = None if plan["restart"][n] else state
            if not plan["inverse"]:
                leaves, spec = pytree.tree_flatten(state)
                kept.append((put(y), [put(x) for x in leaves], spec))
            y, state, o = advance(scheme, f, points[n], points[n + 1], dt, y, state,
                                  plan["values"], t[bounds[n]:bounds[n + 1]], plan["cubic"])
            outs.extend(o)
        ctx.plan, ctx.kept, ctx.params = plan, kept, params  # parameters: leaves, by reference
        ctx.device_type = y0.device.type
        ctx.autocast = torch.is_autocast_enabled(ctx.device_type)
        ctx.autocast_dtype = torch.get_autocast_dtype(ctx.device_type)
        if plan["inverse"]:
            store.append(y)  # y_N: where the inverses start
        ctx.save_for_backward(grid, *store)
        return torch.stack(outs)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out):
        plan, kept, params = ctx.plan, ctx.kept, ctx.params
        grid, *store = ctx.saved_tensors
        y0, y = store[0], store[-1]
        scheme, f, t, bounds = plan["scheme"], plan["f"], plan["t"], plan["bounds"]
        grads, g_y, g_state = [None] * len(params), None, None
        autocast = torch.autocast(ctx.device_type, ctx.autocast_dtype, enabled=ctx.autocast)
        with _frozen_norm_stats([plan["module"]]), autocast:
            for n in reversed(range(len(plan["dts"]))):
                t0, t1, dt = grid[n], grid[n + 1], plan["dts"][n]
                if plan["inverse"]:
                    with torch.no_grad():
                        y = scheme.inverse(f, t0, dt, y)
                    leaves, spec = pytree.tree_flatten(None)
                else:
                    (_, iy), ileaves, spec = kept[n]
                    y = store[iy]
                    leaves = [store[i] if saved else i for saved, i in ileaves]
                with torch.enable_grad():
                    x = y.detach().requires_grad_(True)
                    xs = [v.detach().requires_grad_(True) if torch.is_tensor(v)
                          and v.is_floating_point() else v for v in leaves]
                    y1, st1, outs = advance(scheme, f, t0, t1, dt, x, pytree.tree_unflatten(
                        xs, spec), plan["values"], t[bounds[n]:bounds[n + 1]], plan["cubic"])
                    inputs = [x, *(v for v in xs if torch.is_tensor(v) and v.requires_grad),
                              *params]
                    pairs = [(y1, g_y), *zip(pytree.tree_flatten(st1)[0], g_state or ()),
                             *zip(outs, g_out[bounds[n]:bounds[n + 1]])]
                    if plan["check_leaves"] and n == len(plan["dts"]) - 1:
                        _check_leaves([o for o, _ in pairs if torch.is_tensor(o)], inputs)
                    g = _vjp(pairs, inputs)
                g_y = g[0]
                g_state = None if plan["restart"][n] else [
                    g[[id(u) for u in inputs].index(id(v))] if torch.is_tensor(v)
                    and v.requires_grad else None for v in xs]
                for i, gp in enumerate(g[len(inputs) - len(params):]):
                    if gp is not None:
                        grads[i] = gp if grads[i] is None else grads[i] + gp
                y = y.detach()
        if plan["inverse"] and ctx.device_type == "cpu":
            _check_reconstruction(scheme, y, y0, ctx.autocast_dtype if ctx.autocast else y.dtype)
        g_y0 = g_out[0] if g_y is None else g_y + g_out[0]
        return (None, None, g_y0, *grads)


def _vjp(pairs, inputs) -> list:
    """``sum_k <g_k, d o_k / d inputs>`` over ``pairs = [(o_k, g_k)]`` (g None: no gradient); an
    output that is itself an input passes its gradient on directly. None where nothing flows."""
    direct = [None] * len(inputs)
    outs, gs = [], []
    for o, g in pairs:
        if g is None or not torch.is_tensor(o) or not o.requires_grad:
            continue
        hit = next((i for i, x in enumerate(inputs) if x is o), None)
        if hit is not None:
            direct[hit] = g if direct[hit] is None else direct[hit] + g
        else:
            outs.append(o)
            gs.append(g)
    got = torch.autograd.grad(outs, inputs, gs, allow_unused=True) if outs else direct
    return [a if b is None or a is b else b if a is None else a + b for a, b in zip(got, direct)]


def _check_leaves(outputs, inputs) -> None:
    leaf = unknown_leaf(outputs, inputs)
    if leaf is not None:
        raise ValueError(f"odeint_adjoint: func uses a tensor that requires grad but is not among "
                         f"its parameters (shape {tuple(leaf.shape)}; e.g. a Parameter in a plain "
                         f"list): its gradient would be lost; register it or pass adjoint_params")
