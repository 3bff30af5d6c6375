"""What a run writes for people: progress off a terminal (plain lines, no carriage returns),
metrics.csv beside metrics.jsonl, optional TensorBoard logs, the epoch line."""
import csv
import io
import json
from pathlib import Path

import pytest

from odenets import cli
from odenets.train import TrainConfig, progress, rundir, train
from odenets.train.loop import _nfe_text


def tiny_config(tmp_path, **kw):
    base = dict(model="fixtures.tiny_models:tiny", dataset="synthetic", subset=128, test_subset=64,
                batch_size=32, lr=0.05, epochs=2, log_every=1, run_dir=str(tmp_path / "run"))
    return TrainConfig(**{**base, **kw})


def test_progress_off_a_terminal_is_plain_lines(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "INTERVAL", 0.0)  # a line at every update
    train(tiny_config(tmp_path))
    captured = capsys.readouterr()
    assert "\r" not in captured.out + captured.err
    lines = [line for line in captured.out.splitlines() if " step " in line]
    assert lines, captured.out
    # 4 steps per epoch, a line after steps 1..3 (the epoch line follows step 4)
    assert lines[0].startswith("epoch 1/2 step 1/4 | loss ") and "acc " in lines[0]
    assert " img/s | ETA " in lines[0]
    assert sum(line.startswith("epoch 2/2 step") for line in lines) == 3


def test_progress_is_a_bar_only_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True
    from tqdm import tqdm
    bar = progress.progress(10, stream=Terminal())
    assert isinstance(bar, tqdm)
    bar.close()
    assert isinstance(progress.progress(10, stream=io.StringIO()), progress.LineProgress)


def test_line_progress_waits_for_its_interval(capsys):
    p = progress.LineProgress(100, interval=3600)
    p.set_postfix(loss="1.0")
    p.update(5)
    assert capsys.readouterr().out == ""


def test_format_eta():
    assert [progress.format_eta(s) for s in (0, 52.4, 725, 3729)] == ["0:00", "0:52", "12:05", "1:02:09"]


def test_metrics_csv_mirrors_metrics_jsonl(tmp_path):
    train(tiny_config(tmp_path, model="lm_resnet20", model_args=dict(widths=(4, 8, 8), stem_width=4), progress=False,
                      subset=64, test_subset=32))
    run = tmp_path / "run"
    records = rundir.read_metrics(run)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for record, row in zip(records, rows):
        assert float(row["test_acc"]) == record["test_acc"]
        assert float(row["lr"]) == record["lr"]
        k = record["coefficients"]["stages.0.flow.k"]
        assert [float(row[f"coefficients/stages.0.flow.k/{i}"]) for i in range(len(k))] == k


def test_metrics_csv_is_rewritten_with_the_history():
    flat = rundir.flatten({"epoch": 1, "coefficients": {"a.k": [0.5, -0.25]}})
    assert flat == {"epoch": 1, "coefficients/a.k/0": 0.5, "coefficients/a.k/1": -0.25}


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import builtins
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith(("tensorboard", "torch.utils.tensorboard")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    code = cli.main(["train", "--model", "fixtures.tiny_models:tiny", "--dataset", "synthetic",
                     "--subset", "64", "--test-subset", "32", "--epochs", "1", "--no-progress",
                     "--tensorboard", "--run-dir", str(tmp_path / "run")])
    assert code == 2 and not (tmp_path / "run").exists()
    assert "pip install tensorboard" in capsys.readouterr().err


def test_tensorboard_logs_steps_epochs_and_coefficients(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    train(tiny_config(tmp_path, model="lm_resnet20", model_args=dict(widths=(4, 8, 8), stem_width=4), progress=False,
                      subset=64, test_subset=32, tensorboard=True))
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss_step", "train/lr", "test/acc", "train/acc"} <= tags
    assert len(events.Scalars("train/loss_step")) == 4  # 2 epochs of 2 steps
    assert any(t.startswith("coefficients/stages.0.flow.k/") for t in tags)
    assert [e.step for e in events.Scalars("test/acc")] == [1, 2]


def test_epoch_line_names_the_backward_nfe_only_when_there_is_one():
    assert _nfe_text(None) == ""
    assert _nfe_text({"forward": 14.0, "backward": 0.0}) == " | NFE/step fwd 14.0"
    assert _nfe_text({"forward": 14.0, "backward": 20.0}) == " | NFE/step fwd 14.0 bwd 20.0"


# -- figures: points within epochs, titles, block names ------------------------------------------
def test_epoch_curve_averages_runs_of_steps():
    curve = progress.epoch_curve([4.0, 2.0, 1.0, 1.0], [8, 16, 32, 32], 32, epoch=1,
                                 lrs=[0.1, 0.1, 0.01, 0.01], points=2)
    assert curve == dict(epoch=[1.5, 2.0], loss=[3.0, 1.0], acc=[0.375, 1.0], lr=[0.1, 0.01])
    assert len(progress.epoch_curve([1.0] * 3, [1] * 3, 1, 0, [0.1] * 3)["epoch"]) == 3


def test_run_records_points_within_epochs_and_plots_are_titled(tmp_path):
    from odenets.plot import _flatten, plot_run, run_title
    train(tiny_config(tmp_path, model="lm_resnet20", model_args=dict(widths=(4, 8, 8), stem_width=4),
                      progress=False, subset=128, test_subset=32))
    run = tmp_path / "run"
    records = rundir.read_metrics(run)
    assert [len(r["train_curve"]["epoch"]) for r in records] == [4, 4]  # 4 steps per epoch
    assert records[1]["train_curve"]["epoch"][-1] == 2.0
    assert run_title(rundir.read_json(run / "config.json")) == "lm_resnet20 on synthetic, solver lm"
    assert run_title({"model": "mymodel:build", "dataset": "synthetic"}) == "mymodel:build on synthetic"
    labels, _, starts, _ = _flatten(records[-1]["coefficients"])
    assert labels[:4] == ["n=0 (stage 0)", "n=1 (stage 0)", "n=2 (stage 0)", "n=3 (stage 1)"]
    assert starts == [0, 3, 5]  # stages 1 and 2 start with a transition block (no k)
    names = [p.name for p in plot_run(run)]
    # coefficients.png is the k_n figure; lm_coefficients.png (the same numbers) is not drawn
    assert names == ["curves.png", "coefficients.png", "roots.png", "lm_modified_equation.md",
                     "lm_modified_equation.csv"]


# -- docs, licence, `odenets list` ---------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


def test_no_file_cites_a_document_the_repo_lacks():
    import re
    cited = {}
    for path in [*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("odenets/**/*.py"),
                 *ROOT.glob("solvers/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py"),
                 ROOT / "benchmarks/results/RESULTS.md"]:
        text = path.read_text()
        assert "DESIGN" + ".md" not in text, f"{path} cites a design document the repo lacks"
        for doc in re.findall(r"docs/[\w./-]+\.md", text):
            cited.setdefault(doc, path)
    assert cited, "no docs/ citations found"
    missing = {doc: str(path) for doc, path in cited.items() if not (ROOT / doc).is_file()}
    assert not missing
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_list_describes_presets_and_names_lists_them_bare(capsys):
    import odenets
    assert cli.main(["list", "models", "--pattern", "lm_resnet2*"]) == 0
    line, = capsys.readouterr().out.splitlines()
    assert line.split()[:3] == ["lm_resnet20", "lm", "0.270M"] and "depth 20" in line
    assert cli.main(["list", "models", "--pattern", "lmm3_resnet20"]) == 0
    assert "lmm(history=3)" in capsys.readouterr().out
    assert cli.main(["list", "--names", "--pattern", "lm_resnet2*"]) == 0
    assert capsys.readouterr().out.splitlines() == ["models:", "  lm_resnet20", "solvers:",
                                                    "  (none match 'lm_resnet2*')", "datasets:",
                                                    "  (none match 'lm_resnet2*')"]
    assert odenets.list_models() == sorted(__import__("odenets.commands.list", fromlist=["x"])
                                           .parameter_table())


def test_preset_parameter_table_matches_the_models():
    """The cached counts of `odenets list` (regenerate: odenets.commands.list.write_parameter_table)
    against real builds, for a few depth-20 presets (the table is written by the same function)."""
    import odenets
    from odenets.commands.list import count_parameters, parameter_table
    table = parameter_table()
    missing = sorted(set(odenets.list_models()) - set(table))
    assert not missing, f"{missing} not in preset_params.json: run write_parameter_table()"
    for name in ("resnet20", "lm_resnet20", "lmm3_resnet20", "rev_resnet20", "shake_resnet20"):
        assert table[name] == count_parameters(name), name


def test_bench_overhead_and_report_readme_are_opt_in():
    from odenets.commands import bench
    assert bench.SCRIPTS["overhead"] == "solver_overhead.py"
    assert (ROOT / "benchmarks" / bench.SCRIPTS["overhead"]).is_file()
    text = (ROOT / "benchmarks" / "report.py").read_text()
    assert '"--readme"' in text and "--no-readme" not in text


# -- small inconsistencies -------------------------------------------------------------------------
def test_bench_sde_options_all_have_help(monkeypatch):
    import argparse
    from odenets.commands import bench
    seen = {}

    def capture(self, args=None, namespace=None):
        seen["parser"] = self
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        bench.load_script("sde").main([])
    missing = [a.option_strings for a in seen["parser"]._actions if not a.help]
    assert not missing


def test_subset_zero_is_an_error_in_compare_as_in_train(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["compare", "--models", "resnet20", "--subset", "0"])
    assert exit_.value.code == 2 and "'all'" in capsys.readouterr().err
    assert cli.main(["train", "--subset", "0"]) == 2
    from odenets.commands.compare import subset_arg
    assert subset_arg("all") is None and subset_arg("512") == 512


def test_info_defaults_to_the_python_api_default_and_says_so(capsys):
    """`odenets info` counts what `odenets.info` counts by default (CIFAR-10's 3 x 32 x 32, 10
    classes; issue 26 item 15), not `odenets train`'s default dataset, and prints which."""
    assert cli.main(["info", "resnet20", "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["dataset"] == "cifar10" and meta["input_size"] == [1, 3, 32, 32]


def test_plain_lines_keep_their_interval_in_training_test_evaluation_and_eval(tmp_path, capsys, monkeypatch):
    """The plain line comes when its interval is up, not at the next `log_every` boundary
    (issue 26 item 13: 'every 30 s' came about once a minute), and the per-epoch test
    evaluation and `odenets eval` show progress too (they printed nothing for minutes)."""
    monkeypatch.setattr(progress, "INTERVAL", 0.0)  # a line at every update
    train(tiny_config(tmp_path, log_every=4, subset=128, batch_size=32, eval_batch_size=16, epochs=1))
    out = capsys.readouterr().out
    assert [f"step {k}/4" in out for k in (1, 2, 3)] == [True] * 3, out  # 4 steps, log_every 4
    assert "epoch 1/1 test step 1/4" in out, out
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    status = cli.main(["eval", str(tmp_path / "run"), "--model", "fixtures.tiny_models:tiny",
                       "--batch-size", "16", "--json"])
    captured = capsys.readouterr()
    assert status == 0 and json.loads(captured.out)["images"] == 64  # stdout stays JSON
    assert "eval test step 1/4" in captured.err


def test_compare_shows_overall_progress_across_models_and_epochs():
    from odenets.commands.compare import overall_progress
    assert overall_progress(0, 2, 2, 0.0) == "[model 1/2, epochs 1-2 of 4] (time left: known after the first model)"
    assert overall_progress(1, 3, 2, 100.0) == "[model 2/3, epochs 3-4 of 6] 1:40 elapsed, about 3:20 left"
