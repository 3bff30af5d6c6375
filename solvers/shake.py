"""The shake-shake mix with an independent backward weight (Gastaldi, 2017)."""
from __future__ import annotations

import torch


class _ShakeMix(torch.autograd.Function):
    """Forward ``eta f1 + (1 - eta) f2``; backward as if the weight had been ``eta_backward``."""

    @staticmethod
    def forward(ctx, f1, f2, eta, eta_backward):
        ctx.save_for_backward(eta_backward)
        ctx.shapes = (f1.shape, f2.shape)
        return torch.lerp(f2, f1, eta)

    @staticmethod
    def backward(ctx, grad):
        (eta_b,) = ctx.saved_tensors
        g1 = grad * eta_b
        g2 = grad - g1
        s1, s2 = ctx.shapes
        return (g1.sum_to_size(s1) if ctx.needs_input_grad[0] else None,
                g2.sum_to_size(s2) if ctx.needs_input_grad[1] else None, None, None)


def shake_mix(f1: torch.Tensor, f2: torch.Tensor, eta: torch.Tensor,
              eta_backward: torch.Tensor | None = None) -> torch.Tensor:
    """``lerp(f2, f1, eta) = eta f1 + (1 - eta) f2`` in forward.

    With ``eta_backward`` the gradients are ``eta_backward * g`` for ``f1`` and
    ``(1 - eta_backward) * g`` for ``f2`` (Shake-Shake's "shake" backward pass); without it, the
    ordinary gradients of the forward mix. ``eta`` and ``eta_backward`` broadcast against ``f1``
    and carry no gradient. One lerp kernel in forward, two in backward.
    """
    if eta_backward is None or not (f1.requires_grad or f2.requires_grad):
        return torch.lerp(f2, f1, eta)
    return _ShakeMix.apply(f1, f2, eta, eta_backward)
