"""The classifier head of every network (timm's ``ClassifierHead``):

    u (N, C, H, W) -> [BN-ReLU, pre-activation nets] -> global pool -> flatten -> dropout -> fc

``global_pool``: ``"avg"`` (default) or ``"max"`` -> (N, C); ``""`` no pooling -> (N, C, H, W),
only with ``num_classes=0`` (a linear layer needs pooled features; timm's rule). ``num_classes=0``
makes ``fc`` an ``nn.Identity``: the head returns the pooled features. ``drop_rate``: dropout
probability on the pooled features, before ``fc`` (timm's ``drop_rate``). Parameter names are
``bn.*`` and ``fc.*`` whatever the options, so checkpoints keep loading.
"""
from __future__ import annotations

from torch import nn

from solvers import checks

POOLS = ("avg", "max", "")


def check_head(num_classes, global_pool, drop_rate) -> None:
    """ValueError naming the bad value and what it must be."""
    if not checks.is_int(num_classes, 0):
        raise ValueError(f"num_classes must be an integer >= 0 (0: no classifier, the network "
                         f"returns pooled features), got num_classes={num_classes!r}")
    if global_pool not in POOLS:
        raise ValueError(f"unknown global_pool {global_pool!r}; available: 'avg', 'max', '' (none)")
    if global_pool == "" and num_classes:
        raise ValueError(f"global_pool='' (no pooling) needs num_classes=0: a linear classifier "
                         f"needs pooled features, got num_classes={num_classes}")
    if not checks.is_real(drop_rate) \
            or not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate must be a number in [0, 1), got drop_rate={drop_rate!r}")


def _pool(kind: str) -> nn.Module:
    return {"avg": nn.AdaptiveAvgPool2d(1), "max": nn.AdaptiveMaxPool2d(1)}.get(kind, nn.Identity())


class ClassifierHead(nn.Module):
    """``forward(u, pre_logits=False)``: logits (N, num_classes), or with ``pre_logits`` the
    pooled (and dropped-out) features (N, C) that ``fc`` would see."""

    def __init__(self, channels: int, num_classes: int, pre_norm: bool = False,
                 global_pool: str = "avg", drop_rate: float = 0.0):
        super().__init__()
        check_head(num_classes, global_pool, drop_rate)
        self.num_features, self.drop_rate = channels, float(drop_rate)
        self.bn = nn.BatchNorm2d(channels) if pre_norm else None
        self.relu = nn.ReLU() if pre_norm else None
        self.drop = nn.Dropout(drop_rate) if drop_rate else nn.Identity()
        self.reset(num_classes, global_pool)

    def reset(self, num_classes: int, global_pool: str | None = None, like=None) -> None:
        """A new, freshly initialised ``fc`` for ``num_classes`` (0: none), optionally a new
        pooling; on the device and dtype of the current head (else of ``like``, a tensor of the
        network), in the head's train/eval mode."""
        global_pool = self.global_pool if global_pool is None else global_pool
        check_head(num_classes, global_pool, self.drop_rate)
        like = next((p for p in self.parameters() if p.is_floating_point()), like)
        self.num_classes, self.global_pool = num_classes, global_pool
        self.pool = _pool(global_pool)
        self.flatten = nn.Flatten(1) if global_pool else nn.Identity()
        fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        if like is not None:
            fc = fc.to(device=like.device, dtype=like.dtype)
        self.fc = fc.train(self.training)

    def forward(self, u, pre_logits: bool = False):
        if self.bn is not None:
            u = self.relu(self.bn(u))
        u = self.drop(self.flatten(self.pool(u)))
        return u if pre_logits else self.fc(u)

    def extra_repr(self):
        return f"global_pool={self.global_pool!r}, num_classes={self.num_classes}"
