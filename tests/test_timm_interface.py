"""timm's model interface on every preset (docs/timm.md): forward_features / forward_head,
classifier access and reset, num_classes=0, global_pool, drop_rate, drop_path_rate as
Euler-Maruyama stochastic depth, features_only, torch.fx tracing, list_models filters and
`register_timm` (against a stub of timm's registry: timm needs torchvision, absent here)."""
import math
import sys
import types

import pytest
import torch
from torch import nn

import odenets
from odenets.models import FeatureNet, Network

pytestmark = pytest.mark.usefixtures("one_thread")

# one preset per family (the depths differ only in n) plus the ImageNet / ResNeXt presets
FAMILIES = odenets.list_models(exclude_filters=["*32", "*44", "*56", "*110", "*164"])
CHEAP = odenets.list_models("*20")  # the CIFAR families at depth 20
X = torch.randn(1, 3, 28, 28)


def _make(name, **kwargs):
    torch.manual_seed(0)
    return odenets.create(name, **kwargs).eval()


def test_family_list_covers_every_preset_family():
    families = {n.rstrip("0123456789") for n in odenets.list_models()}
    assert {n.rstrip("0123456789") for n in FAMILIES} == families
    assert len(FAMILIES) == len(CHEAP) + 6


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_is_head_of_features(name):
    model = _make(name)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        u = model.forward_features(x)
        logits = model(x)
        pooled = model.forward_head(u, pre_logits=True)
    info = model.feature_info[-1]
    assert u.shape == (1, model.num_features, math.ceil(32 / info["reduction"]),
                       math.ceil(32 / info["reduction"]))
    assert info["num_chs"] == model.num_features == model.config.widths[-1]
    assert pooled.shape == (1, model.num_features)
    torch.testing.assert_close(logits, model.forward_head(u))
    torch.testing.assert_close(logits, model.get_classifier()(pooled))
    assert isinstance(model.get_classifier(), nn.Linear) and model.num_classes == 10
    assert model.get_classifier() is model.head.fc
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg and cfg["architecture"] == name
    assert len(cfg["mean"]) == len(cfg["std"]) == cfg["input_size"][0] == 3
    assert cfg["first_conv"] == "stem.conv" and cfg["classifier"] == "head.fc"
    assert model.get_submodule(cfg["first_conv"]) is model.stem.conv


def test_pretrained_cfg_is_the_dataset_the_net_is_made_for():
    from odenets.data.cifar import STATS
    cifar = odenets.create("resnet20").pretrained_cfg
    assert cifar["input_size"] == (3, 32, 32) and cifar["dataset"] == "cifar10"
    assert (cifar["mean"], cifar["std"]) == STATS["cifar10"] and cifar["pool_size"] == (8, 8)
    assert odenets.create("resnet20", num_classes=100).pretrained_cfg["dataset"] == "cifar100"
    fmnist = odenets.create("resnet20", in_channels=1).pretrained_cfg
    assert fmnist["input_size"] == (1, 28, 28) and fmnist["mean"] == (0.2860,)
    imagenet = odenets.create("resnet50").pretrained_cfg
    assert imagenet["input_size"] == (3, 224, 224) and imagenet["pool_size"] == (7, 7)
    assert imagenet["mean"] == (0.485, 0.456, 0.406) and imagenet["crop_pct"] == 0.875


@pytest.mark.parametrize("name", CHEAP)
def test_num_classes_zero_returns_pooled_features(name):
    model = _make(name, num_classes=0)
    with torch.no_grad():
        out = model(X)
        features = model.forward_features(X)
    assert out.shape == (1, model.num_features) and model.num_classes == 0
    assert isinstance(model.get_classifier(), nn.Identity)
    assert not any(k.startswith("head.fc") for k in model.state_dict())
    if model.head.bn is None:  # pre-activation heads normalise first
        torch.testing.assert_close(out, features.mean(dim=(2, 3)))


def test_reset_classifier_and_global_pool():
    model = _make("resnet20")
    with torch.no_grad():
        u = model.forward_features(X)
        model.reset_classifier(5)
        assert model(X).shape == (1, 5) and model.config.num_classes == 5
        model.reset_classifier(0, global_pool="max")
        torch.testing.assert_close(model(X), u.amax(dim=(2, 3)))
        assert model.global_pool == "max" and model.config.global_pool == "max"
        model.reset_classifier(0, global_pool="")
        torch.testing.assert_close(model(X), u)
    with pytest.raises(ValueError, match="global_pool='' .* needs num_classes=0"):
        model.reset_classifier(3)
    with pytest.raises(ValueError, match="unknown global_pool 'mean'"):
        odenets.create("resnet20", global_pool="mean")
    rebuilt = Network(model.config)  # the config follows the reset: checkpoints rebuild it
    assert rebuilt.num_classes == 0 and rebuilt.global_pool == ""


def test_max_pool_head():
    model = _make("resnet20", global_pool="max")
    with torch.no_grad():
        u = model.forward_features(X)
        torch.testing.assert_close(model(X), model.head.fc(u.amax(dim=(2, 3))))


def test_drop_rate_is_dropout_before_the_classifier():
    model = _make("resnet20", drop_rate=0.5)
    with torch.no_grad():
        u = torch.rand(64, model.num_features, 2, 2) + 1
        clean = u.mean(dim=(2, 3))
        model.train()
        dropped = model.forward_head(u, pre_logits=True)
        model.eval()
        torch.testing.assert_close(model.forward_head(u, pre_logits=True), clean)
    zero = dropped == 0
    assert 0.3 < zero.float().mean() < 0.7
    torch.testing.assert_close(dropped[~zero], 2 * clean[~zero])
    assert model.drop_rate == 0.5
    with pytest.raises(ValueError, match=r"drop_rate must be a number in \[0, 1\)"):
        odenets.create("resnet20", drop_rate=1.0)


# -- drop_path_rate: stochastic depth as an Euler-Maruyama step --------------------------------------
def _expected_survival(rate, depths, transitions):
    total = sum(depths)
    return [1 - rate * l / (total - 1) for l in range(total) if l not in transitions]


def test_drop_path_rate_is_euler_maruyama_bernoulli_with_timm_linspace():
    model = _make("resnet20", drop_path_rate=0.2)
    for flow in model.flows:
        scheme = getattr(flow.scheme, "inner", flow.scheme)  # inside the post-activation
        assert scheme.name == "euler_maruyama" and scheme.noise == "bernoulli"
    p = torch.cat([f.coef_p for f in model.flows])
    expected = torch.tensor(_expected_survival(0.2, (3, 3, 3), (3, 6)))
    torch.testing.assert_close(p, expected)
    dpr = torch.linspace(0, 0.2, 9)  # timm: dpr = linspace(0, drop_path_rate, blocks)
    torch.testing.assert_close(1 - p, dpr[[0, 1, 2, 4, 5, 7, 8]])


def test_drop_path_eval_is_the_mean_step_and_train_drops_blocks():
    """Eval: u_{n+1} = relu(u_n + p_n f(u_n)) (Huang et al.'s test rule); train: random."""
    model = _make("resnet20", drop_path_rate=0.5)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        u = model.stem(x)
        for stage in model.stages:
            if stage.transition is not None:
                t = stage.transition
                u = torch.relu(t.shortcut(u) + t.field(u))
            for f, p in zip(stage.flow.fields, stage.flow.coef_p):
                u = torch.relu(u + p * f(u))
        torch.testing.assert_close(model(x), model.head(u))
        model.train()
        draws = [model(x) for _ in range(2)]
        plain = _make("resnet20").train()
        # the survival schedule is part of the state (coef_p): the eval step u + p f needs it
        with pytest.raises(RuntimeError, match="coef_p"):
            plain.load_state_dict(model.state_dict())
        plain.load_state_dict(model.state_dict(), strict=False)
        assert torch.equal(plain(x), plain(x))
    assert not torch.equal(*draws)


def test_drop_path_rate_replaces_sd_survival_and_rejects_other_schemes():
    sd = _make("sd_resnet20", drop_path_rate=0.1)
    p = torch.cat([f.coef_p for f in sd.flows])
    torch.testing.assert_close(p, torch.tensor(_expected_survival(0.1, (3, 3, 3), (3, 6))))
    assert _make("preact_resnet20", drop_path_rate=0.1).flows[0].scheme.name == "euler_maruyama"
    for name, solver in (("lm_resnet20", "'lm'"), ("shake_resnet20", "noise='shake'")):
        with pytest.raises(ValueError, match=f"drop_path_rate=0.1 is stochastic depth.*{solver}"):
            odenets.create(name, drop_path_rate=0.1)
    with pytest.raises(ValueError, match=r"drop_path_rate must be a number in \[0, 1\)"):
        odenets.create("resnet20", drop_path_rate=1.0)
    assert _make("resnet20", drop_path_rate=0.0).flows[0].scheme.name == "euler"


# -- features_only -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CHEAP + ["resnet50"])
def test_features_only_returns_stage_features(name):
    torch.manual_seed(0)
    net = odenets.create(name).eval()
    feats = odenets.create(name, features_only=True).eval()
    assert isinstance(feats, FeatureNet)
    assert feats.load_state_dict(net.state_dict(), strict=False).missing_keys == []
    with torch.no_grad():
        out = feats(X)
        last = net.forward_features(X)
    assert len(out) == len(feats.feature_info) == len(net.config.depths) + 1
    for u, info in zip(out, feats.feature_info):
        assert u.shape == (1, info["num_chs"], math.ceil(28 / info["reduction"]),
                           math.ceil(28 / info["reduction"]))
        assert info["module"] in dict(net.named_modules())
    torch.testing.assert_close(out[-1], last)
    assert feats.feature_info.channels() == [d["num_chs"] for d in net.feature_info]


def test_out_indices_select_and_truncate():
    feats = odenets.create("resnet20", features_only=True, out_indices=(1, -2))
    assert feats.out_indices == (1, 2) and len(feats.stages) == 2
    assert feats.feature_info.reduction() == [1, 2]
    assert [u.shape[1] for u in feats(X)] == [16, 32]
    with pytest.raises(ValueError, match=r"out_indices must be .* in \[-4, 3\]"):
        odenets.create("resnet20", features_only=True, out_indices=(4,))
    with pytest.raises(ValueError, match="needs features_only=True"):
        odenets.create("resnet20", out_indices=(1,))


# -- torch.fx ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CHEAP)
def test_symbolic_trace_matches_and_keeps_flows_as_leaves(name):
    model = _make(name)
    graph = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(graph(X), model(X))
    leaves = {n.target for n in graph.graph.nodes if n.op == "call_module"}
    assert {"stages.0.flow", "stages.1.flow", "stages.2.flow"} <= leaves
    with pytest.raises(ValueError, match=r"expects images of shape \(N, 3, H, W\)"):
        graph(torch.randn(1, 1, 8, 8))  # the input check is a node of the graph


def test_traced_stochastic_net_keeps_its_noise():
    model = odenets.create("sd_resnet20")
    graph = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.manual_seed(1)
        a = graph(X)
        torch.manual_seed(1)
        b = model(X)
        c = graph(X)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_features_only_traces():
    feats = odenets.create("lm_resnet20", features_only=True).eval()
    graph = torch.fx.symbolic_trace(feats)
    with torch.no_grad():
        for u, v in zip(graph(X), feats(X)):
            torch.testing.assert_close(u, v)


# -- list_models -------------------------------------------------------------------------------
def test_list_models_filters_as_timm(tmp_path, monkeypatch):
    monkeypatch.setattr("odenets.pretrained.WEIGHTS_DIR", tmp_path)  # whatever ships: none here
    assert odenets.list_models("resnet*", exclude_filters="*1*") == ["resnet20", "resnet32",
                                                                     "resnet44", "resnet50",
                                                                     "resnet56"]
    both = odenets.list_models(["rk2*", "rk4*"], exclude_filters=["*110", "*164"])
    assert both == sorted(f"rk{k}_resnet{d}" for k in (2, 4) for d in (20, 32, 44, 56))
    assert odenets.list_models("") == odenets.list_models() == sorted(odenets.models.PRESETS)
    assert odenets.list_models(pretrained=True) == []
    with pytest.raises(ValueError, match="exclude_filters must be a shell-style pattern"):
        odenets.list_models(exclude_filters=3)


# -- register_timm -------------------------------------------------------------------------------
@pytest.fixture
def fake_timm(monkeypatch):
    """timm's registry and create_model, reduced to what they do with an entrypoint (timm 1.0:
    register_model keys by fn.__name__ and looks up sys.modules[fn.__module__]; create_model
    drops None kwargs and calls fn(pretrained, pretrained_cfg, pretrained_cfg_overlay,
    cache_dir, **kwargs))."""
    entrypoints = {}

    def register_model(fn):
        mod = sys.modules[fn.__module__]
        mod.__all__.append(fn.__name__)
        entrypoints[fn.__name__] = fn
        return fn

    def create_model(model_name, pretrained=False, pretrained_cfg=None,
                     pretrained_cfg_overlay=None, checkpoint_path=None, cache_dir=None, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        name, _, tag = model_name.partition(".")
        if name not in entrypoints:
            raise RuntimeError(f"Unknown model ({model_name})")
        return entrypoints[name](pretrained=pretrained, pretrained_cfg=pretrained_cfg or tag or None,
                                 pretrained_cfg_overlay=pretrained_cfg_overlay,
                                 cache_dir=cache_dir, **kwargs)

    timm = types.ModuleType("timm")
    timm.models = types.ModuleType("timm.models")
    timm.models.register_model, timm.models.is_model = register_model, entrypoints.__contains__
    timm.create_model = create_model
    monkeypatch.setitem(sys.modules, "timm", timm)
    monkeypatch.setitem(sys.modules, "timm.models", timm.models)
    return timm


def test_register_timm_builds_presets_through_timm(fake_timm, tmp_path, monkeypatch):
    monkeypatch.setattr("odenets.pretrained.WEIGHTS_DIR", tmp_path)  # whatever ships: none here
    names = odenets.register_timm()
    assert names == ["odenets_" + n for n in odenets.list_models()]
    assert odenets.register_timm() == names  # a second call registers nothing new
    model = fake_timm.create_model("odenets_lm_resnet20", num_classes=0, in_chans=1,
                                   drop_rate=None, pretrained_cfg_overlay={"crop_pct": 0.9})
    assert isinstance(model, Network) and model.config.solver == "lm"
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 64)
    assert model.pretrained_cfg["architecture"] == "odenets_lm_resnet20"
    assert model.pretrained_cfg["crop_pct"] == 0.9
    feats = fake_timm.create_model("odenets_resnet20", features_only=True, out_indices=(3,))
    assert feats.feature_info.channels() == [64]
    sd = fake_timm.create_model("odenets_resnet20", drop_path_rate=0.1)
    assert sd.flows[0].scheme.name == "euler_maruyama"
    with pytest.raises(ValueError, match="no pretrained weights"):
        fake_timm.create_model("odenets_resnet20", pretrained=True)
    with pytest.raises(ValueError, match="no pretrained tags"):
        fake_timm.create_model("odenets_resnet20.in1k")
    from odenets.models import timm_bridge
    assert timm_bridge.odenets_resnet20.__name__ == "odenets_resnet20"


def test_register_timm_prefix_and_clashes(fake_timm):
    assert odenets.register_timm(prefix="ode_")[0] == "ode_ab2_resnet110"
    fake_timm.models.register_model(_foreign_resnet50)
    with pytest.raises(ValueError, match=r"timm already has models named \['resnet50'\]"):
        odenets.register_timm(prefix="")
    assert not fake_timm.models.is_model("resnet20")  # nothing registered before the check
    with pytest.raises(ValueError, match="without '.'"):
        odenets.register_timm(prefix="a.b")


def resnet50(**kwargs):  # a model of timm's own, whose name the empty prefix would take
    return nn.Identity()


_foreign_resnet50 = resnet50
__all__ = []  # register_model appends the entrypoint names of this module


def test_register_timm_without_timm_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    monkeypatch.setitem(sys.modules, "timm.models", None)
    with pytest.raises(ImportError, match="needs timm"):
        odenets.register_timm()


def test_reset_classifier_follows_the_models_dtype_device_and_mode():
    """Issue 25, defect 3: after num_classes=0 the new head was float32 on a float64 model
    (forward failed) and in train mode on a model in eval mode."""
    model = odenets.create("resnet20", num_classes=0).double().eval()
    model.reset_classifier(10)
    assert model.get_classifier().weight.dtype == torch.float64
    assert not model.get_classifier().training
    x = torch.randn(2, model.config.in_channels, 28, 28, dtype=torch.float64)
    assert model(x).shape == (2, 10)
    with torch.device("meta"):
        meta = odenets.create("resnet20", num_classes=0)
    meta.reset_classifier(10)
    assert meta.get_classifier().weight.is_meta


@pytest.mark.parametrize("name", FAMILIES)
def test_models_build_on_the_meta_device(name):
    """Issue 25, defect 4: the per-module init seed called .item() on a meta tensor."""
    with torch.device("meta"):
        model = odenets.create(name)
    assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("name", CHEAP + ["resnet50"])
def test_every_parameter_gets_a_gradient(name):
    """Issue 25, defect 5: lmm4_resnet20's 2-3 steps per stage never fill a 4-step history, so
    stages.*.flow.raw.r3 never got a gradient (DDP without find_unused_parameters fails)."""
    torch.manual_seed(0)
    model = odenets.create(name)
    model(torch.randn(2, model.config.in_channels, 32, 32)).sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_lmm4_checkpoints_with_the_dropped_root_still_load_and_ddp_needs_no_unused_search(tmp_path):
    torch.manual_seed(0)
    model = odenets.create("lmm4_resnet20")
    old = dict(model.state_dict(), **{f"stages.{i}.flow.raw.r3": torch.zeros(2) for i in range(3)})
    model.load_state_dict(old)  # strict: the ignored root of old checkpoints is accepted
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(model)  # find_unused_parameters=False
        for _ in range(2):
            ddp(torch.randn(2, model.config.in_channels, 28, 28)).sum().backward()
    finally:
        dist.destroy_process_group()
