"""The hostile probe, command line and files (issue 26's last 'done when'): `odenets` train /
eval / plot / analyze / info / list with bad flags and missing or corrupt run directories,
checkpoints and metrics; benchmarks/converged.py --report-only on malformed results files; full
disks. Every attempt must end in its expected class (tests/fixtures/hostile.py); attempts that
must not touch stored files list them in ``keep`` (a change is data lost). The Python API:
tests/test_hostile_probe.py."""
import itertools
import json
import re
import shutil
import sys
from pathlib import Path
from unittest import mock

import pytest

from fixtures.hostile import Attempt, Err, Ok, classify, disk_full_under, run_cli, tally

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
TINY = ["--dataset", "synthetic", "--subset", "32", "--test-subset", "16", "--batch-size", "16",
        "--no-progress", "--amp", "off", "--epochs", "1", "--model-arg", "depths=(1,1,1)",
        "--model-arg", "widths=(4,8,8)"]
W = {}  # paths of the workspace (fixture `workspace`), read when an attempt runs


def path(key, *parts) -> str:
    return str(Path(W[key], *parts))


def cli(*argv):
    """``odenets ARGV``, ``{key}`` in an argument replaced by the workspace path ``W[key]``."""
    return lambda: run_cli(*(re.sub(r"\{(\w+)\}", lambda m: W.get(m[1], m[0]), a) for a in argv))


def train(*flags, model="resnet20"):
    """``odenets train`` into a new run directory of its own."""
    return cli("train", "--model", model, *TINY, "--run-dir", f"{{tmp}}/new{next(NEW)}", *flags)


NEW = itertools.count()


def kept(*names, run="run"):
    return lambda: [path(run, n) for n in names]


RUN_FILES = ("checkpoint.pt", "config.json", "metrics.jsonl", "summary.json")


def one_line(r) -> bool:
    return "Traceback" not in r.err


TRAIN = [
    Attempt("train --epochs 0", train("--epochs", "0"), Err(r"epochs")),
    Attempt("train --epochs -1", train("--epochs", "-1"), Err(r"epochs")),
    Attempt("train --epochs 1.5", train("--epochs", "1.5"), Err(r"--epochs.*1.5")),
    Attempt("train --lr -0.1", train("--lr", "-0.1"), Err(r"lr")),
    Attempt("train --momentum 1.5", train("--momentum", "1.5"), Err(r"momentum")),
    Attempt("train --weight-decay -1", train("--weight-decay", "-1"), Err(r"weight.decay")),
    Attempt("train --gamma 0", train("--gamma", "0"), Err(r"gamma")),
    Attempt("train --label-smoothing 1", train("--label-smoothing", "1"), Err(r"label.smoothing")),
    Attempt("train --warmup-epochs -1", train("--warmup-epochs", "-1"), Err(r"warmup")),
    Attempt("train --milestones 0.5,abc", train("--milestones", "0.5,abc"), Err(r"milestones")),
    Attempt("train --milestones 1.5", train("--milestones", "1.5"), Err(r"milestones")),
    Attempt("train --milestones 0.9,0.1", train("--milestones", "0.9,0.1"), Err(r"milestones")),
    Attempt("train --schedule linear", train("--schedule", "linear"), Err(r"schedule")),
    Attempt("train --amp fp16", train("--amp", "fp16"), Err(r"amp")),
    Attempt("train --compile maybe", train("--compile", "maybe"), Err(r"compile")),
    Attempt("train --threads 0", train("--threads", "0"), Err(r"threads")),
    Attempt("train --threads -2", train("--threads", "-2"), Err(r"threads")),
    Attempt("train --batch-size 0", train("--batch-size", "0"), Err(r"batch.size")),
    Attempt("train --batch-size -1", train("--batch-size", "-1"), Err(r"batch.size")),
    Attempt("train --eval-batch-size 0", train("--eval-batch-size", "0"), Err(r"eval.batch.size")),
    Attempt("train --precise-bn -1", train("--precise-bn", "-1"), Err(r"precise.bn")),
    Attempt("train --log-every 0", train("--log-every", "0"), Err(r"log.every")),
    Attempt("train --device tpu", train("--device", "tpu"), Err(r"device")),
    Attempt("train --device cuda:99", train("--device", "cuda:99"), Err(r"cuda")),
    Attempt("train --seed -1", train("--seed", "-1"), Err(r"seed")),
    Attempt("train --seed 2**32", train("--seed", str(2**32)), Err(r"seed")),
    Attempt("train --subset 0", train("--subset", "0"), Err(r"subset")),
    Attempt("train --subset -5", train("--subset", "-5"), Err(r"subset")),
    Attempt("train --subset 10**12", train("--subset", str(10**12)), Err(r"subset")),
    Attempt("train --test-subset 10**9", train("--test-subset", str(10**9)), Err(r"subset")),
    Attempt("train --val-split 10**9", train("--val-split", str(10**9)), Err(r"val.split")),
    Attempt("train --val-split -1", train("--val-split", "-1"), Err(r"val.split")),
    Attempt("train --val-split 4968", train("--val-split", "4968"), Ok(lambda r: "32 training" in r.out)),
    Attempt("train --model nope", train(model="nope"), Err(r"nope")),
    Attempt("train --model os:getcwd", train(model="os:getcwd"), Err(r"os:getcwd")),
    Attempt("train --model nomodule:fn", train(model="no_such_module_x:fn"), Err(r"no_such_module_x")),
    Attempt("train --dataset nope", train("--dataset", "nope"), Err(r"nope")),
    Attempt("train cifar10 missing data", train("--dataset", "cifar10", "--data-dir", "{tmp}/nodata"), Err(r"cifar")),
    Attempt("train --solver rk5", train("--solver", "rk5"), Err(r"rk5")),
    Attempt("train --model-arg noequals", train("--model-arg", "depths"), Err(r"KEY=VALUE|depths")),
    Attempt("train --model-arg bogus=1", train("--model-arg", "bogus=1"), Err(r"bogus")),
    Attempt("train --model-arg depths=[0,1,1]", train("--model-arg", "depths=[0,1,1]"), Err(r"depths")),
    Attempt("train --model-arg widths=abc", train("--model-arg", "widths=abc"), Err(r"widths")),
    Attempt("train --model-arg tied=maybe", train("--model-arg", "tied=maybe"), Err(r"tied")),
    Attempt("train lm k=5", train("--model-arg", "solver_options={'k': 5}", model="lm_resnet20"), Err(r"k")),
    Attempt("train --recipe nope", train("--recipe", "nope"), Err(r"recipe")),
    Attempt("train --milestones ''", train("--milestones", ""), Err(r"milestones")),
    Attempt("train --data-dir a file", train("--dataset", "fashion-mnist", "--data-dir", "{afile}"), Err(r"afile")),
    Attempt("train --tensorboard without it", train("--tensorboard"), Err(r"tensorboard")),
    Attempt("train --device cuda without one", train("--device", "cuda"), Err(r"cuda|CUDA")),
    Attempt("train solver_options=5", train("--model-arg", "solver_options=5", model="lm_resnet20"), Err(r"solver_options")),
    Attempt("train --precise-bn 10**9", train("--precise-bn", str(10**9)), Ok(lambda r: "test" in r.out)),
    Attempt("train --resume missing", cli("train", "--resume", "{tmp}/missing"), Err(r"missing")),
    Attempt("train --resume empty dir", cli("train", "--resume", "{empty}"), Err(r"empty|run")),
    Attempt("train --resume a file", cli("train", "--resume", "{afile}"), Err(r"afile")),
    Attempt("train --resume corrupt checkpoint", cli("train", "--resume", "{garbage_ckpt}", "--epochs", "2"),
            Err(r"checkpoint"), keep=kept(*RUN_FILES, run="garbage_ckpt")),
    Attempt("train --resume bad config", cli("train", "--resume", "{bad_config}", "--epochs", "2"),
            Err(r"config.json"), keep=kept("checkpoint.pt", "config.json", run="bad_config")),
    Attempt("train over a run without --resume", cli("train", "--model", "resnet20", *TINY, "--run-dir", "{run}"),
            Err(r"resume"), keep=kept(*RUN_FILES)),
    Attempt("train --resume --epochs 0", cli("train", "--resume", "{run}", "--epochs", "0"), Err(r"epochs"),
            keep=kept(*RUN_FILES)),
    Attempt("train --resume config epochs 'ten'", cli("train", "--resume", "{text_epochs}"), Err(r"epochs"),
            keep=kept("checkpoint.pt", "config.json", run="text_epochs")),
    Attempt("train --resume --model another", cli("train", "--resume", "{run}", "--model", "lm_resnet20"),
            Err(r"model"),
            keep=kept(*RUN_FILES)),
    Attempt("train --resume a checkpoint of another model", cli("train", "--resume", "{swapped_ckpt}", "--epochs", "2"),
            Err(r"checkpoint"), keep=kept(*RUN_FILES, run="swapped_ckpt")),
    Attempt("train --run-dir a file", cli("train", "--model", "resnet20", *TINY, "--run-dir", "{afile}"),
            Err(r"afile"),
            keep=lambda: [W["afile"]]),
    Attempt("train --run-dir under a file", cli("train", "--model", "resnet20", *TINY, "--run-dir", "{afile}/x"),
            Err(r"afile")),
]

EVAL = [
    Attempt("eval correct", cli("eval", "{run}", "--json"),
            Ok(lambda r: abs(json.loads(r.out)["acc"] - json.loads(
                Path(W["run"], "summary.json").read_text())["final"]["test_acc"]) < 1e-9)),
    Attempt("eval missing dir", cli("eval", "{tmp}/missing"), Err(r"missing")),
    Attempt("eval a file", cli("eval", "{afile}"), Err(r"afile")),
    Attempt("eval empty dir", cli("eval", "{empty}"), Err(r"empty")),
    Attempt("eval no checkpoint", cli("eval", "{no_ckpt}"), Err(r"checkpoint")),
    Attempt("eval garbage checkpoint", cli("eval", "{garbage_ckpt}"), Err(r"checkpoint")),
    Attempt("eval truncated checkpoint", cli("eval", "{half_ckpt}"), Err(r"checkpoint")),
    Attempt("eval empty checkpoint", cli("eval", "{empty_ckpt}"), Err(r"checkpoint")),
    Attempt("eval config not JSON", cli("eval", "{bad_config}"), Err(r"config.json")),
    Attempt("eval config a list", cli("eval", "{list_config}"), Err(r"config.json")),
    Attempt("eval config without model", cli("eval", "{nomodel_config}"), Err(r"config.json|model")),
    Attempt("eval --solver rk5", cli("eval", "{run}", "--solver", "rk5"), Err(r"rk5")),
    Attempt("eval --solver-opt noequals", cli("eval", "{run}", "--solver", "rk4", "--solver-opt", "k"),
            Err(r"KEY=VALUE|solver-opt")),
    Attempt("eval --solver-opt k=", cli("eval", "{run}", "--solver", "lm", "--solver-opt", "k="), Err(r"\bk\b")),
    Attempt("eval --solver-opt bogus=1", cli("eval", "{run}", "--solver", "rk4", "--solver-opt", "bogus=1"),
            Err(r"bogus")),
    Attempt("eval --solver-opt k=5", cli("eval", "{run}", "--solver", "lm", "--solver-opt", "k=5"), Err(r"k=5")),
    Attempt("eval backward_euler iterations=10**9", cli("eval", "{run}", "--solver", "backward_euler", "--solver-opt",
                                                        "iterations=1000000000"), Err(r"iterations")),
    Attempt("eval --solver-opt without --solver", cli("eval", "{run}", "--solver-opt", "k=0.1"), Err(r"solver")),
    Attempt("eval --solver lm (not learned)", cli("eval", "{run}", "--solver", "lm"), Err(r"did not learn")),
    Attempt("eval --solver leapfrog on resnet", cli("eval", "{run}", "--solver", "leapfrog"), Err(r"leapfrog")),
    Attempt("eval --solver dopri5 untied", cli("eval", "{run}", "--solver", "dopri5"), Err(r"tied|dopri5")),
    Attempt("eval shake noise on resnet", cli("eval", "{run}", "--solver", "euler_maruyama", "--solver-opt", "noise=shake"),
            Err(r"shake|pair")),
    Attempt("eval --steps 0", cli("eval", "{tied}", "--steps", "0"), Err(r"steps")),
    Attempt("eval --steps -1", cli("eval", "{tied}", "--steps", "-1"), Err(r"steps")),
    Attempt("eval --steps 10**12", cli("eval", "{tied}", "--steps", str(10**12)), Err(r"steps")),
    Attempt("eval --steps 10**8", cli("eval", "{tied}", "--steps", str(10**8)), Err(r"steps")),
    Attempt("eval --steps on untied run", cli("eval", "{run}", "--steps", "4"), Err(r"steps|tied")),
    Attempt("eval tied --steps 4 correct", cli("eval", "{tied}", "--steps", "4", "--json"),
            Ok(lambda r: 0 <= json.loads(r.out)["acc"] <= 1)),
    Attempt("eval tied --solver rk4 --steps 3", cli("eval", "{tied}", "--solver", "rk4", "--steps", "3", "--json"),
            Ok(lambda r: 0 <= json.loads(r.out)["acc"] <= 1)),
    Attempt("eval tied dopri5 rtol=-1", cli("eval", "{tied}", "--solver", "dopri5", "--solver-opt", "rtol=-1"),
            Err(r"rtol")),
    Attempt("eval tied dopri5 max_num_steps=0",
            cli("eval", "{tied}", "--solver", "dopri5", "--solver-opt", "max_num_steps=0"),
            Err(r"max_num_steps")),
    Attempt("eval tied rk4 steps=2 as option", cli("eval", "{tied}", "--solver", "rk4", "--solver-opt", "steps=2"),
            Err(r"steps")),
    Attempt("eval checkpoint of another model", cli("eval", "{swapped_ckpt}"), Err(r"checkpoint")),
    Attempt("eval without summary.json", cli("eval", "{no_summary}", "--json"),
            Ok(lambda r: 0 <= json.loads(r.out)["acc"] <= 1)),
    Attempt("eval --device cuda without one", cli("eval", "{run}", "--device", "cuda"), Err(r"cuda|CUDA")),
    Attempt("eval --solver torchode:dopri5 without it", cli("eval", "{tied}", "--solver", "torchode:dopri5"),
            Err(r"torchode")),
    Attempt("eval --solver sde:euler bad option", cli("eval", "{tied}", "--solver", "sde:euler", "--solver-opt", "dt=-1"),
            Err(r"dt")),
    Attempt("eval --subset 0", cli("eval", "{run}", "--subset", "0"), Err(r"subset")),
    Attempt("eval --subset -1", cli("eval", "{run}", "--subset", "-1"), Err(r"subset")),
    Attempt("eval --subset 10**9", cli("eval", "{run}", "--subset", str(10**9)), Err(r"subset")),
    Attempt("eval --subset abc", cli("eval", "{run}", "--subset", "abc"), Err(r"subset")),
    Attempt("eval --batch-size 0", cli("eval", "{run}", "--batch-size", "0"), Err(r"batch.size")),
    Attempt("eval --split val", cli("eval", "{run}", "--split", "val"), Err(r"split")),
    Attempt("eval --device bogus", cli("eval", "{run}", "--device", "bogus"), Err(r"device")),
    Attempt("eval --model nope:fn", cli("eval", "{run}", "--model", "no_such_module_x:fn"), Err(r"no_such_module_x")),
]

PLOT = [
    Attempt("plot correct", cli("plot", "{run}", "--out", "{tmp}/plots"),
            Ok(lambda r: any(Path(W["tmp"], "plots").glob("*.png")))),
    Attempt("plot missing dir", cli("plot", "{tmp}/missing"), Err(r"missing")),
    Attempt("plot a file", cli("plot", "{afile}"), Err(r"afile")),
    Attempt("plot empty dir", cli("plot", "{empty}"), Err(r"metrics")),
    Attempt("plot metrics garbage", cli("plot", "{bad_metrics}", "--out", "{tmp}/p1"), Err(r"metrics.jsonl")),
    Attempt("plot metrics empty", cli("plot", "{empty_metrics}", "--out", "{tmp}/p2"), Err(r"metrics")),
    Attempt("plot metrics a JSON list", cli("plot", "{list_metrics}", "--out", "{tmp}/p3"), Err(r"metrics.jsonl")),
    Attempt("plot metrics NaN loss", cli("plot", "{nan_metrics}", "--out", "{tmp}/p4"),
            Ok(lambda r: any(Path(W["tmp"], "p4").glob("*.png")))),
    Attempt("plot metrics cut mid-line", cli("plot", "{cut_metrics}", "--out", "{tmp}/p5"), Err(r"metrics.jsonl")),
    Attempt("plot metrics without test_acc", cli("plot", "{partial_metrics}", "--out", "{tmp}/p6"),
            Err(r"metrics.jsonl")),
    Attempt("plot --out a file", cli("plot", "{run}", "--out", "{afile}"), Err(r"afile"), keep=lambda: [W["afile"]]),
    Attempt("plot --out under a file", cli("plot", "{run}", "--out", "{afile}/x"), Err(r"afile")),
    Attempt("analyze --out a file", cli("analyze", "--out", "{afile}"), Err(r"afile"), keep=lambda: [W["afile"]]),
    Attempt("analyze --run missing", cli("analyze", "--out", "{tmp}/an", "--run", "{tmp}/missing"), Err(r"missing")),
    Attempt("analyze --run garbage checkpoint", cli("analyze", "--out", "{tmp}/an", "--run", "{garbage_ckpt}"),
            Err(r"checkpoint")),
    Attempt("analyze --run bad config", cli("analyze", "--out", "{tmp}/an", "--run", "{bad_config}"),
            Err(r"config.json")),
    Attempt("info unknown", cli("info", "resnet21"), Err(r"resnet21")),
    Attempt("info --dataset nope", cli("info", "resnet20", "--dataset", "nope"), Err(r"nope")),
    Attempt("info --solver rk5", cli("info", "resnet20", "--solver", "rk5"), Err(r"rk5")),
    Attempt("info --solver dopri5 untied", cli("info", "resnet20", "--solver", "dopri5"), Err(r"tied|dopri5")),
    Attempt("info lm_resnet20 correct", cli("info", "lm_resnet20", "--json"),
            Ok(lambda r: json.loads(r.out)["coefficients"] > 0)),
    Attempt("info correct", cli("info", "resnet20", "--json"),
            Ok(lambda r: json.loads(r.out)["params"] == 269722 == sum(
        p.numel() for p in __import__("odenets").create("resnet20").parameters()))),
    Attempt("list bad kind", cli("list", "schemes"), Err(r"schemes")),
    Attempt("list --pattern no match", cli("list", "models", "--pattern", "zzz*"), Err(r"zzz")),
    Attempt("list lm_* names", cli("list", "models", "--pattern", "lm_*", "--names"),
            Ok(lambda r: r.out.split() and all(n.startswith("lm_") for n in r.out.split()))),
    Attempt("compare --models ''", cli("compare", "--models", "", "--out", "{tmp}/cmp1"), Err(r"models")),
    Attempt("compare --models nope", cli("compare", "--models", "resnet20,nope", "--out", "{tmp}/cmp2"), Err(r"nope")),
    Attempt("compare --models twice", cli("compare", "--models", "resnet20,resnet20", "--out", "{tmp}/cmp3", *TINY),
            Err(r"resnet20")),
    Attempt("compare --out a file", cli("compare", "--models", "resnet20", "--out", "{afile}", *TINY), Err(r"afile"),
            keep=lambda: [W["afile"]]),
    # a comparison beside a run's files: its own run directory and compare.json, the run untouched
    Attempt("compare --out a run", cli("compare", "--models", "resnet20", "--out", "{cmp_run}", *TINY),
            Ok(lambda r: Path(W["cmp_run"], "compare.json").is_file()), keep=kept(*RUN_FILES, run="cmp_run")),
    Attempt("compare --out the same again", cli("compare", "--models", "resnet20", "--out", "{cmp_run}", *TINY),
            Err(r"resnet20|exist|resume"), keep=kept(*RUN_FILES, "compare.json", run="cmp_run")),
    Attempt("bench nope", cli("bench", "nope"), Err(r"nope")),
    Attempt("bench report bad results dir", cli("bench", "report", "--results", "{afile}"), Err(r"afile|results")),
    Attempt("list datasets names", cli("list", "datasets", "--names"), Ok(lambda r: "synthetic" in r.out.split())),
    Attempt("no command", cli(), Err(r"usage|COMMAND")),
    Attempt("unknown command", cli("trian"), Err(r"trian")),
]


# ---- benchmarks/converged.py --report-only on malformed results files ---------------------------
def converged(*flags):
    """converged.main --report-only on ``{tmp}/conv`` (its file made by `stored`)."""
    def attempt():
        import converged as script
        return script.main(["--config", "tiny", "--dataset", "synthetic", "--out-dir", path("tmp", "conv"),
                            "--report-only", *flags])
    return attempt


def stored(content=None):
    """``keep`` of a converged attempt: ``{tmp}/conv/converged_tiny_cpu.json`` made to hold
    ``content`` (bytes, JSON of a Python value, "dir": a directory; None: no file)."""
    def prepare():
        folder = Path(W["tmp"], "conv")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        target = folder / "converged_tiny_cpu.json"
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif content == "dir":
            target.mkdir()
        elif content is not None:
            target.write_text(json.dumps(content))
        return [target] if target.is_file() else []
    return prepare


def _stored_runs():
    saved = json.loads(Path(W["tmp"], "conv", "converged_tiny_cpu.json").read_text())
    return saved["recipe_key"], [{k: r[k] for k in record(seconds=None) if k in r} for r in saved["runs"]]


def record(**changes):
    """A run record (None: the key left out)."""
    made = {"model": "resnet20", "seed": 0, "test_acc": 0.5, "seconds": 60.0, "recipe_key": "k", **changes}
    return {k: v for k, v in made.items() if v is not None}


GOOD = {"recipe_key": "k", "runs": []}
CONVERGED = [
    Attempt("converged not JSON", converged(), Err(r"not valid JSON"), keep=stored(b"{runs: [")),
    Attempt("converged empty file", converged(), Err(r"not valid JSON"), keep=stored(b"")),
    Attempt("converged binary file", converged(), Err(r"UTF-8|JSON"), keep=stored(b"\xff\xfe\x00garbage")),
    Attempt("converged a directory", converged(), Err(r"converged_tiny_cpu.json"), keep=stored("dir")),
    Attempt("converged no file", converged(), Err(r"no campaign"), keep=stored()),
    Attempt("converged runs a dict", converged(), Err(r"runs"), keep=stored({**GOOD, "runs": {"a": 1}})),
    Attempt("converged record a list", converged(), Err(r"runs\[0\]"), keep=stored({**GOOD, "runs": [[1, 2]]})),
    Attempt("converged test_acc NaN", converged(), Err(r"test_acc"),
            keep=stored({**GOOD, "runs": [record(test_acc=float("nan"))]})),
    Attempt("converged test_acc 1.5", converged(), Err(r"test_acc"),
            keep=stored({**GOOD, "runs": [record(test_acc=1.5)]})),
    Attempt("converged seed a string", converged(), Err(r"seed"), keep=stored({**GOOD, "runs": [record(seed="0")]})),
    Attempt("converged no model", converged(), Err(r"model"),
            keep=stored({**GOOD, "runs": [record(model=None)]})),
    # a record without 'seconds' (older campaigns): reported, the run and its recipe kept
    Attempt("converged no seconds", lambda: (stored({**GOOD, "runs": [record(seconds=None)]})(), converged()())[1],
            Ok(lambda r: r == 0 and _stored_runs() == ("k", [record(seconds=None)]))),
    Attempt("converged seconds -1", converged(), Err(r"seconds"),
            keep=stored({**GOOD, "runs": [record(seconds=-1.0)]})),
    Attempt("converged test_acc as percent", converged(), Err(r"test_acc"),
            keep=stored({**GOOD, "runs": [record(test_acc=93.5)]})),
    Attempt("converged recipe_key a list", converged(), Err(r"recipe_key"),
            keep=stored({**GOOD, "recipe_key": ["k"]})),
    Attempt("converged script prints one line", lambda: _script_result(), Err(r"not valid JSON")),
]


def _script_result():
    """The script as a user runs it: a one-line error, no traceback."""
    import subprocess
    from fixtures.hostile import CliResult
    folder = Path(W["tmp"], "conv_script")
    folder.mkdir(exist_ok=True)
    (folder / "converged_tiny_cpu.json").write_text("{runs: [")
    env = {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "converged.py"), "--config", "tiny",
                        "--dataset", "synthetic", "--out-dir", str(folder), "--report-only"],
                       capture_output=True, text=True, env=env, timeout=120)
    return CliResult(p.returncode, p.stdout, p.stderr)


# ---- full disks: a write under {tmp}/full takes 16 bytes, then fails with ENOSPC ----------------
def full_disk(fn, where="full"):
    """``fn()`` while files opened for writing under ``{tmp}/WHERE`` meet a full disk."""
    return lambda: disk_full_under(Path(W["tmp"], where), fn)


def _copy_run(name):
    target = Path(W["tmp"], name)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(W["run"], target)
    return target


def _resume_full():
    return run_cli("train", "--resume", path("tmp", "full"), "--epochs", "2")


def _report_full():
    import converged as script
    return script.main(["--config", "tiny", "--dataset", "synthetic", "--out-dir", path("tmp", "full"),
                        "--report-only"])


def _full_kept(source, *names):
    """``keep``: ``{tmp}/full`` made a copy of ``W[source]``; its files ``names``."""
    def prepare():
        target = Path(W["tmp"], "full")
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(W[source], target)
        return [target / n for n in names]
    return prepare


DISK = [
    Attempt("full disk: train a new run", full_disk(lambda: run_cli("train", "--model", "resnet20", *TINY, "--run-dir",
                                                                      path("tmp", "full", "new"))), Err(r"disk full")),
    Attempt("full disk: train --resume", full_disk(_resume_full), Err(r"disk full"),
            keep=_full_kept("run", "checkpoint.pt", "summary.json", "metrics.jsonl")),
    Attempt("full disk: eval --json", full_disk(lambda: run_cli("eval", "{run}".format(**W), "--json")),
            Ok(lambda r: "acc" in json.loads(r.out))),
    Attempt("full disk: plot", full_disk(lambda: run_cli("plot", W["run"], "--out", path("tmp", "full", "plots"))),
            Err(r"disk full")),
    Attempt("full disk: export-pretrained", full_disk(lambda: run_cli(
        "export-pretrained", W["run"], "--name", "resnet20", "--out", path("tmp", "full"))),
        Err(r"cannot write .*resnet20.pt.*disk full"), keep=_full_kept("weights", "resnet20.pt", "weights.json")),
    Attempt("export-pretrained corrupt summary", cli("export-pretrained", "{bad_summary}", "--name", "resnet20",
                                                     "--out", "{tmp}/w2"), Err(r"summary.json")),
    Attempt("export-pretrained corrupt registry",
            cli("export-pretrained", "{run}", "--name", "resnet20", "--out", "{badreg}"),
            Err(r"weights.json"), keep=lambda: [path("badreg", "weights.json")]),
    Attempt("full disk: converged --report-only", full_disk(_report_full), Err(r"disk full"),
            keep=_full_kept("campaign", "converged_tiny_cpu.json")),
]

ATTEMPTS = TRAIN + EVAL + PLOT + CONVERGED + DISK


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A trained tiny run, a tied one, a stored tiny campaign and damaged copies of the run."""
    tmp = tmp_path_factory.mktemp("hostile")
    W.clear()
    W.update(tmp=str(tmp), run=str(tmp / "run"), tied=str(tmp / "tied"), empty=str(tmp / "empty"),
             afile=str(tmp / "afile"))
    assert run_cli("train", "--model", "resnet20", *TINY, "--run-dir", W["run"]).status == 0
    assert run_cli("train", "--model", "preact_resnet20", *TINY, "--model-arg", "tied=true",
                   "--run-dir", W["tied"]).status == 0
    (tmp / "empty").mkdir()
    (tmp / "afile").write_text("a user's file\n")
    ckpt = (tmp / "run" / "checkpoint.pt").read_bytes()
    damaged = {"no_ckpt": ("checkpoint.pt", None), "garbage_ckpt": ("checkpoint.pt", b"garbage" * 100),
               "half_ckpt": ("checkpoint.pt", ckpt[:len(ckpt) // 2]), "empty_ckpt": ("checkpoint.pt", b""),
               "bad_config": ("config.json", b"{not json"), "list_config": ("config.json", b"[]"),
               "nomodel_config": ("config.json", b'{"dataset": "synthetic"}'),
               "bad_metrics": ("metrics.jsonl", b"not json\n"), "empty_metrics": ("metrics.jsonl", b""),
               "list_metrics": ("metrics.jsonl", b"[1, 2]\n"),
               "nan_metrics": ("metrics.jsonl", b'{"epoch": 1, "train_loss": NaN, "test_loss": NaN, '
                                                b'"train_acc": 0.1, "test_acc": 0.1}\n')}
    lines = (tmp / "run" / "metrics.jsonl").read_bytes()
    config = json.loads((tmp / "run" / "config.json").read_text())
    damaged.update(bad_summary=("summary.json", b"{oops"), no_summary=("summary.json", None),
                   swapped_ckpt=("checkpoint.pt", (tmp / "tied" / "checkpoint.pt").read_bytes()),
                   cut_metrics=("metrics.jsonl", lines[:len(lines) // 2]),
                   partial_metrics=("metrics.jsonl", b'{"epoch": 1}\n'),
                   text_epochs=("config.json", json.dumps({**config, "epochs": "ten"}).encode()))
    W["cmp_run"] = str(_copy_run("cmp_run"))
    for name, (file, content) in damaged.items():
        target = _copy_run(name)
        W[name] = str(target)
        if content is None:
            (target / file).unlink()
        else:
            (target / file).write_bytes(content)
    weights = tmp / "weights"  # shipped weights and their registry, before an export
    weights.mkdir()
    (weights / "resnet20.pt").write_bytes(b"old weights")
    (weights / "weights.json").write_text('{"resnet20": {"file": "resnet20.pt"}}\n')
    (tmp / "badreg").mkdir()
    (tmp / "badreg" / "weights.json").write_text("[1, 2]\n")
    W.update(weights=str(weights), badreg=str(tmp / "badreg"))
    import converged as script  # a stored tiny campaign, its runs faked (no training)
    from odenets.campaign import local
    campaign = tmp / "campaign"
    row = dict(test_acc=0.5, val_acc=0.5, epochs=1, train_images=32, train_seconds=1.0,
               img_per_s=1.0, params=1, coefficients={}, curve=[])
    with mock.patch.object(script, "train_one", lambda n, s, r, **kw: (dict(row), None)), \
            mock.patch.object(script, "model_meta", lambda n, d: dict(params=1)), \
            mock.patch.object(local, "DEFAULT_CORES_PER_WORKER", None):
        script.main(["--config", "tiny", "--dataset", "synthetic", "--seeds", "0-1", "--amp", "off",
                     "--out-dir", str(campaign)])
    W["campaign"] = str(campaign)
    return W


SEEN = {}


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=[a.name for a in ATTEMPTS])
def test_attempt(workspace, attempt):
    outcome, detail = SEEN[attempt.name] = classify(attempt)
    expected = "clear error" if isinstance(attempt.expect, Err) else "correct"
    assert outcome == expected, f"{attempt.name}: {outcome} ({detail})"


def test_probe_counts(workspace):
    """The table's counts (printed with -s; attempts not run yet are run here)."""
    outcomes = {a.name: (SEEN.get(a.name) or classify(a))[0] for a in ATTEMPTS}
    print(f"\ncommand-line probe: {len(ATTEMPTS)} attempts, {tally(outcomes)}")
    assert len(ATTEMPTS) == len({a.name for a in ATTEMPTS}) >= 100
