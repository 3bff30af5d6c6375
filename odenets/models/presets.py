"""All presets: each a row over the shared `NetConfig` builder.

CIFAR families (depths 20, 32, 44, 56, 110, 164 = 6n + 2 with n basic blocks per stage; 164
uses n = 27 basic blocks, docs/schemes.md §6):

| family           | scheme                                         | params vs resnet    |
|------------------|------------------------------------------------|---------------------|
| resnet           | euler, post-activation, option-A shortcuts     | He: 0.27M ... 1.7M  |
| preact_resnet    | euler, pre-activation fields                   | equal (BN moved)    |
| lm_resnet        | lm (learnable k_n, one per block)              | + 1 k per flow step |
| lm_preact_resnet | lm, pre-activation                             | + 1 k per flow step |
| poly_resnet      | backward_euler, 2 fixed-point iterations       | equal (2x evals)    |
| rk2_resnet       | midpoint (FractalNet-style two-branch)         | equal (2x evals)    |
| rk4_resnet       | rk4                                            | equal (4x evals)    |
| ab2_resnet       | ab2                                            | equal               |
| rev_resnet       | leapfrog variant="revnet", memory-saving       | +2C per flow step   |
| sd_resnet        | euler_maruyama bernoulli, survival 1 -> 0.5    | equal               |
| shake_resnet     | euler_maruyama shake, two half-width branches  | +2C per flow step   |
| lmm3/lmm4_resnet | lmm (history 3 / 4), learnable coefficients    | + lmm coefficients  |

C is the flow's width (16/32/64); the +2C are BatchNorm parameters only.

rev_resnet: each flow step is a pair F, G acting on C/2 channels with hidden width C
(C/2 -> C -> C/2), so its 3x3 weights equal one C -> C basic block (18 C^2) and its BNs have
6C parameters instead of 4C; a ReLU after the addition would make the step non-invertible, so
rev_resnet has none (post_activation=False: u + f(u) in every block, transitions included).
shake_resnet: each flow step is two basic branches of hidden width C/2 (C -> C/2 -> C): the
3x3 weights of one basic block and 6C BN parameters instead of 4C, computed in one pass
(`odenets.fields.ShakeBasicPair`: one C -> C conv and one grouped C -> 2C conv). Transitions are plain
single-branch blocks in both families.

ImageNet: resnet50 / lm_resnet50 (bottleneck, [3, 4, 6, 3], projection shortcuts; resnet50 is
torchvision's architecture, 25,557,032 parameters with 1000 classes). ResNeXt-29 on CIFAR:
resnext29_8x64d, resnext29_16x64d and their lm_ versions (Xie et al. 2017; the paper's table).
"""
from __future__ import annotations

from .network import NetConfig
from .registry import register

CIFAR_DEPTHS = (20, 32, 44, 56, 110, 164)
_BASIC = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18, 164: 27}  # n: blocks per stage, depth 6n + 2

_EM = "euler_maruyama"
FAMILIES = {  # family: (NetConfig overrides, one-line description)
    "resnet": (dict(), "ResNet (He et al. 2016a): forward Euler"),
    "preact_resnet": (dict(block="preact", post_activation=False), "pre-activation ResNet"),
    "lm_resnet": (dict(solver="lm"), "LM-ResNet (Lu et al. 2018): two-step LM, learnable k_n"),
    "lm_preact_resnet": (dict(solver="lm", block="preact", post_activation=False),
                         "LM-ResNet on pre-activation blocks"),
    "poly_resnet": (dict(solver="backward_euler", solver_options=dict(iterations=2)),
                    "PolyNet-style: backward Euler, 2 fixed-point iterations"),
    "rk2_resnet": (dict(solver="midpoint"), "FractalNet-style RK2 (explicit midpoint)"),
    "rk4_resnet": (dict(solver="rk4"), "classical RK4 steps"),
    "ab2_resnet": (dict(solver="ab2"), "Adams-Bashforth 2 steps"),
    "rev_resnet": (dict(solver="leapfrog", solver_options=dict(variant="revnet"), pair="coupled",
                        post_activation=False),
                   "RevNet-style reversible leapfrog, memory-saving backward"),
    "sd_resnet": (dict(solver=_EM, solver_options=dict(noise="bernoulli"), survival=0.5),
                  "stochastic depth as Euler-Maruyama, survival 1 -> 0.5"),
    "shake_resnet": (dict(solver=_EM, solver_options=dict(noise="shake"), pair="shake"),
                     "shake-shake as Euler-Maruyama, two half-width branches"),
    "lmm3_resnet": (dict(solver="lmm", solver_options=dict(history=3)),
                    "learnable 3-step linear multistep (needs solver 'lmm')"),
    "lmm4_resnet": (dict(solver="lmm", solver_options=dict(history=4)),
                    "learnable 4-step linear multistep (needs solver 'lmm')"),
}


def cifar(depth: int, **overrides) -> NetConfig:
    """CIFAR ResNet of ``depth`` = 6n + 2: stem conv3x3(16), 3 stages of n basic blocks with
    16/32/64 channels (stride 1/2/2), global pool, linear head."""
    n = _BASIC[depth]
    return NetConfig(depths=(n, n, n), **overrides)


def imagenet50(**overrides) -> NetConfig:
    """ResNet-50 layout: conv7x7/2 + maxpool stem, bottleneck stages [3, 4, 6, 3] of 256..2048
    channels, projection shortcuts at each stage's first block."""
    return NetConfig(block="bottleneck", depths=(3, 4, 6, 3), widths=(256, 512, 1024, 2048),
                     strides=(1, 2, 2, 2), stem="imagenet", stem_width=64, shortcut="B",
                     **overrides)


def resnext29(cardinality: int, width: int = 64, **overrides) -> NetConfig:
    """CIFAR ResNeXt-29 (Xie et al. 2017): stem conv3x3(64), 3 stages of 3 grouped bottlenecks
    with 256/512/1024 output channels, projection shortcuts."""
    return NetConfig(block="resnext", block_options=dict(cardinality=cardinality,
                     bottleneck_width=width), depths=(3, 3, 3), widths=(256, 512, 1024),
                     stem_width=64, shortcut="B", **overrides)


for _family, (_opts, _doc) in FAMILIES.items():
    for _depth in CIFAR_DEPTHS:
        register(f"{_family}{_depth}", lambda d=_depth, o=_opts: cifar(d, **o),
                 f"{_doc}, depth {_depth}")

# Continuous depth (ODE-Net, Chen et al. 2018; heavy-ball HBNODE, Xia et al. 2021): one tied
# pre-activation field per stage on t in [0, 1], dopri5; hbode adds u'' + gamma u' = f(u), learnable gamma.
# GroupNorm, as torchdiffeq's ODE-Net: BatchNorm's one set of running statistics for a field
# called at every t the solver visits broke eval mode (a pilot seed ended at 79% train and 31%
# test accuracy; benchmarks/results/momentum_flows_pilot_batchnorm_cpu.md).
_TOL = dict(rtol=1e-3, atol=1e-4)


def _ode(**solver_options) -> NetConfig:
    return cifar(20, solver="dopri5", block="preact", post_activation=False,
                 block_options=dict(norm="group"), solver_options=dict(_TOL, **solver_options))


register("ode_resnet20", _ode, "ODE-Net: a tied GroupNorm field per stage solved by dopri5, "
         "depth-20 layout")
register("hbode_resnet20", lambda: _ode(momentum=True, damping=None),
         "heavy-ball ODE-Net: u'' + gamma u' = f(u) per stage, dopri5")

register("resnet50", lambda: imagenet50(), "ResNet-50 (torchvision architecture), forward Euler")
register("lm_resnet50", lambda: imagenet50(solver="lm"), "LM-ResNet-50, learnable k_n")
for _c in (8, 16):
    register(f"resnext29_{_c}x64d", lambda c=_c: resnext29(c), f"ResNeXt-29 {_c}x64d")
    register(f"lm_resnext29_{_c}x64d", lambda c=_c: resnext29(c, solver="lm"),
             f"LM-ResNeXt-29 {_c}x64d")
