"""Shake-shake's two basic branches as one field: one wide convolution, one grouped convolution.

Two branches k = 1, 2 of hidden width h (C -> h -> C, `BasicField`)::

    f_k(u) = BN2_k(W2_k * relu(BN1_k(W1_k * u)))

computed together (`ShakeBasicPair`)::

    z = BN2(W2 * relu(BN1(W1 * u)))      W1 = [W1_1; W1_2]: C -> 2h (output channels stacked)
    f_1(u), f_2(u) = z[:, :C], z[:, C:]  W2 = blockdiag(W2_1, W2_2): grouped, groups=2, 2h -> 2C

BatchNorm (and GroupNorm with twice the groups) normalises each channel (each group) on its own,
so BN over the stacked channels is the two branches' BNs side by side: the same functions, the
same parameters (9 C h + 9 h C + 2 h + 2 C per branch), in two convolutions instead of four.
Checkpoints of the two-module layout (``branch1.*``, ``branch2.*`` of `TwoBranch`) load into it:
`merge_branch_state` concatenates their tensors, and the field does so on ``load_state_dict``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .basic import NORMS, conv3x3

_LAYERS = ("conv1", "bn1", "conv2", "bn2")
_NORM_TENSORS = ("weight", "bias", "running_mean", "running_var")


def _stacked_norm(norm: str, channels: int) -> nn.Module:
    """The norm of two branches of ``channels`` channels each, side by side (2 ``channels``)."""
    if norm == "batch":
        return nn.BatchNorm2d(2 * channels)
    if norm == "group":  # `make_norm`'s min(32, C) groups per branch, contiguous channels
        return nn.GroupNorm(2 * min(32, channels), 2 * channels)
    raise ValueError(f"unknown norm {norm!r}; available: {', '.join(NORMS)}")


class ShakeBasicPair(nn.Module):
    """Two post-activation basic branches C -> ``hidden`` -> C on the same input, in one pass.

    ``branch_outputs(u)`` returns ``(f1(u), f2(u))`` (what ``euler_maruyama(noise="shake")``
    mixes as eta f1 + (1 - eta) f2); ``forward(u)`` is the noise-free drift (f1 + f2) / 2, as
    `TwoBranch`'s; ``branches`` the two functions one at a time (each computes both).
    """

    pair = "branches"  # what the two parts mean (`solvers.base.PAIRS`)

    def __init__(self, channels: int, hidden: int | None = None, norm: str = "batch"):
        super().__init__()
        hidden = hidden or channels
        self.channels, self.hidden = channels, hidden
        self.conv1 = conv3x3(channels, 2 * hidden)
        self.bn1 = _stacked_norm(norm, hidden)
        self.conv2 = conv3x3(2 * hidden, 2 * channels, groups=2)
        self.bn2 = _stacked_norm(norm, channels)
        self._register_load_state_dict_pre_hook(_merge_on_load)

    def branch_outputs(self, u):
        z = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(u)))))
        return z.split(self.channels, dim=1)  # one backward (cat), not two zero-filled slices

    @property
    def branches(self):
        return (_Branch(self, 0), _Branch(self, 1))

    def forward(self, u):
        f1, f2 = self.branch_outputs(u)
        return 0.5 * (f1 + f2)


class _Branch:
    """f_k alone (computes both branches and returns the k-th)."""

    def __init__(self, pair: ShakeBasicPair, k: int):
        self.pair, self.k = pair, k

    def __call__(self, u):
        return self.pair.branch_outputs(u)[self.k]


def merge_branch_state(state_dict: dict, prefix: str = "") -> dict:
    """Rewrite the two-module layout of one shake field under ``prefix`` (`TwoBranch` of two
    `BasicField`: keys ``<prefix>branch{1,2}.{conv1,bn1,conv2,bn2}.*``) in place into
    `ShakeBasicPair`'s (``<prefix>{conv1,bn1,conv2,bn2}.*``): the two branches' tensors
    concatenated along dim 0 (output channels); ``num_batches_tracked`` is branch 1's. Keys
    outside that field are kept. Returns ``state_dict``."""
    for layer in _LAYERS:
        names = ("weight",) if layer.startswith("conv") else _NORM_TENSORS + ("num_batches_tracked",)
        for name in names:
            old = [f"{prefix}branch{k}.{layer}.{name}" for k in (1, 2)]
            if old[0] not in state_dict or old[1] not in state_dict:
                continue
            a, b = state_dict.pop(old[0]), state_dict.pop(old[1])
            state_dict[f"{prefix}{layer}.{name}"] = a if name == "num_batches_tracked" else torch.cat((a, b), 0)
    return state_dict


def _merge_on_load(state_dict, prefix, *args):
    """Load hook: a checkpoint of the two-module layout loads into `ShakeBasicPair`."""
    if prefix + "branch1.conv1.weight" in state_dict:
        merge_branch_state(state_dict, prefix)


def merge_branch_optimizer_state(saved: dict, optimizer) -> dict:
    """An optimizer ``state_dict`` saved for the two-module layout, rewritten for ``optimizer``
    (built on `ShakeBasicPair` fields; param groups with ``names``, as `odenets.train`'s): the
    per-parameter state of ``<p>branch{1,2}.<layer>.<leaf>`` (momentum buffers, ...)
    concatenated along dim 0 into ``<p><layer>.<leaf>``'s. Returned unchanged when the groups
    carry no names, already match, or hold names this conversion does not know (then
    ``load_state_dict`` reports the mismatch)."""
    groups = saved.get("param_groups", [])
    if len(groups) != len(optimizer.param_groups):
        return saved
    plans = []
    for was, now in zip(groups, optimizer.param_groups):
        old, new = was.get("names"), now.get("names")
        if old is None or new is None or old == new:
            plans.append(None)
            continue
        index, plan = dict(zip(old, was["params"])), []
        for name in new:
            if name in index:
                plan.append((index[name],))
                continue
            base, _, tail = name.rpartition(".")
            base, _, layer = base.rpartition(".")
            pair = tuple(index.get(f"{base}.branch{k}.{layer}.{tail}" if base else
                                   f"branch{k}.{layer}.{tail}") for k in (1, 2))
            if None in pair:
                return saved
            plan.append(pair)
        plans.append(plan)
    if not any(plans):
        return saved
    state = dict(saved.get("state", {}))
    out_groups = []
    for was, now, plan in zip(groups, optimizer.param_groups, plans):
        if plan is None:
            out_groups.append(was)
            continue
        for ids in plan:
            if len(ids) == 2 and ids[0] in state and ids[1] in state:
                a, b = state[ids[0]], state.pop(ids[1])
                state[ids[0]] = {k: torch.cat((v, b[k])) if torch.is_tensor(v) and v.dim() else v
                                 for k, v in a.items()}
            elif len(ids) == 2:
                state.pop(ids[1], None)
        out_groups.append({**was, "params": [ids[0] for ids in plan], "names": list(now["names"])})
    return {**saved, "state": state, "param_groups": out_groups}
