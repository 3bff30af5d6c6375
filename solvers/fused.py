"""The multistep update of `LM` and `LMM` as one autograd node (eager CPU/GPU cost near Euler's).

    u_{n+1} = u_n + dt f_n + sum_{i=1}^{d} b_i (h_i - h_{i-1}),   h_0 = u_n, h_i = u_{n-i}

(LM: d = 1, b_1 = k, i.e. ``lerp(u_n, u_{n-1}, k) + dt f``.) Forward: one ``lerp`` into a new
tensor, then in-place ``add_``/``addcmul_`` (no temporaries). Backward, given g = dL/du_{n+1}:

    dL/df = dt g,   dL/dh_i = (b_i - b_{i+1}) g  (b_0 = 1, b_{d+1} = 0),
    dL/db_i = <g, h_i> - <g, h_{i-1}>,

the coefficient gradients from d + 1 dot products <g, h_i> that read g and h_i once and
allocate nothing (autograd's own lerp backward allocates h_1 - h_0 and g (h_1 - h_0)).
Used for scalar tensor coefficients in eager mode; per-channel coefficients, plain numbers and
``torch.compile`` (whose fusion already does this) take `reference`, the same formula in plain ops.
"""
from __future__ import annotations

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
    return _MultistepUpdate.apply(dt, len(b), u, f, *history[:len(b)], *b)


def _flat(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor | None:
    """``x`` as a 1-D view in memory order if ``x`` and ``like`` are dense with equal strides."""
    dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
    return x.as_strided((x.numel(),), (1,)) if dense and x.stride() == like.stride() else None


def _dots(g: torch.Tensor, tensors) -> list:
    """<g, x> for each x (one read of g and x, no temporaries when the layouts match), summed
    in float32 at least: torch's CPU ``dot`` on bf16 accumulates in bf16 and ran 16x slower
    than a float32 ``dot`` of the same vectors upcast (12.2 vs 0.76 ms, 50k elements), so
    reduced-precision inputs are upcast first."""
    out = []
    for x in tensors:
        gf, xf = _flat(g, x), _flat(x, g)
        if gf is not None and xf is not None:
            if gf.dtype in (torch.bfloat16, torch.float16):
                gf, xf = gf.float(), xf.float()
            out.append(torch.dot(gf, xf))
        else:
            out.append((g * x).sum(dtype=torch.promote_types(g.dtype, torch.float32)))
    return out


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
        grads_h = [g * (coef[i] - coef[i + 1]).to(g.dtype) if needs[3 + i if i else 2] else None
                   for i in range(d + 1)]
        grad_f = g * dt if needs[3] else None
        grads_b = [None] * d
        if any(needs[4 + d:]):
            dots = _dots(g, states)
            grads_b = [(dots[i] - dots[i - 1]).to(b[i - 1].dtype) if needs[3 + d + i] else None
                       for i in range(1, d + 1)]
        return (None, None, grads_h[0], grad_f, *grads_h[1:], *grads_b)
