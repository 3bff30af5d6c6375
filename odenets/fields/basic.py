"""Basic residual fields (two 3x3 convolutions), post- and pre-activation.

A field computes f(u) only; the skip connection ``u + ...`` belongs to the scheme.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


NORMS = ("batch", "group")


class GroupNorm(nn.GroupNorm):
    """`nn.GroupNorm` that hands the CPU kernel a contiguous input when autograd needs the
    weight's gradient but not the input's: torch 2.13's CPU GroupNorm backward segfaults on a
    channels_last input that does not require grad (a pre-activation field applied to data,
    e.g. ``build(PreActBasicField(16, norm="group"), ...)`` on channels_last images). The
    output is the same (GroupNorm is layout-free: (x - mean_g) / sqrt(var_g + eps) w_c + b_c);
    only the copy's memory format differs. tests/test_groupnorm_guard.py runs the crash in a
    subprocess."""

    def forward(self, x):
        if (isinstance(x, torch.Tensor) and x.device.type == "cpu" and not x.requires_grad
                and torch.is_grad_enabled() and not x.is_contiguous()):  # (not an fx Proxy)
            x = x.contiguous()
        return super().forward(x)


def make_norm(norm: str, channels: int) -> nn.Module:
    """A normalisation layer: ``"batch"`` = BatchNorm2d; ``"group"`` = `GroupNorm` with
    min(32, C) groups (torchdiffeq's ODE-Net choice). GroupNorm keeps no running statistics, so
    a tied field evaluated at many t (continuous depth) normalises alike in train and eval mode;
    BatchNorm's one set of running statistics averages over every t the solver visited."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return GroupNorm(min(32, channels), channels)
    raise ValueError(f"unknown norm {norm!r}; available: {', '.join(NORMS)}")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride, 1, groups=groups, bias=False)


class BasicField(nn.Module):
    """Post-activation basic field of He et al. (2016a): conv3x3-BN-ReLU-conv3x3-BN.

        f(u) = BN2(W2 * relu(BN1(W1 * u)))          u: (B, C_in, H, W) -> (B, C_out, H/s, W/s)

    In a ResNet the step is ``relu(u + f(u))``: the ReLU after the addition is the network's
    post-activation (`odenets.build(..., activation="relu")`), not part of the field.
    ``hidden`` is the width between the convolutions (default ``out_channels``); ``stride`` > 1
    only for transition blocks; ``norm`` "batch" (BN) or "group" (`make_norm`). Parameters:
    9 C_in h + 9 h C_out + 2 h + 2 C_out.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, stride: int = 1,
                 hidden: int | None = None, norm: str = "batch"):
        super().__init__()
        out_channels = out_channels or in_channels
        hidden = hidden or out_channels
        self.conv1 = conv3x3(in_channels, hidden, stride)
        self.bn1 = make_norm(norm, hidden)
        self.conv2 = conv3x3(hidden, out_channels)
        self.bn2 = make_norm(norm, out_channels)

    def forward(self, u):
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(u)))))


class PreActBasicField(nn.Module):
    """Pre-activation basic field of He et al. (2016b): BN-ReLU-conv3x3-BN-ReLU-conv3x3.

        f(u) = W2 * relu(BN2(W1 * relu(BN1(u))))

    The step ``u + f(u)`` is then a pure forward-Euler step (no activation after the addition),
    the form the ODE view and the LM-ResNet authors use. ``norm`` as `BasicField`'s.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, stride: int = 1,
                 hidden: int | None = None, norm: str = "batch"):
        super().__init__()
        out_channels = out_channels or in_channels
        hidden = hidden or out_channels
        self.bn1 = make_norm(norm, in_channels)
        self.conv1 = conv3x3(in_channels, hidden, stride)
        self.bn2 = make_norm(norm, hidden)
        self.conv2 = conv3x3(hidden, out_channels)

    def forward(self, u):
        return self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(u))))))
