"""Resumable campaign runs (benchmarks/_partial.py, `Campaign(resumable=True)`): a run killed
between epochs continues from its partial checkpoint when the campaign is started again and
ends bit-identical to an uninterrupted run; an unusable partial run is named and restarted;
claims made before the host's last boot are stale."""
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import converged  # noqa: E402

from odenets.campaign import claims  # noqa: E402
from odenets.train import loop  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread", "no_plots")

# 2 epochs of 2 steps each, one thread, one in-process worker: the deterministic CPU path
ARGS = ["--config", "tiny", "--dataset", "synthetic", "--amp", "off", "--device", "cpu",
        "--epochs", "2", "--models", "resnet20", "--seeds", "0", "--threads", "1", "--workers", "1"]
FOLDER = "converged_tiny_cpu"


@pytest.fixture(scope="module")
def no_plots():
    """The figures are not what these tests check (and cost seconds each)."""
    plot, converged.plot = converged.plot, lambda payload, stem: []
    yield
    converged.plot = plot


def run_campaign(out: Path) -> None:
    converged.main(ARGS + ["--out-dir", str(out)])


def result(out: Path) -> tuple[dict, dict]:
    records = out / FOLDER / "records"
    (record,) = [json.loads(p.read_text()) for p in records.glob("*.json")
                 if not p.name.endswith(".failed.json")]
    return record, torch.load(records / record["weights"], weights_only=True)


def partial_run(out: Path) -> Path:
    (work,) = (out / FOLDER / "partial").iterdir()
    return work / "run"


def assert_same_training(record, weights, reference) -> None:
    ref_record, ref_weights = reference
    assert record["test_acc"] == ref_record["test_acc"] and record["val_acc"] == ref_record["val_acc"]
    assert [c["train_loss"] for c in record["curve"]] == [c["train_loss"] for c in ref_record["curve"]]
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[k], ref_weights[k]) for k in weights)  # bitwise


def stop_after_epoch(monkeypatch, stop: int = 1) -> None:
    """The run raises right after its checkpoint of epoch ``stop`` is written (as if killed)."""
    original = loop._checkpoint

    def checkpoint_then_die(run, epoch, record, history):
        original(run, epoch, record, history)
        if epoch + 1 == stop:
            raise RuntimeError(f"killed after epoch {stop}")
    monkeypatch.setattr(loop, "_checkpoint", checkpoint_then_die)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    run_campaign(out)
    record, weights = result(out)
    assert record["resumed_from_epoch"] == 0 and "pieces" not in record
    assert not (out / FOLDER / "partial").exists()  # removed once the record is written
    return record, weights


def test_a_run_stopped_after_epoch_1_continues_and_matches_an_uninterrupted_run(
        uninterrupted, tmp_path, monkeypatch, capsys):
    with monkeypatch.context() as m:
        stop_after_epoch(m, 1)
        run_campaign(tmp_path)
    run = partial_run(tmp_path)
    assert (run / "checkpoint.pt").is_file()
    assert list((tmp_path / FOLDER / "records").glob("*.failed.json"))  # the campaign went on
    (run / ".checkpoint.pt.vm.1.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")  # a torn save
    capsys.readouterr()
    run_campaign(tmp_path)
    assert "continuing from the checkpoint of epoch 1/2" in capsys.readouterr().out
    record, weights = result(tmp_path)
    assert_same_training(record, weights, uninterrupted)
    assert record["resumed_from_epoch"] == 1
    assert [(p["from_epoch"], p["to_epoch"]) for p in record["pieces"]] == [(0, 1), (1, 2)]
    assert record["seconds"] == pytest.approx(sum(p["seconds"] for p in record["pieces"]), rel=0.5)
    assert record["train_seconds"] > 0 and len(record["curve"]) == 2
    assert not (tmp_path / FOLDER / "partial").exists()
    assert not list((tmp_path / FOLDER / "records").glob("*.failed.json"))
    summary = json.loads((tmp_path / "converged_tiny_cpu.json").read_text())
    assert [r["resumed_from_epoch"] for r in summary["runs"]] == [1]


def test_a_run_stopped_after_its_last_epoch_is_recorded_without_training_again(
        uninterrupted, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        stop_after_epoch(m, 2)  # killed before its record was written
        run_campaign(tmp_path)
    trained = []
    original = loop._train_epoch
    monkeypatch.setattr(loop, "_train_epoch", lambda *a: trained.append(a[1]) or original(*a))
    run_campaign(tmp_path)
    assert trained == []
    record, weights = result(tmp_path)
    assert_same_training(record, weights, uninterrupted)
    assert record["resumed_from_epoch"] == 2 and record["pieces"][0]["to_epoch"] == 2


def test_a_run_killed_with_sigkill_is_taken_over_and_resumed(uninterrupted, tmp_path):
    code = (f"import os, signal, sys; sys.path.insert(0, {str(BENCH)!r}); import torch; "
            "torch.set_num_threads(1); import converged; from odenets.train import loop; "
            "converged.plot = lambda payload, stem: []; "
            "orig = loop._checkpoint\n"
            "def die(*a):\n    orig(*a); os.kill(os.getpid(), signal.SIGKILL)\n"
            f"loop._checkpoint = die; converged.main({ARGS + ['--out-dir', str(tmp_path)]!r})")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert list((tmp_path / FOLDER / "claims").glob("*.claim"))  # the dead process's claim
    assert not (tmp_path / FOLDER / "records").exists() or not list((tmp_path / FOLDER / "records").glob("*.json"))
    run_campaign(tmp_path)
    record, weights = result(tmp_path)
    assert_same_training(record, weights, uninterrupted)
    assert record["resumed_from_epoch"] == 1 and record["pieces"][0]["to_epoch"] == 1
    assert record["pieces"][0]["seconds"] > 0


@pytest.mark.parametrize("damage", ["truncated checkpoint", "garbage checkpoint", "pieces.json"])
def test_an_unusable_partial_run_is_named_and_restarted(uninterrupted, tmp_path, monkeypatch,
                                                        capsys, damage):
    with monkeypatch.context() as m:
        stop_after_epoch(m, 1)
        run_campaign(tmp_path)
    run = partial_run(tmp_path)
    ckpt = run / "checkpoint.pt"
    if damage == "truncated checkpoint":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif damage == "garbage checkpoint":
        data = bytearray(ckpt.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte inside the tensor data
        ckpt.write_bytes(bytes(data))
    else:
        (run.parent / "pieces.json").write_text("{not json")
    capsys.readouterr()
    run_campaign(tmp_path)
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if "cannot be continued" in line]
    assert len(lines) == 1 and "restarting this run from epoch 0" in lines[0]
    assert "Traceback" not in out.out + out.err
    record, weights = result(tmp_path)
    assert_same_training(record, weights, uninterrupted)  # restarted whole: the same run
    assert record["resumed_from_epoch"] == 0 and "pieces" not in record
    assert len(record["discarded_partial"]) == 1
    assert not (tmp_path / FOLDER / "partial").exists()


def test_a_partial_run_of_another_config_is_not_continued(tmp_path, capsys):
    """A checkpoint written with other settings (here: 3 epochs) is never continued as if it
    were this run's."""
    from _partial import checkpoint_problem

    import odenets
    from odenets.data import get_spec
    from odenets.train import TrainConfig, train
    spec = get_spec("synthetic")
    cfg = TrainConfig(model="resnet20", dataset="synthetic", subset=32, test_subset=32, epochs=1,
                      batch_size=32, run_dir=str(tmp_path / "run"), progress=False, amp="off")
    net = lambda name: odenets.create(name, num_classes=spec.num_classes,  # noqa: E731
                                      in_chans=spec.input_size[0])
    model = net("resnet20")
    train(cfg, model=model)
    assert checkpoint_problem(tmp_path / "run", cfg, model) == (1, None)
    epoch, why = checkpoint_problem(tmp_path / "run", dataclasses.replace(cfg, lr=0.3), model)
    assert epoch == 0 and "lr: 0.1 there, 0.3 now" in why
    epoch, why = checkpoint_problem(tmp_path / "run", dataclasses.replace(cfg, epochs=3), model)
    assert epoch == 0 and "epochs: 1 there, 3 now" in why
    epoch, why = checkpoint_problem(tmp_path / "run", cfg, net("resnet32"))
    assert epoch == 0 and "does not fit the model" in why
    epoch, why = checkpoint_problem(tmp_path / "run", cfg, net("sd_resnet20"))  # + a noise stream
    assert epoch == 0 and why


def test_a_claim_from_before_the_last_boot_is_stale(tmp_path):
    folder = tmp_path / "claims"
    folder.mkdir()
    path = folder / "r__k.claim"
    path.write_text(json.dumps(dict(host=socket.gethostname(), pid=os.getpid(), boot="an-old-boot")))
    assert claims.stale(path) == (claims.boot_id() is not None)
    path.write_text(json.dumps(dict(host=socket.gethostname(), pid=os.getpid(), boot=claims.boot_id())))
    assert not claims.stale(path)  # this process: alive, this boot


def test_a_parked_run_continues_from_a_copy_of_its_parked_files_only(uninterrupted, tmp_path,
                                                                      monkeypatch):
    import park
    here, there = tmp_path / "here", tmp_path / "there"
    with monkeypatch.context() as m:
        stop_after_epoch(m, 1)
        run_campaign(here)
    ((work, epochs, files),) = park.park_all(here)
    assert epochs == 1 and {f.name for f in files} == {
        "pieces.json", "checkpoint.pt", "config.json", "metrics.jsonl", ".odenets-run"}
    (piece,) = json.loads((work / "pieces.json").read_text())["pieces"]
    assert piece["to_epoch"] == 1 and 0 <= piece["seconds"] < 600  # closed at its checkpoint
    for f in files:  # what a commit carries, checked out later (a checkout sets new mtimes)
        copy = there / f.relative_to(here)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(f.read_bytes())
        os.utime(copy, (piece["started"] + 7200, piece["started"] + 7200))
    run_campaign(there)
    record, weights = result(there)
    assert_same_training(record, weights, uninterrupted)
    assert record["pieces"][0]["seconds"] == piece["seconds"]  # not the two hours of the checkout
    assert not (there / FOLDER / "partial").exists()


def test_park_names_runs_without_a_checkpoint_and_parks_nothing(tmp_path, capsys):
    import park
    work = tmp_path / FOLDER / "partial" / "resnet20__s0__abc"
    (work / "run").mkdir(parents=True)
    assert park.main(["--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "resnet20__s0__abc: not parked: no checkpoint yet" in out and "no unfinished run" in out
