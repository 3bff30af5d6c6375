"""Presets: registry, parameter counts, and a forward/backward smoke test for every one."""
import pytest
import torch

import odenets
import solvers
from odenets.models import get_config

ALL = odenets.list_models()
CIFAR_N = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18, 164: 27}


pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def he_params(n, classes=10):
    """Option-A CIFAR ResNet-(6n+2) by hand: stem, 3 stages of n basic blocks, fc."""
    stem = 3 * 16 * 9 + 2 * 16
    block = lambda cin, c: 9 * cin * c + 9 * c * c + 4 * c   # two convs, two BNs
    stages = n * block(16, 16) + block(16, 32) + (n - 1) * block(32, 32) \
        + block(32, 64) + (n - 1) * block(64, 64)
    return stem + stages + 64 * classes + classes


def flow_steps(n):
    return n + 2 * (n - 1)


# -- registry -----------------------------------------------------------------------------------
def test_registry_lists_and_rejects():
    assert len(ALL) == len(set(ALL)) >= 80
    for family in ("resnet", "preact_resnet", "lm_resnet", "lm_preact_resnet", "poly_resnet",
                   "rk2_resnet", "rk4_resnet", "ab2_resnet", "rev_resnet", "sd_resnet",
                   "shake_resnet", "lmm3_resnet", "lmm4_resnet"):
        assert odenets.list_models(f"{family}*")[:1], family
        for depth in CIFAR_N:
            assert f"{family}{depth}" in ALL
    assert {"resnet50", "lm_resnet50"} <= set(ALL)
    assert odenets.list_models("lm_resnet*") == sorted(odenets.list_models("lm_resnet*"))
    with pytest.raises(ValueError, match="did you mean .*'resnet20'"):
        odenets.create("resnet21")
    with pytest.raises(ValueError, match="valid options: .*transition_history"):
        odenets.create("resnet20", transition_histroy="restart")
    with pytest.raises(ValueError, match="unknown transition_history"):
        odenets.create("lm_resnet20", transition_history="forget")


@pytest.mark.parametrize("override,message", [
    (dict(strides=(0, 2, 2)), r"strides must be an integer >= 1"),
    (dict(widths=(16, 32.5, 64)), r"widths must be an integer >= 1"),
    (dict(depths=(0, 3, 3)), r"depths must be an integer >= 1"),
    (dict(num_classes=-1), r"num_classes must be an integer >= 0"),
    (dict(in_channels=None), r"in_channels must be an integer >= 1"),
    (dict(survival="half"), r"survival must lie in \(0, 1\]"),
])
def test_bad_config_values_are_rejected_when_built(override, message):
    with pytest.raises(ValueError, match=message):
        odenets.create("sd_resnet20", **override)


def test_overrides_and_solver_options_merge():
    cfg = get_config("poly_resnet20", solver_options={"check": True})
    assert cfg.solver_options == {"iterations": 2, "check": True}
    m = odenets.create("resnet20", num_classes=7, in_channels=1, solver="rk2")
    assert m.head.fc.out_features == 7 and m.stem.conv.in_channels == 1
    assert all(f.scheme.name == "midpoint" for f in m.flows)


# -- parameter counts ---------------------------------------------------------------------------
@pytest.mark.parametrize("depth", list(CIFAR_N))
def test_cifar_parameter_counts(depth):
    n = CIFAR_N[depth]
    base = n_params(odenets.create(f"resnet{depth}"))
    assert base == he_params(n)
    channel_sum = 16 * n + 32 * (n - 1) + 64 * (n - 1)    # sum of C over flow steps
    expected = {
        "preact_resnet": base,        # BN moved: -16 stem, +64 head, -16 -32 transitions
        "lm_resnet": base + flow_steps(n),     # one k per flow step
        "lm_preact_resnet": base + flow_steps(n),
        "poly_resnet": base, "rk2_resnet": base, "rk4_resnet": base, "ab2_resnet": base,
        "sd_resnet": base,
        "rev_resnet": base + 2 * channel_sum,    # (F, G) C/2 -> C -> C/2: BN 6C instead of 4C
        "shake_resnet": base + 2 * channel_sum,  # two C -> C/2 -> C branches: BN 6C vs 4C
    }
    for family, count in expected.items():
        assert n_params(odenets.create(f"{family}{depth}")) == count, family


def test_he_et_al_published_sizes():
    """He et al. (2016a), Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M (option A shortcuts)."""
    published = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}
    for depth, millions in published.items():
        count = n_params(odenets.create(f"resnet{depth}"))
        assert round(count / 1e6, 2 if depth < 110 else 1) == millions
    assert n_params(odenets.create("resnet20")) == 269_722
    assert n_params(odenets.create("resnet56")) == 853_018
    assert n_params(odenets.create("resnet110")) == 1_727_962
    # projection (option B) shortcuts at the two transitions add 2 x (1x1 conv + BN) = 2752
    assert n_params(odenets.create("resnet20", shortcut="B")) == 272_474
    assert n_params(odenets.create("resnet56", shortcut="B")) == 855_770
    assert n_params(odenets.create("resnet110", shortcut="B")) == 1_730_714


def test_resnet50_has_torchvision_parameter_count():
    assert n_params(odenets.create("resnet50", num_classes=1000)) == 25_557_032
    lm = odenets.create("lm_resnet50", num_classes=1000)
    assert n_params(lm) == 25_557_032 + (2 + 3 + 5 + 2)   # one k per flow step


@pytest.mark.parametrize("family", ["lmm3_resnet", "lmm4_resnet"])
def test_lmm_presets_count_their_coefficients(family):
    if "lmm" not in solvers.available():
        with pytest.raises(ValueError, match="lmm"):
            odenets.create(f"{family}20")
        return
    m = odenets.create(f"{family}20")
    coeffs = sum(p.numel() for f in m.flows for p in f.raw.values())
    # the roots a step can use: stages of 3 blocks reach 2 past states (stage 0: 0, 1, 2; after
    # a projecting transition: 1, 2), so lmm4's third root r3 is never created (issue 25)
    per_step = min(len(m.flows[0].scheme.learnable_coefficients()), 2)
    assert per_step >= 1 and coeffs == per_step * flow_steps(3)
    assert n_params(m) == he_params(3) + coeffs


# -- every preset runs --------------------------------------------------------------------------
def _small_input(name, batch=2):
    return torch.randn(batch, 3, 8, 8)


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_smoke(name):
    if name.startswith("lmm") and "lmm" not in solvers.available():
        pytest.skip("solver 'lmm' is not registered")
    torch.manual_seed(0)
    model = odenets.create(name, num_classes=5)
    x = _small_input(name)
    y = model(x)
    assert y.shape == (2, 5) and torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    # the first step of a multistep flow that starts from Euler does not use its k
    assert all(".raw." in n for n in missing), missing[:3]
