"""Plots of a run directory (matplotlib, Agg backend: no display needed).

``curves.png``        train/test loss and accuracy per epoch.
``coefficients.png``  the learned scheme coefficients (LM's k_n) per block: left, k_n against
                      block index (all stages in order) with one line per epoch, light to dark;
                      right, each block's k_n against epoch. Written only when the run recorded
                      coefficients. The paper reads k_n as the size of the momentum term
                      (1 - k_n)(dt/2) u_tt of the modified equation (DESIGN.md section 2).
``roots.png``         for LM / lmm networks: the learned roots of each block's characteristic
                      polynomial rho (other than the root at 1) in the complex plane, with the
                      unit circle (zero-stability keeps them inside), one panel per stage.
``lm_coefficients.png`` (+ ``lm_modified_equation.md/.csv``) for LM networks: k_n and the modified-equation
                      coefficients (1 + k_n) and (1 - k_n)/2 per block (`odenets.analysis`).
"""
from __future__ import annotations

import math
from pathlib import Path


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _flatten(coefficients: dict) -> tuple[list[str], list[float]]:
    """Blocks in stage order: labels ``"stages.0.flow.k[1]"`` and values (per-channel lists are
    averaged)."""
    labels, values = [], []
    for key, vals in coefficients.items():
        for i, v in enumerate(vals):
            labels.append(f"{key}[{i}]")
            values.append(sum(v) / len(v) if isinstance(v, list) else float(v))
    return labels, values


def plot_curves(history: list[dict], path) -> Path:
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-o"), ("test", "-s")):
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in history], style, label=split, ms=3)
        ax_acc.plot(epochs, [r[f"{split}_acc"] for r in history], style, label=split, ms=3)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_coefficients(history: list[dict], path) -> Path | None:
    records = [(r["epoch"], _flatten(r["coefficients"])) for r in history if r.get("coefficients")]
    if not records:
        return None
    plt = _pyplot()
    labels = records[-1][1][0]
    last = next(r for r in reversed(history) if r.get("coefficients"))
    names = sorted({key.rsplit(".", 1)[-1] for key in last["coefficients"]})
    what = "k_n" if names == ["k"] else f"coefficient ({', '.join(names)})"
    fig, (ax_block, ax_epoch) = plt.subplots(1, 2, figsize=(11, 4))
    cmap = plt.get_cmap("viridis")
    for j, (epoch, (_, values)) in enumerate(records):
        shade = cmap(j / max(1, len(records) - 1))
        ax_block.plot(range(1, len(values) + 1), values, "-o", ms=3, color=shade,
                      label=f"epoch {epoch}" if j in (0, len(records) - 1) else None)
    order = "block" if names == ["k"] else "block, per coefficient"
    ax_block.set(xlabel=f"{order} (all stages in order)", ylabel=what, title=f"learned {what} per block")
    ax_block.legend()
    epochs = [e for e, _ in records]
    for b in range(len(labels)):
        ax_epoch.plot(epochs, [vals[b] if b < len(vals) else float("nan") for _, (_, vals) in records],
                      lw=1, label=labels[b] if len(labels) <= 12 else None)
    ax_epoch.set(xlabel="epoch", ylabel=what, title=f"{what} of each block during training")
    if len(labels) <= 12:
        ax_epoch.legend(fontsize=6)
    for ax in (ax_block, ax_epoch):
        ax.axhline(0, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def _multistep_flows(model):
    """``(path, flow)`` for every flow of ``model`` whose scheme is LM or lmm."""
    from .flow import Flow
    return [(path, m) for path, m in model.named_modules()
            if isinstance(m, Flow) and m.scheme.name in ("lm", "lmm")]


def plot_roots(model, path) -> Path | None:
    """Learned roots of rho per block in the complex plane (see the module docstring)."""
    from solvers.lmm import roots_per_step
    flows = [(name, flow.scheme, roots_per_step(flow.scheme, flow.coefficients()).detach().cpu())
             for name, flow in _multistep_flows(model)]  # model may be on a GPU
    return _plot_roots(flows, path)


def _plot_roots(flows, path) -> Path | None:
    """``flows``: ``(name, scheme, roots)`` per flow, roots complex of shape (steps, ...)."""
    if not flows:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(flows), figsize=(3.6 * len(flows), 3.6), squeeze=False)
    angles = [2 * math.pi * i / 200 for i in range(201)]
    cmap = plt.get_cmap("viridis")
    for ax, (name, scheme, roots) in zip(axes[0], flows):
        steps = roots.shape[0]
        ax.plot([math.cos(a) for a in angles], [math.sin(a) for a in angles], color="grey", lw=0.8)
        ax.plot([1], [0], "kx", ms=7, label="root at 1 (consistency)")
        for n in range(steps):
            r = roots[n]
            ax.scatter(r.real.numpy(), r.imag.numpy(), s=14, color=cmap(n / max(1, steps - 1)),
                       label="block 0 ... last (dark to light)" if n == 0 else None)
        ax.set(xlabel="Re", ylabel="Im", title=f"{name or 'flow'} ({scheme.name})",
               aspect="equal", xlim=(-1.15, 1.15), ylim=(-1.15, 1.15))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_model(model, out_dir) -> list[Path]:
    """Figures of a trained model's scheme: learned roots (LM/lmm) and, for LM, the
    modified-equation coefficients with their table."""
    out, paths = Path(out_dir), []
    roots = plot_roots(model, out / "roots.png")
    if roots is not None:
        paths.append(roots)
    from .analysis import write_lm_report
    from .build import coefficients
    paths += [Path(p) for p in write_lm_report(out, coefficients(model)).values()]
    return paths


def _roots_from_record(coefficients: dict, config: dict | None) -> list:
    """``(name, scheme, roots)`` per LM/lmm flow from a metrics record's ``coefficients``
    (per-channel values arrive averaged). The scheme comes from the registries: LM's roots are
    -k; an lmm preset's scheme is built from its preset config (`odenets.models.registry.get_config`, which
    builds no model). A ``module:function`` model's lmm flows are skipped (nothing is imported)."""
    import torch

    import solvers
    from solvers.lmm import roots_per_step
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
            from .models.registry import get_config
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
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    for i, r in enumerate(history, 1):
        keys = ("epoch", "train_loss", "test_loss", "train_acc", "test_acc")
        if not isinstance(r, dict) or not all(number(r.get(k)) for k in keys):
            raise ValueError(f"{path}, record {i}: not a metrics record (needs the numbers "
                             f"{', '.join(keys)})")
        c = r.get("coefficients")
        if c is not None and not (isinstance(c, dict) and all(
                isinstance(v, list) and all(number(x) or (isinstance(x, list) and x and all(
                    number(y) for y in x)) for x in v) for v in c.values())):
            raise ValueError(f"{path}, record {i}: 'coefficients' must map names to lists of "
                             "numbers")


def plot_run(run_dir, out_dir=None) -> list[Path]:
    """Write the run's PNG plots (see the module docstring) from its metrics.jsonl (and
    config.json, for an lmm preset's scheme); returns their paths. No model is built and no
    checkpoint is read, so nothing a run directory names is imported."""
    from .train.rundir import read_metrics
    history = read_metrics(run_dir)
    if not history:
        raise ValueError(f"{run_dir}: metrics.jsonl has no completed epoch yet")
    _check_history(history, Path(run_dir) / "metrics.jsonl")
    out = Path(out_dir) if out_dir else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [plot_curves(history, out / "curves.png")]
    coeff = plot_coefficients(history, out / "coefficients.png")
    paths += [coeff] if coeff else []
    last = next((r["coefficients"] for r in reversed(history) if r.get("coefficients")), None)
    if isinstance(last, dict):
        from .train.rundir import CONFIG, read_json
        try:
            config = read_json(Path(run_dir) / CONFIG)
        except (FileNotFoundError, ValueError):
            config = None
        roots = _plot_roots(_roots_from_record(last, config if isinstance(config, dict) else None),
                            out / "roots.png")
        paths += [roots] if roots else []
        from .analysis import write_lm_report
        paths += [Path(p) for p in write_lm_report(out, last).values()]
    return paths
