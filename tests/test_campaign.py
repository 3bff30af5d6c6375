"""The campaign engine (odenets/campaign): one record per run, provenance, failures recorded,
claims that keep concurrent campaigns from running a run twice, legacy summaries read as
records; and what the campaign scripts must never do to stored results (issue 26, item 9)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from odenets.campaign import Campaign, Run, collect, execute_one, pending
from odenets.campaign import claims, local
from odenets.campaign.local import default_layout, run_local
from odenets.campaign.records import read_legacy

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import converged  # noqa: E402


# ---- a fast experiment for the engine: module `campaign_fixture` in tests/fixtures -------------
FIXTURE = """
import os, time
def run(name, log, sleep=0.0, fail=False, barrier=0):
    with open(log, "a") as f:
        f.write(f"{name} {os.getpid()}\\n")
    deadline = time.time() + 90  # barrier: wait until that many processes have started a run
    while time.time() < deadline and len({l.split()[1] for l in open(log)}) < barrier:
        time.sleep(0.05)
    time.sleep(sleep)
    if fail:
        raise RuntimeError(f"{name} broke")
    return dict(test_acc=0.5, seconds=sleep)
"""


def make_campaign(tmp_path, n=4, sleep=0.0, fail=(), directory=None, barrier=0) -> Campaign:
    mod = tmp_path / "mods"
    mod.mkdir(exist_ok=True)
    (mod / "campaign_fixture.py").write_text(FIXTURE)
    log = tmp_path / "calls.log"
    runs = [Run(f"m__s{s}", dict(model="m", seed=s),
                dict(name=f"m__s{s}", log=str(log), sleep=sleep, fail=s in fail, barrier=barrier))
            for s in range(n)]
    return Campaign(directory=str(directory or tmp_path / "c"), key="k1", fn="campaign_fixture:run",
                    runs=runs, path=[str(mod)], stamp=dict(git_commit="abc1234", git_dirty=False))


def calls(tmp_path) -> list:
    log = tmp_path / "calls.log"
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def test_each_run_is_one_record_file_with_provenance_and_failures_go_on(tmp_path):
    c = make_campaign(tmp_path, n=3, fail=(1,))
    assert [execute_one(c, r) for r in c.runs] == ["done", "failed", "done"]
    records, failures = collect(c)
    assert [(r["model"], r["seed"]) for r in records] == [("m", 0), ("m", 2)]
    for r in records:
        assert r["recipe_key"] == "k1" and r["git_commit"] == "abc1234" and r["git_dirty"] is False
        for field in ("host", "torch", "threads", "workers", "executor", "finished", "seconds"):
            assert field in r, field
    assert failures == [dict(failures[0], model="m", seed=1, error="RuntimeError: m__s1 broke")]
    files = sorted(p.name for p in (tmp_path / "c" / "records").iterdir())
    assert files == ["m__s0__k1.json", "m__s1__k1.failed.json", "m__s2__k1.json"]  # no temporaries
    assert not list((tmp_path / "c" / "claims").glob("*.claim"))  # every claim released
    # the next campaign retries only the failure; a success removes the failure record
    assert [r.name for r in pending(c, records)] == ["m__s1"]
    fixed = make_campaign(tmp_path, n=3)
    assert [execute_one(fixed, r) for r in fixed.runs] == ["recorded", "done", "recorded"]
    assert collect(fixed)[1] == [] and calls(tmp_path) == ["m__s0", "m__s1", "m__s2", "m__s1"]


def test_a_live_claim_is_respected_and_a_dead_ones_taken_over(tmp_path):
    c = make_campaign(tmp_path, n=1)
    folder = tmp_path / "c" / "claims"
    folder.mkdir(parents=True)
    claim = folder / "m__s0__k1.claim"
    import socket
    claim.write_text(json.dumps(dict(host=socket.gethostname(), pid=os.getpid())))  # alive
    assert execute_one(c, c.runs[0]) == "claimed" and calls(tmp_path) == []
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim.write_text(json.dumps(dict(host=socket.gethostname(), pid=dead.pid)))
    assert execute_one(c, c.runs[0]) == "done" and calls(tmp_path) == ["m__s0"]
    claim.write_text(json.dumps(dict(host="another-node", pid=dead.pid)))  # cannot be checked
    assert claims.claim(tmp_path / "c", "m__s0__k1") is None


def test_two_campaigns_at_once_run_each_run_exactly_once(tmp_path):
    """Two campaigns over one directory, one with 2 spawned workers, one in its own process;
    every run waits until 3 processes have started one, so all of them compete for claims."""
    c = make_campaign(tmp_path, n=8, sleep=0.2, barrier=3)
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import pickle; "
              "from odenets.campaign.local import run_local; "
              "c = pickle.load(open(sys.argv[1], 'rb')); "
              "run_local(c, [r.name for r in c.runs], int(sys.argv[2]), 1, lambda: None, poll_s=0.1)")
    import pickle
    (tmp_path / "c.pkl").write_bytes(pickle.dumps(c))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "c.pkl"), workers], env=env)
             for workers in ("2", "1")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    done = calls(tmp_path)
    assert sorted(done) == sorted(r.name for r in c.runs)  # each once, none twice
    assert len({line.split()[1] for line in (tmp_path / "calls.log").read_text().splitlines()}) == 3
    records, failures = collect(c)
    assert len(records) == 8 and not failures
    for path in (tmp_path / "c" / "records").iterdir():
        assert json.loads(path.read_text())["test_acc"] == 0.5  # every record whole


def test_local_layout_defaults(monkeypatch):
    assert default_layout(None, None)[0] >= 1
    monkeypatch.setattr(local, "DEFAULT_CORES_PER_WORKER", 1)  # the measured default
    cores = len(os.sched_getaffinity(0))
    assert default_layout(None, None) == (cores, 1 if cores > 1 else None)
    assert default_layout(None, None, gpus=["0", "1", "2"]) == (3, max(1, len(os.sched_getaffinity(0)) // 3))
    assert default_layout(2, 1) == (2, 1)


def test_legacy_summary_counts_as_records(tmp_path):
    c = make_campaign(tmp_path, n=2)
    legacy = tmp_path / "old.json"
    legacy.write_text(json.dumps(dict(runs=[dict(model="m", seed=0, test_acc=0.7, recipe_key="k1")])))
    c.legacy = str(legacy)
    records, _ = collect(c)
    assert [r["seed"] for r in records] == [0] and [r.name for r in pending(c, records)] == ["m__s1"]
    run_local(c, [r.name for r in pending(c, records)], 1, None, lambda: None)
    assert calls(tmp_path) == ["m__s1"] and [r["seed"] for r in collect(c)[0]] == [0, 1]


# ---- the committed results load unchanged ------------------------------------------------------
@pytest.mark.parametrize("name,identity,default_key", [
    ("converged_cpu.json", ("model", "seed"), None),
    ("momentum_flows_pilot_cpu.json", ("model", "seed"), None),
    ("sde_noise_converged_cpu.json", ("variant", "seed"), "legacy"),
    ("cross_solver_converged_cpu.json", ("train_steps", "seed"), "legacy")])
def test_committed_results_read_as_records(name, identity, default_key):
    runs = read_legacy(BENCH / "results" / name, identity, default_key)
    assert runs and all(r["recipe_key"] for r in runs)


def fake_row(name, seed):
    acc = 0.90 + 0.001 * seed + (0.002 if name.startswith("lm") else 0.0)
    return dict(test_acc=acc, val_acc=acc - 0.01, epochs=1, train_images=64, train_seconds=1.0,
                img_per_s=64.0, params=1, coefficients={}, curve=[]), None


@pytest.fixture
def fake_converged(monkeypatch):
    trained = []
    monkeypatch.setattr(converged, "train_one", lambda n, s, r, **kw: trained.append((n, s)) or fake_row(n, s))
    monkeypatch.setattr(converged, "model_meta", lambda n, d: dict(params=1))
    return trained


def test_the_committed_converged_campaign_continues_without_retraining(fake_converged, tmp_path):
    committed = json.loads((BENCH / "results" / "converged_cpu.json").read_text())
    (tmp_path / "converged_cpu.json").write_text(json.dumps(committed))
    seeds = sorted({r["seed"] for r in committed["runs"]})
    args = ["--models", "resnet20,lm_resnet20", "--device", "cpu", "--out-dir", str(tmp_path),
            "--amp", "off"]  # the committed campaign is fp32
    converged.main(args + ["--seeds", f"{seeds[0]}-{seeds[-1]}"])
    assert fake_converged == []  # every stored run counts: nothing retrained
    converged.main(args + ["--seeds", f"{seeds[0]}-{seeds[-1] + 1}"])
    assert fake_converged == [("resnet20", seeds[-1] + 1), ("lm_resnet20", seeds[-1] + 1)]
    saved = json.loads((tmp_path / "converged_cpu.json").read_text())
    assert saved["runs"][:len(committed["runs"])] == committed["runs"]


# ---- issue 26, item 9: report-only changes nothing; malformed files give one-line errors ------
TINY = ["--config", "tiny", "--dataset", "synthetic", "--amp", "off"]


@pytest.mark.parametrize("flags", [["--epochs", "3"], ["--data-dir", "/nonexistent"],
                                   ["--models", "resnet20,lm_resnet20"]])
def test_report_only_never_changes_stored_records_or_recipe(fake_converged, tmp_path, flags):
    converged.main(TINY + ["--seeds", "0-1", "--out-dir", str(tmp_path)])
    path = tmp_path / "converged_tiny_cpu.json"
    before, md = path.read_text(), path.with_suffix(".md").read_text()
    converged.main(["--config", "tiny", "--out-dir", str(tmp_path), "--report-only", *flags])
    assert path.read_text() == before and path.with_suffix(".md").read_text() == md
    assert len(fake_converged) == 4  # report-only trained nothing


@pytest.mark.parametrize("content,message", [
    ([], "holds a JSON list, not a results object"),
    ({"recipe_key": "x"}, "has no 'runs' list"),
    ({"runs": [None]}, r"runs\[0\] is null, not a run record"),
    ({"runs": [dict(model="resnet20", seed=0, test_acc=0.9)]}, r"runs\[0\] has no recipe_key"),
    ({"runs": [dict(model="resnet20", seed=0, test_acc="0.9", recipe_key="k")]},
     r"runs\[0\]: test_acc is '0.9' \(str\), expected a number"),
    ({"runs": [dict(model="resnet20", seed=1, test_acc=0.9, recipe_key="k"),
               dict(model="resnet20", seed=1, test_acc=0.8, recipe_key="k")]},
     r"holds model resnet20, seed 1 twice under recipe key k \(runs\[0\] and runs\[1\]\)")])
@pytest.mark.parametrize("report_only", [False, True])
def test_malformed_results_files_give_one_line_errors(fake_converged, tmp_path, content, message,
                                                      report_only):
    path = tmp_path / "converged_tiny_cpu.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message) as err:
        converged.main(TINY + ["--out-dir", str(tmp_path)] + (["--report-only"] if report_only else []))
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert fake_converged == [] and json.loads(path.read_text()) == content  # nothing touched
