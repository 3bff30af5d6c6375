"""Benchmarks: each script runs end to end in a tiny configuration and writes well-formed JSON,
markdown and plots; stochastic depth as Euler-Maruyama equals the classic implementation."""
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import compare_schemes  # noqa: E402
import report  # noqa: E402
import sde_noise  # noqa: E402
import speed  # noqa: E402

import odenets  # noqa: E402
from odenets import cli  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: on a shared 2-core machine two threads contend and run many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


def check_env(env):
    for key in ("device", "device_type", "torch", "command", "seed", "timestamp"):
        assert key in env, key
    assert env["torch"] == torch.__version__


@pytest.fixture(scope="module")
def schemes_payload(out_dir):
    return compare_schemes.main(["--tiny", "--dataset", "synthetic", "--schemes", "resnet,lm_resnet",
                                 "--sweep-depths", "20", "--seeds", "0,1", "--out-dir", str(out_dir)])


def test_compare_schemes_tiny(schemes_payload, out_dir):
    saved = json.loads((out_dir / "compare_schemes_tiny_cpu.json").read_text())
    check_env(saved["env"])
    assert saved["seeds"] == [0, 1] and saved["recipe"]["dataset"] == "synthetic"
    assert set(saved["models"]) == {"resnet20", "lm_resnet20"}
    for name, m in saved["models"].items():
        assert m["params"] == odenets.info(name, input_size=(1, 3, 32, 32))["params"]
        assert m["evaluations"] == 9 and m["macs"] > 0
        assert m["test_acc"]["n"] == 2 and len(m["runs"]) == 2
        assert 0.0 <= m["test_acc"]["mean"] <= 1.0 and m["img_per_s"]["mean"] > 0
    res, lm = saved["models"]["resnet20"], saved["models"]["lm_resnet20"]
    assert abs(lm["params"] - res["params"]) / res["params"] < 0.002  # equal parameter count
    assert saved["summary"]["equal_compute"]["resnet20"]["delta"] == pytest.approx(0.0)
    claim = saved["summary"]["lm_claim"][0]
    assert claim["resnet"] == "resnet20" and claim["same_depth_delta"] == pytest.approx(
        lm["test_acc"]["mean"] - res["test_acc"]["mean"])
    for name in saved["plots"]:
        assert (out_dir / name).stat().st_size > 1000
    assert "| lm_resnet20 |" in (out_dir / "compare_schemes_tiny_cpu.md").read_text()


def test_compare_schemes_rejects_unknown_scheme():
    with pytest.raises(ValueError, match="unknown model"):
        compare_schemes.main(["--tiny", "--schemes", "resnet,euler_net", "--sweep-depths", "none"])


def test_interpolation_at_equal_macs():
    assert compare_schemes.interpolate(15, [10, 20], [0.5, 0.7]) == pytest.approx(0.6)
    assert compare_schemes.interpolate(25, [10, 20], [0.5, 0.7]) is None


def test_handwritten_resnet56_has_the_same_layers():
    hand, ours = speed.HandResNet(9), odenets.create("resnet56")
    assert sum(p.numel() for p in hand.parameters()) == sum(p.numel() for p in ours.parameters())
    shape = (1, 3, 32, 32)
    assert speed.count_macs(hand, shape) == speed.count_macs(ours, shape)


def test_speed_tiny(out_dir):
    payload = speed.main(["--batch", "2", "--rounds", "2", "--warmup", "1", "--iters", "1",
                          "--ode-steps", "2", "--groups", "ode,resnet56", "--memory-depths", "20,32",
                          "--out-dir", str(out_dir)])
    saved = json.loads((out_dir / "speed_cpu.json").read_text())
    check_env(saved["env"])
    assert set(saved["results"]) == {"ode/eager/fp32", "resnet56/eager/fp32"}
    rows = saved["results"]["resnet56/eager/fp32"]
    assert set(rows) == {"hand_resnet56", "resnet56", "lm_resnet56"}
    for r in rows.values():
        assert r["s_per_step"] > 0 and r["img_per_s"] > 0 and r["saved_tensor_bytes"] > 0
    goals = {g["goal"]: g for g in saved["goals"]}
    assert all(isinstance(g["met"], bool) for g in goals.values())
    assert any("hand-written" in g for g in goals) and any("torchdiffeq" in g for g in goals) == \
        (speed.odeint is not None)
    mem = saved["memory_vs_depth"]  # Euler stores per-block activations, the reversible flow does not
    assert mem["resnet"]["32"]["saved_tensor_bytes"] > mem["resnet"]["20"]["saved_tensor_bytes"]
    assert mem["rev_resnet"]["32"]["saved_tensor_bytes"] < mem["resnet"]["32"]["saved_tensor_bytes"]
    assert payload["plots"] and (out_dir / payload["plots"][0]).is_file()


def test_speed_rejects_bad_options():
    with pytest.raises(ValueError, match="unknown group"):
        speed.main(["--groups", "resnet57"])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            speed.main(["--device", "cuda"])


def test_sde_noise_tiny(out_dir):
    sde_noise.main(["--tiny", "--dataset", "synthetic", "--seeds", "0", "--additive-sigmas", "0.1",
                    "--field-sigmas", "0.5", "--input-noise", "0,0.2", "--sd-samples", "200",
                    "--out-dir", str(out_dir)])
    saved = json.loads((out_dir / "sde_noise_tiny_cpu.json").read_text())
    check_env(saved["env"])
    assert list(saved["variants"]) == ["none", "gauss_add_0.1", "gauss_field_0.5", "stochastic_depth",
                                       "shake_shake"]
    assert saved["input_noise_levels"] == ["0", "0.2"]
    for v in saved["variants"].values():
        assert set(v["accuracy"]) == {"0", "0.2"} and v["accuracy"]["0"]["n"] == 1
    assert saved["variants"]["gauss_field_0.5"]["overrides"]["solver_options"]["diffusion"] == "field"
    assert saved["sd_equivalence"]["samples"] == 200


def test_noisy_accuracy_clean_level_is_plain_accuracy():
    from odenets import data
    test = data.load_dataset("synthetic", "test", subset=100)
    torch.manual_seed(0)
    model = odenets.create("resnet20").eval()
    x = (test.images.float() / 255 - torch.tensor(test.mean).view(1, -1, 1, 1)) / torch.tensor(test.std).view(1, -1, 1, 1)
    with torch.no_grad():
        plain = (model(x).argmax(1) == test.labels).float().mean().item()
    acc = sde_noise.noisy_accuracy(model, test, [0.0, 0.5], batch=37)
    assert acc["0"] == pytest.approx(plain)
    assert sde_noise.noisy_accuracy(model, test, [0.5])["0.5"] == acc["0.5"]  # same noise draws


def test_stochastic_depth_equals_classic_implementation():
    r = sde_noise.sd_equivalence(samples=2000)
    for who in ("ours", "classic"):
        s = r[who]
        assert s["max_relative_residual"] < 1e-5  # every draw is one gate pattern's output
        assert s["chi2"] < r["chi2_critical_0.999"]  # pattern frequencies = prod Bernoulli(p_n)
        assert s["mean_z_rms"] < 3.0  # same mean as the exact distribution
        assert abs(s["total_variance_ratio"] - 1) < 0.1  # same variance
    assert r["test_time_max_abs_diff"] < 1e-6  # test time: relu(u + p f(u))


@torch.no_grad()
def test_stochastic_depth_check_has_power():
    """The same statistics reject a loop whose gates use the wrong survival probabilities, or
    that skips the test-time rescaling."""
    flow, p, u = sde_noise.sd_flow()
    blocks = list(flow.blocks)
    exact = sde_noise.exact_distribution(blocks, p, u)
    batch = u.expand(2000, *u.shape[1:]).contiguous()
    wrong = [min(0.95, q + 0.2) for q in p]
    s = sde_noise.pattern_stats(sde_noise.classic_stochastic_depth(blocks, wrong, batch, True).flatten(1), exact)
    assert s["max_relative_residual"] < 1e-5 and s["chi2"] > sde_noise.CHI2_999[s["chi2_dof"]]
    flow.eval()
    unscaled = sde_noise.classic_stochastic_depth(blocks, [1.0] * len(p), u, training=False)
    assert (flow(u) - unscaled).abs().max() > 1e-3


def test_report_and_cli(schemes_payload, out_dir):
    assert cli.main(["bench", "report", "--results", str(out_dir), "--out", str(out_dir / "R.md")]) == 0
    text = (out_dir / "R.md").read_text()
    assert "The paper's numbers" in text and "0.27M" in text  # tiny files are skipped, paper kept
    renamed = out_dir / "compare_schemes_quick_cpu.json"
    renamed.write_text((out_dir / "compare_schemes_tiny_cpu.json").read_text())
    assert "lm_resnet20" in report.build_report(out_dir)
    assert cli.main(["bench", "nope"]) == 2
