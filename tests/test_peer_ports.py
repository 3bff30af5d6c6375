"""The ported peer examples (examples/ode_demo.py, ...) differ from the peer's file only in the
lines marked "# peer:", run on a tiny size, and give the peer's losses (same seeds, one process
each); docs/coming_from_peers.md holds the table generated from them."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import peer_table  # noqa: E402

TINY = {"ode_demo.py": ["--niters", "2", "--data_size", "40", "--batch_time", "5",
                        "--batch_size", "4", "--test_freq", "2"],
        "odenet_mnist.py": ["--nepochs", "1", "--batch_size", "16", "--test_batch_size", "16",
                            "--data_aug", "False", "--save", "{tmp}/experiment"],
        "latent_sde.py": ["--train-dir", "{tmp}/latent_sde", "--train-iters", "3",
                          "--batch-size", "4", "--dpi", "20", "--debug", "--dt", "0.1"]}
# (example, extra arguments): each example as above, and latent_sde's other solver paths
CASES = [pytest.param(name, [], id=name) for name in sorted(TINY)] + [
    pytest.param("latent_sde.py", ["--method", "srk", "--show-prior", "False"],  # torchsde's srk
                 marks=pytest.mark.slow, id="latent_sde.py --method srk"),
    pytest.param("latent_sde.py", ["--adjoint", "--show-prior", "False"],  # its sdeint_adjoint
                 marks=pytest.mark.slow, id="latent_sde.py --adjoint")]
PEER = {"ode_demo.py": "torchdiffeq", "odenet_mnist.py": "torchdiffeq", "latent_sde.py": "torchsde"}
# what each example prints that the port must reproduce, every line of it (odenet_mnist and
# latent_sde log to stderr)
RESULT = {"ode_demo.py": r"Loss ([0-9.]+)",
          "odenet_mnist.py": r"(NFE-F [0-9.]+ \| NFE-B [0-9.]+ \| Train Acc [0-9.]+ \| Test Acc [0-9.]+)",
          "latent_sde.py": r"(global_step: \d+, logpy: \S+, kl: \S+, loss: \S+)"}
# both files in one process (one torch import), each from the same seeds
RUN = """
import contextlib, io, logging, runpy, sys, numpy, torch
try:
    import torchvision
except ImportError:
    from fixtures import torchvision_standin
    torchvision_standin.install()
out, args, paths = [], sys.argv[1].split(), sys.argv[2:]
for path in paths:
    numpy.random.seed(0); torch.manual_seed(0)
    sys.argv = [path] + args
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        runpy.run_path(path, run_name="__main__")
    logging.root.handlers.clear()  # logging.info's basicConfig handler writes to this buffer
    out.append(buffer.getvalue())
print("\\n=====\\n".join(out))
"""


def _run(paths, args, cwd, pattern):
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, "-c", RUN, " ".join(args), *map(str, paths)], cwd=cwd,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return [re.findall(pattern, part) for part in out.stdout.split("\n=====\n")]


@pytest.mark.parametrize("name, extra", CASES)
def test_port_gives_the_peers_losses(name, extra, tmp_path):
    pytest.importorskip(PEER[name])
    port = ROOT / "examples" / name
    peer = tmp_path / f"peer_{name}"
    peer.write_text(peer_table.peer_source(port))
    assert len(peer_table.changes(port)) >= 1
    args = [a.format(tmp=tmp_path) for a in TINY[name]] + extra
    ours, theirs = _run([port, peer], args, tmp_path, RESULT[name])
    assert ours and ours == theirs


def test_docs_table_is_generated_from_the_ports():
    assert peer_table.table() in (ROOT / "docs" / "coming_from_peers.md").read_text()
