"""Networks assembled from flows: presets registry, the shared builder, transitions."""
from . import presets  # noqa: F401  (registers the presets)
from .network import NetConfig, Network, Stage
from .registry import PRESETS, create, get_config, list_models, register
from .transitions import ProjectionShortcut, Transition, ZeroPadShortcut

__all__ = ["NetConfig", "Network", "PRESETS", "ProjectionShortcut", "Stage", "Transition",
           "ZeroPadShortcut", "create", "get_config", "list_models", "register"]
