"""odenets: deep networks as numerical solvers of differential equations.

    flow  = odenets.build(field, solver="lm", steps=27)      # unroll a field with a scheme
    model = odenets.create("lm_resnet56", num_classes=100)  # a preset network
    odenets.list_models("lm_*"), odenets.available_solvers(), odenets.info("resnet20")
    odenets.coefficients(model)                             # learned k_n per flow, for plots
    odenets.register_timm()   # timm.create_model("odenets_lm_resnet20"), docs/timm.md
"""
__version__ = "0.1.0"

import sys as _sys

from . import _malloc, _openmp

_openmp.choose(_sys.modules)  # before torch loads: passive OpenMP waits on a busy machine
_malloc.choose()  # keep large freed blocks: no page faults on every state-sized tensor

from . import fields
from .build import available_solvers, build, coefficients
from .flow import Flow
from .info import info
from .models import NetConfig, Network, create, list_models, register_timm

__all__ = ["Flow", "NetConfig", "Network", "available_solvers", "build", "coefficients", "create",
           "fields", "info", "list_models", "register_timm", "__version__"]
