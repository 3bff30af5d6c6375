"""Plots of a run directory (matplotlib, Agg backend: no display needed).

``curves.png``        train/test loss and accuracy per epoch.
``coefficients.png``  the learned scheme coefficients (LM's k_n) per block: left, k_n against
                      block index (all stages in order) with one line per epoch, light to dark;
                      right, each block's k_n against epoch. Written only when the run recorded
                      coefficients. The paper reads k_n as the size of the momentum term
                      (1 - k_n)(dt/2) u_tt of the modified equation (DESIGN.md section 2).
"""
from __future__ import annotations

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
    fig, (ax_block, ax_epoch) = plt.subplots(1, 2, figsize=(11, 4))
    cmap = plt.get_cmap("viridis")
    for j, (epoch, (_, values)) in enumerate(records):
        shade = cmap(j / max(1, len(records) - 1))
        ax_block.plot(range(1, len(values) + 1), values, "-o", ms=3, color=shade,
                      label=f"epoch {epoch}" if j in (0, len(records) - 1) else None)
    ax_block.set(xlabel="block (all stages in order)", ylabel="k_n", title="learned k_n per block")
    ax_block.legend()
    epochs = [e for e, _ in records]
    for b in range(len(labels)):
        ax_epoch.plot(epochs, [vals[b] if b < len(vals) else float("nan") for _, (_, vals) in records],
                      lw=1, label=labels[b] if len(labels) <= 12 else None)
    ax_epoch.set(xlabel="epoch", ylabel="k_n", title="k_n of each block during training")
    if len(labels) <= 12:
        ax_epoch.legend(fontsize=6)
    for ax in (ax_block, ax_epoch):
        ax.axhline(0, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


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
    return paths + ([coeff] if coeff else [])
