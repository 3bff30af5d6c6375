"""The preset registry (timm style): ``create(name, **overrides)`` and ``list_models(pattern)``.

A preset is a function ``(**overrides) -> NetConfig`` registered with `register`; `create`
applies the overrides (any `NetConfig` field) and builds the `Network`.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from typing import Callable

from .network import NetConfig, Network

PRESETS: dict[str, Callable[[], NetConfig]] = {}
DOCS: dict[str, str] = {}


def register(name: str, config: Callable[[], NetConfig], doc: str = "") -> None:
    """Register ``config`` (a zero-argument function returning a `NetConfig`) under ``name``."""
    if name in PRESETS:
        raise ValueError(f"model {name!r} is already registered")
    PRESETS[name], DOCS[name] = config, doc


def list_models(pattern: str = "*") -> list[str]:
    """Sorted preset names matching the shell-style ``pattern`` (e.g. ``"lm_*"``)."""
    return sorted(n for n in PRESETS if fnmatch.fnmatchcase(n, pattern))


def get_config(name: str, **overrides) -> NetConfig:
    """The `NetConfig` of preset ``name`` with ``overrides`` applied (unknown keys rejected)."""
    if name not in PRESETS:
        close = difflib.get_close_matches(str(name), PRESETS, n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        raise ValueError(f"unknown model {name!r}; {hint}see odenets.list_models() "
                         f"({len(PRESETS)} presets, e.g. {', '.join(list_models()[:6])}, ...)")
    fields = {f.name for f in dataclasses.fields(NetConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for model {name!r}; valid options: "
                         f"{', '.join(sorted(fields))}")
    cfg = PRESETS[name]()
    if "solver_options" in overrides:  # merged, so e.g. solver_options={"seed": 0} keeps the rest
        overrides["solver_options"] = {**cfg.solver_options, **overrides["solver_options"]}
    return dataclasses.replace(cfg, **overrides)


def create(name: str, num_classes: int = 10, in_channels: int = 3, **overrides) -> Network:
    """Build preset ``name``: ``create("lm_resnet56", num_classes=100)``.

    ``overrides`` are `NetConfig` fields, e.g. ``solver="rk2"``, ``history="restart"``,
    ``solver_options={"k_init": (-0.5, 0.5)}`` (merged into the preset's).
    """
    cfg = get_config(name, num_classes=num_classes, in_channels=in_channels, **overrides)
    model = Network(cfg)
    model.name = name
    return model
