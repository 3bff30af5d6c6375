"""Plots of a run directory (matplotlib, Agg backend: no display needed).

Titled with the run's model, dataset and solver (from config.json). Blocks are numbered
n = 0, 1, ... over the whole network (stages in order) in every figure and table.

``curves.png``        loss, accuracy and learning rate against epoch: training at points within
                      each epoch (the records' ``train_curve``), test at the end of each epoch.
``coefficients.png``  the learned scheme coefficients (LM's k_n) per block: left, k_n against
                      block n with one line per epoch, dark to light; right, each block's k_n
                      against epoch. Written only when the run recorded coefficients. The paper
                      reads k_n as the size of the momentum term (1 - k_n)(dt/2) u_tt of the
                      modified equation (docs/schemes.md, "The LM scheme").
``roots.png``         for LM / lmm networks: the learned roots of each block's characteristic
                      polynomial rho (other than the root at 1) in the complex plane, with the
                      unit circle (zero-stability keeps them inside), one panel per stage.
``lm_modified_equation.md/.csv`` for LM networks: k_n and the modified-equation coefficients
                      (1 + k_n) and (1 - k_n)/2 per block (`odenets.analysis`; ``odenets
                      analyze --run`` also draws them as ``lm_coefficients.png``).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

import solvers
from solvers import checks
from solvers.lmm import roots_per_step

from .atomic import save_figure
from .analysis import write_lm_report
from .build import coefficients as flow_coefficients
from .flow import Flow
from .models.registry import get_config
from .train.rundir import CONFIG, read_json, read_metrics


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _flatten(coefficients: dict) -> tuple[list[str], list[float], list[int], list[tuple]]:
    """Blocks in network order (numbered n = 0, 1, ... over all stages, as in
    ``lm_coefficients.png`` and ``lm_modified_equation.md``): labels ``"n=3 (stage 1)"`` (with
    the coefficient's name when there are several, ``"n=3 (stage 1) r1"``), values (per-channel
    lists averaged), the index n where each stage starts, and (n, coefficient name) per value."""
    names = {key.rsplit(".", 1)[-1] for key in coefficients}
    first, total = {}, 0  # stage path -> its first block index n
    for key in coefficients:
        stage = key.rsplit(".", 1)[0]
        if stage not in first:
            first[stage] = total
            total += max(len(v) for k, v in coefficients.items() if k.rsplit(".", 1)[0] == stage)
    labels, values, where = [], [], []
    for key, vals in coefficients.items():
        stage, name = key.rsplit(".", 1)
        suffix = f" {name}" if len(names) > 1 else ""
        for i, v in enumerate(vals):
            labels.append(f"n={first[stage] + i} ({_stage_name(stage)}){suffix}")
            values.append(sum(v) / len(v) if isinstance(v, list) else float(v))
            where.append((first[stage] + i, name))
    return labels, values, list(first.values()), where


def _stage_name(path: str) -> str:
    """``"stages.1.flow"`` -> ``"stage 1"``; other module paths are kept."""
    parts = path.split(".")
    return f"stage {parts[1]}" if len(parts) >= 2 and parts[0] == "stages" and parts[1].isdigit() else path


def _colors(plt, n: int) -> list:
    """``n`` colours from dark to mid (viridis without its pale yellow end: visible on white)."""
    cmap = plt.get_cmap("viridis")
    return [cmap(0.85 * j / max(1, n - 1)) for j in range(n)]


def _block_colors(plt, n: int) -> list:
    """One colour per block n, the same in coefficients.png and roots.png: matplotlib's ten
    distinct colours, or a dark-to-mid scale for more than ten blocks."""
    return [f"C{b}" for b in range(n)] if n <= 10 else _colors(plt, n)


def _integer_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(plt, fig, path) -> Path:
    """Lay out, write ``path`` (PNG, 120 dpi) and close the figure."""
    try:
        fig.tight_layout()
        save_figure(fig, path, dpi=120)  # atomic: no 0-byte PNG when the disk is full
    finally:
        plt.close(fig)
    return Path(path)


def run_title(config: dict | None) -> str | None:
    """'lm_resnet20 on fashion-mnist, solver lm' from a run's config.json (None without one)."""
    if not config:
        return None
    args = config.get("model_args") if isinstance(config.get("model_args"), dict) else {}
    solver = config.get("solver") or args.get("solver")
    if solver is None:
        try:
            solver = get_config(config["model"], **args).solver
        except Exception:  # not a preset (module:function): no solver to name
            solver = None
    return f"{config.get('model')} on {config.get('dataset')}" + (f", solver {solver}" if solver else "")


def plot_curves(history: list[dict], path, title: str | None = None) -> Path:
    """Loss, accuracy and learning rate against epoch: training at points within each epoch
    (the records' ``train_curve``; per-epoch values for runs without it), test at epoch ends."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    curve = {key: [x for r in history for x in r.get("train_curve", {}).get(key, [])]
             for key in ("epoch", "loss", "acc", "lr")}
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, label in ((ax_loss, "loss", "cross-entropy"), (ax_acc, "acc", "accuracy")):
        if curve["epoch"]:
            ax.plot(curve["epoch"], curve[key], "-", color="C0", lw=1.2, label="train (within epochs)")
        ax.plot(epochs, [r[f"train_{key}"] for r in history], "o", color="C0", ms=5,
                label="train (epoch mean)")
        ax.plot(epochs, [r[f"test_{key}"] for r in history], "s-", color="C3", ms=5, label="test")
        ax.set(xlabel="epoch", ylabel=label, title="loss" if key == "loss" else "accuracy")
    if curve["epoch"]:
        ax_lr.plot(curve["epoch"], curve["lr"], "-", color="C2", lw=1.2)
    else:
        ax_lr.plot(epochs, [r.get("lr", float("nan")) for r in history], "o-", color="C2", ms=4)
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.set_xlim(0 if curve["epoch"] else None, max(epochs) + 0.05)
        _integer_ticks(ax)
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    ax_acc.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(plt, fig, path)


def plot_coefficients(history: list[dict], path, title: str | None = None) -> Path | None:
    """Learned coefficients per block: left, against block n (stages separated by dotted lines)
    with one line per epoch, dark to light; right, each block's value against epoch."""
    records = [(r["epoch"], _flatten(r["coefficients"])) for r in history if r.get("coefficients")]
    if not records:
        return None
    plt = _pyplot()
    labels, _, starts, where = records[-1][1]
    names = sorted({name for _, name in where})
    styles = dict(zip(names, ["-", "--", ":", "-."]))
    what = "k_n" if names == ["k"] else f"coefficients {', '.join(names)}"
    fig, (ax_block, ax_epoch) = plt.subplots(1, 2, figsize=(12, 4.4))
    shades = _colors(plt, len(records))
    for j, (epoch, (_, values, _, at)) in enumerate(records):
        for name in names:
            pick = [(n, v) for (n, nm), v in zip(at, values) if nm == name]
            label = f"epoch {epoch}" + (f", {name}" if len(names) > 1 else "")
            ax_block.plot([n for n, _ in pick], [v for _, v in pick], "o", ls=styles.get(name, "-"),
                          ms=3, color=shades[j], label=label if j in (0, len(records) - 1) else None)
    for start in starts[1:]:
        ax_block.axvline(start - 0.5, color="0.6", lw=0.8, ls=":")
    ax_block.set(xlabel="block n (all stages in order; dotted: stage boundaries)", ylabel=what,
                 title=f"learned {what} per block")
    _integer_ticks(ax_block)
    ax_block.legend(fontsize=8)
    epochs = [e for e, _ in records]
    colors = _block_colors(plt, max(n for n, _ in where) + 1)
    for b, (n, name) in enumerate(where):
        ax_epoch.plot(epochs, [vals[b] if b < len(vals) else float("nan") for _, (_, vals, _, _) in records],
                      "o", ls=styles.get(name, "-"), ms=3, lw=1, color=colors[n], label=labels[b])
    ax_epoch.set(xlabel="epoch", ylabel=what, title=f"{what} of each block during training")
    _integer_ticks(ax_epoch)
    if len(labels) <= 16:
        ax_epoch.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="block",
                        title_fontsize=7)
    for ax in (ax_block, ax_epoch):
        ax.axhline(0, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(plt, fig, path)


def _multistep_flows(model):
    """``(path, flow)`` for every flow of ``model`` whose scheme is LM or lmm."""
    return [(path, m) for path, m in model.named_modules()
            if isinstance(m, Flow) and m.scheme.name in ("lm", "lmm")]


def plot_roots(model, path, title: str | None = None) -> Path | None:
    """Learned roots of rho per block in the complex plane (see the module docstring); blocks
    are numbered n = 0, 1, ... over the whole network, as in coefficients.png."""
    # every coefficient a step reads (an unreachable one, e.g. lmm4's r3 in a 3-step flow, as 0)
    flows = [(name, flow.scheme, roots_per_step(flow.scheme, flow.coefficient_values()).detach().cpu())
             for name, flow in _multistep_flows(model)]  # model may be on a GPU
    return _plot_roots(flows, path, title)


def _plot_roots(flows, path, title: str | None = None) -> Path | None:
    """``flows``: ``(name, scheme, roots)`` per flow, roots complex of shape (steps, ...)."""
    if not flows:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(flows), figsize=(3.8 * len(flows), 4.2), squeeze=False)
    angles = [2 * math.pi * i / 200 for i in range(201)]
    colors = _block_colors(plt, sum(r.shape[0] for _, _, r in flows))
    n = 0
    for ax, (name, scheme, stage_roots) in zip(axes[0], flows):
        ax.plot([math.cos(a) for a in angles], [math.sin(a) for a in angles], color="grey", lw=0.8)
        ax.plot([1], [0], "kx", ms=7, label="root at 1")
        for r in stage_roots:  # CPU tensors (plot_roots moves a GPU model's roots)
            ax.scatter(r.real.numpy(), r.imag.numpy(), s=22, color=colors[n], edgecolors="k",
                       linewidths=0.3, label=f"n={n}" if stage_roots.shape[0] <= 10 else None)
            n += 1
        ax.set(xlabel="Re", ylabel="Im", title=f"{_stage_name(name) if name else 'flow'} "
               f"({scheme.name})", aspect="equal", xlim=(-1.15, 1.15), ylim=(-1.15, 1.15))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower left", ncol=2, title="block", title_fontsize=6)
    fig.suptitle((title + ": " if title else "") + "roots of each block's ρ (zero-stable inside "
                 "the unit circle)", fontsize=10)
    return _save(plt, fig, path)


def plot_model(model, out_dir, title: str | None = None) -> list[Path]:
    """Figures of a trained model's scheme: learned roots (LM/lmm) and, for LM, the
    modified-equation table (``lm_modified_equation.md``/``.csv``; the k_n figure is
    coefficients.png, drawn from the metrics)."""
    out, paths = Path(out_dir), []
    roots = plot_roots(model, out / "roots.png", title)
    if roots is not None:
        paths.append(roots)
    paths += [Path(p) for p in write_lm_report(out, flow_coefficients(model), figure=False).values()]
    return paths


def _roots_from_record(coefficients: dict, config: dict | None) -> list:
    """``(name, scheme, roots)`` per LM/lmm flow from a metrics record's ``coefficients``
    (per-channel values arrive averaged). The scheme comes from the registries: LM's roots are
    -k; an lmm preset's scheme is built from its preset config (`odenets.models.registry.get_config`, which
    builds no model). A ``module:function`` model's lmm flows are skipped (nothing is imported)."""
    groups: dict[str, dict] = {}
    for key, values in coefficients.items():
        flow, _, name = key.rpartition(".")
        groups.setdefault(flow, {})[name] = torch.tensor(values, dtype=torch.float64)
    scheme = None
    if any(set(values) != {"k"} for values in groups.values()):
        config = config or {}
        model = config.get("model")
        if not isinstance(model, str) or ":" in model:
            return []
        try:
            overrides = dict(config.get("model_args") or {})
            if config.get("solver"):
                overrides["solver"] = config["solver"]
            net = get_config(model, **overrides)
            scheme = solvers.get(net.solver, **net.solver_options) \
                if isinstance(net.solver, str) else net.solver
        except (ValueError, TypeError):
            return []
    out = []
    for flow, values in groups.items():
        if set(values) == {"k"}:
            k = values["k"]
            out.append((flow, solvers.get("lm"), torch.complex(-k, torch.zeros_like(k))[:, None]))
        elif scheme is not None and scheme.name == "lmm":
            try:
                out.append((flow, scheme, roots_per_step(scheme, values).detach()))
            except (ValueError, RuntimeError, KeyError):
                return []
    return out


def _check_history(history, path) -> None:
    """ValueError naming ``path`` and the record unless every record has the plotted numbers
    and, if any, coefficients ``{name: [number or list of numbers, ...]}``."""
    def number(v):
        return checks.is_real(v)

    for i, r in enumerate(history, 1):
        keys = ("epoch", "train_loss", "test_loss", "train_acc", "test_acc")
        if not isinstance(r, dict) or not all(number(r.get(k)) for k in keys):
            raise ValueError(f"{path}, record {i}: not a metrics record (needs the numbers "
                             f"{', '.join(keys)})")
        curve = r.get("train_curve")
        if curve is not None and not (isinstance(curve, dict) and all(
                isinstance(v, list) and all(number(x) for x in v) for v in curve.values())):
            raise ValueError(f"{path}, record {i}: 'train_curve' must map names to lists of "
                             "numbers")
        c = r.get("coefficients")
        if c is not None and not (isinstance(c, dict) and all(
                isinstance(v, list) and all(number(x) or (isinstance(x, list) and x and all(
                    number(y) for y in x)) for x in v) for v in c.values())):
            raise ValueError(f"{path}, record {i}: 'coefficients' must map names to lists of "
                             "numbers")


def plot_run(run_dir, out_dir=None) -> list[Path]:
    """Write the run's PNG plots (see the module docstring) from its metrics.jsonl (and
    config.json, for the title and an lmm preset's scheme); returns their paths. No model is
    built and no checkpoint is read, so nothing a run directory names is imported."""
    history = read_metrics(run_dir)
    if not history:
        raise ValueError(f"{run_dir}: metrics.jsonl has no completed epoch yet")
    _check_history(history, Path(run_dir) / "metrics.jsonl")
    out = Path(out_dir) if out_dir else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:  # the title and an lmm preset's scheme; a missing or damaged config.json costs neither
        saved = read_json(Path(run_dir) / CONFIG)
    except (FileNotFoundError, ValueError):
        saved = None
    saved = saved if isinstance(saved, dict) else None
    title = run_title(saved)
    paths = [plot_curves(history, out / "curves.png", title)]
    coeff = plot_coefficients(history, out / "coefficients.png", title)
    paths += [coeff] if coeff else []
    last = next((r["coefficients"] for r in reversed(history) if r.get("coefficients")), None)
    if isinstance(last, dict):
        roots = _plot_roots(_roots_from_record(last, saved), out / "roots.png", title)
        paths += [roots] if roots else []
        paths += [Path(p) for p in write_lm_report(out, last, figure=False).values()]
    return paths
