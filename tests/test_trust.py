"""Trust (issue 13): a run directory is data. Reading one imports nothing it names; corrupted or
incomplete files give one-line errors naming the file; user files are never overwritten; two
processes never write one run; bad hyper-parameters are refused before anything is written."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from odenets import cli

TESTS = Path(__file__).parent
TINY = ["--dataset", "synthetic", "--subset", "64", "--test-subset", "32", "--batch-size", "32",
        "--no-progress", "--epochs", "1"]
FACTORY = textwrap.dedent("""
    import os
    from torch import nn

    def tiny(num_classes=10, in_channels=3):
        open(os.path.join(os.path.dirname(__file__), "called"), "a").write("x")
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes))
""")


def run_cli(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def cwd_module(tmp_path, monkeypatch):
    """A factory module ``mymod`` in the working directory, which is NOT on sys.path (as under
    the ``odenets`` console script); ``called`` appears beside it when the factory runs."""
    (tmp_path / "mymod.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    here = {os.path.abspath(p or os.curdir) for p in ("", ".", str(tmp_path))}
    monkeypatch.setattr(sys, "path", [p for p in sys.path if os.path.abspath(p or os.curdir) not in here])
    sys.modules.pop("mymod", None)
    yield tmp_path
    sys.modules.pop("mymod", None)


@pytest.fixture(scope="module")
def preset_run(tmp_path_factory):
    """A finished 1-epoch run of the resnet20 preset (trained once for the module)."""
    run = tmp_path_factory.mktemp("preset") / "B"
    assert cli.main(["train", "--model", "resnet20", *TINY, "--run-dir", str(run)]) == 0
    return run


def copy_run(run, tmp_path):
    dest = tmp_path / "B"
    shutil.copytree(run, dest)
    for name in (".odenets-lock",):
        (dest / name).unlink(missing_ok=True)
    return dest


# ---- 1 + issue 15.3: a run directory never imports code; --model from ./ works -------------
def test_module_function_model_from_cwd_trains_then_needs_consent(cwd_module, capsys):
    status, _, err = run_cli(capsys, "train", "--model", "mymod:tiny", *TINY, "--run-dir", "B")
    assert status == 0, err  # old code: "No module named 'mymod'" under the console script
    (cwd_module / "called").unlink()
    sys.modules.pop("mymod", None)
    for argv in (["eval", "B"], ["analyze", "--run", "B", "--out", "an"],
                 ["train", "--resume", "B", "--epochs", "2"]):
        status, _, err = run_cli(capsys, *argv)
        assert status == 2 and "pass --model mymod:tiny" in err and "--trust-run-code" in err, argv
        assert len(err.strip().splitlines()) == 1
        assert not (cwd_module / "called").exists() and "mymod" not in sys.modules, argv
    status, out, err = run_cli(capsys, "plot", "B")  # needs only the metrics
    assert status == 0 and "curves.png" in out, err
    assert not (cwd_module / "called").exists()
    status, out, err = run_cli(capsys, "eval", "B", "--model", "mymod:tiny", "--json")
    assert status == 0 and json.loads(out)["epoch"] == 1, err
    status, _, err = run_cli(capsys, "eval", "B", "--model", "mymod:other")
    assert status == 2 and "differs from the run's model 'mymod:tiny'" in err
    status, _, err = run_cli(capsys, "train", "--resume", "B", "--epochs", "2", "--trust-run-code")
    assert status == 0, err


def test_a_hostile_config_json_runs_nothing(preset_run, tmp_path, capsys):
    """The reproduction: model torch.hub:load with a hubconf.py shipped inside the run."""
    run = copy_run(preset_run, tmp_path)
    (run / "hub").mkdir()
    (run / "hub" / "hubconf.py").write_text(
        f"open({str(tmp_path / 'pwned')!r}, 'w').write('x')\ndef x(**kw):\n    raise SystemExit\n")
    config = json.loads((run / "config.json").read_text())
    config.update(model="torch.hub:load", model_args={"repo_or_dir": str(run / "hub"), "model": "x",
                                                      "source": "local"})
    (run / "config.json").write_text(json.dumps(config))
    for argv in (["eval", run], ["analyze", "--run", run, "--out", tmp_path / "an"],
                 ["train", "--resume", run, "--epochs", "2"], ["plot", run]):
        try:
            run_cli(capsys, *argv)
        except SystemExit:
            pass
        assert not (tmp_path / "pwned").exists(), argv


def test_plot_builds_no_model_and_still_draws_lm_roots(tmp_path, monkeypatch):
    from odenets import plot
    from odenets.train import model as model_module
    from odenets.train.rundir import append_metrics, write_json
    write_json(tmp_path / "config.json", dict(model="lmm3_resnet20", dataset="synthetic"))
    append_metrics(tmp_path, dict(epoch=1, train_loss=1, test_loss=1, train_acc=0.5, test_acc=0.5,
                                  coefficients={"stages.0.flow.k": [-0.05, 0.01]}))
    (tmp_path / "checkpoint.pt").write_bytes(b"never read by plot")
    monkeypatch.setattr(model_module, "build_model", lambda *a, **k: pytest.fail("model built"))
    names = [p.name for p in plot.plot_run(tmp_path)]
    assert "roots.png" in names and "lm_modified_equation.md" in names


# ---- 3 + 11: checkpoints are verified; bad files are one-line errors -----------------------
def test_corrupted_checkpoint_is_refused(preset_run, tmp_path, capsys):
    run = copy_run(preset_run, tmp_path)
    data = bytearray((run / "checkpoint.pt").read_bytes())
    start = data.find(b"data/0") + 200  # inside the tensor records
    for i in range(100):
        data[start + 37 * i] ^= 0xFF
    (run / "checkpoint.pt").write_bytes(bytes(data))
    for argv in (["eval", run], ["train", "--resume", run, "--epochs", "2"]):
        status, _, err = run_cli(capsys, *argv)
        assert status == 2 and "checkpoint.pt is corrupted" in err, (argv, err)
        assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("change", ["bare tensor", "optimizer", "rng", "history"])
def test_incomplete_checkpoint_is_a_one_line_error(preset_run, tmp_path, capsys, change):
    run = copy_run(preset_run, tmp_path)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    if change == "bare tensor":
        state = torch.zeros(3)
    else:
        del state[change]
    torch.save(state, run / "checkpoint.pt")
    status, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2")
    assert status == 2 and str(run / "checkpoint.pt") in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("config", [[1, 2], {"model": "resnet20", "epochs": "ten"},
                                    {"model": 5}, {"model": "resnet20", "lr": None}])
def test_bad_config_json_is_a_one_line_error(preset_run, tmp_path, capsys, config):
    run = copy_run(preset_run, tmp_path)
    (run / "config.json").write_text(json.dumps(config))
    for argv in (["eval", run], ["train", "--resume", run, "--epochs", "2"]):
        status, _, err = run_cli(capsys, *argv)
        assert status == 2 and str(run / "config.json") in err and "Traceback" not in err, err


def test_disk_full_while_saving_is_one_line_and_keeps_the_checkpoint(preset_run, tmp_path, capsys,
                                                                     monkeypatch):
    run = copy_run(preset_run, tmp_path)
    before = (run / "checkpoint.pt").read_bytes()

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")
    monkeypatch.setattr(torch, "save", full)
    status, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2")
    assert status == 2 and "cannot save" in err and "checkpoint.pt" in err, err
    assert (run / "checkpoint.pt").read_bytes() == before
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    assert not list(run.glob(".checkpoint.pt.*.tmp"))


# ---- 4 + 5: user files are never overwritten; one process per run -------------------------
def test_a_directory_of_user_files_is_not_overwritten(tmp_path, capsys):
    mine = tmp_path / "P"
    mine.mkdir()
    for name in ("config.json", "metrics.jsonl", "summary.json"):
        (mine / name).write_text("my own data\n")
    for argv in (["--run-dir", mine], ["--resume", mine]):
        status, _, err = run_cli(capsys, "train", "--model", "resnet20", *TINY, *argv)
        assert status == 2 and "P" in err, err
    assert all((mine / n).read_text() == "my own data\n" for n in ("config.json", "metrics.jsonl",
                                                                  "summary.json"))
    assert sorted(p.name for p in mine.iterdir()) == ["config.json", "metrics.jsonl", "summary.json"]


def test_an_existing_run_needs_resume_even_before_its_first_checkpoint(tmp_path, capsys):
    run = tmp_path / "R"
    run.mkdir()
    (run / ".odenets-run").write_text("odenets run directory\n")
    (run / "config.json").write_text("{}")
    status, _, err = run_cli(capsys, "train", "--model", "resnet20", *TINY, "--run-dir", run)
    assert status == 2 and "already holds a run" in err and "--resume" in err


def test_a_locked_run_is_refused_naming_the_holder(preset_run, tmp_path, capsys):
    run = copy_run(preset_run, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(run / '.odenets-lock')!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, str(os.getpid()).encode())
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        status, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2")
        assert status == 2 and f"PID {holder.pid}" in err and "in use" in err, err
        assert json.loads((run / "summary.json").read_text())["epochs_done"] == 1
    finally:
        holder.kill()
        holder.wait()
    status, _, err = run_cli(capsys, "train", "--resume", run, "--epochs", "2")
    assert status == 0, err  # the lock died with its holder


def test_stale_temp_files_are_cleaned_on_resume(preset_run, tmp_path, capsys):
    run = copy_run(preset_run, tmp_path)
    stale = [run / ".summary.json.99999.tmp", run / ".config.json.99999.tmp",
             run / ".checkpoint.pt.99999.tmp"]
    for path in stale:
        path.write_text("half written")
    assert run_cli(capsys, "train", "--resume", run, "--epochs", "2")[0] == 0
    assert not any(p.exists() for p in stale)


# ---- 9: non-finite hyper-parameters are refused before anything is written ----------------
@pytest.mark.parametrize("flag", [("--lr", "nan"), ("--lr", "inf"), ("--weight-decay", "inf"),
                                  ("--gamma", "inf"), ("--warmup-epochs", "inf"),
                                  ("--momentum", "nan"), ("--label-smoothing", "nan")])
def test_non_finite_hyper_parameters_are_refused_up_front(tmp_path, capsys, flag):
    run = tmp_path / "run"
    status, _, err = run_cli(capsys, "train", "--model", "resnet20", *TINY, *flag, "--run-dir", run)
    assert status == 2 and flag[0][2:].replace("-", "_") in err and "Traceback" not in err, err
    assert not run.exists()


# ---- found by probing again ------------------------------------------------------------------
@pytest.mark.parametrize("line", ['[1, 2]', '{"epoch": 1}', '{"epoch": 1, "train_loss": "x", '
                                  '"test_loss": 1, "train_acc": 1, "test_acc": 1}',
                                  '{"epoch": 1, "train_loss": 1, "test_loss": 1, "train_acc": 1, '
                                  '"test_acc": 1, "coefficients": {"k": [5.0, "a"]}}',
                                  '{"epoch": 1, "train_loss": 1, "test_loss": 1, "train_acc": 1, '
                                  '"test_acc": 1, "train_curve": {"loss": 3}}',
                                  '{"epoch": 1, "train_loss": 1, "test_loss": 1, "train_acc": 1, '
                                  '"test_acc": 1, "train_curve": [1, 2]}'])
def test_plot_refuses_malformed_metrics_in_one_line(tmp_path, capsys, line):
    (tmp_path / "metrics.jsonl").write_text(line + "\n")
    status, _, err = run_cli(capsys, "plot", tmp_path)
    assert status == 2 and "metrics.jsonl, record 1" in err, err


def test_plot_names_a_metrics_file_that_is_not_utf8(tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_bytes(b'{"epoch": 1, "train_loss": \xff}\n')
    status, _, err = run_cli(capsys, "plot", tmp_path)
    assert status == 2 and "metrics.jsonl: not UTF-8" in err and "Traceback" not in err, err


def test_hostile_json_nesting_and_reserved_model_args_are_one_line_errors(tmp_path):
    from odenets.train.config import TrainConfig, read_config
    from odenets.train.model import build_model
    (tmp_path / "config.json").write_text("[" * 100000)
    with pytest.raises(ValueError, match="config.json: not a readable JSON file"):
        read_config(tmp_path / "config.json")
    with pytest.raises(ValueError, match="cannot set num_classes"):
        build_model(TrainConfig(model="resnet20", model_args={"num_classes": 5}), 10, 3)
    with pytest.raises(ValueError, match="both set the scheme; give one"):
        build_model(TrainConfig(model="resnet20", solver="lm", model_args={"solver": "rk2"}), 10, 3)
    model = build_model(TrainConfig(model="resnet20", model_args={"solver": "lm"}), 10, 3)
    assert model.config.solver == "lm"  # the benchmarks' way of changing a preset's scheme
