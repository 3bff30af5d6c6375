"""Stage transitions: the stride-2 / channel-changing residual blocks between flows.

A transition is one residual block with a shortcut S that changes the shape:
``u_{n+1} = S(u_n) + f(u_n)`` (then the post-activation, if any). It belongs to the network,
not to a flow. For multistep schemes (LM's u_{n-1}) the history rule (`NetConfig`'s
``transition_history``, the ``history`` argument of `Transition`) says what the next flow takes as
history (docs/schemes.md §2):

* ``"project"`` (default; the LM-ResNet authors' code): the transition is the scheme's
  starting step (forward Euler) taken in the new space from S(u_n), so the history it leaves
  is the projected pre-transition state: the next LM step is
  ``u_{n+2} = (1 - k) u_{n+1} + k S(u_n) + f(u_{n+1})``.
* ``"restart"``: the recurrence restarts after the transition; the next flow's first step is
  forward Euler.

One-step schemes (Euler, RK, backward Euler, leapfrog, Euler-Maruyama) keep no history, so
both rules give the same network. Transitions are deterministic in every scheme (stochastic
depth and shake noise act on the flows' steps only).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HISTORIES = ("project", "restart")
SHORTCUTS = ("A", "B")


class ZeroPadShortcut(nn.Module):
    """Option A of He et al. (2016a): S(u) = [u[:, :, ::s, ::s], 0] — subsample by the stride
    and append zero channels up to ``out_channels``. No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option-A shortcut cannot reduce channels ({in_channels} -> "
                             f"{out_channels}); use shortcut='B' (projection)")
        self.stride, self.extra = stride, out_channels - in_channels

    def forward(self, u):
        if self.stride > 1:
            u = u[:, :, ::self.stride, ::self.stride]
        return F.pad(u, (0, 0, 0, 0, 0, self.extra)) if self.extra else u


class ProjectionShortcut(nn.Module):
    """Option B: S(u) = BN(W u), W a strided 1x1 convolution (torchvision's ``downsample``)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, u):
        return self.bn(self.conv(u))


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int = 1) -> nn.Module:
    if kind == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    if kind == "B":
        return ProjectionShortcut(in_channels, out_channels, stride)
    raise ValueError(f"unknown shortcut {kind!r}; available: {', '.join(SHORTCUTS)}")


class Transition(nn.Module):
    """u_{n+1} = sigma(S(u_n) + f(u_n)) with the history rule of the module docstring.

    ``forward(u, state) -> (u_next, state_next)``; ``scheme`` is the scheme of the flow that
    follows (None when no flow follows).
    """

    def __init__(self, field: nn.Module, shortcut: nn.Module, scheme=None,
                 history: str = "project", activation: str | None = None):
        super().__init__()
        if history not in HISTORIES:
            raise ValueError(f"unknown transition history rule {history!r}; available: "
                             f"{', '.join(HISTORIES)}")
        if activation not in (None, "relu"):
            raise ValueError(f"transition activation must be None or 'relu', got {activation!r}")
        self.field, self.shortcut = field, shortcut
        self.history, self.activation = history, activation
        self.scheme = scheme
        self._project = history == "project" and scheme is not None and scheme.past_states > 0
        self._start = scheme.fixed_coefficients() if self._project else {}

    def forward(self, u, state=None):
        s, f = self.shortcut(u), self.field(u)
        if self._project:
            u, state = self.scheme.step(lambda t, v: f, 0.0, 1.0, s, None, **self._start)
        else:
            u, state = s + f, None
        return (torch.relu(u) if self.activation == "relu" else u), state

    def extra_repr(self):
        return f"history={self.history!r}, activation={self.activation!r}"
