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


CHUNK = 2048  # elements per chunk of `_scale_and_dot`: g's and x's chunks stay in L1/L2 between passes
_NORM_BACKWARD = torch.ops.aten.native_batch_norm_backward


def _scale_and_dot(g: torch.Tensor, x: torch.Tensor, scale: torch.Tensor | None, want_dot: bool):
    """``(scale g, <g, x>)`` (either may be skipped: ``scale=None``, ``want_dot=False``).

    On CPU, for dense tensors of one layout whose size is a multiple of `CHUNK`, both come from
    one call of the eval-mode batch-norm backward on the flat tensors viewed as (1, C, CHUNK)
    with mean 0, variance 1, eps 0 and weight ``scale``: per chunk it sums g x and then writes
    scale g while the chunk is still in cache (one pass over memory instead of a ``mul`` and a
    ``dot``), summing in float32 for bf16/fp16 (its accumulation type). Elsewhere a ``mul`` and
    a ``dot`` (upcast to float32 for reduced precision) or a float32 ``sum`` of g x."""
    gf, xf = _flat(g, x), _flat(x, g)
    if scale is not None and want_dot and gf is not None and xf is not None and g.device.type == "cpu" \
            and g.numel() % CHUNK == 0 and g.dtype in _NORM_DTYPES and g.numel() > 0:
        n = g.numel() // CHUNK
        param = torch.float64 if g.dtype == torch.float64 else torch.float32
        weight = scale.to(param).reshape(1).expand(n).contiguous()
        mean, var = torch.zeros(n, dtype=param), torch.ones(n, dtype=param)
        grad, dots, _ = _NORM_BACKWARD(gf.view(1, n, CHUNK), xf.view(1, n, CHUNK), weight, mean, var,
                                       None, None, False, 0.0, [True, True, False])
        return grad.as_strided(g.shape, g.stride()), dots.sum()
    scaled = g * scale.to(g.dtype) if scale is not None else None
    if not want_dot:
        return scaled, None
    if gf is not None and xf is not None:
        if gf.dtype in (torch.bfloat16, torch.float16):
            gf, xf = gf.float(), xf.float()
        return scaled, torch.dot(gf, xf)
    return scaled, (g * x).sum(dtype=torch.promote_types(g.dtype, torch.float32))


_NORM_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


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
            scale = (torch.as_tensor(coef[i] - coef[i + 1]) if needs[3 + i if i else 2] else None)
            grad, dot = _scale_and_dot(g, states[i], scale, want_b)
            grads_h.append(grad)
            dots.append(dot)
        grad_f = (g if dt == 1 else g * dt) if needs[3] else None
        grads_b = [(dots[i] - dots[i - 1]).to(b[i - 1].dtype) if needs[3 + d + i] else None
                   for i in range(1, d + 1)] if want_b else [None] * d
        return (None, None, grads_h[0], grad_f, *grads_h[1:], *grads_b)
