"""`register_timm`: make every odenets preset a timm model, one call, where timm is installed.

    import odenets, timm
    odenets.register_timm()                          # prefix "odenets_"
    model = timm.create_model("odenets_lm_resnet20", num_classes=100, drop_path_rate=0.1)

timm stays optional: nothing imports it until `register_timm` is called. Each preset ``name``
becomes the timm entrypoint ``prefix + name`` (a function of this module, as timm's own
entrypoints are functions of their model modules), which calls ``odenets.create(name, ...)``
with timm's keyword arguments (``num_classes``, ``in_chans``, ``global_pool``, ``drop_rate``,
``drop_path_rate``, ``features_only``, ``out_indices``, any `NetConfig` field).
``pretrained=True`` loads the weights shipped with odenets (`odenets.pretrained`, no download)
where the preset has them; ``pretrained_cfg`` (a dict) and
``pretrained_cfg_overlay`` update the model's ``pretrained_cfg``.
"""
from __future__ import annotations

import sys

from .registry import DOCS, PRESETS, create

__all__ = ["register_timm"]
_ENTRYPOINTS: dict[str, str] = {}  # timm name -> odenets preset, registered by this module
# timm's register_model reads the pretrained cfg of an entrypoint from its module's
# ``default_cfgs`` (so timm.models.get_pretrained_cfg_value(name, key) works): filled below
default_cfgs: dict[str, dict] = {}


def _entrypoint(name: str, timm_name: str):
    def entry(pretrained=False, pretrained_cfg=None, pretrained_cfg_overlay=None, cache_dir=None,
              device=None, dtype=None, **kwargs):
        model = create(name, pretrained=pretrained, **kwargs)
        if isinstance(pretrained_cfg, str) and pretrained_cfg:
            raise ValueError(f"{timm_name}: odenets presets have no pretrained tags, got "
                             f"{pretrained_cfg!r}")
        for extra in (pretrained_cfg, pretrained_cfg_overlay):
            if extra is not None and not isinstance(extra, str):
                extra = extra.to_dict() if hasattr(extra, "to_dict") else dict(extra)
                model.pretrained_cfg.update(extra)
        model.pretrained_cfg["architecture"] = timm_name
        if device is not None or dtype is not None:
            model = model.to(device=device, dtype=dtype)
        return model

    entry.__name__ = entry.__qualname__ = timm_name
    entry.__module__ = __name__
    entry.__doc__ = f"odenets preset {name!r}: {DOCS.get(name, '')} (odenets.create({name!r}))"
    return entry


def register_timm(prefix: str = "odenets_") -> list[str]:
    """Register every odenets preset with timm as ``prefix + name``; returns the timm names.

    Calling it again registers only presets added since (``odenets.models.register``). Raises
    ImportError when timm is not installed, ValueError for a prefix that is not a string without
    dots (timm reads ``name.tag``) or whose names timm already has for other models.
    """
    if not isinstance(prefix, str) or "." in prefix:
        raise ValueError(f"prefix must be a string without '.', got prefix={prefix!r}")
    try:
        from timm.models import is_model, register_model
    except ImportError as error:
        raise ImportError("odenets.register_timm() needs timm (pip install timm); odenets "
                          "itself works without it: odenets.create(...)") from error
    names = [prefix + name for name in sorted(PRESETS)]
    taken = [n for n in names if is_model(n) and n not in _ENTRYPOINTS]
    if taken:  # checked before registering anything
        raise ValueError(f"timm already has models named {taken[:3]} ({len(taken)} in all); "
                         f"choose another prefix (register_timm(prefix=...))")
    module = sys.modules[__name__]
    for name, timm_name in zip(sorted(PRESETS), names):
        if is_model(timm_name):  # registered by an earlier call
            continue
        entry = _entrypoint(name, timm_name)
        default_cfgs[timm_name] = _timm_cfg(name)
        setattr(module, timm_name, entry)  # timm lists entrypoints in the module's __all__
        register_model(entry)
        _ENTRYPOINTS[timm_name] = name
    return names


def _timm_cfg(name: str) -> dict:
    """The preset's default ``pretrained_cfg`` (as ``create(name)`` makes it), reduced to the
    fields timm's ``PretrainedCfg`` has."""
    import dataclasses

    from .features import pretrained_cfg
    from .registry import get_config
    cfg = pretrained_cfg(get_config(name, num_classes=10, in_channels=3))
    try:
        from timm.models import PretrainedCfg
        known = {f.name for f in dataclasses.fields(PretrainedCfg)}
    except ImportError:  # a timm without it keeps the whole dict
        known = set(cfg)
    return {k: v for k, v in cfg.items() if k in known and k != "architecture"}
