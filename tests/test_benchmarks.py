"""Benchmarks: each script runs end to end in a tiny configuration and writes well-formed JSON,
markdown and plots; stochastic depth as Euler-Maruyama equals the classic implementation."""
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _peaks  # noqa: E402
import compare_schemes  # noqa: E402
import report  # noqa: E402
import sde_noise  # noqa: E402
import speed  # noqa: E402

import odenets  # noqa: E402
from odenets import cli  # noqa: E402
from odenets.info import count_macs  # noqa: E402


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
                                 "--sweep-depths", "20", "--seeds", "0,1", "--amp", "off",
                                 "--out-dir", str(out_dir)])  # --amp off: no start-up probe per run


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
    assert count_macs(hand, shape) == count_macs(ours, shape)


def test_speed_tiny(out_dir):
    payload = speed.main(["--batch", "2", "--rounds", "2", "--warmup", "1", "--iters", "1",
                          "--ode-steps", "2", "--groups", "ode,resnet56,noise", "--memory-depths", "20,32",
                          "--out-dir", str(out_dir)])
    saved = json.loads((out_dir / "speed_cpu.json").read_text())
    check_env(saved["env"])
    assert set(saved["results"]) == {"ode/eager/fp32", "resnet56/eager/fp32", "noise/eager/fp32"}
    assert set(saved["results"]["noise/eager/fp32"]) == {"resnet20", "gauss_resnet20", "sd_resnet20",
                                                         "shake_resnet20"}
    rows = saved["results"]["resnet56/eager/fp32"]
    assert set(rows) == {"hand_resnet56", "resnet56", "lm_resnet56", "lmm3_resnet56"}
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
                    "--attacks", "none", "--amp", "off",  # attacks: test_bench_ode_noise; no amp probe
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


# -- the lent-GPU run (benchmarks/gpu_suite.sh): results survive limits, nothing crashes the rest --
def fake_row(name, seed):
    return dict(seed=seed, test_acc=0.5 + 0.01 * seed, test_loss=1.0, train_acc=0.6, train_seconds=0.1,
                wall_seconds=0.1, img_per_s=100.0, params=1, coefficients={})


@pytest.fixture
def fake_training(monkeypatch):
    """compare_schemes without training: each run calls ``behaviour(name, seed)`` and returns a row."""
    calls = []
    meta = dict(params=1, coefficients=0, blocks=9, evaluations=9, macs=1000)
    monkeypatch.setattr(compare_schemes, "model_meta", lambda name, dataset: dict(meta))

    def install(behaviour):
        def train_one(name, seed, recipe):
            calls.append((name, seed))
            behaviour(name, seed)
            return fake_row(name, seed), None
        monkeypatch.setattr(compare_schemes, "train_one", train_one)
        return calls
    return install


SCHEMES_ARGS = ["--tiny", "--dataset", "synthetic", "--schemes", "resnet,lm_resnet", "--sweep-depths", "none"]


def test_compare_schemes_keeps_partial_results_when_killed(fake_training, tmp_path):
    def behaviour(name, seed):
        if (name, seed) == ("lm_resnet20", 1):
            raise KeyboardInterrupt  # what a time limit does, as far as the files are concerned
    fake_training(behaviour)
    with pytest.raises(KeyboardInterrupt):
        compare_schemes.main(SCHEMES_ARGS + ["--seeds", "0,1", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "compare_schemes_tiny_cpu.json").read_text())
    assert saved["partial"] and saved["status"] == "running seed 1"
    assert {n: m["test_acc"]["n"] for n, m in saved["models"].items()} == {"resnet20": 2, "lm_resnet20": 1}
    assert "Partial results" in (tmp_path / "compare_schemes_tiny_cpu.md").read_text()


def test_compare_schemes_records_a_failed_run_and_goes_on(fake_training, tmp_path):
    def behaviour(name, seed):
        if name == "resnet20" and seed == 0:
            raise RuntimeError("diverged")
    calls = fake_training(behaviour)
    payload = compare_schemes.main(SCHEMES_ARGS + ["--seeds", "0,1", "--out-dir", str(tmp_path)])
    assert len(calls) == 4 and not payload["partial"]
    assert payload["failures"] == [dict(model="resnet20", seed=0, error="RuntimeError: diverged")]
    assert payload["models"]["resnet20"]["test_acc"]["n"] == 1
    assert "resnet20 seed 0 failed" in (tmp_path / "compare_schemes_tiny_cpu.md").read_text()
    # `odenets bench schemes` exits as the script does: 1 when a run failed
    assert cli.main(["bench", "schemes", *SCHEMES_ARGS, "--seeds", "0", "--out-dir", str(tmp_path)]) == 1


def test_compare_schemes_budget_starts_no_seed_that_cannot_finish(fake_training, tmp_path):
    import time
    calls = fake_training(lambda name, seed: time.sleep(0.15))  # a seed takes >= 0.3 s
    payload = compare_schemes.main(SCHEMES_ARGS + ["--seeds", "0,1,2", "--budget-s", "0.5",
                                                   "--out-dir", str(tmp_path)])
    assert [seed for _, seed in calls] == [0, 0]  # seed 1 would end past 0.5 s
    assert payload["partial"] and payload["status"].startswith("stopped before seed 1")
    assert all(m["test_acc"]["n"] == 1 for m in payload["models"].values())
    assert payload["plots"]  # the final write still draws the plots


def test_results_are_written_without_matplotlib(fake_training, monkeypatch, tmp_path):
    def no_matplotlib(*args):
        raise ModuleNotFoundError("No module named 'matplotlib'")
    monkeypatch.setattr(compare_schemes, "pyplot", no_matplotlib)
    monkeypatch.setattr(speed, "plot_memory", no_matplotlib)
    fake_training(lambda name, seed: None)
    payload = compare_schemes.main(SCHEMES_ARGS + ["--seeds", "0", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "compare_schemes_tiny_cpu.json").read_text())
    assert not saved["partial"] and saved["plots"] == [] and "matplotlib" in saved["plot_error"]
    assert payload["models"]["resnet20"]["test_acc"]["n"] == 1
    speed.main(["--groups", "ode", "--ode-steps", "2", "--batch", "2", "--rounds", "1", "--warmup", "1",
                "--memory-depths", "20", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "speed_cpu.json").read_text())
    assert saved["memory_vs_depth"]["resnet"]["20"]["saved_tensor_bytes"] > 0 and saved["plots"] == []
    assert "plot not drawn" in saved["note"]


def test_summary_of_a_partial_sweep():
    """A depth of the sweep where only one family has finished is left out of the LM claim."""
    def model(name, acc, params):
        return dict(name=name, macs=params, params=params, test_acc=dict(mean=acc, std=0.0, n=1))
    models = {"resnet20": model("resnet20", 0.8, 1), "lm_resnet20": model("lm_resnet20", 0.81, 1),
              "resnet32": model("resnet32", 0.82, 2)}
    args = compare_schemes.parse_args(["--tiny"])
    args.n_seeds = 1
    summary = compare_schemes.summarise(models, args, [20, 32])
    assert [c["resnet"] for c in summary["lm_claim"]] == ["resnet20"]


def test_speed_keeps_partial_results_when_killed(monkeypatch, tmp_path):
    real, calls = speed.measure_group, []

    def measure_group(cases, args, device, mode, dtype):
        calls.append(dtype)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cases, args, device, mode, dtype)
    monkeypatch.setattr(speed, "measure_group", measure_group)
    with pytest.raises(KeyboardInterrupt):
        speed.main(["--groups", "ode", "--ode-steps", "2", "--batch", "2", "--rounds", "2", "--warmup", "1",
                    "--dtypes", "fp32,bf16", "--memory-depths", "none", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "speed_cpu.json").read_text())
    assert saved["partial"] and list(saved["results"]) == ["ode/eager/fp32"]
    assert "not measured yet: ode/eager/bf16" in saved["note"]


def test_speed_budget_skips_and_failures_are_recorded(tmp_path):
    payload = speed.main(["--groups", "ode", "--ode-steps", "2", "--batch", "2", "--memory-depths", "none",
                          "--budget-s", "1e-9", "--out-dir", str(tmp_path)])
    assert payload["results"] == {} and list(payload["skipped_settings"]) == ["ode/eager/fp32"]
    assert not payload["partial"] and "Skipped for the time budget: ode/eager/fp32" in payload["note"]

    def broken():
        raise RuntimeError("no kernel")
    ns = type("Args", (), dict(channels_last=False, warmup=1, rounds=2, iters=1))
    rows = speed.measure_group({"broken": (broken, (16, 8, 8), 2),
                                "ok": (lambda: torch.nn.Conv2d(16, 16, 3, padding=1), (16, 8, 8), 2)},
                               ns, "cpu", "eager", "fp32")
    assert rows["broken"] == {"error": "RuntimeError: no kernel"} and rows["ok"]["s_per_step"] > 0


def test_predicted_seconds_of_a_setting():
    done = {("resnet56", "compile", "bf16"): (90.0, 3), ("ode", "eager", "bf16"): (4.0, 4)}
    assert speed.predicted_seconds("resnet56", "compile", 3, done) == 90.0  # same group, other dtype
    assert speed.predicted_seconds("resnet50", "compile", 2, done) == 60.0  # 30 s per compiled model
    assert speed.predicted_seconds("resnet50", "eager", 2, done) == 2.0
    assert speed.predicted_seconds("ode", "compile", 4, {}) == 0.0


@pytest.mark.parametrize("name, source", [
    ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA H200", "H200"), ("NVIDIA H200 NVL", "H200 NVL"), ("NVIDIA GH200 480GB", "GH200"),
    ("NVIDIA A100-SXM4-80GB", "A100"), ("Tesla T4", None)])
def test_peak_table_knows_hopper_names(name, source):
    entry = _peaks.peak_entry(name)
    assert (entry and entry[0]) == source or (entry is None and source is None)
    if source in ("H100", "H200", "GH200"):
        assert entry[1] == (989.5e12, 494.5e12, 67e12)
    if source == "H100 PCIe":
        assert entry[1] == (756.5e12, 378e12, 51e12)


def test_torchvision_check_of_the_resnet50_group():
    pytest.importorskip("torchvision")
    check = speed.torchvision_agreement("cpu", batch=1)
    assert check["max_abs_diff"] <= 1e-5 * max(1.0, check["max_abs_logit"])


def test_gpu_suite_script_runs_on_cpu(tmp_path):
    """benchmarks/gpu_suite.sh end to end in a CPU smoke configuration: every option it passes
    exists, both parts write their files, and the limits are in force."""
    import os
    import subprocess
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path), DEVICE="cpu", DATASET="synthetic", SPEED_S="120", COMPARE_S="120",
               SPEED_ARGS="--groups ode --ode-steps 2 --batch 2 --rounds 2 --warmup 1 --iters 1 "
                          "--memory-depths 20 --threads 1",
               COMPARE_ARGS="--tiny --schemes resnet --sweep-depths none --seeds 0 --batch-size 32 "
                            "--epochs 1 --threads 1 --amp off")  # no start-up amp probe (its bf16 step
    # measured ~8x a fp32 step on the 2-core dev CPU; test_speed_probe.py tests the probe)
    out = subprocess.run(["bash", str(BENCH / "gpu_suite.sh")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "== speed: exit 0" in out.stdout and "== schemes: exit 0" in out.stdout, out.stdout[-2000:]
    speed_json = json.loads((tmp_path / "speed_cpu.json").read_text())
    schemes_json = json.loads((tmp_path / "compare_schemes_gpu_cpu.json").read_text())
    assert not speed_json["partial"] and speed_json["config"]["budget_s"] == 90
    assert not schemes_json["partial"] and schemes_json["recipe"]["lr"] == 0.1  # the script's own flag
    assert schemes_json["recipe"]["batch_size"] == 32  # COMPARE_ARGS come last and override
    assert schemes_json["models"]["resnet20"]["test_acc"]["n"] == 1


def test_configuration_label_names_what_a_run_changed_of_its_preset():
    from _train_common import Recipe, configuration_label
    quick = Recipe.preset("quick").to_dict()
    assert configuration_label("quick", quick) == "quick"
    changed = Recipe.preset("quick", epochs=3, subset=20000, device="cpu").to_dict()
    assert configuration_label("quick", changed) == "quick with epochs=3, subset=20000"
    assert configuration_label("custom", quick) == "custom"  # unknown preset: the name alone


def test_speed_merge_keeps_the_settings_it_does_not_measure(tmp_path):
    tiny = ["--batch", "2", "--rounds", "1", "--warmup", "1", "--memory-depths", "none",
            "--out-dir", str(tmp_path)]
    first = speed.main(["--groups", "ode", "--ode-steps", "2", *tiny])
    second = speed.main(["--groups", "noise", "--cases", "resnet20", "--merge", *tiny])
    assert second["env"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert list(second["results"]) == ["ode/eager/fp32", "noise/eager/fp32"]
    assert second["results"]["ode/eager/fp32"] == first["results"]["ode/eager/fp32"]
    assert list(second["kept_settings"]) == ["ode/eager/fp32"]
    assert second["kept_settings"]["ode/eager/fp32"]["timestamp"] == first["env"]["timestamp"]
    assert "Kept from an earlier run (--merge; not re-measured here): ode/eager/fp32" in second["note"]
    third = speed.main(["--groups", "ode", "--ode-steps", "2", *tiny])  # no --merge: only its own
    assert list(third["results"]) == ["ode/eager/fp32"] and not third["kept_settings"]
