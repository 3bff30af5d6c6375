"""Fields compute f(u) only (no skip connection); shapes, parameter counts, pairs, MLP time."""
import pytest
import torch
from torch import nn

from odenets import fields
from odenets.fields import (BasicField, BottleneckField, Coupled, MLPField, PreActBasicField,
                            ResNeXtField, TwoBranch, make_block)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("cls", [BasicField, PreActBasicField])
def test_basic_fields_shapes_and_params(cls):
    f = cls(16, 32, stride=2)
    assert f(torch.randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)
    bn_in = 16 if cls is PreActBasicField else 32   # pre-act normalises the input channels
    assert n_params(f) == 9 * 16 * 32 + 9 * 32 * 32 + 2 * bn_in + 2 * 32
    h = cls(8, hidden=4)
    assert h.conv1.out_channels == 4 and h(torch.randn(2, 8, 5, 5)).shape == (2, 8, 5, 5)


def test_field_has_no_skip_connection():
    """With every weight zero the field is zero: the identity is the scheme's job."""
    for f in (BasicField(4), PreActBasicField(4), BottleneckField(16, 4)):
        for p in f.parameters():
            nn.init.zeros_(p)
        f.eval()
        assert torch.count_nonzero(f(torch.randn(2, f.conv1.in_channels, 6, 6))) == 0


def test_bottleneck_matches_torchvision_layout():
    f = BottleneckField(256, 128, stride=2)    # layer2.0 of ResNet-50
    assert (f.conv1.out_channels, f.conv2.stride, f.conv3.out_channels) == (128, (2, 2), 512)
    assert f(torch.randn(2, 256, 8, 8)).shape == (2, 512, 4, 4)


def test_resnext_grouped_width():
    f = ResNeXtField(64, 64, cardinality=8, bottleneck_width=64)   # ResNeXt-29 8x64d stage 1
    assert f.conv2.groups == 8 and f.conv2.in_channels == 512 and f.conv3.out_channels == 256
    assert f(torch.randn(2, 64, 4, 4)).shape == (2, 256, 4, 4)


def test_mlp_field_and_time_awareness():
    f = MLPField(3, hidden=7, depth=3)
    assert f(torch.randn(5, 3)).shape == (5, 3) and not f.time_aware
    g = MLPField(3, hidden=7, time_aware=True)
    u = torch.randn(5, 3)
    assert g.time_aware and g(0.0, u).shape == (5, 3)
    assert not torch.allclose(g(0.0, u), g(1.0, u))
    with pytest.raises(ValueError, match="activation must be one of"):
        MLPField(3, activation="nope")
    with pytest.raises(ValueError, match="depth"):
        MLPField(3, depth=0)
    with pytest.raises(ValueError, match="hidden must be an integer >= 1"):
        MLPField(3, hidden=0)
    with pytest.raises(ValueError, match="dim must be an integer >= 1"):
        MLPField(0)


def test_two_branch_is_the_mean_and_coupled_is_separable():
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    u = torch.randn(3, 4)
    pair = TwoBranch(a, b)
    assert pair.branches == (a, b)
    torch.testing.assert_close(pair(u), (a(u) + b(u)) / 2)
    F, G = nn.Linear(2, 2), nn.Linear(2, 2)
    c = Coupled(F, G)
    torch.testing.assert_close(c(u), torch.cat((F(u[:, 2:]), G(u[:, :2])), 1))


def test_make_block_registry():
    assert set(fields.BLOCKS) == {"basic", "preact", "bottleneck", "resnext"}
    assert isinstance(make_block("basic", 8, 16, 2), BasicField)
    with pytest.raises(ValueError, match="available: basic, bottleneck, preact, resnext"):
        make_block("dense", 8, 8)
    with pytest.raises(ValueError, match="invalid options"):
        make_block("bottleneck", 8, 32, hidden=3)


@pytest.mark.parametrize("block", ["basic", "preact"])
def test_group_norm_fields_normalise_alike_in_train_and_eval(block):
    torch.manual_seed(0)
    field = make_block(block, 16, 16, norm="group")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in field.modules())
    u = torch.randn(4, 16, 6, 6)
    train = field.train()(u)
    assert torch.allclose(field.eval()(u), train)  # no running statistics to drift
    batch = make_block(block, 16, 16)
    assert sum(p.numel() for p in field.parameters()) == sum(p.numel() for p in batch.parameters())
    with pytest.raises(ValueError, match="unknown norm 'layer'; available: batch, group"):
        make_block(block, 16, 16, norm="layer")


def test_continuous_presets_use_group_norm_fields():
    import odenets
    for name in ("ode_resnet20", "hbode_resnet20"):
        model = odenets.create(name, in_channels=1)
        norms = {type(m).__name__ for stage in model.stages for m in stage.modules()
                 if "Norm" in type(m).__name__}
        assert norms == {"GroupNorm"}, (name, norms)
