"""PNG figures of the analysis, drawn with matplotlib's object API on the Agg canvas (no
display, no pyplot global state). Each function computes its numbers, writes ``path`` and
returns the numbers, so tests check both the file and the data behind it."""
from __future__ import annotations

import math
import os

import torch

from ..atomic import save_figure
from .convergence import convergence_all
from .modified_equation import lm_table
from .stability import analytic_radius, stability_regions


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> str:
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"figures are written as PNG: the path must end in .png, got {path!r}")
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    save_figure(fig, path, bbox_inches="tight")  # atomic: no 0-byte PNG when the disk is full
    return path


# a second title line for schemes whose panel needs one (the test system they are drawn on)
NOTES = {"damped_leapfrog": "γ = 0 on this test system"}


def plot_stability_regions(path, schemes=None, re=(-3.5, 1.5), im=(-3.2, 3.2), n: int = 301) -> list[dict]:
    """One panel per deterministic scheme (and option variant): the region
    ``rho(M(z)) <= 1`` filled, the closed-form boundary dashed where one exists. Returns the
    `stability_regions` data. With ``schemes=None`` (all registered) a scheme that cannot be
    analysed is skipped with a warning rather than failing the figure."""
    regions = stability_regions(schemes, re, im, n, skip_errors=schemes is None)
    _save(stability_figure(regions, re, im), path)
    return regions


def stability_figure(regions: list[dict], re=(-3.5, 1.5), im=(-3.2, 3.2)):
    """The figure of `plot_stability_regions`: every panel spans the same ``re`` x ``im`` window
    (a region without interior, a segment of the imaginary axis, would otherwise collapse the
    axis to that segment)."""
    cols = min(4, max(1, len(regions)))
    rows = math.ceil(len(regions) / cols)
    fig = _figure(3.0 * cols, 3.3 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(regions):]:
        ax.set_visible(False)
    for ax, r in zip(axes.flat, regions):
        x, y, stable = r["x"].numpy(), r["y"].numpy(), r["stable"].numpy()
        if stable.mean() > 0.005:
            ax.contourf(x, y, stable.astype(float), levels=[0.5, 1.5], colors=["tab:blue"], alpha=0.45)
            ax.contour(x, y, r["radius"].numpy(), levels=[1.0], colors=["tab:blue"], linewidths=1.2)
        else:  # a region without interior (leapfrog: a segment of the imaginary axis)
            iy, ix = stable.nonzero()
            ax.plot(x[ix], y[iy], ".", color="tab:blue", markersize=2.5)
        try:
            zz = torch.complex(r["x"][None, :].expand(len(y), -1), r["y"][:, None].expand(-1, len(x)))
            exact = analytic_radius(r["name"], zz, **r["options"]).numpy()
            ax.contour(x, y, exact, levels=[1.0], colors=["k"], linestyles="--", linewidths=0.8)
        except ValueError:
            pass
        ax.axhline(0, color="0.6", linewidth=0.5)
        ax.axvline(0, color="0.6", linewidth=0.5)
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or NOTES.get(r["name"], "")
        ax.set_title(f"{r['name']} (order {r['order']:g})\n{opts}", fontsize=9)
        ax.set_xlabel("Re z  (z = λ Δt)", fontsize=8)
        ax.set_ylabel("Im z", fontsize=8)
        ax.set_xlim(*re)
        ax.set_ylim(*im)
        ax.set_aspect("equal")
        ax.ticklabel_format(useOffset=False)
        ax.tick_params(labelsize=7)
    fig.suptitle("Linear stability regions ρ(M(z)) ≤ 1 for u' = λu (leapfrog: y' = λz, z' = λy)\n"
                 "filled: from the update rule; dashed: closed form", fontsize=10)
    return fig


def plot_convergence(path, schemes=None, steps=(8, 16, 32, 64, 128)) -> list[dict]:
    """Global error at t = 1 against the number of steps (log-log) for every deterministic
    scheme, with the observed order in the legend. Returns the `convergence_all` data."""
    results = convergence_all(schemes, steps, skip_errors=schemes is None)
    fig = _figure(6.4, 4.8)
    ax = fig.subplots()
    markers = "os^vD<>pPX*h"
    for i, r in enumerate(results):
        style = {1: "-", 2: "--"}.get(r["expected"], ":")
        ax.loglog(r["steps"], r["errors"], style, marker=markers[i % len(markers)], markersize=4,
                  label=f"{r['label']}: observed {r['order']:.2f} (order {r['expected']:g})")
    ax.set_xlabel("steps N (Δt = 1/N)")
    ax.set_ylabel("global error |u_N − u(1)|")
    ax.set_title("Convergence on u' = −u (leapfrog: harmonic oscillator)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    _save(fig, path)
    return results


def plot_lm_coefficients(coefficients, path, name: str = "k") -> list[dict]:
    """Two panels over the blocks of an LM network: the learned ``k_n``, and the
    modified-equation coefficients ``1 + k_n`` (of u_t) and ``(1 - k_n)/2`` (of dt u_tt, the
    momentum term). ``coefficients``: ``odenets.coefficients(model)``, such a dict, or the model.
    Returns the `lm_table` rows."""
    rows = lm_table(coefficients, name)
    index = [r["index"] for r in rows]
    fig = _figure(9.0, 5.6)
    top, bottom = fig.subplots(2, 1, sharex=True)
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    for i, stage in enumerate(stages):
        part = [r for r in rows if r["stage"] == stage]
        top.plot([r["index"] for r in part], [r["k"] for r in part], "o-", markersize=3,
                 color=f"C{i}", label=stage)
        if i:
            for ax in (top, bottom):
                ax.axvline(part[0]["index"] - 0.5, color="0.7", linewidth=0.8, linestyle=":")
    top.axhline(0, color="0.5", linewidth=0.6)
    top.set_ylabel("k_n")
    top.set_title("LM-ResNet: learned k_n per block", fontsize=10)
    top.legend(fontsize=7, title="stage", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    top.grid(True, alpha=0.3)
    bottom.plot(index, [r["damping"] for r in rows], "o-", markersize=3,
                label="1 + k_n\n(coefficient of u_t)")
    bottom.plot(index, [r["momentum"] for r in rows], "s-", markersize=3,
                label="(1 − k_n)/2\n(coefficient of Δt u_tt:\nmomentum)")
    bottom.set_xlabel("block n (across the network; dotted lines: stage boundaries)")
    bottom.set_ylabel("modified-equation coefficient")
    bottom.set_title("(1 + k_n) u_t + (1 − k_n)(Δt/2) u_tt ≈ f_n(u)", fontsize=10)
    bottom.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    bottom.grid(True, alpha=0.3)
    _save(fig, path)
    return rows
