"""Load torchvision ResNet-50 weights into ``resnet50`` / ``lm_resnet50`` (and back).

Names (torchvision -> odenets), L = 1..4 the stage, i >= 1 the block inside it:

    conv1.*, bn1.*                 -> stem.conv.*, stem.bn.*
    layerL.0.downsample.0/1.*      -> stages.{L-1}.transition.shortcut.conv/bn.*
    layerL.0.<rest>                -> stages.{L-1}.transition.field.<rest>
    layerL.i.<rest>                -> stages.{L-1}.flow.blocks.{i-1}.<rest>
    fc.*                           -> head.fc.*

Our field modules keep torchvision's attribute names (conv1, bn1, ..., bn3), so <rest> is
unchanged, and the post-activation ``relu(u + f(u))`` makes the outputs identical. Scheme
coefficients (``...flow.raw.k`` of lm_resnet50) have no torchvision counterpart and keep their
initialisation. torchvision itself is optional: nothing here imports it.
"""
from __future__ import annotations

import re

import torch

_TV = [(re.compile(r"^conv1\.(.*)$"), r"stem.conv.\1"),
       (re.compile(r"^bn1\.(.*)$"), r"stem.bn.\1"),
       (re.compile(r"^fc\.(.*)$"), r"head.fc.\1")]
_OURS = [(re.compile(r"^stem\.conv\.(.*)$"), r"conv1.\1"),
         (re.compile(r"^stem\.bn\.(.*)$"), r"bn1.\1"),
         (re.compile(r"^head\.fc\.(.*)$"), r"fc.\1")]
_LAYER = re.compile(r"^layer(\d+)\.(\d+)\.(.*)$")
_STAGE = re.compile(r"^stages\.(\d+)\.(transition|flow)\.(.*)$")
_SHORTCUT = {"downsample.0.": "shortcut.conv.", "downsample.1.": "shortcut.bn."}


def from_torchvision_key(key: str) -> str:
    """Our parameter name for torchvision ResNet name ``key`` (ValueError if unknown)."""
    for pattern, repl in _TV:
        if pattern.match(key):
            return pattern.sub(repl, key)
    m = _LAYER.match(key)
    if m:
        stage, block, rest = int(m.group(1)) - 1, int(m.group(2)), m.group(3)
        if block > 0:
            return f"stages.{stage}.flow.blocks.{block - 1}.{rest}"
        for tv, ours in _SHORTCUT.items():
            if rest.startswith(tv):
                return f"stages.{stage}.transition.{ours}{rest[len(tv):]}"
        return f"stages.{stage}.transition.field.{rest}"
    raise ValueError(f"not a torchvision ResNet parameter name: {key!r}")


def to_torchvision_key(key: str) -> str:
    """torchvision's name for our parameter ``key`` (ValueError for scheme coefficients)."""
    for pattern, repl in _OURS:
        if pattern.match(key):
            return pattern.sub(repl, key)
    m = _STAGE.match(key)
    if m:
        layer, kind, rest = int(m.group(1)) + 1, m.group(2), m.group(3)
        if kind == "flow":
            b = re.match(r"^blocks\.(\d+)\.(.*)$", rest)
            if b:
                return f"layer{layer}.{int(b.group(1)) + 1}.{b.group(2)}"
        else:
            for tv, ours in _SHORTCUT.items():
                if rest.startswith(ours):
                    return f"layer{layer}.0.{tv}{rest[len(ours):]}"
            if rest.startswith("field."):
                return f"layer{layer}.0.{rest[len('field.'):]}"
    raise ValueError(f"{key!r} has no torchvision counterpart")


def convert_torchvision_state_dict(state_dict: dict) -> dict:
    """torchvision ResNet state dict -> ours (keys renamed, tensors shared)."""
    return {from_torchvision_key(k): v for k, v in state_dict.items()}


def load_torchvision(model: torch.nn.Module, state_dict) -> torch.nn.Module:
    """Load torchvision ResNet weights (a state dict or a torchvision model) into ``model``.

    Every torchvision tensor must land on a parameter/buffer of the same shape; only scheme
    coefficients (``.raw.``) of ``model`` may be left out. Returns ``model``.
    """
    if isinstance(state_dict, torch.nn.Module):
        state_dict = state_dict.state_dict()
    ours = model.state_dict()
    converted = convert_torchvision_state_dict(state_dict)
    unexpected = sorted(set(converted) - set(ours))
    missing = sorted(k for k in set(ours) - set(converted) if ".raw." not in k)
    if unexpected or missing:
        raise ValueError(f"torchvision weights do not fit this model: unexpected {unexpected[:5]}, "
                         f"missing {missing[:5]} ({len(unexpected)} / {len(missing)} in all)")
    wrong = [(k, tuple(v.shape), tuple(ours[k].shape)) for k, v in converted.items()
             if v.shape != ours[k].shape]
    if wrong:
        raise ValueError(f"shape mismatch (name, torchvision, ours): {wrong[:5]}; create the "
                         f"model with the same num_classes / in_channels")
    model.load_state_dict(converted, strict=False)
    return model
