"""odenets: deep networks as numerical solvers of differential equations.

    flow  = odenets.build(field, solver="lm", steps=27)      # unroll a field with a scheme
    model = odenets.create("lm_resnet56", num_classes=100)  # a preset network
    odenets.list_models("lm_*"), odenets.available_solvers(), odenets.info("resnet20")
    odenets.coefficients(model)                             # learned k_n per flow, for plots
    odenets.register_timm()   # timm.create_model("odenets_lm_resnet20"), docs/timm.md
"""
__version__ = "0.1.0"

import os as _os
import sys as _sys

if "torch" not in _sys.modules:  # libgomp reads this once, when torch loads it
    # Threads waiting at an OpenMP barrier sleep instead of spinning. On a busy 2-core machine a
    # 2-thread resnet20 training step took 4-6x the wall and CPU time while spinning, on an idle
    # one no longer (benchmarks/results/levers_cpu.md). OMP_WAIT_POLICY=ACTIVE restores spinning.
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import fields
from .build import available_solvers, build, coefficients
from .flow import Flow
from .info import info
from .models import NetConfig, Network, create, list_models, register_timm

__all__ = ["Flow", "NetConfig", "Network", "available_solvers", "build", "coefficients", "create",
           "fields", "info", "list_models", "register_timm", "__version__"]
