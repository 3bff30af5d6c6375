"""The one network builder every preset uses: stem -> [transition + flow] per stage -> head.

    NetConfig(block="basic", depths=(3, 3, 3), widths=(16, 32, 64), solver="lm")  # LM-ResNet-20

A stage of depth d is d residual blocks: a `Transition` first when the stride or width changes,
then a `Flow` of the remaining steps (all d steps when the shape is unchanged).

Every `Network` has timm's model interface (docs/timm.md): ``forward_features`` (stem + stages,
(N, C, H, W)), ``forward_head(u, pre_logits=False)``, ``get_classifier``, ``reset_classifier``,
``num_classes``, ``num_features``, ``global_pool``, ``drop_rate``, ``pretrained_cfg`` /
``default_cfg``, ``feature_info``; ``drop_path_rate`` is stochastic depth as an Euler-Maruyama
step with Bernoulli noise (`_survival`).
"""
from __future__ import annotations

import dataclasses
import math
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


from solvers import checks

from ..build import build_stage
from ..flow import Flow
from ..fields import BLOCKS, Coupled, ShakeBasicPair, TwoBranch, make_block
from .features import call_leaf, check_images, feature_info, pretrained_cfg, weights_dtype
from .head import ClassifierHead, check_head
from .transitions import HISTORIES, SHORTCUTS, Transition, make_shortcut

PAIRS = (None, "shake", "coupled")
# blocks whose two shake branches are one field (`ShakeBasicPair`); others: `TwoBranch`
MERGED_SHAKE_BLOCKS = ("basic",)


@dataclass
class NetConfig:
    block: str = "basic"                 # field family: basic | preact | bottleneck | resnext
    block_options: dict = field(default_factory=dict)  # e.g. cardinality=8 for resnext
    depths: tuple = (3, 3, 3)            # residual blocks per stage (a transition included)
    widths: tuple = (16, 32, 64)         # output channels of each stage
    strides: tuple = (1, 2, 2)           # stride of each stage's first block
    stem: str = "cifar"                  # cifar: conv3x3 | imagenet: conv7x7/2 + maxpool 3x3/2
    stem_width: int | None = None        # stem output channels (None: widths[0])
    shortcut: str = "A"                  # transitions: A = subsample + zero-pad, B = 1x1 conv + BN
    post_activation: bool = True         # relu(u + f(u)) per block (He 2016a); False: u + f(u)
    solver: str = "euler"                # scheme of every flow (see solvers.available())
    solver_options: dict = field(default_factory=dict)  # e.g. iterations=2, noise="bernoulli"
    transition_history: str = "project"  # multistep history across transitions: project | restart
                                         # (not the lmm scheme's history=, a solver_options key)
    survival: float | None = None        # stochastic depth: p decays linearly 1 -> survival
    drop_path_rate: float = 0.0          # timm's stochastic depth: drop prob. 0 -> rate (replaces
                                         # survival); Euler steps become Euler-Maruyama Bernoulli
    pair: str | None = None              # None | "shake" (2 half-width branches) | "coupled" (rev)
    tied: bool = False                   # one shared field per flow: an ODE, dt = 1 / steps
                                         # (continuous solvers: always tied, t in [0, 1])
    per_evaluation_norm: bool = True     # BN statistics per field call within a step (RK, poly)
    num_classes: int = 10                # classifier outputs (0: no classifier, pooled features)
    global_pool: str = "avg"             # head pooling: avg | max | "" (none, needs num_classes=0)
    drop_rate: float = 0.0               # dropout on the pooled features, before the classifier
    in_channels: int = 3                 # input image channels

    def check(self):
        """Raise ValueError naming the field, its value and what it must be, for any bad field."""
        for name in ("block", "stem", "shortcut"):
            _expect(self, name, isinstance(getattr(self, name), str), "a string")
        _expect(self, "solver", isinstance(self.solver, str) or callable(getattr(self.solver, "step", None)),
                "a solver name (a string, see odenets.available_solvers()) or a solvers.Scheme")
        for name in ("block_options", "solver_options"):
            _expect(self, name, isinstance(getattr(self, name), dict),
                    "a dict of options, e.g. {'iterations': 2}")
        for name in ("post_activation", "tied", "per_evaluation_norm"):
            _expect(self, name, isinstance(getattr(self, name), bool), "True or False")
        for name in ("depths", "widths", "strides"):
            _expect(self, name, isinstance(getattr(self, name), (tuple, list)),
                    "a tuple of integers >= 1, one per stage")
            values = getattr(self, name)
            if any(not _positive_int(v) for v in values):
                raise ValueError(f"every entry of {name} must be an integer >= 1 (every stage needs "
                                 f"depth >= 1), got {name}={values!r}")
        n = len(self.depths)
        if not (len(self.widths) == len(self.strides) == n) or n == 0:
            raise ValueError(f"depths, widths and strides must have one entry per stage, got "
                             f"{self.depths}, {self.widths}, {self.strides}")
        _expect(self, "in_channels", _positive_int(self.in_channels), "an integer >= 1")
        check_head(self.num_classes, self.global_pool, self.drop_rate)
        rate = self.drop_path_rate
        _expect(self, "drop_path_rate", checks.is_real(rate)
                and 0.0 <= rate < 1.0, "a number in [0, 1) (the last block's drop probability)")
        _expect(self, "stem_width", self.stem_width is None or _positive_int(self.stem_width),
                "None (widths[0]) or an integer >= 1")
        if self.block not in BLOCKS:
            raise ValueError(f"unknown block {self.block!r}; available: {', '.join(sorted(BLOCKS))}")
        if self.transition_history not in HISTORIES:
            raise ValueError(f"unknown transition_history {self.transition_history!r} (what multistep "
                             f"schemes keep at stage transitions); available: {', '.join(HISTORIES)}")
        if self.pair not in PAIRS:
            raise ValueError(f"unknown pair {self.pair!r}; available: None, 'shake', 'coupled'")
        if self.stem not in ("cifar", "imagenet"):
            raise ValueError(f"unknown stem {self.stem!r}; available: cifar, imagenet")
        if self.shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {self.shortcut!r}; available: {', '.join(SHORTCUTS)}")
        if self.survival is not None and (not checks.is_real(self.survival) or not 0.0 < self.survival <= 1.0):
            raise ValueError(f"survival must lie in (0, 1], got {self.survival!r}")


def _positive_int(value) -> bool:
    return checks.is_int(value, 1)


def _expect(cfg: NetConfig, name: str, ok: bool, expected: str) -> None:
    if not ok:
        value = getattr(cfg, name)
        raise ValueError(f"{name} must be {expected}, got {name}={value!r} ({type(value).__name__})")


def _stem(cfg: NetConfig) -> nn.Sequential:
    width = cfg.stem_width or cfg.widths[0]
    if cfg.stem == "imagenet":
        layers = dict(conv=nn.Conv2d(cfg.in_channels, width, 7, 2, 3, bias=False),
                      bn=nn.BatchNorm2d(width), relu=nn.ReLU(inplace=True),
                      pool=nn.MaxPool2d(3, 2, 1))
    elif cfg.block != "preact":
        layers = dict(conv=nn.Conv2d(cfg.in_channels, width, 3, 1, 1, bias=False),
                      bn=nn.BatchNorm2d(width), relu=nn.ReLU(inplace=True))
    else:  # pre-activation: the first block's BN-ReLU follows the stem convolution
        layers = dict(conv=nn.Conv2d(cfg.in_channels, width, 3, 1, 1, bias=False))
    return nn.Sequential(OrderedDict(layers))


def _head(cfg: NetConfig, channels: int) -> ClassifierHead:
    return ClassifierHead(channels, cfg.num_classes, pre_norm=cfg.block == "preact",
                          global_pool=cfg.global_pool, drop_rate=cfg.drop_rate)


def _flow_field(cfg: NetConfig, channels: int) -> nn.Module:
    """The field of one flow step: one block, or a pair for shake / reversible schemes."""
    if cfg.pair is None:
        return make_block(cfg.block, channels, channels, 1, **cfg.block_options)
    if cfg.pair == "shake" and cfg.block in MERGED_SHAKE_BLOCKS:  # both in 2 convolutions, not 4
        try:
            return ShakeBasicPair(channels, channels // 2, **cfg.block_options)
        except TypeError as e:
            raise ValueError(f"invalid options {sorted(cfg.block_options)} for block 'basic': {e}") from None
    if cfg.pair == "shake":  # two branches of half the hidden width: ~ the parameters of one block
        return TwoBranch(*(make_block(cfg.block, channels, channels, 1, hidden=channels // 2,
                                      **cfg.block_options) for _ in range(2)))
    if channels % 2:
        raise ValueError(f"pair='coupled' splits channels in halves; width {channels} is odd")
    half = channels // 2  # F, G: C/2 -> C -> C/2, together the 3x3 weights of one C -> C block
    return Coupled(*(make_block(cfg.block, half, half, 1, hidden=channels, **cfg.block_options)
                     for _ in range(2)))


def _survival(cfg: NetConfig) -> list[float] | None:
    """Survival probabilities p_l of stochastic depth, one per block over all L = sum(depths)
    blocks (transitions count, but stay deterministic), or None for no stochastic depth.

    ``drop_path_rate`` r > 0 (timm, replaces ``survival``): block l = 0..L-1 drops with
    probability r l / (L - 1), timm's ``linspace(0, r, L)``: p_l = 1 - r l / (L - 1) (p = 1 when
    L = 1). Else ``survival`` p_L (Huang et al. 2016): p_l = 1 - l / L (1 - p_L), l = 1..L.
    A flow step with survival p is the Euler-Maruyama step u + eta f, eta ~ Bernoulli(p) (drift
    p f, diffusion sqrt(p (1 - p)) f); in eval mode u + p f (Huang et al.'s test-time rule).
    """
    total = sum(cfg.depths)
    if cfg.drop_path_rate:
        return [1.0 - cfg.drop_path_rate * l / max(total - 1, 1) for l in range(total)]
    if cfg.survival is None:
        return None
    return [1.0 - (l / total) * (1.0 - cfg.survival) for l in range(1, total + 1)]


def _solver(cfg: NetConfig) -> tuple:
    """(solver, solver_options) of the flows: with ``drop_path_rate`` a forward-Euler flow
    becomes Euler-Maruyama with Bernoulli noise (stochastic depth is that SDE step); other
    schemes have no drop-path step and are rejected."""
    options = dict(cfg.solver_options)
    if not cfg.drop_path_rate:
        return cfg.solver, options
    if cfg.solver == "euler":
        return "euler_maruyama", {**options, "noise": "bernoulli"}
    name = cfg.solver if isinstance(cfg.solver, str) else getattr(cfg.solver, "name", None)
    noise = options.get("noise", "gaussian") if isinstance(cfg.solver, str) else \
        getattr(cfg.solver, "noise", None)
    if name == "euler_maruyama" and noise == "bernoulli":
        return cfg.solver, options
    raise ValueError(f"drop_path_rate={cfg.drop_path_rate} is stochastic depth, an Euler-Maruyama "
                     f"step with Bernoulli noise: it needs forward-Euler flows (solver 'euler': "
                     f"resnet*, preact_resnet*, resnet50, resnext29_*) or solver 'euler_maruyama' "
                     f"with noise='bernoulli' (sd_resnet*), got solver={cfg.solver!r}"
                     f"{f' with noise={noise!r}' if name == 'euler_maruyama' else ''}")


def _transition(cfg: NetConfig, channels: int, width: int, stride: int, flow, act) -> Transition:
    """The block that changes the shape before ``flow`` (its scheme's history rule applies)."""
    return Transition(make_block(cfg.block, channels, width, stride, **cfg.block_options),
                      make_shortcut(cfg.shortcut, channels, width, stride),
                      flow.scheme if isinstance(flow, Flow) else None, cfg.transition_history, act)


def _take_indices(n: int, indices) -> set[int]:
    """timm's ``feature_take_indices``: an int k -> the last k stages; a sequence -> those
    (negative from the end); None -> all."""
    if indices is None:
        return set(range(n))
    if isinstance(indices, int) and not isinstance(indices, bool):
        if not 0 < indices <= n:
            raise ValueError(f"indices must be in [1, {n}] (the last n stages), got {indices}")
        return set(range(n - indices, n))
    values = list(indices)
    if not values or not all(isinstance(i, int) and -n <= i < n for i in values):
        raise ValueError(f"indices must be stage indices in [-{n}, {n - 1}], got {indices!r}")
    return {i % n for i in values}


class Stage(nn.Module):
    """An optional `Transition` followed by an optional `Flow`; passes the scheme state on."""

    def __init__(self, transition: nn.Module | None, flow: nn.Module | None):
        super().__init__()
        self.transition, self.flow = transition, flow

    def forward(self, u, state=None):
        if self.transition is not None:
            u, state = self.transition(u, state)
        if isinstance(self.flow, Flow):  # call_leaf: one node under torch.fx (features.py)
            u, state = call_leaf(self.flow, u, state=state, return_state=True)
        elif self.flow is not None:   # a continuous-depth flow (odenets.continuous): no history
            u, state = call_leaf(self.flow, u), None
        return u, state


class Network(nn.Module):
    """x -> stem -> stages (transitions + flows, scheme history carried across) -> head."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        cfg.check()
        self.config = cfg
        # one draw, whatever the preset builds below; on the CPU even under torch.device("meta")
        init_seed = int(torch.randint(2 ** 62, (), device="cpu"))
        self.stem = _stem(cfg)
        solver, solver_options = _solver(cfg)
        survival = _survival(cfg)
        act = "relu" if cfg.post_activation else None
        channels, block_index, stages, flow = cfg.stem_width or cfg.widths[0], 0, [], None
        history = 0  # past states the scheme carries into the next flow (multistep schemes)
        for depth, width, stride in zip(cfg.depths, cfg.widths, cfg.strides):
            needs_transition = stride != 1 or width != channels
            steps = depth - needs_transition
            coeffs = None
            if survival is not None:
                start = block_index + needs_transition
                coeffs = {"p": survival[start:start + steps]}
            stage_flow = None
            if steps:  # shares the previous flow's scheme: one noise stream per network
                flow = stage_flow = build_stage(
                    lambda: _flow_field(cfg, width), solver, steps, tied=cfg.tied, activation=act,
                    coefficients=coeffs, channels=width, share=flow,
                    per_evaluation_norm=cfg.per_evaluation_norm, **solver_options)
            transition = _transition(cfg, channels, width, stride, stage_flow, act) \
                if needs_transition else None
            if transition is not None:
                history = int(transition._project)  # "project" leaves S(u_n), "restart" none
            if isinstance(stage_flow, Flow):
                stage_flow.drop_unreachable_coefficients(history)
                history = min(stage_flow.scheme.past_states, history + steps)
            stages.append(Stage(transition, stage_flow))
            channels, block_index = width, block_index + depth
        self.stages = nn.ModuleList(stages)
        self.head = _head(cfg, channels)
        self.feature_info = feature_info(cfg)
        self.pretrained_cfg = pretrained_cfg(cfg)
        self._init_weights(init_seed)

    def _init_weights(self, seed: int):
        """Conv: Kaiming normal (fan_out); Linear: torch's default; BatchNorm: weight 1, bias 0.

        Each module draws from its own generator seeded by (``seed``, its qualified name), so two
        presets built under the same ``torch.manual_seed`` start with identical weights in every
        part they share by name (resnet20 and lm_resnet20: all but LM's k_n): paired seeds."""
        for name, m in self.named_modules():
            if not isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                continue
            g = torch.Generator().manual_seed((seed + zlib.crc32(name.encode())) % 2 ** 63)
            with torch.no_grad():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
                elif isinstance(m, nn.Linear):
                    nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
                    if m.bias is not None:
                        bound = 1 / math.sqrt(m.in_features)
                        nn.init.uniform_(m.bias, -bound, bound, generator=g)
                else:
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward_features(self, x):
        """Images (N, in_channels, H, W) -> the last stage's feature map (N, num_features, h, w)."""
        u, state = self.stem(check_images(x, self.config.in_channels, type(self).__name__,
                                            weights_dtype(self.stem))), None
        for stage in self.stages:
            u, state = self._run_stage(stage, u, state)
        return u

    def _run_stage(self, stage, u, state):
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return checkpoint(stage, u, state, use_reentrant=False)
        return stage(u, state)

    # -- timm's model API: gradient checkpointing, parameter groups, intermediates --------------
    grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage in backward instead of keeping its activations (timm's API;
        a stochastic stage re-draws the same noise: checkpoint restores the RNG state)."""
        self.grad_checkpointing = bool(enable)

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's parameter groups (layer-wise learning-rate decay): the stem, then one group per
        stage (``coarse``) or per stage and flow step / transition."""
        blocks = r"^stages\.(\d+)" if coarse else [(r"^stages\.(\d+)\.transition", (0,)),
                                                    (r"^stages\.(\d+)\.flow", (1,))]
        return dict(stem=r"^stem", blocks=blocks)

    def forward_intermediates(self, x, indices=None, norm: bool = False, stop_early: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False):
        """timm's ``forward_intermediates``: the feature maps after the stages selected by
        ``indices`` (an int n: the last n; a list of stage indices; None: all) and, unless
        ``intermediates_only``, the final feature map (``forward_features``' output)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take = _take_indices(len(self.stages), indices)
        u, state = self.stem(check_images(x, self.config.in_channels, type(self).__name__,
                                            weights_dtype(self.stem))), None
        out = []
        for i, stage in enumerate(self.stages):
            u, state = self._run_stage(stage, u, state)
            if i in take:
                out.append(u)
            if stop_early and i == max(take):
                break
        return out if intermediates_only else (u, out)

    def prune_intermediate_layers(self, indices=1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """timm's: drop the stages after the last one ``indices`` selects (and the head)."""
        take = _take_indices(len(self.stages), indices)
        self.stages = self.stages[:max(take) + 1]
        if prune_head:
            self.reset_classifier(0, "")
        return sorted(take)

    @property
    def head_hidden_size(self) -> int:
        """Features entering the classifier (timm's name; no hidden pre-logits layer here)."""
        return self.num_features

    def forward_head(self, u, pre_logits: bool = False):
        """Feature map -> logits (N, num_classes); ``pre_logits``: the pooled features (N, C)."""
        return self.head(u, pre_logits=pre_logits)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    # -- timm's model interface: the head's attributes, read through ---------------------------------
    num_classes = property(lambda self: self.head.num_classes, doc="classifier outputs (0: none)")
    num_features = property(lambda self: self.head.num_features,
                            doc="channels of forward_features (the pooled features' size)")
    global_pool = property(lambda self: self.head.global_pool, doc="'avg', 'max' or ''")
    drop_rate = property(lambda self: self.head.drop_rate, doc="dropout before the classifier")

    @property
    def default_cfg(self) -> dict:
        """timm's older name of ``pretrained_cfg``."""
        return self.pretrained_cfg

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new, freshly initialised classifier for ``num_classes`` (0: none, the network then
        returns pooled features) and optionally a new ``global_pool``; ``config`` follows."""
        like = next((p for p in self.parameters() if p.is_floating_point()), None)
        self.head.reset(num_classes, global_pool, like)
        self.config = dataclasses.replace(self.config, num_classes=num_classes,
                                          global_pool=self.head.global_pool)

    @property
    def flows(self) -> list[nn.Module]:
        return [s.flow for s in self.stages if s.flow is not None]

    @property
    def transitions(self) -> list[nn.Module]:
        return [s.transition for s in self.stages if s.transition is not None]
