"""Training: config, SGD + schedules, the epoch loop, atomic checkpoints, DDP.

    from odenets.train import TrainConfig, train
    summary = train(TrainConfig(model="lm_resnet20", dataset="fashion-mnist", epochs=10))
    summary = train(TrainConfig.from_dict(saved), resume=True)   # continue a run directory

The command line (`odenets train`) builds the same `TrainConfig` from its flags.
"""
from .checkpoint import load as load_checkpoint, save_atomic
from .config import SCHEDULES, TrainConfig, add_arguments, config_from_args
from .epoch import TrainingDivergedError, evaluate
from .loop import train
from ..build import coefficients
from .model import build_model
from .optim import build_optimizer, lr_factor, param_groups
from .precise_bn import recompute_bn_stats

__all__ = ["SCHEDULES", "TrainConfig", "TrainingDivergedError", "add_arguments", "build_model",
           "build_optimizer", "coefficients", "config_from_args", "evaluate", "load_checkpoint",
           "lr_factor", "param_groups", "recompute_bn_stats", "save_atomic", "train"]
