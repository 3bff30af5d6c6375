"""The multistep update of `LM` and `LMM` as one autograd node (eager CPU/GPU cost near Euler's).

    u_{n+1} = u_n + dt f_n + sum_{i=1}^{d} b_i (h_i - h_{i-1}),   h_0 = u_n, h_i = u_{n-i}

(LM: d = 1, b_1 = k, i.e. ``lerp(u_n, u_{n-1}, k) + dt f``.) Forward: one ``lerp`` into a new
tensor, then in-place ``add_``/``addcmul_`` (no temporaries). Backward, given g = dL/du_{n+1}:

    dL/df = dt g,   dL/dh_i = (b_i - b_{i+1}) g  (b_0 = 1, b_{d+1} = 0),
    dL/db_i = <g, h_i> - <g, h_{i-1}>,

the coefficient gradients from d + 1 dot products <g, h_i> that read g and h_i once and
allocate nothing (autograd's own lerp backward allocates h_1 - h_0 and g (h_1 - h_0)).
dL/df is g itself when dt = 1. Used for scalar tensor coefficients in eager mode; per-channel
coefficients, plain numbers and ``torch.compile`` (whose fusion already does this) take
`reference`, the same formula in plain ops. `compiled_kernels(True)` (opt-in) makes the backward
one generated kernel: one pass over g and the h_i instead of 2 (d + 1).
"""
from __future__ import annotations

import functools
import os
import warnings

import torch


def reference(u, history, f, b, dt):
    """``u + dt f + sum_i b_i (history[i-1] - (history[i-2] or u))`` in plain differentiable ops
    (``history[0] = u_{n-1}``; ``b`` numbers or tensors broadcasting against ``u``)."""
    out = torch.lerp(u, history[0], b[0].to(u.dtype) if torch.is_tensor(b[0]) else float(b[0]))
    for i in range(1, len(b)):
        delta = history[i] - history[i - 1]
        out = (torch.addcmul(out, delta, b[i].to(u.dtype)) if torch.is_tensor(b[i])
               else torch.add(out, delta, alpha=float(b[i])))
    return torch.add(out, f, alpha=dt)


def multistep_update(u, history, f, b, dt):
    """`reference`'s value and gradients, as one autograd node when every ``b_i`` is a 0-dim
    tensor and nothing is being compiled; ``len(history) >= len(b) >= 1``."""
    if (torch.compiler.is_compiling() or not all(torch.is_tensor(c) and c.dim() == 0 for c in b)
            or not all(h.shape == u.shape and h.dtype == u.dtype for h in (f, *history[:len(b)]))):
        return reference(u, history, f, b, dt)
    if _COMPILED["enabled"] and all(_flat(x, u) is not None for x in (f, *history[:len(b)])):
        return _CompiledUpdate.apply(dt, len(b), u, f, *history[:len(b)], *b)
    return _MultistepUpdate.apply(dt, len(b), u, f, *history[:len(b)], *b)


def _flat(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor | None:
    """``x`` as a 1-D view in memory order if ``x`` and ``like`` are dense with equal strides."""
    dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
    return x.as_strided((x.numel(),), (1,)) if dense and x.stride() == like.stride() else None


def _scale_and_dot(g: torch.Tensor, x: torch.Tensor, scale: torch.Tensor | None, want_dot: bool):
    """``(scale g, <g, x>)`` (``scale=None`` / ``want_dot=False`` skip one): a ``mul`` and a
    ``dot`` that reads g and x once and allocates nothing when the layouts match, summed in
    float32 at least: torch's CPU ``dot`` on bf16 accumulates in bf16 and ran 16x slower than a
    float32 ``dot`` of the same vectors upcast (12.2 vs 0.76 ms, 50k elements), so
    reduced-precision inputs are upcast first. (An eval-mode batch-norm backward on (1, n, 2048)
    views gives both in one call, but ran 8x slower than the two ops on CPU: not used.)"""
    scaled = g * scale.to(g.dtype) if scale is not None else None
    if not want_dot:
        return scaled, None
    gf, xf = _flat(g, x), _flat(x, g)
    if gf is not None and xf is not None:
        if gf.dtype in (torch.bfloat16, torch.float16):
            gf, xf = gf.float(), xf.float()
        return scaled, torch.dot(gf, xf)
    return scaled, (g * x).sum(dtype=torch.promote_types(g.dtype, torch.float32))


class _MultistepUpdate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dt, d, u, f, *rest):
        history, b = rest[:d], rest[d:]
        bs = [c.to(u.dtype) for c in b]
        out = torch.lerp(u, history[0], bs[0])
        for i in range(1, d):
            out.addcmul_(history[i], bs[i]).addcmul_(history[i - 1], bs[i], value=-1)
        out.add_(f, alpha=dt)
        ctx.dt, ctx.d = dt, d
        ctx.save_for_backward(u, *history, *b)
        return out

    @staticmethod
    def backward(ctx, g):
        dt, d = ctx.dt, ctx.d
        saved = ctx.saved_tensors
        states, b = saved[:d + 1], saved[d + 1:]  # states: h_0 = u, h_1..h_d
        needs = ctx.needs_input_grad  # (dt, d, u, f, h_1..h_d, b_1..b_d)
        coef = [1.0, *b, 0.0]         # dL/dh_i = (b_i - b_{i+1}) g with b_0 = 1, b_{d+1} = 0
        want_b = any(needs[4 + d:])
        grads_h, dots = [], []
        for i in range(d + 1):
            scale = torch.as_tensor(coef[i] - coef[i + 1]) if needs[3 + i if i else 2] else None
            grad, dot = _scale_and_dot(g, states[i], scale, want_b)
            grads_h.append(grad)
            dots.append(dot)
        grad_f = (g if dt == 1 else g * dt) if needs[3] else None
        grads_b = [(dots[i] - dots[i - 1]).to(b[i - 1].dtype) if needs[3 + d + i] else None
                   for i in range(1, d + 1)] if want_b else [None] * d
        return (None, None, grads_h[0], grad_f, *grads_h[1:], *grads_b)


# -- opt-in: the backward as one generated kernel ------------------------------------------------
_COMPILED = {"enabled": os.environ.get("SOLVERS_FUSED_KERNELS", "eager") == "compiled"}


def compiled_kernels(enabled: bool | None = None) -> bool:
    """Turn on (True) or off (False) the generated kernels of the update, and return whether
    they are on (None: only ask). Off by default (env ``SOLVERS_FUSED_KERNELS=compiled`` turns
    them on): the backward compiles once per (dtype, history length) on first use
    (``torch.compile``, seconds, cached on disk), which needs a C++ compiler on CPU (Triton on
    GPU). It writes every (b_i - b_{i+1}) g and sums every <g, h_i> in one pass over g and the
    h_i, instead of d + 1 ``mul`` and d + 1 ``dot`` passes. A compilation that fails turns the
    kernels off with a warning; the eager backward takes over."""
    if enabled is not None:
        if not isinstance(enabled, bool):
            raise ValueError(f"compiled_kernels: enabled must be True, False or None, got {enabled!r}")
        _COMPILED["enabled"] = enabled
    return _COMPILED["enabled"]


def _backward_flat(g, states: list, scales: list):
    acc = torch.float32 if g.dtype in (torch.bfloat16, torch.float16) else g.dtype
    return [g * s for s in scales], [(g.to(acc) * x.to(acc)).sum() for x in states]


@functools.cache
def _kernel(fn):
    return torch.compile(fn, dynamic=True, fullgraph=True)


def _run(fn, *args):
    """``fn`` compiled, or False after a compilation failure (warned once; kernels off)."""
    try:
        return _kernel(fn)(*args)
    except Exception as error:  # no compiler, an unsupported backend: keep training, eagerly
        _COMPILED["enabled"] = False
        warnings.warn(f"solvers.fused: compiled kernels turned off ({type(error).__name__}: "
                      f"{str(error)[:200]}); the eager update is used instead")
        return False


class _CompiledUpdate(_MultistepUpdate):
    """`_MultistepUpdate`'s forward (``lerp`` + ``add_``: a generated kernel was not faster);
    its backward as one generated kernel."""

    @staticmethod
    def backward(ctx, g):
        dt, d = ctx.dt, ctx.d
        saved = ctx.saved_tensors
        states, b = saved[:d + 1], saved[d + 1:]
        needs, gf = ctx.needs_input_grad, _flat(g, states[0])
        if torch.is_grad_enabled() or gf is None or not _COMPILED["enabled"]:  # double backward
            return _MultistepUpdate.backward(ctx, g)
        coef = [1.0, *b, 0.0]
        scales = [torch.as_tensor(coef[i] - coef[i + 1]).to(g.dtype) for i in range(d + 1)]
        result = _run(_backward_flat, gf, [_flat(x, x) for x in states], scales)
        if result is False:
            return _MultistepUpdate.backward(ctx, g)
        grads, dots = result
        grads_h = [grad.as_strided(g.shape, g.stride()) if needs[3 + i if i else 2] else None
                   for i, grad in enumerate(grads)]
        grad_f = (g if dt == 1 else g * dt) if needs[3] else None
        grads_b = [(dots[i] - dots[i - 1]).to(b[i - 1].dtype) if needs[3 + d + i] else None
                   for i in range(1, d + 1)]
        return (None, None, grads_h[0], grad_f, *grads_h[1:], *grads_b)
