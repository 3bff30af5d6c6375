"""Which levers make a converged run cheaper on this machine? Training-step throughput, side by side.

One resnet20 training step (batch 128, Fashion-MNIST shapes, channels_last, SGD) is timed
under each setting below, in interleaved rounds (order rotated each round, warm-up first), and
the medians are compared with fp32 eager on the same threads:

- precision and compilation: fp32 / bf16 autocast x eager / ``torch.compile`` (same process);
- filling the cores: one process with all the cores' threads against as many 1-thread
  processes at once (each timing the same steps; throughput = images per second summed).

Speed only: a lever that changes the numbers (bf16) enters the recipe only after a paired
accuracy check (`converged.py`). Writes benchmarks/results/levers_<device>.{json,md}.

    python benchmarks/levers.py                  # ~5 min on 2 CPU cores; pause other work first
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _case import Case, interleaved  # noqa: E402
from _common import HelpFormatter, env_info, result_path, write_json  # noqa: E402
from _train_common import markdown_table  # noqa: E402

import odenets  # noqa: E402

SETTINGS = (("eager", "fp32"), ("compile", "fp32"), ("eager", "bf16"), ("compile", "bf16"))


def factory(model: str):
    return lambda: odenets.create(model, in_chans=1, num_classes=10)


def precision_and_compile(model: str, batch: int, rounds: int, warmup: int) -> dict:
    """Seconds per step of each (mode, dtype) of `SETTINGS`, interleaved; ratios to fp32 eager."""
    cases = {f"{mode}/{dtype}": Case(factory(model), (1, 28, 28), batch, "cpu", mode, dtype, True)
             for mode, dtype in SETTINGS}
    times = interleaved(cases, rounds, warmup)
    base = times["eager/fp32"]
    return {n: dict(s_per_step=statistics.median(t), img_per_s=batch / statistics.median(t),
                    ratio_to_fp32_eager=statistics.median(a / b for a, b in zip(t, base)), times_s=t)
            for n, t in times.items()}


def _worker(model: str, batch: int, steps: int, warmup: int) -> None:
    """Child process: time ``steps`` fp32 eager steps; print images/s and the wall and CPU
    (user + system, all threads) seconds per step as JSON."""
    c = Case(factory(model), (1, 28, 28), batch, "cpu", "eager", "fp32", True)
    for _ in range(warmup):
        c.step()
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(steps):
        c.step()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps(dict(img_per_s=batch * steps / wall, wall_s=wall / steps, cpu_s=cpu / steps)))


def _spawn(n: int, threads: int, args, env: dict | None = None, steps: int | None = None) -> list[dict]:
    """The records of ``n`` worker processes of ``threads`` threads each, started together;
    ``env``: variables to set (value None: to remove) in their environment."""
    env_all = dict(os.environ, OMP_NUM_THREADS=str(threads))
    for k, v in (env or {}).items():
        if v is None:
            env_all.pop(k, None)
        else:
            env_all[k] = v
    cmd = [sys.executable, __file__, "--worker", "--model", args.model, "--batch", str(args.batch),
           "--steps", str(steps or args.steps), "--warmup", str(args.warmup), "--threads", str(threads)]
    procs = [subprocess.Popen(cmd, env=env_all, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a worker of {n} x {threads} threads failed")
    return [json.loads(o.strip().splitlines()[-1]) for o in outs]


# OpenMP wait policies on a shared machine: the child's OMP_WAIT_POLICY (None: unset, libgomp's
# default of spinning a while at each barrier) and threads.
WAIT_SETTINGS = (("all threads, OMP_WAIT_POLICY unset", None, 0), ("all threads, PASSIVE", "PASSIVE", 0),
                 ("1 thread", None, 1))


def shared_machine(args) -> dict:
    """Wall and CPU seconds per training step under each of `WAIT_SETTINGS`, with the machine
    idle and with as many CPU-bound competitors (busy loops) as cores, interleaved in rounds."""
    cores = len(os.sched_getaffinity(0))
    out = {}
    for load in (0, cores):
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
        try:
            rows = {name: [] for name, _, _ in WAIT_SETTINGS}
            for _ in range(args.repeats):
                for name, policy, threads in WAIT_SETTINGS:
                    rows[name] += _spawn(1, threads or cores, args, dict(OMP_WAIT_POLICY=policy),
                                         steps=args.wait_steps)
        finally:
            for h in hogs:
                h.kill()
        out[f"{load} competitors"] = {
            name: dict(wall_ms=1e3 * statistics.median(r["wall_s"] for r in recs),
                       cpu_ms=1e3 * statistics.median(r["cpu_s"] for r in recs), runs=recs)
            for name, recs in rows.items()}
    return dict(cores=cores, loads=out)


def filling_cores(args) -> dict:
    """1 process x all threads against all x 1-thread processes, alternated ``--repeats`` times."""
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        return dict(cores=cores, note="one core available: nothing to fill")
    out = {f"1x{cores}": [], f"{cores}x1": []}
    for _ in range(args.repeats):
        out[f"1x{cores}"].append(sum(r["img_per_s"] for r in _spawn(1, cores, args)))
        out[f"{cores}x1"].append(sum(r["img_per_s"] for r in _spawn(cores, 1, args)))
    med = {k: statistics.median(v) for k, v in out.items()}
    return dict(cores=cores, img_per_s=out, median_img_per_s=med,
                throughput_ratio=med[f"{cores}x1"] / med[f"1x{cores}"])


def markdown(p: dict) -> str:
    env = p["env"]
    lines = [f"# Throughput levers ({p['model']}, batch {p['batch']})", "",
             f"{env['device']}, torch {env['torch']}, {p['threads']} threads for the first table; "
             f"{p['rounds']} interleaved rounds after {p['warmup']} warm-up steps each. "
             f"CPU capability {p['cpu_capability']}. Command: `{env['command']}`.", ""]
    if p.get("precision"):
        lines += [markdown_table(("setting", "ms / step (median)", "img/s",
                                  "ratio to fp32 eager (median of rounds)"),
                                 [(n, f"{r['s_per_step'] * 1e3:.1f}", f"{r['img_per_s']:.0f}",
                                   f"{r['ratio_to_fp32_eager']:.3f}") for n, r in p["precision"].items()]), ""]
    f = p.get("cores")
    if f and "note" in f:
        lines += [f"Filling cores: not measured ({f['note']}).", ""]
    elif f:
        (a, va), (b, vb) = f["median_img_per_s"].items()
        lines += [f"Filling {f['cores']} cores (fp32 eager, {p['steps']} steps per process, "
                  f"{len(f['img_per_s'][a])} alternations): {a} (processes x threads) "
                  f"{va:.0f} img/s, {b} {vb:.0f} img/s: {b} gives {f['throughput_ratio']:.2f}x "
                  "the throughput.", ""]
    w = p.get("shared_machine")
    if w:
        lines += [f"Shared machine (fp32 eager, {p['wait_steps']} steps per process, "
                  f"{p['repeats']} interleaved rounds, competitors: CPU-bound busy loops, one per "
                  f"core of {w['cores']}); wall and CPU (all threads) ms per step, medians:", ""]
        lines += [markdown_table(("load", "setting", "wall ms / step", "CPU ms / step"),
                                 [(load, name, f"{r['wall_ms']:.0f}", f"{r['cpu_ms']:.0f}")
                                  for load, rows in w["loads"].items() for name, r in rows.items()]), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=40, help="timed steps per process (cores test)")
    p.add_argument("--repeats", type=int, default=2, help="alternations of the cores test")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--skip-cores", action="store_true", help="skip the processes x threads test")
    p.add_argument("--skip-precision", action="store_true", help="skip the precision/compile table")
    p.add_argument("--wait-policy", action="store_true", help="also time the OpenMP wait policies "
                   "on an idle machine and beside one busy process per core")
    p.add_argument("--wait-steps", type=int, default=10, help="timed steps per process (wait policy)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out-dir", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        _worker(args.model, args.batch, args.steps, args.warmup)
        return 0
    payload = dict(benchmark="levers", model=args.model, batch=args.batch, rounds=args.rounds,
                   warmup=args.warmup, steps=args.steps, threads=torch.get_num_threads(),
                   cpu_capability=torch.backends.cpu.get_cpu_capability(), env=env_info("cpu", seed=0))
    if not args.skip_precision:
        payload["precision"] = precision_and_compile(args.model, args.batch, args.rounds, args.warmup)
    if not args.skip_cores:
        payload["cores"] = filling_cores(args)
    if args.wait_policy:
        payload.update(shared_machine=shared_machine(args), wait_steps=args.wait_steps,
                       repeats=args.repeats)
    path = result_path("levers", "cpu", args.out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, payload)
    path.with_suffix(".md").write_text(markdown(payload) + "\n")
    print(markdown(payload))
    return 0


if __name__ == "__main__":
    from _common import run_main
    sys.exit(run_main(main))
