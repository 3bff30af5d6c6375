"""resnet50 <-> torchvision ResNet-50: names map one-to-one and outputs agree."""
import re

import pytest
import torch

import odenets
from odenets.models.torchvision_map import (from_torchvision_key, load_torchvision,
                                            to_torchvision_key)


def torchvision_resnet50_keys():
    """The state-dict names of torchvision's resnet50, written from its layout (conv1/bn1, layerL.i
    with conv1..bn3 and downsample.0/1 at i = 0, fc), so the mapping is tested without it."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv1.weight"] + [f"bn1.{b}" for b in bn]
    for layer, blocks in enumerate((3, 4, 6, 3), start=1):
        for i in range(blocks):
            for j in (1, 2, 3):
                keys.append(f"layer{layer}.{i}.conv{j}.weight")
                keys += [f"layer{layer}.{i}.bn{j}.{b}" for b in bn]
            if i == 0:
                keys.append(f"layer{layer}.0.downsample.0.weight")
                keys += [f"layer{layer}.0.downsample.1.{b}" for b in bn]
    return keys + ["fc.weight", "fc.bias"]


def test_key_mapping_is_a_bijection_onto_our_state_dict():
    ours = odenets.create("resnet50", num_classes=1000).state_dict()
    tv = torchvision_resnet50_keys()
    assert len(tv) == len(ours)
    assert sorted(from_torchvision_key(k) for k in tv) == sorted(ours)
    assert all(to_torchvision_key(from_torchvision_key(k)) == k for k in tv)
    with pytest.raises(ValueError, match="not a torchvision"):
        from_torchvision_key("features.0.weight")


def test_load_fills_every_tensor_and_rejects_mismatches():
    src = odenets.create("resnet50", num_classes=1000)
    fake_tv = {to_torchvision_key(k): v.clone() for k, v in src.state_dict().items()}
    dst = odenets.create("lm_resnet50", num_classes=1000)   # LM: only the k's are left out
    load_torchvision(dst, fake_tv)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)
    with pytest.raises(ValueError, match="shape mismatch"):
        load_torchvision(odenets.create("resnet50", num_classes=10), fake_tv)
    with pytest.raises(ValueError, match="do not fit"):
        load_torchvision(odenets.create("resnet20"), fake_tv)
    assert all(re.search(r"\.raw\.k$", k) for k in set(dst.state_dict()) - set(src.state_dict()))


def test_torchvision_weights_give_the_same_outputs():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    tv = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():     # non-trivial BN statistics
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    ours = load_torchvision(odenets.create("resnet50", num_classes=1000), tv).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), rtol=1e-5, atol=1e-5)
