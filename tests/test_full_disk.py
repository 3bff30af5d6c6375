"""A full disk (ENOSPC) is a one-line error that leaves no partial file: `odenets plot` and
`odenets analyze` write no 0-byte PNG, `train --resume` no `.config.json.<pid>.tmp`, and after a
failed checkpoint save summary.json, the checkpoint and the metrics agree on the epochs done."""
import builtins
import io
import json
from pathlib import Path

import pytest

from fixtures.hostile import FullFile
from odenets import cli
from odenets.train import checkpoint, rundir

TINY = ["--model", "fixtures.tiny_models:tiny", "--dataset", "synthetic", "--subset", "64",
        "--test-subset", "32", "--batch-size", "32", "--no-progress"]


@pytest.fixture
def full_disk(monkeypatch, tmp_path):
    """Files opened for writing under ``tmp_path / "out"`` take 16 bytes, then raise ENOSPC."""
    real = builtins.open

    def fake_open(file, mode="r", *args, **kwargs):
        f = real(file, mode, *args, **kwargs)
        inside = isinstance(file, (str, Path)) and str(file).startswith(str(tmp_path / "out"))
        return FullFile(f, 16) if inside and any(c in mode for c in "wax") else f

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def _run_dir(tmp_path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    records = [dict(epoch=e, train_loss=1.0 / e, test_loss=1.1 / e, train_acc=0.5, test_acc=0.5)
               for e in (1, 2)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_plot_on_a_full_disk_is_one_line_and_leaves_no_png(capsys, tmp_path, full_disk):
    run, out = _run_dir(tmp_path), tmp_path / "out"
    assert cli.main(["plot", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("odenets plot: error: cannot write ") and "disk full" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _files(out) == []  # neither a 0-byte curves.png nor a temp file


def test_analyze_on_a_full_disk_is_one_line_and_leaves_no_png(capsys, tmp_path, full_disk, monkeypatch):
    from odenets.analysis import figures
    regions = figures.stability_regions
    monkeypatch.setattr(figures, "stability_regions", lambda *a, **k: regions(["euler"], n=21))  # fast
    out = tmp_path / "out"
    assert cli.main(["analyze", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("odenets analyze: error: cannot write ") and "stability_regions.png" in err
    assert len(err.strip().splitlines()) == 1 and _files(out) == []


def test_a_failed_json_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    rundir.write_json(path, {"epochs": 1})
    real = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, mode="r", *a, **k: FullFile(real(f, mode, *a, **k), 4)
                        if "w" in mode else real(f, mode, *a, **k))
    monkeypatch.setattr(io, "open", builtins.open)
    with pytest.raises(ValueError, match="cannot write .*config.json .*disk full"):
        rundir.write_json(path, {"epochs": 2, "padding": "x" * 100})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"epochs": 1} and _files(tmp_path) == ["config.json"]


def test_failed_checkpoint_save_keeps_summary_checkpoint_and_metrics_in_step(capsys, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    real, calls = checkpoint.save_atomic, []

    def save_once(obj, path):  # epoch 1 is saved, epoch 2 meets a full disk
        calls.append(obj["epoch"])
        if len(calls) > 1:
            raise ValueError(f"cannot save {path} (disk full or not writable?): No space left on device")
        return real(obj, path)

    monkeypatch.setattr(checkpoint, "save_atomic", save_once)
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "--epochs", "2", "--run-dir", str(run)]) == 2
    assert "disk full" in capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text())
    saved = checkpoint.load(run / checkpoint.NAME)
    metrics = rundir.read_metrics(run)
    assert summary["status"] == "failed"
    assert summary["epochs_done"] == saved["epoch"] == len(metrics) == len(summary["history"]) == 1
