"""The hostile probe, command line and files (issue 26's last 'done when'): `odenets` train /
eval / plot / analyze / info / list / compare with bad flags and missing or corrupt run
directories, checkpoints and metrics (their attempts: tests/fixtures/hostile_cli.py);
benchmarks/converged.py --report-only on malformed results files; full disks. Every attempt must
end in its expected class (tests/fixtures/hostile.py); attempts that must not touch stored files
list them in ``keep`` (a change is data lost). The Python API: tests/test_hostile_probe.py."""
import json
import shutil
import sys
from pathlib import Path
from unittest import mock

import pytest

from fixtures.hostile import Attempt, Err, Ok, classify, disk_full_under, run_cli, tally
from fixtures.hostile_cli import EVAL, PLOT, TINY, TRAIN, W, cli, path

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


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
    W["cmp_again"] = str(tmp / "cmp_again")  # a comparison's folder holding its resnet20 run
    shutil.copytree(W["run"], tmp / "cmp_again" / "resnet20")
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
