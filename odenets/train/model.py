"""Building the network a `TrainConfig` names.

``cfg.model`` is a preset name (``odenets.list_models()``) built by ``odenets.create(name,
num_classes=, in_channels=, **cfg.model_args)`` (plus ``solver=cfg.solver`` when given), or
``"package.module:function"``, a factory called with the same keywords, for models that live
outside odenets. The ``odenets`` functions are looked up at call time.

Trust: a run directory is data. A ``module:function`` written in its ``config.json`` is never
imported on the directory's word (`check_run_model`): the person running the command names it
again (``--model module:function``) or passes ``--trust-run-code``. Presets are built from the
registry and need neither.
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys
from pathlib import Path

from torch import nn

from solvers import checks

from ..build import available_solvers, is_fixed_grid
from ..data.registry import get_spec
from ..models import create, list_models
from . import checkpoint
from .config import read_config
from .rundir import CONFIG


def check_model_name(name: str) -> None:
    """Raise ValueError listing the presets if ``name`` is neither a preset nor 'module:fn'."""
    if ":" in name:
        return
    names = list_models()
    if name not in names:
        raise checks.unknown("model", name, names)


def check_run_model(saved, where, given: str | None = None, trust: bool = False) -> None:
    """Refuse to build a run's model from its config file ``where`` unless that is safe.

    ``saved`` is the config's ``model``; ``given`` the ``--model`` the user typed (None if not
    given); ``trust`` is ``--trust-run-code``. A preset is safe; a ``module:function`` is
    imported and called only when ``given`` names it or ``trust`` is set. A ``given`` model
    other than the run's raises ValueError too (the checkpoint would not fit)."""
    if not isinstance(saved, str) or not saved:
        raise ValueError(f"{where}: 'model' must be a model name (a string), got {saved!r}")
    if given is not None and given != saved:
        raise ValueError(f"--model {given} differs from the run's model {saved!r} ({where}); "
                         "the checkpoint holds that model's weights")
    if ":" in saved and given is None and not trust:
        raise ValueError(f"{where} names the model factory {saved!r}, code odenets does not "
                         f"import on a run directory's word: pass --model {saved} to import "
                         "and call it (or --trust-run-code)")


def import_from_cwd(model: str | None) -> None:
    """Put the working directory on ``sys.path`` (first) for a ``module:function`` ``model``
    the user typed on the command line, as ``python -m odenets`` does; a no-op otherwise."""
    if not model or ":" not in model:
        return
    cwd = os.getcwd()
    if cwd not in (os.path.abspath(p or os.curdir) for p in sys.path):
        sys.path.insert(0, cwd)


def check_solver_name(name: str) -> None:
    if is_fixed_grid(name):
        return
    names = available_solvers()
    if name not in names:
        raise checks.unknown("solver", name, names)


def build_model(cfg, num_classes: int, in_channels: int) -> nn.Module:
    """The network for ``cfg`` (see the module docstring)."""
    kwargs = dict(cfg.model_args)
    reserved = sorted({"num_classes", "in_channels", "in_chans"} & set(kwargs))
    if reserved:
        raise ValueError(f"model_args (--model-arg) cannot set {', '.join(reserved)}: classes and "
                         "input channels come from --dataset")
    if cfg.solver is not None and "solver" in kwargs:
        raise ValueError(f"--solver {cfg.solver} and --model-arg solver={kwargs['solver']} both "
                         "set the scheme; give one")
    if ":" in cfg.model:
        module_name, _, fn_name = cfg.model.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), fn_name)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot load model factory {cfg.model!r}: {e}") from None
        if cfg.solver is not None:
            kwargs["solver"] = cfg.solver
        kwargs.update(num_classes=num_classes, in_channels=in_channels)
        if _check_signature(factory, cfg.model, kwargs):
            model = factory(**kwargs)
        else:  # no signature to check (some builtins): a TypeError is the call's
            try:
                model = factory(**kwargs)
            except TypeError as e:
                raise _bad_factory(cfg.model, kwargs, e) from None
    else:  # names were checked at the boundary (`loop.validate`); create checks its own
        if cfg.solver is not None:
            kwargs["solver"] = cfg.solver
        model = create(cfg.model, num_classes=num_classes, in_channels=in_channels, **kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {cfg.model!r} gave a {type(model).__name__}, not an nn.Module")
    return model


def _check_signature(factory, name: str, kwargs: dict) -> bool:
    """Raise ValueError if ``factory``'s signature does not take the keywords ``kwargs`` (so a
    TypeError raised inside the factory keeps its traceback); False if it has no signature."""
    if not callable(factory):
        raise ValueError(f"model factory {name!r} is a {type(factory).__name__}, not a function")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return False
    try:
        signature.bind(**kwargs)
    except TypeError as e:
        raise _bad_factory(name, kwargs, e) from None
    return True


def _bad_factory(name: str, kwargs: dict, error: TypeError) -> ValueError:
    extra = sorted(set(kwargs) - {"num_classes", "in_channels"})
    also = f" and the keywords {', '.join(extra)} (--model-arg/--solver)" if extra else ""
    return ValueError(f"model factory {name!r} must accept num_classes=, in_channels={also}: "
                      f"{error}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_run_model(run_dir, map_location="cpu", model: str | None = None,
                   trust_run_code: bool = False):
    """``(model, cfg, state)``: the network of a run directory with its last checkpoint's
    weights. Classes and input channels come from the dataset's spec, so no data is read.
    ``model`` (``--model``) and ``trust_run_code`` (``--trust-run-code``) are the caller's
    consent to import a ``module:function`` the config names (`check_run_model`)."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir / CONFIG)
    state = checkpoint.load(run_dir / checkpoint.NAME, map_location=map_location,
                            keys=("epoch", "model"))
    check_run_model(cfg.model, run_dir / CONFIG, model, trust_run_code)
    spec = get_spec(cfg.dataset)
    model = build_model(cfg, spec.num_classes, spec.input_size[0])
    checkpoint.load_model_state(model, state["model"], run_dir / checkpoint.NAME)
    return model, cfg, state
