"""Memory saved for backward: ``solvers.odeint`` (backprop through the steps) vs
``solvers.odeint_adjoint`` (discrete adjoint by recomputation, solvers/adjoint.py).

Field: an MLP ``dim -> width -> dim`` (tanh), batch ``--batch``, float32, outputs at t = 0, 0.5,
1; leapfrog gets a separable field (two such MLPs on the halves). For each scheme and step count,
the bytes of the distinct non-parameter storages autograd saves in one forward (counted with
``torch.autograd.graph.saved_tensors_hooks``, as benchmarks/speed.py does), and the time of one
forward+backward of each, measured in turn (``--rounds`` rounds, order alternated, medians; the
time ratio is adjoint / odeint). Expected: odeint grows with the steps by every step's
activations, odeint_adjoint by one state per step (AB2: two, its past f), leapfrog not at all.
Writes benchmarks/results/adjoint_memory_<device>.json.

    python benchmarks/adjoint_memory.py [--steps 16 64 256] [--dim 256] [--width 256] [--batch 512]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import env_info, result_path, run_main, write_json  # noqa: E402

import solvers  # noqa: E402

SCHEMES = {"euler": lambda: solvers.get("euler"), "midpoint": lambda: solvers.get("midpoint"),
           "rk4": lambda: solvers.get("rk4"), "ab2": lambda: "ab2", "lm": lambda: "lm",
           "leapfrog": lambda: "leapfrog"}


class MLP(torch.nn.Module):
    def __init__(self, dim, width):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim, width), torch.nn.Tanh(),
                                       torch.nn.Linear(width, dim))

    def forward(self, t, y):
        return self.net(y)


class Separable(torch.nn.Module):
    def __init__(self, dim, width):
        super().__init__()
        self.F, self.G = MLP(dim // 2, width), MLP(dim // 2, width)

    def forward(self, t, u):
        y, z = u.chunk(2, -1)
        return torch.cat([self.F(t, z), self.G(t, y)], -1)


def saved_bytes(fn, params) -> int:
    known = {p.untyped_storage().data_ptr() for p in params}
    seen = {}

    def pack(x):
        key = x.untyped_storage().data_ptr()
        if key not in known:
            seen[key] = max(seen.get(key, 0), x.untyped_storage().nbytes())
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = fn()
    del out
    return sum(seen.values())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    p.add_argument("--out-dir", default=None, help="default benchmarks/results")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    t = torch.tensor([0.0, 0.5, 1.0])
    y0 = torch.randn(args.batch, args.dim, requires_grad=True)
    rows = []
    for name in args.schemes:
        f = (Separable if name == "leapfrog" else MLP)(args.dim, args.width)
        for n in args.steps:
            calls = {s.__name__: (lambda s=s: s(f, y0, t, method=SCHEMES[name](),
                                                options={"steps": n // 2}))
                     for s in (solvers.odeint, solvers.odeint_adjoint)}
            row = {"scheme": name, "steps": n}
            for key, call in calls.items():
                row[f"{key}_saved_MiB"] = saved_bytes(call, f.parameters()) / 2 ** 20
            times = {key: [] for key in calls}
            for r in range(args.rounds + 1):  # round 0: warm-up
                for key in (list(calls) if r % 2 else list(calls)[::-1]):
                    start = time.perf_counter()
                    calls[key]()[-1].square().sum().backward()
                    if r:
                        times[key].append(time.perf_counter() - start)
            row["time_ratio_adjoint_over_odeint"] = (statistics.median(times["odeint_adjoint"])
                                                     / statistics.median(times["odeint"]))
            rows.append(row)
            print(f"{name:9s} {n:4d} steps: saved odeint {row['odeint_saved_MiB']:8.1f} MiB, "
                  f"odeint_adjoint {row['odeint_adjoint_saved_MiB']:7.2f} MiB; time ratio "
                  f"{row['time_ratio_adjoint_over_odeint']:.2f}", flush=True)
    state = args.batch * args.dim * 4 / 2 ** 20
    return write_json(result_path("adjoint_memory", out_dir=args.out_dir), {"env": env_info(seed=0), "args": vars(args),
                                               "state_MiB": state, "rows": rows})


if __name__ == "__main__":
    sys.exit(run_main(main))
