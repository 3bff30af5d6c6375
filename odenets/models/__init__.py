"""Networks assembled from flows: presets registry, the shared builder, transitions."""
from . import presets  # noqa: F401  (registers the presets)
from .features import FeatureInfo, FeatureNet
from .head import ClassifierHead
from .network import NetConfig, Network, Stage
from .registry import PRESETS, create, get_config, list_models, register
from .timm_bridge import register_timm
from .transitions import ProjectionShortcut, Transition, ZeroPadShortcut

__all__ = ["ClassifierHead", "FeatureInfo", "FeatureNet", "NetConfig", "Network", "PRESETS",
           "ProjectionShortcut", "Stage", "Transition", "ZeroPadShortcut", "create", "get_config",
           "list_models", "register", "register_timm"]
