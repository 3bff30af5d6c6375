"""Memory-saving backward for reversible schemes: recompute activations instead of storing them."""
from __future__ import annotations

import contextlib

import torch
from torch.autograd.function import once_differentiable

from .base import DivergenceError, distinct, time_grid


def _modules(field):
    """The nn.Modules behind one step's field: modules, bound methods of modules, or a pair."""
    out = []
    for part in (field if isinstance(field, (tuple, list)) else (field,)):
        owner = part if isinstance(part, torch.nn.Module) else getattr(part, "__self__", None)
        if isinstance(owner, torch.nn.Module):
            out.append(owner)
    return out


def params_known(part) -> bool:
    """Whether the memory-saving backward can find every parameter the callable ``part`` uses:
    an nn.Module (its parameters) or a bound method of one. A plain function or lambda may use
    any tensor it captures, so it is not known. An object may say itself (``params_known``,
    e.g. a module wrapping a closure)."""
    known = getattr(part, "params_known", None)
    if known is not None:
        return bool(known)
    return isinstance(part, torch.nn.Module) or isinstance(getattr(part, "__self__", None),
                                                           torch.nn.Module)


def _module_params(fields):
    """Parameters of the fields' modules without duplicates (tied steps share), and per distinct
    field (by ``id``) the indices of its own: memory independent of the number of steps."""
    per_field, seen, flat = {}, {}, []
    for f in distinct(fields):
        ps = []
        for module in _modules(f):
            for p in module.parameters():
                if p.requires_grad:
                    if id(p) not in seen:
                        seen[id(p)] = len(flat)
                        flat.append(p)
                    ps.append(seen[id(p)])
        per_field[id(f)] = ps
    return flat, per_field


@contextlib.contextmanager
def _frozen_norm_stats(fields):
    """Recomputing a step must not update normalisation running statistics a second time.

    ``momentum = 0`` keeps running_mean/var unchanged (also for ``momentum=None``, the cumulative
    average); ``num_batches_tracked``, which BatchNorm increments regardless, is restored.
    """
    saved, seen = [], set()
    for f in distinct(fields):
        for module in _modules(f):
            for m in module.modules():
                if isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.training \
                        and id(m) not in seen:
                    seen.add(id(m))
                    count = m.num_batches_tracked
                    saved.append((m, m.momentum, None if count is None else count.clone()))
                    m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, count in saved:
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


class _ReversibleSolve(torch.autograd.Function):
    """u_N = step_{N-1} o ... o step_0 (u_0), saving only u_N for backward."""

    @staticmethod
    def forward(ctx, scheme, fields, t0, dt, per_field, check, u0, *params):
        times = time_grid(t0, dt, len(fields), u0)
        with torch.no_grad():
            u = u0
            for n, f in enumerate(fields):
                u, _ = scheme.step(f, times[n], dt, u, None)
        ctx.scheme, ctx.fields, ctx.times, ctx.dt = scheme, fields, times, dt
        ctx.per_field = per_field  # id(field) -> indices into params (None: all of them)
        # the input, to compare with its reconstruction (a reference: the caller holds it anyway)
        ctx.u0 = u0.detach() if check else None
        ctx.params = params  # parameters (leaves), not activations: kept by reference
        ctx.device_type = u0.device.type
        ctx.autocast = torch.is_autocast_enabled(ctx.device_type)
        ctx.autocast_dtype = torch.get_autocast_dtype(ctx.device_type)
        ctx.save_for_backward(u)
        return u

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_u):
        (u,) = ctx.saved_tensors
        grads = [None] * len(ctx.params)
        scheme, fields, times, dt = ctx.scheme, ctx.fields, ctx.times, ctx.dt
        autocast = torch.autocast(ctx.device_type, ctx.autocast_dtype, enabled=ctx.autocast)
        checked = set()  # fields whose step graph was searched for unknown leaves
        with _frozen_norm_stats(fields), autocast:
            for n in reversed(range(len(fields))):
                t = times[n]
                with torch.no_grad():
                    u_prev = scheme.inverse(fields[n], t, dt, u)
                idx = (range(len(ctx.params)) if ctx.per_field is None
                       else ctx.per_field[id(fields[n])])
                with torch.enable_grad():
                    x = u_prev.detach().requires_grad_(True)
                    y, _ = scheme.step(fields[n], t, dt, x, None)
                    inputs = (x, *(ctx.params[i] for i in idx))
                    if id(fields[n]) not in checked:  # once per distinct field: one graph walk
                        checked.add(id(fields[n]))
                        _check_leaves(scheme, y, inputs)
                    g = torch.autograd.grad(y, inputs, grad_u, allow_unused=True)
                grad_u = g[0]
                for i, gp in zip(idx, g[1:]):
                    if gp is not None:
                        grads[i] = gp if grads[i] is None else grads[i] + gp
                u = u_prev
        if ctx.u0 is not None:
            _check_reconstruction(scheme, u, ctx.u0, ctx.autocast_dtype if ctx.autocast else u.dtype)
        return (None, None, None, None, None, None, grad_u, *grads)


def _check_leaves(scheme, y, inputs) -> None:
    """Raise ValueError when the recomputed step's graph reaches a tensor that requires grad
    but is none of ``inputs`` (the state and the parameters found): a tensor the field uses
    without registering it, e.g. a Parameter held in a plain list. Its gradient would be
    silently lost (autograd.grad returns gradients of the inputs only)."""
    leaf = unknown_leaf([y], inputs)
    if leaf is not None:
        raise ValueError(
            f"{scheme.name}: the field uses a tensor that requires grad but is not a "
            f"registered parameter of its modules (shape {tuple(leaf.shape)}; e.g. a "
            f"Parameter in a plain list instead of nn.ParameterList): the memory-saving "
            f"backward would drop its gradient; register it, pass params=, or use "
            f"memory_efficient=False")


def unknown_leaf(outputs, inputs):
    """A leaf that requires grad reached by the graphs of ``outputs`` without passing through
    one of ``inputs`` (None if there is none): its gradient would be lost by a recomputation
    that asks autograd.grad for the gradients of ``inputs`` only."""
    known = {id(t) for t in inputs}
    stops = {t.grad_fn for t in inputs if t.grad_fn is not None}  # non-leaf inputs end a path
    stack, seen = [o.grad_fn for o in outputs], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen or node in stops:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)  # AccumulateGrad: a leaf that requires grad
        if leaf is not None and id(leaf) not in known:
            return leaf
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return None


def _check_reconstruction(scheme, u_rec, u0, dtype) -> None:
    """Raise DivergenceError when the inverses rebuilt ``u0`` with a relative error above
    ``max(1e-3, 64 eps(dtype))``: the steps were too expansive to invert in floating point, so
    the recomputed gradients would be wrong (plain autograd is then the remedy). One host sync."""
    scale = u0.abs().max().item() if u0.numel() else 0.0
    err = (u_rec - u0).abs().max().item() if u0.numel() else 0.0
    tol = max(1e-3, 64 * torch.finfo(dtype).eps)
    if not err <= tol * max(scale, 1e-12):
        raise DivergenceError(
            f"{scheme.name}: the memory-saving backward rebuilt the input with relative error "
            f"{err / max(scale, 1e-12):.3g} (> {tol:.3g}): the steps are too expansive to invert "
            f"in {dtype}, so its gradients would be wrong; use memory_efficient=False")


def order_dependent(fields) -> bool:
    """True when a step's field says (``order_dependent = True``) that it computes differently
    depending on the order of its calls within the step, e.g. normalisation with statistics per
    call. The memory-saving backward calls it in another order (inverse, then recompute), so a
    reversible solve must keep the plain autograd graph for such fields."""
    return any(getattr(part, "order_dependent", False)
               for f in distinct(fields) for part in (f if isinstance(f, (tuple, list)) else (f,)))


def reversible_solve(scheme, fields, u0, t0=0.0, dt=1.0, params=None, check=None):
    """Integrate with a scheme that has an exact ``inverse``, storing only the final state.

    Forward runs all steps under ``no_grad`` and saves ``u_N`` alone. Backward walks the steps in
    reverse: ``u_n = inverse(u_{n+1})``, then recomputes step n with autograd on to get
    ``d u_{n+1} / d (u_n, θ_n)``. Memory is O(1) in the number of steps (besides one step's
    graph); the cost is one inverse and one extra forward per step in backward.

    ``params`` are the tensors gradients flow to besides ``u0``; by default the parameters of
    fields that are ``nn.Module``s or bound methods of one (per step, so untied steps only
    recompute their own). When ``params`` is None and some field is not one of those (a plain
    function or lambda, which may capture any tensor: `params_known`), the steps run with plain
    autograd instead (correct gradients, no memory saving). Fields must be deterministic (no
    dropout); BatchNorm running statistics are updated once, in forward, not again during the
    recomputation. Not twice differentiable. A field using a tensor that requires grad but is not
    among the parameters found (a Parameter in a plain list) makes backward raise a ValueError
    (each distinct field's recomputed graph is searched once) instead of dropping its gradient.

    ``check`` compares the reconstructed ``u_0`` with the input at the end of backward and raises
    `DivergenceError` on drift (expansive steps that cannot be inverted in floating point); one
    host sync, so ``check=None`` does it on CPU only.
    """
    if not callable(getattr(scheme, "inverse", None)):
        raise ValueError(f"reversible_solve needs a scheme with an exact inverse (leapfrog, "
                         f"damped_leapfrog), got {getattr(scheme, 'name', scheme)!r}")
    if params is None and not all(params_known(part) for f in distinct(fields)
                                  for part in (f if isinstance(f, (tuple, list)) else (f,))):
        u, times = u0, time_grid(t0, dt, len(fields), u0)
        for n, f in enumerate(fields):
            u, _ = scheme.step(f, times[n], dt, u, None)
        return u
    check = u0.device.type == "cpu" if check is None else bool(check)
    if params is None:
        flat, per_field = _module_params(fields)
    else:
        flat = [p for p in params if torch.is_tensor(p) and p.requires_grad]
        per_field = None  # every step may use every one of them
    fields = list(fields) if isinstance(fields, (list, tuple)) else fields  # Repeat: as it is
    return _ReversibleSolve.apply(scheme, fields, t0, dt, per_field, check, u0, *flat)
