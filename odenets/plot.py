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
    flows = _multistep_flows(model)
    if not flows:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(flows), figsize=(3.6 * len(flows), 3.6), squeeze=False)
    angles = [2 * math.pi * i / 200 for i in range(201)]
    cmap = plt.get_cmap("viridis")
    for ax, (name, flow) in zip(axes[0], flows):
        roots = roots_per_step(flow.scheme, flow.coefficients()).detach().cpu()  # model may be on a GPU
        steps = roots.shape[0]
        ax.plot([math.cos(a) for a in angles], [math.sin(a) for a in angles], color="grey", lw=0.8)
        ax.plot([1], [0], "kx", ms=7, label="root at 1 (consistency)")
        for n in range(steps):
            r = roots[n]
            ax.scatter(r.real.numpy(), r.imag.numpy(), s=14, color=cmap(n / max(1, steps - 1)),
                       label="block 0 ... last (dark to light)" if n == 0 else None)
        ax.set(xlabel="Re", ylabel="Im", title=f"{name or 'flow'} ({flow.scheme.name})",
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


def plot_run(run_dir, out_dir=None) -> list[Path]:
    """Write the run's PNG plots (see the module docstring); returns their paths."""
    from .train.rundir import read_metrics
    history = read_metrics(run_dir)
    if not history:
        raise ValueError(f"{run_dir}: metrics.jsonl has no completed epoch yet")
    out = Path(out_dir) if out_dir else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [plot_curves(history, out / "curves.png")]
    coeff = plot_coefficients(history, out / "coefficients.png")
    paths += [coeff] if coeff else []
    from .train import checkpoint
    if (Path(run_dir) / checkpoint.NAME).exists():
        from .train.model import load_run_model
        model, _, _ = load_run_model(run_dir)
        paths += plot_model(model, out)
    return paths
