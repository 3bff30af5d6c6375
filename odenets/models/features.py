"""timm's model metadata and feature extraction for `Network`: ``feature_info``, ``pretrained_cfg``,
``FeatureNet`` (what ``create(..., features_only=True)`` returns) and the torch.fx rule.

Feature points (timm's ``feature_info``, one dict per point: ``num_chs``, ``reduction`` = input
size / feature size, ``module`` = the module whose output it is):

    0      the stem before its max-pool: "stem" (CIFAR stem, reduction 1) or "stem.relu"
           (ImageNet stem conv7x7/2, reduction 2, as timm's resnet "act1")
    1..S   the output of stage i-1, "stages.{i-1}" (reduction x its stride)

For pre-activation nets the final BN-ReLU belongs to the head (parameters ``head.bn.*``), so the
last point is the stage's un-normalised output, as is ``forward_features``.

torch.fx: a `Flow` (and a continuous flow) is a leaf of every trace: `call_leaf` records one
``call_module`` node for it instead of tracing through the scheme's Python loop, so plain
``torch.fx.symbolic_trace`` and torchvision/timm feature extractors work on every preset, the
stochastic ones included (their noise is drawn inside the flow's call).
"""
from __future__ import annotations

import torch
from torch import nn

from solvers import checks

from ..data.cifar import STATS as CIFAR_STATS
from ..data.idx import MEAN as FMNIST_MEAN, STD as FMNIST_STD
from ..data.registry import DATASETS

IMAGENET = dict(input_size=(3, 224, 224), num_classes=1000, mean=(0.485, 0.456, 0.406),
                std=(0.229, 0.224, 0.225), crop_pct=0.875, interpolation="bilinear")


def call_leaf(module: nn.Module, u, *args, **kwargs):
    """``module(u, *args, **kwargs)``; while torch.fx traces (``u`` a Proxy), one ``call_module``
    node for ``module`` instead (its forward is not traced into)."""
    if isinstance(u, torch.fx.Proxy):
        tracer, path = u.tracer, u.tracer.path_of_module(module)
        # torchvision's feature-extraction tracer names nodes after the module being called
        outer = getattr(tracer, "current_module_qualname", None)
        if outer is not None:
            tracer.current_module_qualname = path
        try:
            return tracer.create_proxy("call_module", path, (u, *args), kwargs)
        finally:
            if outer is not None:
                tracer.current_module_qualname = outer
    return module(u, *args, **kwargs)


def _check_images(x, in_channels: int, who: str = "Network", dtype=None):
    """``x`` itself, after a ValueError unless it is a batch of ``in_channels``-channel images."""
    if not x.is_floating_point():
        raise ValueError(f"{who} expects floating-point images, got {x.dtype} (e.g. "
                         f"x.float() / 255, then normalise)")
    if dtype is not None and x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(f"{who} holds {dtype} weights and got {x.dtype} images: convert one "
                         f"(x.to({dtype}) or model.to({x.dtype}))")
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"{who} expects images of shape (N, {in_channels}, H, W), got "
            f"{tuple(x.shape)}" + (f"; for {x.shape[1]}-channel images create it with "
                                   f"in_channels={x.shape[1]}" if x.dim() == 4 else ""))
    return x


torch.fx.wrap("_check_images")  # traced as one call: the check stays in the traced graph


def weights_dtype(module: nn.Module):
    """The dtype of ``module``'s first floating-point parameter (None: it has none)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), None)


def check_images(x, in_channels: int, who: str = "Network", dtype=None):
    """`_check_images`, a traced call under torch.fx (its shape tests need real tensors)."""
    return _check_images(x, in_channels, who, dtype)


def feature_info(cfg) -> list[dict]:
    """timm's ``feature_info`` of a `NetConfig`: the points listed in the module docstring."""
    width = cfg.stem_width or cfg.widths[0]
    if cfg.stem == "imagenet":
        info, reduction = [dict(num_chs=width, reduction=2, module="stem.relu")], 4
    else:
        info, reduction = [dict(num_chs=width, reduction=1, module="stem")], 1
    for i, (w, s) in enumerate(zip(cfg.widths, cfg.strides)):
        reduction *= s
        info.append(dict(num_chs=w, reduction=reduction, module=f"stages.{i}"))
    return info


def _dataset(cfg) -> tuple[str | None, dict]:
    """The dataset a config is made for and its timm data config (input size, mean, std, ...)."""
    if cfg.stem == "imagenet":
        return "imagenet", dict(IMAGENET, input_size=(cfg.in_channels, 224, 224))
    if cfg.in_channels == 1:
        name, (mean, std) = "fashion-mnist", (FMNIST_MEAN, FMNIST_STD)
    elif cfg.in_channels == 3:
        name = {100: "cifar100", 20: "cifar100-coarse"}.get(cfg.num_classes, "cifar10")
        mean, std = CIFAR_STATS["cifar10" if name == "cifar10" else "cifar100"]
    else:  # no dataset of ours has this many channels: data in [0, 1] mapped to [-1, 1]
        size = (cfg.in_channels, 32, 32)
        return None, dict(input_size=size, num_classes=cfg.num_classes, mean=(0.5,) * size[0],
                          std=(0.5,) * size[0], crop_pct=1.0, interpolation="bilinear")
    spec = DATASETS[name]
    return name, dict(input_size=spec.input_size, num_classes=spec.num_classes, mean=tuple(mean),
                      std=tuple(std), crop_pct=1.0, interpolation="bilinear")


def pretrained_cfg(cfg, architecture: str | None = None) -> dict:
    """timm's ``pretrained_cfg`` for a `NetConfig` (no weights: ``url`` empty). The dataset is
    ImageNet for the ImageNet stem, else Fashion-MNIST for 1 input channel, CIFAR-100 for 100
    (or 20 coarse) classes, CIFAR-10 otherwise; mean/std are that dataset's training statistics
    (pixels in [0, 1]), as odenets' own data pipeline normalises."""
    dataset, data = _dataset(cfg)
    reduction = feature_info(cfg)[-1]["reduction"]
    _, h, w = data["input_size"]
    return dict(architecture=architecture, dataset=dataset, url="", hf_hub_id=None, **data,
                pool_size=(-(-h // reduction), -(-w // reduction)), crop_mode="center",
                fixed_input_size=False, first_conv="stem.conv", classifier="head.fc",
                license=None)


class FeatureInfo(list):
    """timm's ``FeatureInfo`` as a list of dicts, with its accessors: ``channels()``,
    ``reduction()``, ``module_name()`` (all points, or the one at ``idx``)."""

    def get(self, key: str, idx: int | None = None):
        return [d[key] for d in self] if idx is None else self[idx][key]

    def channels(self, idx: int | None = None):
        return self.get("num_chs", idx)

    def reduction(self, idx: int | None = None):
        return self.get("reduction", idx)

    def module_name(self, idx: int | None = None):
        return self.get("module", idx)


def check_out_indices(out_indices, n: int) -> tuple[int, ...]:
    """``out_indices`` as sorted non-negative indices into ``n`` points (negatives count from the
    end, as in timm); None: all points."""
    if out_indices is None:
        return tuple(range(n))
    # a list or tuple of integers (a str of digits or 1.0 is no index: refused, not converted)
    values = (list(out_indices) if isinstance(out_indices, (list, tuple))
              and all(checks.is_int(i) for i in out_indices) else None)
    if not values or any(not -n <= i < n for i in values):
        raise ValueError(f"out_indices must be a non-empty list or tuple of integer feature indices in "
                         f"[-{n}, {n - 1}] (0: stem, 1..{n - 1}: stages), got {out_indices!r}")
    indices = [i % n for i in values]
    if len(set(indices)) != len(indices):
        raise ValueError(f"out_indices must name each feature map once (negatives count from the "
                         f"end: -1 is {n - 1}), got {out_indices!r}")
    return tuple(sorted(indices))


class FeatureNet(nn.Module):
    """A network without its head, returning the feature maps at ``out_indices`` (a list, as
    timm's ``FeatureListNet``); built by ``odenets.create(name, features_only=True)``.

    Holds the network's own ``stem`` and ``stages`` (up to the last point needed; same parameter
    names, so a `Network` state dict loads with ``strict=False``). ``feature_info`` lists the
    returned points only.
    """

    def __init__(self, network: nn.Module, out_indices=None):
        super().__init__()
        info = feature_info(network.config)
        self.out_indices = check_out_indices(out_indices, len(info))
        self.config, self.pretrained_cfg = network.config, dict(network.pretrained_cfg)
        self.name = getattr(network, "name", None)
        self.stem = network.stem
        self.stages = nn.ModuleList(list(network.stages)[:max(self.out_indices)])
        self.feature_info = FeatureInfo(info[i] for i in self.out_indices)
        self._stem_point = info[0]["module"]

    @property
    def default_cfg(self) -> dict:
        return self.pretrained_cfg

    def forward(self, x):
        u = check_images(x, self.config.in_channels, type(self).__name__, weights_dtype(self.stem))
        out = []
        for name, layer in self.stem.named_children():
            u = layer(u)
            if f"stem.{name}" == self._stem_point and 0 in self.out_indices:
                out.append(u)
        if self._stem_point == "stem" and 0 in self.out_indices:
            out.append(u)
        state = None
        for i, stage in enumerate(self.stages, start=1):
            u, state = stage(u, state)
            if i in self.out_indices:
                out.append(u)
        return out
