"""Metadata of a model: parameters, field evaluations and multiply-accumulates per forward.

MACs are counted by forward hooks on every Conv and Linear module during one eval-mode
forward on a seeded standard-normal input of ``input_size`` (`probe_input`), so they count the
calls that actually happen: a scheme with more field evaluations per step (RK4: 4, backward
Euler with K iterations: K) counts more. Conv MACs = output elements x (C_in / groups) x
kernel area; Linear: output elements x in_features. Elementwise work (BN, ReLU, the scheme's
additions) is not counted.

Why not zeros: a network of bias-free convolutions and freshly initialised BatchNorm maps a zero
image to a zero state, and f(0) = 0, so every continuous flow solves u' = 0. Its error estimate
is then 0, and an adaptive solver starts from its floor step (torchdiffeq: 1e-6 when |u0| and
|f(u0)| vanish) and grows it by its largest factor (10) every step: dopri5 takes 7 steps on
[0, 1], 2 + 7 x 6 = 44 evaluations per flow whatever the field, so ode_resnet20 and
hbode_resnet20 both read 132 (3 flows), where a forward on a random 28 x 28 image counts
78 and 60.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from solvers import checks

from .flow import Flow
from .momentum import Damping
from .models import create


def _mac_hook(counter):
    def hook(module, inputs, output):
        if isinstance(module, nn.modules.conv._ConvNd):
            per_out = module.in_channels // module.groups * math.prod(module.kernel_size)
        else:
            per_out = module.in_features
        counter[0] += output.numel() * per_out
    return hook


PROBE_SEED = 0  # seed of the input that `count_macs` (and so `info`) runs the model on


def probe_input(model: nn.Module, input_size) -> torch.Tensor:
    """A standard-normal tensor of ``input_size`` drawn from its own generator seeded with
    ``PROBE_SEED`` (the same input every call; the global RNG is left alone), on the device and
    in the floating dtype of ``model``'s first parameter."""
    param = next(model.parameters(), None)
    x = torch.randn(tuple(input_size), generator=torch.Generator().manual_seed(PROBE_SEED))
    if param is not None:
        x = x.to(param.device, param.dtype if param.is_floating_point() else x.dtype)
    return x


def count_macs(model: nn.Module, input_size=(1, 3, 32, 32)) -> int:
    """Multiply-accumulates of one eval-mode forward of ``model`` on `probe_input`."""
    counter = [0]
    handles = [m.register_forward_hook(_mac_hook(counter)) for m in model.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    was_training = model.training
    x = probe_input(model, input_size)
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return counter[0]


def evaluations(model: nn.Module) -> float:
    """Field evaluations per forward of the fixed-grid part: sum over `Flow` modules of steps x
    evaluations per step, plus one per transition block. Continuous (torchdiffeq / torchsde)
    flows are not included: their count is only known by running them (see `info`)."""
    total = 0.0
    for m in model.modules():
        if isinstance(m, Flow):
            total += m.evals_per_forward
    total += len(getattr(model, "transitions", ()))
    return total


def _forward_nfe(model: nn.Module) -> int:
    """Forward field evaluations counted so far by the continuous flows inside ``model``."""
    from .continuous import total_nfe  # torchdiffeq: imported when a count is asked for
    return total_nfe(model)["forward"]


def solver_name(model: nn.Module) -> str | None:
    """The solver name of a network (its config), or of its first flow; None if it has none."""
    solver = getattr(getattr(model, "config", None), "solver", None)
    if isinstance(solver, str):
        return solver
    for m in model.modules():
        if isinstance(m, Flow):
            return m.scheme.name
        if isinstance(getattr(m, "solver_name", None), str):  # continuous: ODEFlow, SDEFlow
            return m.solver_name
    return None


def _number(x):
    """``x`` as an int when it is integral (9.0 -> 9), else unchanged."""
    return int(x) if float(x).is_integer() else x


def info(model, input_size=(1, 3, 32, 32), **create_options) -> dict:
    """Metadata of a preset name (built with ``create_options``) or a model.

    The default ``input_size`` (1, 3, 32, 32) and the presets' default 10 classes are
    CIFAR-10's, as `odenets info` (``--dataset cifar10``) and `odenets list` assume.
    Returns ``{"name", "params", "coefficients", "blocks", "evaluations", "continuous_nfe",
    "macs", "input_size", "num_classes", "solver"}``: trainable parameters (scheme coefficients included), how
    many of them are scheme coefficients (learnable momentum damping included), residual blocks
    (fixed-grid flow steps + transitions), field evaluations per forward, multiply-accumulates
    for ``input_size`` (batch included) and the solver name. ``evaluations`` includes ``continuous_nfe``, the field evaluations of
    continuous (torchdiffeq / torchsde) flows counted during the MAC forward (eval mode, on
    `probe_input`: seeded standard-normal, not zeros, see the module docstring); for adaptive
    solvers that number depends on the input and the weights.
    """
    if not isinstance(model, (str, nn.Module)):
        raise ValueError(f"info takes a preset name or an nn.Module, got {type(model).__name__}")
    images = isinstance(model, str)  # a preset takes (N, C, H, W); a module its own shape
    sizes = isinstance(input_size, (tuple, list)) and all(checks.is_int(n, 1) for n in input_size)
    if not sizes or len(input_size) != 4 and (images or not input_size):
        want = "four integers >= 1, (N, C, H, W)" if images else "integers >= 1"
        raise ValueError(f"input_size must be {want}, got {input_size!r}")
    name = model if isinstance(model, str) else getattr(model, "name", type(model).__name__)
    if isinstance(model, str):
        if len(input_size) == 4:
            create_options.setdefault("in_channels", input_size[1])
        model = create(model, **create_options)
    flows = [m for m in model.modules() if isinstance(m, Flow)]
    coeffs = sum(p.numel() for f in flows for p in f.raw.values()) + sum(  # + learnable gammas
        p.numel() for m in model.modules() if isinstance(m, Damping) for p in m.parameters())
    nfe_before = _forward_nfe(model)
    macs = count_macs(model, input_size)
    nfe = _forward_nfe(model) - nfe_before
    return {
        "name": name,
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "coefficients": coeffs,
        "blocks": sum(f.steps for f in flows) + len(getattr(model, "transitions", ())),
        "evaluations": _number(evaluations(model) + nfe),
        "continuous_nfe": nfe,
        "macs": macs,
        "input_size": tuple(input_size),
        "num_classes": getattr(model, "num_classes", None),
        "solver": solver_name(model),
    }
