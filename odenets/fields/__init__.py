"""Vector fields f(u) for one step of a flow. A field never adds the skip connection: the
scheme does (``u + f(u)`` is forward Euler).

    BasicField        conv3x3-BN-ReLU-conv3x3-BN (He et al. 2016a, post-activation ResNet)
    PreActBasicField  BN-ReLU-conv3x3-BN-ReLU-conv3x3 (He et al. 2016b)
                      (both: norm="group" for GroupNorm, the continuous-depth choice)
    BottleneckField   1x1-3x3-1x1 with BN (ResNet-50, torchvision names)
    ResNeXtField      grouped bottleneck (Xie et al. 2017)
    MLPField          an MLP for vector data, optionally time-aware f(t, u)
    TwoBranch         two branches for shake-shake; Coupled: the (F, G) pair of a reversible block
    ShakeBasicPair    two basic shake-shake branches in one pass (a wide and a grouped conv)

`BLOCKS` maps the block names the network builder accepts to a factory
``make(in_channels, out_channels, stride, **options)``.
"""
from __future__ import annotations

from .basic import NORMS, BasicField, PreActBasicField, make_norm
from .bottleneck import BottleneckField, ResNeXtField
from .mlp import MLPField
from .pair import Coupled, TwoBranch
from .shake import ShakeBasicPair, merge_branch_state


def _basic(cin, cout, stride=1, hidden=None, norm="batch"):
    return BasicField(cin, cout, stride, hidden, norm)


def _preact(cin, cout, stride=1, hidden=None, norm="batch"):
    return PreActBasicField(cin, cout, stride, hidden, norm)


def _bottleneck(cin, cout, stride=1, groups=1, base_width=64):
    return BottleneckField(cin, cout // BottleneckField.expansion, stride, groups, base_width)


def _resnext(cin, cout, stride=1, cardinality=8, bottleneck_width=64):
    return ResNeXtField(cin, cout // ResNeXtField.expansion, stride, cardinality, bottleneck_width)


BLOCKS = {"basic": _basic, "preact": _preact, "bottleneck": _bottleneck, "resnext": _resnext}


def make_block(name: str, in_channels: int, out_channels: int, stride: int = 1, **options):
    """A field of block family ``name`` mapping ``in_channels`` to ``out_channels``."""
    if name not in BLOCKS:
        raise ValueError(f"unknown block {name!r}; available: {', '.join(sorted(BLOCKS))}")
    try:
        return BLOCKS[name](in_channels, out_channels, stride, **options)
    except TypeError as e:
        raise ValueError(f"invalid options {sorted(options)} for block {name!r}: {e}") from None


__all__ = ["BLOCKS", "NORMS", "BasicField", "BottleneckField", "Coupled", "MLPField", "PreActBasicField",
           "ResNeXtField", "ShakeBasicPair", "TwoBranch", "make_block", "make_norm",
           "merge_branch_state"]
