"""speed.py's --cases and --tag, and the README's speed goals when a setting is measured again
in a newer file (only the newest file's rows of that setting are shown)."""
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import report  # noqa: E402
import speed  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cases_and_tag(tmp_path):
    speed.main(["--groups", "noise", "--cases", "resnet20,gauss_resnet20", "--tag", "noise",
                "--batch", "2", "--rounds", "2", "--warmup", "1", "--iters", "1",
                "--memory-depths", "none", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "speed_noise_cpu.json").read_text())
    assert set(saved["results"]["noise/eager/fp32"]) == {"resnet20", "gauss_resnet20"}
    assert [g["goal"] for g in saved["goals"]] == ["Gaussian noise injection within 25% of resnet20"]
    with pytest.raises(ValueError, match="unknown case.*available: .*shake_resnet20"):
        speed.main(["--groups", "noise", "--cases", "resnet21", "--out-dir", str(tmp_path)])


def _payload(stamp, settings):
    goals = [dict(goal=f"goal {s}", setting=s, measured=f"{s} at {stamp}", value=1.0, target=2.0,
                  met=True) for s in settings]
    return dict(env=dict(device="cpu", torch="2", torch_threads=1, timestamp=stamp),
                results={s: {} for s in settings}, goals=goals)


def test_readme_shows_the_newest_measurement_of_each_setting(tmp_path):
    (tmp_path / "speed_cpu.json").write_text(json.dumps(_payload("2026-01-01", ["noise/eager/fp32",
                                                                              "ode/eager/fp32"])))
    (tmp_path / "speed_noise_cpu.json").write_text(json.dumps(_payload("2026-02-01", ["noise/eager/fp32"])))
    text = report.readme_section(tmp_path)
    assert "noise/eager/fp32 at 2026-02-01" in text and "noise/eager/fp32 at 2026-01-01" not in text
    assert "ode/eager/fp32 at 2026-01-01" in text
    assert "measured again later: in `speed_noise_cpu.json`" in text
