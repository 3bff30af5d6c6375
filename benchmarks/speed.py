"""What does the solver abstraction cost? Training-step speed and activation memory.

Compares one training step (forward + backward + SGD step, batch ``--batch``) of:
  resnet56 group:  a plain hand-written PyTorch ResNet-56 (`HandResNet`, same layers, option-A
                   shortcuts, post-activation) vs ``odenets.create("resnet56")`` (goal: within
                   2%) vs ``lm_resnet56`` (goal: within 5% of resnet56) and ``lmm3_resnet56`` (8%);
  noise group:     resnet20 on 1x28x28 vs the same with Gaussian noise injection (Euler-Maruyama,
                   sigma 0.1; goal: within 25%), ``sd_resnet20`` (10%), ``shake_resnet20`` (20%);
  ode group:       one basic field (conv-BN-ReLU-conv-BN, 16 channels, 32x32) unrolled over
                   ``--ode-steps`` tied steps by ``odenets.build(..., "euler")`` vs torchdiffeq's
                   fixed-grid ``odeint(method="euler", step_size=1/N)`` on the same field, and
                   our ``rk4_38`` vs torchdiffeq's ``rk4`` (both Kutta's 3/8 rule) (goal: faster);
  resnet50 group:  torchvision's resnet50 vs ours (only when torchvision is importable);
in eager mode and under ``torch.compile``, in fp32 and (CUDA) bf16 autocast.

Timing: ``--warmup`` steps per model, then ``--rounds`` rounds that time ``--iters`` steps of
every model of a group in turn (order rotated each round), so machine load hits all alike;
medians, interquartile ranges and ratios of medians are reported. CUDA: CUDA-event timing and
``torch.cuda.max_memory_allocated``; achieved TFLOP/s = 6 x MACs x images/s (forward MACs
counted by `odenets.info.count_macs`, backward ~2x forward) as a fraction of the device peak.
CPU: activation memory is the bytes of tensors autograd saves for backward (parameters
excluded), counted with ``torch.autograd.graph.saved_tensors_hooks``.

Memory vs depth: resnet{20,...,110} (Euler, activations stored) vs rev_resnet (reversible
leapfrog, activations recomputed): the reversible scheme's activation memory should be flat in
depth while Euler's grows linearly; a least-squares slope (bytes per residual block) is reported.

Order and time limits: every eager setting first (bf16, then fp32 on CUDA), then the memory sweep,
then the compiled settings (each model's first steps include its compilation). The JSON and
markdown are rewritten after every setting (``"partial": true`` until the end), so a run killed
by a time limit keeps what it measured; ``--budget-s`` skips the settings predicted (from those
already measured) to end past the budget, and lists them as skipped.

Writes benchmarks/results/speed_<device>.{json,md} and speed_<device>_memory_vs_depth.png.

    python benchmarks/speed.py                         # CPU: eager, fp32
    python benchmarks/speed.py --device cuda           # GPU: eager + compile, fp32 + bf16
    python benchmarks/speed.py --groups noise --modes eager,compile --threads 1 --tag noise
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _baselines import HandResNet, TorchdiffeqFlow, odeint  # noqa: E402
from _case import Case  # noqa: E402
from _common import HelpFormatter, env_info, result_path, synchronize, write_json  # noqa: E402
from _peaks import peak_flops, peak_info  # noqa: E402
from _train_common import parse_list, set_threads  # noqa: E402
from _goals import speed_goals  # noqa: E402
from report import plot_memory, speed_markdown  # noqa: E402

import odenets  # noqa: E402
import solvers.fused  # noqa: E402
from odenets.fields import BasicField  # noqa: E402
from odenets.models.torchvision_map import load_torchvision  # noqa: E402
from odenets.train.distributed import resolve_device  # noqa: E402

try:
    import torchvision
except ImportError:
    torchvision = None


CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


# -- the cases ---------------------------------------------------------------------------------------
def groups(args) -> dict:
    """group -> {case: (model factory, input shape without batch, batch)}."""
    cifar = (3, 32, 32)
    out = {"resnet56": {
        "hand_resnet56": (lambda: HandResNet(9), cifar, args.batch),
        "resnet56": (lambda: odenets.create("resnet56"), cifar, args.batch),
        "lm_resnet56": (lambda: odenets.create("lm_resnet56"), cifar, args.batch),
        "lmm3_resnet56": (lambda: odenets.create("lmm3_resnet56"), cifar, args.batch)}}
    fmnist, gauss = (1, 28, 28), dict(solver="euler_maruyama", solver_options=dict(noise="gaussian", sigma=0.1, seed=0))
    out["noise"] = {  # the training noise of the SDE view, against plain resnet20 (28x28 like the campaigns)
        "resnet20": (lambda: odenets.create("resnet20", in_channels=1), fmnist, args.batch),
        "gauss_resnet20": (lambda: odenets.create("resnet20", in_channels=1, **gauss), fmnist, args.batch),
        "sd_resnet20": (lambda: odenets.create("sd_resnet20", in_channels=1), fmnist, args.batch),
        "shake_resnet20": (lambda: odenets.create("shake_resnet20", in_channels=1), fmnist, args.batch)}
    n, field_shape = args.ode_steps, (16, 32, 32)
    ode = {"ours_euler": (lambda: odenets.build(BasicField(16), "euler", steps=n, tied=True), field_shape, args.batch),
           "ours_rk4_38": (lambda: odenets.build(BasicField(16), "rk4_38", steps=n, tied=True), field_shape, args.batch)}
    if odeint is not None:
        ode["torchdiffeq_euler"] = (lambda: TorchdiffeqFlow(BasicField(16), n, "euler"), field_shape, args.batch)
        ode["torchdiffeq_rk4"] = (lambda: TorchdiffeqFlow(BasicField(16), n, "rk4"), field_shape, args.batch)
    out["ode"] = ode
    if torchvision is not None and not args.skip_resnet50:
        big = (3, 224, 224)
        out["resnet50"] = {"torchvision_resnet50": (lambda: torchvision.models.resnet50(), big, args.batch50),
                           "resnet50": (lambda: odenets.create("resnet50", num_classes=1000), big, args.batch50)}
    out = {g: v for g, v in out.items() if g in args.groups}
    if args.cases:  # only these cases of the chosen groups
        known = sorted(c for cases in out.values() for c in cases)
        if set(args.cases) - set(known):
            raise ValueError(f"unknown case(s) {sorted(set(args.cases) - set(known))} in groups "
                             f"{','.join(args.groups)}; available: {', '.join(known)}")
        out = {g: {c: v for c, v in cases.items() if c in args.cases} for g, cases in out.items()}
        out = {g: cases for g, cases in out.items() if cases}
    return out


# -- measuring ---------------------------------------------------------------------------------------
def _error(e: BaseException) -> dict:
    traceback.print_exc()
    return dict(error=f"{type(e).__name__}: {str(e)[:300]}")


def _compiled_graphs() -> int:
    from torch._dynamo.utils import counters
    return counters["stats"]["unique_graphs"]


def _release(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def measure_group(cases: dict, args, device, mode, dtype) -> dict:
    """Build and warm up every case (compiling it in compile mode), then time them in interleaved
    rounds. A case that fails anywhere is recorded as ``{"error": ...}`` (traceback on stderr)
    and the others go on: on a lent GPU one bad case must not cost the rest."""
    built, failed, setup = {}, {}, {}
    for name, (factory, shape, batch) in cases.items():
        start, graphs = time.perf_counter(), _compiled_graphs()
        try:
            c = Case(factory, shape, batch, device, mode, dtype, args.channels_last)
            for _ in range(args.warmup):
                c.step()
            synchronize(device)
            built[name] = c
            setup[name] = dict(setup_s=time.perf_counter() - start,  # compilation included
                               compiled_graphs=_compiled_graphs() - graphs if mode == "compile" else None)
        except Exception as e:
            failed[name] = _error(e)
            _release(device)
    times = {name: [] for name in built}
    names = list(built)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if name in built:
                try:
                    times[name].append(built[name].timed(args.iters, CLOCKS[getattr(args, 'clock', 'wall')]))
                except Exception as e:
                    failed[name] = _error(e)
                    del built[name]
    rows = {}
    peak = peak_flops(device, dtype)
    for name, c in built.items():
        ts = times[name]
        q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0]] * 3
        med = statistics.median(ts)
        try:
            memory = c.memory()
        except Exception as e:
            failed[name] = _error(e)
            continue
        tflops = 6 * c.macs * c.batch / med / 1e12
        rows[name] = dict(s_per_step=med, iqr_s=q[2] - q[0], min_s=min(ts), times_s=ts, img_per_s=c.batch / med,
                          batch=c.batch, params=c.params, macs_per_image=c.macs, achieved_tflops=tflops,
                          fraction_of_peak=None if peak is None else tflops * 1e12 / peak,
                          **setup[name], **memory)
    built.clear()
    _release(device)
    return {**rows, **failed}


def memory_vs_depth(args, device) -> dict:
    """Saved-tensor bytes (and CUDA peak) of one training forward, resnet vs rev_resnet by depth."""
    out = {}
    for family in ("resnet", "rev_resnet"):
        out[family] = {}
        for depth in args.memory_depths:
            case = Case(lambda: odenets.create(f"{family}{depth}"), (3, 32, 32), args.batch, device,
                        "eager", "fp32", args.channels_last)
            mem = case.memory()
            mem["blocks"] = odenets.info(case.model, input_size=(1, 3, 32, 32))["blocks"]
            out[family][depth] = mem
            del case
    _release(device)
    return out


def torchvision_agreement(device, batch: int = 2) -> dict:
    """torchvision's resnet50 weights (random, BatchNorm statistics perturbed) loaded into ours by
    `load_torchvision`: the largest |difference| of the eval-mode fp32 logits. The layers are the
    same, so it should be rounding at most."""
    torch.manual_seed(0)
    tv = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    ours = load_torchvision(odenets.create("resnet50", num_classes=1000), tv).eval().to(device)
    tv = tv.to(device)
    x = torch.randn(batch, 3, 224, 224, device=device)
    with torch.no_grad():
        a, b = tv(x).float(), ours(x).float()
    return dict(batch=batch, max_abs_diff=(a - b).abs().max().item(), max_abs_logit=a.abs().max().item())


def predicted_seconds(group: str, mode: str, size: int, done: dict) -> float:
    """Seconds a setting of ``group`` in ``mode`` with ``size`` models should take, from the
    settings measured so far (``done``: (group, mode, dtype) -> (seconds, models)): the same group
    and mode in another dtype, else the mean seconds per model of that mode times ``size``; 0
    when nothing of that mode has been measured."""
    same = [sec for (g, m, _), (sec, _) in done.items() if g == group and m == mode]
    if same:
        return max(same)
    per_model = [sec / n for (_, m, _), (sec, n) in done.items() if m == mode and n]
    return size * statistics.fmean(per_model) if per_model else 0.0


def _raise_recompile_limit(limit: int = 64) -> None:
    """Each Case compiles a fresh model; dynamo's default of 8 compilations per code object (shared
    by every preset's forward) would silently fall back to eager for the later ones."""
    from torch._dynamo import config as cfg
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    setattr(cfg, name, max(getattr(cfg, name), limit))


def measure_extras(payload: dict, args, device, cases: dict, stem: Path) -> None:
    """The memory sweep (and its plot) and the torchvision check, into ``payload``; a failure is
    noted there, never raised (no matplotlib on a bare GPU image costs the plot, not the numbers)."""
    if args.memory_depths:
        print("measuring memory vs depth ...", flush=True)
        try:
            payload["memory_vs_depth"] = memory_vs_depth(args, device)
        except Exception as e:
            payload["memory_error"] = _error(e)["error"]
        try:
            if payload["memory_vs_depth"]:
                payload["plots"] = [plot_memory(payload["memory_vs_depth"], stem)]
        except Exception as e:
            payload["plot_error"] = _error(e)["error"]
    if torchvision is not None and "resnet50" in cases:
        try:
            payload["torchvision_check"] = torchvision_agreement(device)
        except Exception as e:
            payload["torchvision_check"] = _error(e)


def keep_earlier(payload: dict, path: Path, measuring: set) -> None:
    """``--merge``: copy into ``payload`` the settings of ``path`` this run does not measure (and
    its memory sweep if this run makes none), each noted in ``kept_settings`` with its origin."""
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    env, kept = earlier.get("env", {}), earlier.get("kept_settings", {})
    origin = {k: env.get(k) for k in ("device", "cpu_capability", "torch", "timestamp", "git_commit")}
    for key in (k for k in earlier.get("results", {}) if k not in measuring):
        payload["results"][key] = earlier["results"][key]
        payload["kept_settings"][key] = dict(kept.get(key, origin))
    if not payload["config"]["memory_depths"] and earlier.get("memory_vs_depth"):
        payload["memory_vs_depth"] = earlier["memory_vs_depth"]
        payload["kept_settings"]["memory_vs_depth"] = dict(kept.get("memory_vs_depth", origin))


def status_note(payload: dict, settings: list, base: str, final: bool, gpu: bool) -> str:
    """The payload's note: ``base``, then what is not measured yet, skipped or failed."""
    note = [base]
    if not final:
        left = [k for k in (f"{g}/{m}/{d}" for g, m, d in settings)
                if k not in payload["results"] and k not in payload["skipped_settings"]]
        note.append(f"PARTIAL: still running or stopped by a time limit; not measured yet: "
                    f"{', '.join(left) or 'none'}.")
    kept = payload.get("kept_settings") or {}
    if kept:
        note.append("Kept from an earlier run (--merge; not re-measured here): " + "; ".join(
            f"{k} ({e.get('device')}, {str(e.get('timestamp'))[:10]}, commit {e.get('git_commit')})"
            for k, e in kept.items()) + ".")
    if payload["skipped_settings"]:
        note.append("Skipped for the time budget: " + "; ".join(
            f"{k} ({why})" for k, why in payload["skipped_settings"].items()) + ".")
    tv = payload["torchvision_check"]
    if tv:
        note.append(f"torchvision check failed: {tv['error']}." if "error" in tv else
                    f"torchvision's resnet50 weights loaded into ours: logits differ by at most "
                    f"{tv['max_abs_diff']:.2e}.")
    for key, what in (("memory_error", "memory sweep failed"), ("plot_error", "plot not drawn")):
        if key in payload:
            note.append(f"{what}: {payload[key]}.")
    if gpu and payload["peak"]["source"] is None:
        note.append(f"Fraction of peak not shown: {payload['peak']['note']}.")
    return " ".join(note)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch", type=int, default=None, help="batch (default 32 CPU, 128 CUDA)")
    p.add_argument("--batch50", type=int, default=None, help="resnet50 batch (default 4 CPU, 64 CUDA)")
    p.add_argument("--ode-steps", type=int, default=8, help="steps of the ODE group (a power of 2)")
    p.add_argument("--groups", default="resnet56,noise,ode,resnet50", help="groups to measure")
    p.add_argument("--cases", default=None, help="only these cases of the groups (default: all)")
    p.add_argument("--tag", default=None, help="write speed_<tag>_<device>.json (default speed_<device>)")
    p.add_argument("--modes", default=None, help="eager,compile (default: both on CUDA, eager on CPU)")
    p.add_argument("--dtypes", default=None, help="fp32,bf16 (default: bf16,fp32 on CUDA, fp32 on CPU)")
    p.add_argument("--memory-depths", default="20,32,44,56,110", help="depths of the memory sweep ('none': skip)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 30)")
    p.add_argument("--iters", type=int, default=None, help="steps per round (default 1 CPU, 10 CUDA)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per model (default 2 CPU, 10 CUDA)")
    p.add_argument("--fused-kernels", choices=("eager", "compiled"), default="eager", help="LM/LMM "
                   "backward: eager ops or one generated kernel (solvers.fused.compiled_kernels)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--skip-resnet50", action="store_true", help="skip the torchvision comparison")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="CPU timing: elapsed time, "
                   "or this process's CPU time (a shared machine; with 1 thread)")
    p.add_argument("--out-dir", default=None, help="directory for the results (default benchmarks/results)")
    p.add_argument("--merge", action="store_true", help="keep the settings of the existing "
                   "result file that this run does not measure (noted with their machine and date)")
    p.add_argument("--budget-s", type=float, default=None, help="skip settings predicted to end late")
    args = p.parse_args(argv)
    set_threads(args.threads)
    solvers.fused.compiled_kernels(args.fused_kernels == "compiled")
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    for key, cpu_value, gpu_value in (("batch", 32, 128), ("batch50", 4, 64), ("rounds", 30, 30),
                                      ("iters", 1, 10), ("warmup", 2, 10)):
        if getattr(args, key) is None:
            setattr(args, key, gpu_value if gpu else cpu_value)
    args.groups = parse_list(args.groups)
    args.cases = parse_list(args.cases) if args.cases else None
    bad = sorted(set(args.groups) - {"resnet56", "noise", "ode", "resnet50"})
    if bad:
        raise ValueError(f"unknown group(s) {bad}; available: noise, ode, resnet50, resnet56")
    args.modes = parse_list(args.modes or ("eager,compile" if gpu else "eager"))
    args.dtypes = parse_list(args.dtypes or ("bf16,fp32" if gpu else "fp32"))
    if set(args.modes) - {"eager", "compile"} or set(args.dtypes) - {"fp32", "bf16"}:
        raise ValueError("--modes takes eager,compile and --dtypes fp32,bf16")
    args.memory_depths = [] if args.memory_depths == "none" else parse_list(args.memory_depths, int)
    if args.budget_s is not None and args.budget_s <= 0:
        raise ValueError(f"--budget-s must be positive, got {args.budget_s}")
    if "compile" in args.modes:
        _raise_recompile_limit()
    start = time.perf_counter()
    cases = groups(args)
    # eager first (bf16 before fp32 on CUDA), the memory sweep, then the slow compiled settings
    settings = [(g, m, d) for m in args.modes for d in args.dtypes for g in cases]
    env = dict(env_info(device, 0), cpu_capability=torch.backends.cpu.get_cpu_capability())
    payload = dict(benchmark="speed", env=env, config=dict(vars(args)), results={},
                   memory_vs_depth={}, torchvision_check=None, peak=peak_info(device), wall_seconds=None,
                   skipped={"torchvision": torchvision is None, "torchdiffeq": odeint is None},
                   skipped_settings={}, kept_settings={}, partial=True, plots=[])
    base_note = "GPU run." if gpu else ("CPU run: no GPU was available for these numbers; the script "
                                         "is GPU-ready (CUDA events, max_memory_allocated, bf16 autocast, torch.compile).")
    path = result_path(f"speed_{args.tag}" if args.tag else "speed", device, args.out_dir)
    stem = path.with_suffix("")
    if args.merge:
        keep_earlier(payload, path, {f"{g}/{m}/{d}" for g, m, d in settings})

    def save(final: bool) -> None:
        """(Re)write the JSON and markdown with what has been measured so far."""
        payload.update(partial=not final, note=status_note(payload, settings, base_note, final, gpu),
                       wall_seconds=time.perf_counter() - start,
                       goals=speed_goals(payload["results"], payload["memory_vs_depth"]))
        write_json(path, payload)
        stem.with_suffix(".md").write_text(speed_markdown(payload) + "\n")

    path.parent.mkdir(parents=True, exist_ok=True)
    measured, extras_done = {}, False
    for group, mode, dtype in settings:
        if mode == "compile" and not extras_done:  # after the eager settings
            measure_extras(payload, args, device, cases, stem)
            extras_done = True
            save(final=False)
        key = f"{group}/{mode}/{dtype}"
        elapsed, need = time.perf_counter() - start, predicted_seconds(group, mode, len(cases[group]), measured)
        if args.budget_s is not None and elapsed + need > args.budget_s:
            payload["skipped_settings"][key] = (f"predicted {need:.0f} s with {elapsed:.0f} of "
                                                f"{args.budget_s:.0f} s used")
            print(f"skipping {key}: {payload['skipped_settings'][key]}", flush=True)
            continue
        print(f"measuring {key} ...", flush=True)
        t = time.perf_counter()
        payload["results"][key] = measure_group(cases[group], args, device, mode, dtype)
        measured[group, mode, dtype] = (time.perf_counter() - t, len(cases[group]))
        save(final=False)
    if not extras_done:
        measure_extras(payload, args, device, cases, stem)
    save(final=True)
    print(speed_markdown(payload))
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    from _common import run_main
    sys.exit(run_main(main))
