"""The `odenets` command line: subcommands, help, error messages, train -> eval -> plot, compare."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import odenets
from odenets import cli

TINY = ["--model", "fixtures.tiny_models:tiny", "--dataset", "synthetic", "--subset", "256",
        "--test-subset", "100", "--batch-size", "32", "--no-progress"]


def run_cli(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_entry_point_and_help():
    result = subprocess.run([sys.executable, "-m", "odenets", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for name in ("train", "compare", "list", "info", "eval", "plot"):
        assert f"    {name} " in result.stdout


def test_closed_pipe_exits_quietly():
    """`odenets list | head`: the reader closes the pipe before the listing is written."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "odenets", "list"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # closed before odenets has started: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == cli.BROKEN_PIPE_STATUS == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err


def test_every_command_module_is_registered():
    names = [cli.command_name(m) for m in cli.subcommands()]
    modules = sorted(p.stem for p in Path(odenets.commands.__file__).parent.glob("[!_]*.py"))
    assert sorted(names) == sorted(m.replace("_", "-") for m in modules)


def test_list(capsys):
    status, out, _ = run_cli(capsys, "list")
    assert status == 0
    assert "lm_resnet20" in out and "euler_maruyama" in out and "fashion-mnist" in out
    status, out, _ = run_cli(capsys, "list", "models", "--pattern", "lm_resnet*", "--names")
    assert out.split() == odenets.list_models("lm_resnet*")


def test_info(capsys):
    status, out, _ = run_cli(capsys, "info", "resnet20", "--dataset", "cifar10", "--json")
    meta = json.loads(out)
    assert status == 0 and meta["params"] == odenets.info("resnet20")["params"]
    assert meta["macs"] > 0 and meta["evaluations"] > 0
    status, out, _ = run_cli(capsys, "info", "lm_resnet20", "--dataset", "fashion-mnist")
    assert status == 0 and "macs" in out and "(1, 1, 28, 28)" in out


@pytest.mark.parametrize("argv, expected", [
    (["train", "--model", "resnet21"], ["unknown model 'resnet21'", "resnet20", "lm_resnet20"]),
    (["train", "--dataset", "mnist"], ["unknown dataset 'mnist'", "fashion-mnist", "cifar10"]),
    (["train", "--solver", "eulr"], ["unknown solver 'eulr'", "euler", "lm"]),
    (["train", "--schedule", "linear"], ["unknown schedule", "cosine", "onecycle"]),
    (["info", "nonet"], ["unknown model 'nonet'", "resnet56"]),
    (["compare", "--models", "resnet20,nonet"], ["unknown model 'nonet'"]),
    (["eval", "/nonexistent/run"], ["config.json not found"]),
    (["train", "--device", "tpu", "--dataset", "synthetic"], ["unknown device 'tpu'", "cpu, cuda"]),
])
def test_bad_names_give_one_line_listing_valid_ones(capsys, argv, expected):
    status, out, err = run_cli(capsys, *argv)
    assert status == 2 and "Traceback" not in err
    assert err.startswith(f"odenets {argv[0]}: error: ")
    for text in expected:
        assert text in err


def test_missing_dataset_says_how_to_get_it(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("ODENETS_DATA", raising=False)
    status, _, err = run_cli(capsys, "train", "--dataset", "cifar10", "--data-dir", str(tmp_path),
                             "--run-dir", str(tmp_path / "run"))
    assert status == 2 and "CIFAR-10 not found" in err and "cifar-10-python.tar.gz" in err


def test_bad_flag_values_are_argparse_errors(capsys):
    for argv in (["train", "--epochs", "two"], ["train", "--model-arg", "noequals"],
                 ["train", "--milestones", "a,b"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
        assert "error: argument" in capsys.readouterr().err


def test_train_eval_plot_resume(capsys, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    run = tmp_path / "run"
    status, out, err = run_cli(capsys, "train", *TINY, "--epochs", "1", "--run-dir", str(run))
    assert status == 0, err
    assert "test accuracy" in out and str(run) in out
    status, out, err = run_cli(capsys, "train", "--resume", str(run), "--epochs", "2",
                               "--model", "fixtures.tiny_models:tiny")
    assert status == 0, err
    assert "schedule now spans 16 steps, resuming at step 8" in " ".join(err.split())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_done"] == 2 and summary["config"]["subset"] == 256  # kept from config.json
    status, out, _ = run_cli(capsys, "eval", str(run), "--subset", "all", "--json",
                             "--model", "fixtures.tiny_models:tiny")
    result = json.loads(out)
    assert status == 0 and result["epoch"] == 2 and result["images"] == 1000  # the whole test split
    status, out, _ = run_cli(capsys, "eval", str(run), "--json",  # default: the run's test subset
                             "--trust-run-code")
    result = json.loads(out)
    assert result["images"] == 100
    assert result["acc"] == pytest.approx(summary["final"]["test_acc"], abs=1e-9)
    status, out, _ = run_cli(capsys, "eval", str(run), "--trust-run-code")  # a readable line
    assert status == 0 and out.startswith("fixtures.tiny_models:tiny after epoch 2 on synthetic test, "
                                          "100 images (the run's --test-subset")
    assert f"accuracy {result['acc']:.4f}" in out
    status, _, err = run_cli(capsys, "eval", str(run))  # the run's module:function is not imported
    assert status == 2 and "--trust-run-code" in err
    status, out, _ = run_cli(capsys, "plot", str(run), "--out", str(tmp_path / "plots"))
    assert status == 0 and (tmp_path / "plots" / "curves.png").stat().st_size > 1000
    assert "coefficients.png" not in out  # the tiny model has no scheme coefficients


def test_plot_lm_coefficients(tmp_path):
    from odenets.plot import plot_run
    from odenets.train.rundir import append_metrics
    for epoch in (1, 2, 3):
        append_metrics(tmp_path, dict(epoch=epoch, train_loss=1 / epoch, test_loss=1.1 / epoch,
                                      train_acc=0.5, test_acc=0.4, coefficients={
                                          "stages.0.flow.k": [-0.05 * epoch, 0.01],
                                          "stages.1.flow.k": [[0.1, 0.2], [0.0, 0.1]]}))
    paths = plot_run(tmp_path)  # no checkpoint, no config: the LM figures come from the metrics
    assert [p.name for p in paths] == ["curves.png", "coefficients.png", "roots.png",
                                       "lm_modified_equation.md", "lm_modified_equation.csv"]
    paths = [p for p in paths if p.suffix == ".png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_compare(capsys, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    status, out, err = run_cli(capsys, "compare", "--models",
                               "fixtures.tiny_models:tiny,fixtures.tiny_models:crash_at_never",
                               *TINY[2:], "--epochs", "1", "--out", str(tmp_path))
    assert status == 2 and "cannot load model factory" in err  # checked before any training
    status, out, err = run_cli(capsys, "compare", "--models", "resnet20,lm_resnet20", "--dataset",
                               "synthetic", "--subset", "64", "--test-subset", "64",
                               "--batch-size", "32", "--epochs", "1", "--no-progress", "--amp", "off",
                               "--out", str(tmp_path))  # --amp off: no start-up probe per model
    assert status == 0, err
    table = json.loads((tmp_path / "compare.json").read_text())
    assert [r["model"] for r in table["rows"]] == ["resnet20", "lm_resnet20"]
    assert table["rows"][1]["params"] == odenets.info("lm_resnet20")["params"]
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model"))
    assert lines[header + 2].split()[0] == "resnet20" and lines[header + 3].split()[0] == "lm_resnet20"
    ks = table["rows"][1]["coefficients"]
    learned = next(line for line in lines if line.startswith("lm_resnet20: learned"))
    assert f"over {sum(map(len, ks.values())) - 1} steps" in learned  # stage 0's k_0 left out
    assert "(k_0 of stages.0.flow: never trained, left out)" in learned


def test_compare_leaves_out_coefficients_that_are_never_trained():
    from odenets.commands.compare import format_coefficients, untrained_coefficients
    model = odenets.create("lm_resnet20")
    assert untrained_coefficients(model) == {"stages.0.flow.k": [0]}
    assert untrained_coefficients(odenets.create("resnet20")) == {}
    row = dict(model="lm", coefficients={"stages.0.flow.k": [-0.9, 0.1, 0.2], "stages.1.flow.k": [0.3]},
               untrained=untrained_coefficients(model))
    assert format_coefficients([row]) == ["lm: learned k_n in [+0.100, +0.300], mean +0.200 over 3 steps "
                                          "(k_0 of stages.0.flow: never trained, left out)"]


def test_list_models_columns_stay_aligned(capsys):
    status, out, _ = run_cli(capsys, "list", "models", "--pattern", "*ode_resnet20")
    params = [line.index(" 0.1") for line in out.splitlines()]
    assert status == 0 and len(params) == 2 and len(set(params)) == 1, out


def test_resume_or_eval_with_another_model_is_a_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    run = tmp_path / "run"
    assert run_cli(capsys, "train", *TINY, "--epochs", "1", "--run-dir", str(run))[0] == 0
    status, _, err = run_cli(capsys, "train", "--resume", str(run), "--epochs", "2",
                             "--model-arg", "width=4")
    assert status == 2 and "Traceback" not in err
    assert err.startswith("odenets train: error: ") and "--model-arg width=4 differs from the run's" in err
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "model_args": {"width": 4}}))
    status, _, err = run_cli(capsys, "eval", str(run), "--model", "fixtures.tiny_models:tiny")
    assert status == 2 and err.startswith("odenets eval: error: ") and "does not fit" in err


def test_compare_refuses_an_existing_run_before_training_anything(capsys, tmp_path):
    (tmp_path / "lm_resnet20").mkdir()
    (tmp_path / "lm_resnet20" / "checkpoint.pt").write_bytes(b"an earlier run")
    status, _, err = run_cli(capsys, "compare", "--models", "resnet20,lm_resnet20", "--dataset",
                             "synthetic", "--epochs", "1", "--no-progress", "--out", str(tmp_path))
    assert status == 2 and "lm_resnet20 already holds a run" in err
    assert not (tmp_path / "resnet20").exists()  # nothing was trained


@pytest.mark.parametrize("files", [(".odenets-run",), ("checkpoint.pt",),
                                   ("config.json", "metrics.jsonl"), ("config.json", "summary.json")])
def test_compare_refuses_an_out_that_is_a_training_run(capsys, tmp_path, files):
    """--out RUN_DIR (or a folder inside one) would put the comparison among another run's
    files: one-line error, exit 2, nothing written."""
    run = tmp_path / "run"
    run.mkdir()
    for name in files:
        (run / name).write_text("{}")
    before = sorted(p.name for p in run.iterdir())
    for out in (run, run / "cmp"):
        status, _, err = run_cli(capsys, "compare", "--models", "resnet20", "--dataset", "synthetic",
                                 "--subset", "64", "--test-subset", "64", "--batch-size", "32",
                                 "--epochs", "1", "--no-progress", "--out", str(out))
        assert status == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"odenets compare: error: --out {out} ")
        assert f"a training run directory (it holds {files[0]})" in err and "new or empty" in err
        assert sorted(p.name for p in run.iterdir()) == before


def test_run_marker_needs_more_than_a_lone_config(tmp_path):
    from odenets.train.rundir import run_marker
    (tmp_path / "config.json").write_text("{}")  # a user's own config file: not a run
    assert run_marker(tmp_path) is None and run_marker(tmp_path / "missing") is None
    (tmp_path / "metrics.jsonl").write_text("")
    assert run_marker(tmp_path) == "config.json"


def test_bench_loads_its_script_even_if_another_module_has_the_name(monkeypatch):
    import types

    from odenets.commands import bench
    monkeypatch.setitem(sys.modules, "speed", types.ModuleType("speed"))  # e.g. a PyPI package
    module = bench.load_script("speed")
    assert Path(module.__file__).name == "speed.py" and callable(module.main)
    assert sys.modules["speed"] is not module  # the other module is left in place
    monkeypatch.delitem(sys.modules, module.__name__)


def test_compare_subset_default_is_the_one_its_help_shows(capsys):
    from odenets.commands.compare import DEFAULT_SUBSET
    assert cli.build_parser().parse_args(["compare", "--models", "resnet20"]).subset == DEFAULT_SUBSET
    with pytest.raises(SystemExit):
        cli.main(["compare", "--help"])
    assert f"(default: {DEFAULT_SUBSET})" in " ".join(capsys.readouterr().out.split())


def test_info_cli_and_python_share_one_default_and_print_it(capsys):
    """`odenets info NAME` and `odenets.info(NAME)` count the same model (CIFAR-10's shape,
    10 classes) and both say which shape and classes they counted for."""
    status, out, _ = run_cli(capsys, "info", "resnet20", "--json")
    meta, py = json.loads(out), odenets.info("resnet20")
    assert status == 0 and (meta["params"], meta["macs"]) == (py["params"], py["macs"])
    assert meta["dataset"] == "cifar10" and py["input_size"] == (1, 3, 32, 32) and py["num_classes"] == 10
    status, out, _ = run_cli(capsys, "info", "resnet20")
    assert "(1, 3, 32, 32)" in out and "cifar10" in out and "num_classes  10" in out
