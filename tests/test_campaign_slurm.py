"""--executor slurm against a real SLURM: a one-node cluster (munge, slurmctld, slurmd from
Debian's slurm-wlm and munge packages) set up in a temporary directory, a tiny converged
campaign submitted as a job array through submitit, and its records and summary compared with
the same campaign run by the local executor. Skipped where the daemons cannot start (not root,
packages or submitit missing)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import converged  # noqa: E402

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scontrol")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(d: Path, host: str) -> str:
    return "\n".join([
        "ClusterName=odenetstest", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", f"AuthInfo=socket={d}/munge.sock", "CredType=cred/munge",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",  # no cgroups
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none", "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
        "SchedulerType=sched/builtin", "MpiDefault=none", "ReturnToService=2",
        f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}",
        f"StateSaveLocation={d}/state", f"SlurmdSpoolDir={d}/spool",
        f"SlurmctldPidFile={d}/slurmctld.pid", f"SlurmdPidFile={d}/slurmd.pid",
        f"SlurmctldLogFile={d}/slurmctld.log", f"SlurmdLogFile={d}/slurmd.log",
        f"NodeName={host} CPUs=2 State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""])


@pytest.fixture
def slurm_cluster(tmp_path_factory, monkeypatch):
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        pytest.skip(f"SLURM not installed ({', '.join(missing)} missing: apt-get install slurm-wlm munge)")
    pytest.importorskip("submitit")
    if os.geteuid() != 0:
        pytest.skip("slurmd must run as root to start jobs")
    d = Path(tmp_path_factory.mktemp("slurm"))
    (d / "state").mkdir()
    (d / "spool").mkdir()
    key = d / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    (d / "slurm.conf").write_text(slurm_conf(d, host))
    monkeypatch.setenv("SLURM_CONF", str(d / "slurm.conf"))
    started = []

    def start(cmd):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        started.append(cmd[0])
        if out.returncode:
            pytest.skip(f"{cmd[0]} did not start: {(out.stderr or out.stdout).strip()[:200]}")

    try:
        start(["munged", f"--key-file={key}", f"--socket={d}/munge.sock", f"--pid-file={d}/munged.pid",
               f"--log-file={d}/munged.log", f"--seed-file={d}/munge.seed", "--force"])
        start(["slurmctld", "-f", str(d / "slurm.conf")])
        start(["slurmd", "-f", str(d / "slurm.conf")])
        for _ in range(60):
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout
            if state.strip() == "idle":
                break
            time.sleep(0.5)
        else:
            logs = "".join((d / f).read_text()[-300:] for f in ("slurmctld.log", "slurmd.log")
                           if (d / f).exists())
            pytest.skip(f"the SLURM node did not come up (sinfo: {state.strip()!r}); {logs}")
        yield d
    finally:
        if "slurmctld" in started:
            subprocess.run(["scontrol", "shutdown"], capture_output=True, timeout=30)
        for name in ("slurmd", "slurmctld", "munged"):
            pid = d / f"{name}.pid"
            for _ in range(40):  # wait for a clean exit, then make sure
                if not pid.exists():
                    break
                try:
                    os.kill(int(pid.read_text().split()[0]), 0 if name != "munged" else 15)
                except (ProcessLookupError, ValueError):
                    break
                time.sleep(0.25)


CAMPAIGN = ["--config", "tiny", "--dataset", "synthetic", "--amp", "off", "--models", "resnet20,lm_resnet20",
            "--seeds", "0-1"]


def test_slurm_array_gives_the_records_of_the_local_executor(slurm_cluster, tmp_path, one_thread):
    converged.main(CAMPAIGN + ["--executor", "slurm", "--slurm-cpus-per-task", "1",
                               "--slurm-time", "10", "--out-dir", str(tmp_path / "slurm")])
    converged.main(CAMPAIGN + ["--workers", "1", "--threads-per-worker", "1",
                               "--out-dir", str(tmp_path / "local")])
    runs = {}
    for kind in ("slurm", "local"):
        folder = tmp_path / kind / "converged_tiny_cpu" / "records"
        records = {p.name: json.loads(p.read_text()) for p in folder.glob("*.json")}
        assert len(records) == 4 and {r["executor"] for r in records.values()} == {kind}
        assert len(list(folder.glob("*.pt"))) == 4  # the weights beside each record
        runs[kind] = {name: (r["test_acc"], r["val_acc"], r["curve"]) for name, r in records.items()}
    assert runs["slurm"] == runs["local"]  # same seeds, one thread: the same numbers
    slurm, local = (json.loads((tmp_path / k / "converged_tiny_cpu.json").read_text())
                    for k in ("slurm", "local"))
    for kind in ("test_acc", "val_acc"):  # the merged summary: equal but for the wall times
        assert {m: s[kind] for m, s in slurm["models"].items()} == \
            {m: s[kind] for m, s in local["models"].items()}
    assert slurm["comparisons"] == local["comparisons"] and len(slurm["runs"]) == 4
