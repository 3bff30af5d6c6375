"""The preset registry (timm style): ``create(name, **overrides)`` and ``list_models(pattern)``.

A preset is a function ``(**overrides) -> NetConfig`` registered with `register`; `create`
applies the overrides (any `NetConfig` field) and builds the `Network`.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import re
from typing import Callable

from solvers import checks

from .features import FeatureNet
from .network import NetConfig, Network

PRESETS: dict[str, Callable[[], NetConfig]] = {}


class UnknownOption(ValueError, TypeError):
    """An unknown keyword of ``create``: a ValueError (odenets' rule) and a TypeError (what timm
    and Python raise for an unexpected keyword argument)."""
DOCS: dict[str, str] = {}


def register(name: str, config: Callable[[], NetConfig], doc: str = "") -> None:
    """Register ``config`` (a zero-argument function returning a `NetConfig`) under ``name``."""
    if name in PRESETS:
        raise ValueError(f"model {name!r} is already registered")
    PRESETS[name], DOCS[name] = config, doc


def list_models(pattern="*", exclude_filters=(), pretrained: bool = False) -> list[str]:
    """Sorted preset names matching the shell-style ``pattern`` (e.g. ``"lm_*"``), as timm's
    ``list_models``: ``pattern`` and ``exclude_filters`` may be one pattern or a list of them
    (names matching any pattern, minus those matching any exclude filter; ``""`` matches all).
    ``pretrained=True`` lists only the presets whose weights ship with odenets
    (`odenets.pretrained`)."""
    def patterns(value, name):
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name} must be a shell-style pattern or a list of them, "
                             f"got {name}={value!r}")
        return list(value)
    include = [p or "*" for p in patterns(pattern, "pattern")]
    exclude = [p for p in patterns(exclude_filters, "exclude_filters") if p]
    with_weights = None
    if pretrained:
        from ..pretrained import available
        with_weights = set(available())
    return sorted(n for n in PRESETS if any(fnmatch.fnmatchcase(n, p) for p in include)
                  and not any(fnmatch.fnmatchcase(n, p) for p in exclude)
                  and (with_weights is None or n in with_weights))


def _summary(names) -> str:
    """Sorted names with depth variants folded: ``lm_resnet{20,32,44}, resnet50, ...``."""
    groups: dict[str, list] = {}
    for name in sorted(names):
        m = re.fullmatch(r"(.*?[^\d])(\d+)", name)
        stem, number = (m[1], int(m[2])) if m else (name, None)
        groups.setdefault(stem, []).append(number)
    parts = []
    for stem, numbers in sorted(groups.items()):
        numbers = sorted(numbers, key=lambda n: -1 if n is None else n)
        if None in numbers:
            parts.append(stem)
            numbers.remove(None)
        if len(numbers) == 1:
            parts.append(f"{stem}{numbers[0]}")
        elif numbers:
            parts.append(f"{stem}{{{','.join(map(str, numbers))}}}")
    return ", ".join(parts)


# renamed NetConfig fields: old name -> message
RENAMED = {"history": "'history' is now 'transition_history' (project | restart at stage "
                      "transitions); the lmm scheme's history=2..4 goes in "
                      "solver_options={'history': 3}"}


# the yes/no options of a preset: ``--model-arg tied=1`` reads 1/0 as True/False for these
BOOL_FIELDS = {f.name for f in dataclasses.fields(NetConfig) if f.type in ("bool", bool)}


def get_config(name: str, **overrides) -> NetConfig:
    """The `NetConfig` of preset ``name`` with ``overrides`` applied (unknown keys rejected).

    ``solver_options`` is merged into the preset's; the result is checked (`NetConfig.check`).
    """
    if name not in PRESETS:
        raise checks.unknown("model", name, PRESETS, listed=_summary(PRESETS))
    fields = {f.name for f in dataclasses.fields(NetConfig)}
    unknown = sorted(set(overrides) - fields)
    for key in unknown:
        if key in RENAMED:
            raise ValueError(f"model {name!r}: {RENAMED[key]}")
    if unknown:
        raise UnknownOption(f"unknown option(s) {unknown} for model {name!r}; valid options: "
                            f"{', '.join(sorted(fields))}")
    cfg = PRESETS[name]()
    if "solver_options" in overrides:  # merged, so e.g. solver_options={"seed": 0} keeps the rest
        extra = overrides["solver_options"]
        if not isinstance(extra, dict):
            raise ValueError(f"solver_options must be a dict of options, e.g. {{'iterations': 2}}, "
                             f"got solver_options={extra!r} ({type(extra).__name__})")
        overrides["solver_options"] = {**cfg.solver_options, **extra}
    cfg = dataclasses.replace(cfg, **overrides)
    cfg.check()
    return cfg


class _Default:
    """The default of an argument that was not given (``pretrained=True`` then takes the
    weights' value)."""

    def __repr__(self):
        return "default"


DEFAULT = _Default()


def create(name: str, num_classes: int = DEFAULT, in_channels: int = DEFAULT,
           pretrained: bool = False, features_only: bool = False, out_indices=None,
           **overrides) -> Network | FeatureNet:
    """Build preset ``name``: ``create("lm_resnet56", num_classes=100)``.

    ``overrides`` are `NetConfig` fields, e.g. ``solver="rk2"``, ``transition_history="restart"``,
    ``solver_options={"k_init": (-0.5, 0.5)}`` (merged into the preset's). For timm users:
    ``in_chans`` is accepted as an alias of ``in_channels``; ``pretrained=True`` loads the weights
    shipped with the package (`odenets.pretrained`; no download; classes, channels and model
    options then default to the weights'; another ``num_classes`` gets a fresh classifier);
    ``num_classes=0`` (pooled features out), ``global_pool``, ``drop_rate`` and
    ``drop_path_rate`` are `NetConfig` fields; ``features_only=True`` returns a `FeatureNet`
    giving the feature maps at ``out_indices`` (0: stem, i: stage i; default all). docs/timm.md.
    Defaults: 10 classes, 3 input channels.
    """
    if pretrained not in (False, True):
        raise ValueError(f"pretrained must be True or False, got {pretrained!r}")
    if "in_chans" in overrides:  # timm's name
        in_chans = overrides.pop("in_chans")
        if in_channels is not DEFAULT and in_channels != in_chans:
            raise ValueError(f"in_chans={in_chans!r} (timm's name for in_channels) and "
                             f"in_channels={in_channels!r} disagree; pass only in_channels")
        in_channels = in_chans
    if features_only not in (False, True):
        raise ValueError(f"features_only must be True or False, got {features_only!r}")
    if out_indices is not None and not features_only:
        raise ValueError(f"out_indices={out_indices!r} selects feature maps: it needs "
                         f"features_only=True")
    info = {}
    if pretrained:
        from ..pretrained import entry
        info = entry(name)
        overrides = {**info.get("model_args", {}), **overrides}
    num_classes = info.get("num_classes", 10) if num_classes is DEFAULT else num_classes
    in_channels = info.get("in_channels", 3) if in_channels is DEFAULT else in_channels
    cfg = get_config(name, num_classes=num_classes, in_channels=in_channels, **overrides)
    model = Network(cfg)
    model.name = name
    model.pretrained_cfg["architecture"] = name
    if pretrained:
        from ..pretrained import load_into
        if in_channels != info["in_channels"]:
            raise ValueError(f"pretrained weights of {name!r} take {info['in_channels']} input "
                             f"channel(s), got in_channels={in_channels}")
        load_into(model, name, num_classes)
    return FeatureNet(model, out_indices) if features_only else model
