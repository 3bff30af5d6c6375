"""timm's own generic model tests (timm 1.0 ``tests/test_models.py``: forward, backward,
default cfgs, meta device, unknown kwargs, classifier reset, grad checkpointing, parameter
groups, intermediates, torch.export), run on one preset of every family through
``timm.create_model("odenets_<name>")``. Skipped where timm does not import (torchvision is
replaced by placeholders when it alone is missing: `fixtures.timm_import`)."""
import pytest
import torch

import odenets
from fixtures.timm_import import import_timm

timm = import_timm()
pytestmark = [pytest.mark.skipif(timm is None, reason="timm does not import"),
              pytest.mark.usefixtures("one_thread")]

FAMILIES = odenets.list_models(exclude_filters=["*32", "*44", "*56", "*110", "*164", "*16x64d"])
CHEAP = [n for n in FAMILIES if n.endswith("20")] + ["resnet50"]
MAX_SIZE = 64  # timm's tests cap the input size too (MAX_FWD_SIZE ...)


@pytest.fixture(scope="module", autouse=True)
def registered():
    if timm is not None:
        odenets.register_timm()


def _input(model, batch_size=2):
    c, h, w = model.pretrained_cfg["input_size"]
    return torch.randn(batch_size, c, min(h, MAX_SIZE), min(w, MAX_SIZE))


@pytest.mark.parametrize("name", FAMILIES)
def test_model_forward(name):
    model = timm.create_model(f"odenets_{name}", pretrained=False).eval()
    inputs = _input(model)
    outputs = model(inputs)
    assert outputs.shape[0] == 2 and not torch.isnan(outputs).any()
    features = model.forward_features(inputs)
    assert features.shape[1] == model.num_features == model.head_hidden_size


@pytest.mark.parametrize("name", CHEAP)
def test_model_backward(name):
    model = timm.create_model(f"odenets_{name}", pretrained=False, num_classes=42).train()
    num_params = sum(p.numel() for p in model.parameters())
    outputs = model(_input(model))
    outputs.mean().backward()
    for n, p in model.named_parameters():
        assert p.grad is not None, f"No gradient for {n}"
    assert num_params == sum(p.grad.numel() for p in model.parameters() if p.grad is not None)
    assert outputs.shape[-1] == 42 and not torch.isnan(outputs).any()


@pytest.mark.parametrize("name", FAMILIES)
def test_model_default_cfgs(name):
    timm_name = f"odenets_{name}"
    with torch.device("meta"):
        timm.create_model(timm_name, pretrained=False)
    model = timm.create_model(timm_name, pretrained=False).eval()
    cfg = model.pretrained_cfg
    assert cfg["architecture"] == timm_name
    assert timm.models.get_pretrained_cfg_value(timm_name, "input_size") == cfg["input_size"]
    assert timm.models.get_pretrained_cfg_value(timm_name, "mean") == cfg["mean"]
    state_dict = model.state_dict()
    assert cfg["classifier"] + ".weight" in state_dict
    assert cfg["first_conv"] + ".weight" in state_dict
    inputs = _input(model)
    features = model.forward_features(inputs)
    assert model.forward_head(features, pre_logits=True).shape[-1] == model.head_hidden_size
    model.reset_classifier(0)
    outputs = model(inputs)
    assert outputs.ndim == 2 and outputs.shape[1] == model.num_features
    model.reset_classifier(0, "")
    assert model(inputs).ndim == 4
    model.reset_classifier(5, "avg")
    assert model(inputs).shape == (2, 5)


def test_unknown_kwargs_raise_type_error():
    with pytest.raises(TypeError):
        timm.create_model("odenets_resnet20", not_an_option=1)


@pytest.mark.parametrize("name", ["resnet20", "lm_resnet20"])
def test_in_chans_and_grad_checkpointing(name):
    model = timm.create_model(f"odenets_{name}", in_chans=1, num_classes=3)
    x = torch.randn(2, 1, 28, 28)
    torch.manual_seed(0)
    plain = torch.autograd.grad(model(x).sum(), list(model.parameters()))
    model.set_grad_checkpointing()
    torch.manual_seed(0)
    checked = torch.autograd.grad(model(x).sum(), list(model.parameters()))
    for a, b in zip(plain, checked):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["resnet20", "lm_resnet20", "resnet50"])
def test_group_matcher_and_forward_intermediates(name):
    from timm.models import group_parameters
    model = timm.create_model(f"odenets_{name}").eval()
    groups = group_parameters(model, model.group_matcher(coarse=True))
    assert sum(len(v) for v in groups.values()) == len(list(model.named_parameters()))
    x = _input(model)
    final, intermediates = model.forward_intermediates(x)
    assert len(intermediates) == len(model.stages)
    torch.testing.assert_close(final, model.forward_features(x))
    assert [t.shape[1] for t in intermediates] == [d["num_chs"] for d in model.feature_info[1:]]
    last = model.forward_intermediates(x, indices=1, intermediates_only=True)
    torch.testing.assert_close(last[0], final)


@pytest.mark.parametrize("name", ["resnet20", "lm_resnet20", "rk4_resnet20"])
def test_torch_export(name):
    """timm's torchscript test is replaced by torch.export for these presets (docs/timm.md)."""
    model = timm.create_model(f"odenets_{name}").eval()
    x = _input(model)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))
