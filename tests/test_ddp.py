"""Two-process DistributedDataParallel on CPU (gloo): identical weights on both ranks, each rank
trains on its own shard, and `torchrun -m odenets train` works end to end."""
import gc
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import torch
import torch.multiprocessing as mp

from fixtures.dist import free_port, worker_env

TESTS = Path(__file__).parent
SUBSET, BATCH = 200, 32  # 100 examples per rank, 3 batches of 16 per rank: 96 seen per rank


def _worker(rank: int, world: int, port: int, out: str):
    sys.path.insert(0, str(TESTS))
    worker_env(rank, world, port)
    from fixtures.tiny_models import Recorder
    from odenets.train import TrainConfig, train
    cfg = TrainConfig(model="unused", dataset="synthetic", subset=SUBSET, test_subset=50,
                      batch_size=BATCH, epochs=2, lr=0.05, progress=False, device="cpu",
                      run_dir=str(Path(out) / "run"))
    torch.manual_seed(rank)  # different initial weights per rank: DDP must broadcast rank 0's
    model = Recorder()
    gc.disable()  # the DDP wrapper sits in reference cycles: train() must free it itself
    summary = train(cfg, model=model)
    wrappers = [o for o in gc.get_objects() if isinstance(o, torch.nn.parallel.DistributedDataParallel)]
    gc.enable()
    summary["ddp_alive_after_train"] = len(wrappers)
    torch.save({"state": model.state_dict(), "seen": model.seen, "summary": summary},
               Path(out) / f"rank{rank}.pt")


def test_two_process_gloo_ddp(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2))
    for key in r0["state"]:
        assert torch.equal(r0["state"][key], r1["state"][key]), f"{key} differs between ranks"
    assert r0["summary"]["world_size"] == 2 and r0["summary"]["final"]["train_images"] == 2 * 96
    # the process group was destroyed with nothing left holding it (no teardown at exit)
    assert r0["summary"]["ddp_alive_after_train"] == r1["summary"]["ddp_alive_after_train"] == 0
    # each rank saw its own shard: 96 examples per epoch, none shared with the other rank
    from fixtures.tiny_models import fingerprints
    from odenets.data import load_dataset
    data = load_dataset("synthetic", subset=SUBSET)
    everything = Counter(round(v, 4) for v in fingerprints(data.images, data.mean, data.std))
    for epoch in range(2):
        seen = [Counter(round(v, 4) for v in r["seen"][96 * epoch: 96 * (epoch + 1)]) for r in (r0, r1)]
        assert sum(seen[0].values()) == sum(seen[1].values()) == 96
        assert not (seen[0] & seen[1]), "the ranks trained on overlapping examples"
        assert not ((seen[0] + seen[1]) - everything), "a rank saw an example not in the subset"
    assert (tmp_path / "run" / "checkpoint.pt").exists()


def test_torchrun_cli(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(free_port()), "-m", "odenets", "train",
           "--model", "fixtures.tiny_models:tiny", "--dataset", "synthetic", "--subset", "128",
           "--test-subset", "64", "--batch-size", "32", "--epochs", "1", "--no-progress",
           "--device", "cpu", "--run-dir", str(tmp_path / "run")]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-3000:]}"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["final"]["train_images"] == 128
    assert summary["final"]["test_acc"] >= 0 and result.stdout.count("test accuracy") == 1
