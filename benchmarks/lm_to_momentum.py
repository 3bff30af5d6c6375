"""The heavy-ball counterpart of trained LM-ResNets: per block, the mass and damping of
u'' + gamma u' = f(u) / m that the learned k_n stand for (docs/momentum.md, worked example).

LM's step ``u_{n+1} = (1 - k) u_n + k u_{n-1} + dt f(u_n)`` is consistent, to O(dt^2), with its
modified equation (`odenets.analysis.modified_equation`)

    m u'' + c u' = f(u),    m = (1 - k) dt / 2 (mass),    c = 1 + k (friction),

i.e. u'' + gamma u' = f(u) / m with gamma = c / m = 2 (1 + k) / ((1 - k) dt)
(`odenets.momentum.lm_momentum`). LM-ResNet's flows step with dt = 1 per block; put on the
t in [0, 1] of a tied continuous stage (dt = 1 / steps, as ``hbode_resnet20``), gamma is
``steps`` times larger. Degenerate cases: k -> 1 gives m -> 0 and gamma -> infinity (no
inertia left: a first-order flow); k -> -1 gives gamma -> 0 (undamped); outside (-1, 1) there is
no heavy-ball form (m <= 0, or gamma < 0) and LM is not zero-stable; a row says so.

Input: the ``runs`` of a converged campaign (benchmarks/converged.py), each with its learned
``coefficients`` = {"stages.0.flow.k": [k per block], ...}. Blocks whose k is never used by the
forward (a flow's first step without history is forward Euler: the k of stage 0, block 0)
are found by a backward pass through the preset (a zero gradient) and marked; their k is the
initial value, not a learned one. Prints one markdown table (mean ± sample std over seeds):

    python benchmarks/lm_to_momentum.py                      # lm_resnet20 in converged_cpu.json
    python benchmarks/lm_to_momentum.py --doc docs/momentum.md   # rewrite the table there
    python benchmarks/lm_to_momentum.py --results benchmarks/results/converged_cpu.json \\
        --model lm_resnet20
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import odenets  # noqa: E402
from odenets.flow import Flow  # noqa: E402
from odenets.momentum import lm_momentum  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "converged_cpu.json"
START, END = "<!-- lm_to_momentum:start -->", "<!-- lm_to_momentum:end -->"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", default=str(RESULTS), help="a converged campaign's JSON")
    p.add_argument("--model", default="lm_resnet20", help="the runs' model (an LM preset)")
    p.add_argument("--dt", type=float, default=1.0, help="the flows' step (LM-ResNet: 1 per block)")
    p.add_argument("--doc", default=None, help="also write the table into this markdown file, "
                   f"between {START!r} and {END!r}")
    p.add_argument("--no-usage-check", action="store_true", help="do not build the preset to "
                   "find the k that the forward never uses")
    return p.parse_args(argv)


def load_runs(path, model: str) -> list[dict]:
    """The runs of ``model`` under the campaign's current recipe (ValueError when none)."""
    payload = json.loads(Path(path).read_text())
    key = payload.get("recipe_key")
    runs = [r for r in payload["runs"] if r["model"] == model and r.get("coefficients")
            and (key is None or r.get("recipe_key") == key)]
    if not runs:
        models = sorted({r["model"] for r in payload["runs"]})
        raise ValueError(f"no runs of {model!r} with coefficients in {path}; models there: {models}")
    return sorted(runs, key=lambda r: r["seed"])


def unused_coefficients(model: str, in_channels: int = 1, size: int = 8) -> set[tuple[str, int]]:
    """``{("<flow path>.k", block)}`` whose k gets no gradient in a forward/backward of preset
    ``model`` (their value never reaches the output)."""
    net = odenets.create(model, in_channels=in_channels)
    net(torch.randn(2, in_channels, size, size)).sum().backward()
    unused = set()
    for path, flow in net.named_modules():
        if isinstance(flow, Flow):
            for name, raw in flow.raw.items():
                if raw.grad is None:
                    unused |= {(f"{path}.{name}", b) for b in range(raw.shape[0])}
                else:
                    grad = raw.grad.reshape(raw.shape[0], -1)
                    unused |= {(f"{path}.{name}", b) for b in range(raw.shape[0])
                               if not bool(grad[b].ne(0).any())}
    return unused


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table_rows(runs: list[dict], dt: float = 1.0, unused=frozenset()) -> list[dict]:
    """One row per (flow, block): ``flow``, ``block``, ``k`` (per seed), and, when every k lies
    in (-1, 1), ``mass``, ``friction``, ``gamma`` (per seed) and ``gamma_at_mean_k``; else
    ``degenerate`` saying why. ``unused`` marks blocks whose k the forward never uses."""
    rows = []
    for key in runs[0]["coefficients"]:
        per_seed = [r["coefficients"][key] for r in runs]
        for block in range(len(per_seed[0])):
            ks = [float(torch.as_tensor(c[block], dtype=torch.float64).mean()) for c in per_seed]
            row = dict(flow=key[:-2] if key.endswith(".k") else key, block=block, k=ks,
                       unused=(key, block) in unused)
            bad = [k for k in ks if not -1 < k < 1]
            if bad:
                row["degenerate"] = (f"k = {', '.join(f'{k:+.3f}' for k in bad)} outside (-1, 1): "
                                     "m <= 0 (k >= 1) or gamma <= 0 (k <= -1), no heavy-ball form")
            else:
                hb = lm_momentum(ks, dt)
                row.update(mass=[(1 - k) * dt / 2 for k in ks], friction=[1 + k for k in ks],
                           gamma=hb["gamma"].tolist(),
                           gamma_at_mean_k=float(lm_momentum(statistics.fmean(ks), dt)["gamma"]))
            rows.append(row)
    return rows


def markdown(rows: list[dict], runs: list[dict], model: str, dt: float = 1.0) -> str:
    seeds = ", ".join(str(r["seed"]) for r in runs)
    acc = _stats([r["test_acc"] * 100 for r in runs])
    lines = [f"{model}, {len(runs)} seeds ({seeds}), test accuracy {acc[0]:.2f} ± {acc[1]:.2f}%; "
             f"dt = {dt:g} per block; mean ± sample std over seeds, [min, max] of gamma:", "",
             "| flow | block | k_n | m = (1 − k_n) Δt/2 | γ_n = 2(1 + k_n)/((1 − k_n) Δt) | γ_n range | "
             "γ at mean k_n | note |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        k = _stats(r["k"])
        note = "k unused (Euler start): initial value" if r["unused"] else ""
        if "degenerate" in r:
            lines.append(f"| {r['flow']} | {r['block']} | {k[0]:+.3f} ± {k[1]:.3f} | — | — | — | — | "
                         f"{'; '.join(filter(None, (note, r['degenerate'])))} |")
            continue
        m, g = _stats(r["mass"]), _stats(r["gamma"])
        lines.append(f"| {r['flow']} | {r['block']} | {k[0]:+.3f} ± {k[1]:.3f} | {m[0]:.3f} ± {m[1]:.3f} | "
                     f"{g[0]:.2f} ± {g[1]:.2f} | [{min(r['gamma']):.2f}, {max(r['gamma']):.2f}] | "
                     f"{r['gamma_at_mean_k']:.2f} | {note} |")
    return "\n".join(lines)


def write_doc(path, table: str) -> None:
    """Replace the text between `START` and `END` in ``path`` by ``table``."""
    text = Path(path).read_text()
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"{path} must hold the markers {START} and {END} once each, in this order")
    head, rest = text.split(START)
    Path(path).write_text(head + START + "\n" + table + "\n" + END + rest.split(END, 1)[1])


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = load_runs(args.results, args.model)
    unused = set() if args.no_usage_check else unused_coefficients(args.model)
    table = markdown(table_rows(runs, args.dt, unused), runs, args.model, args.dt)
    print(table)
    if args.doc:
        write_doc(args.doc, table)
    return 0


if __name__ == "__main__":
    from _common import run_main
    sys.exit(run_main(main))
