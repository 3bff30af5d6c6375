"""The modified equation of a trained LM-ResNet: what its learned k_n say about the dynamics.

LM's step ``u_{n+1} = (1 - k_n) u_n + k_n u_{n-1} + dt f_n(u_n)``, expanded in Taylor series
about ``t_n`` (docs/schemes.md §2), is a consistent scheme for

    (1 + k_n) u_t + (1 - k_n) (dt / 2) u_tt + O(dt^2) = f_n(u),

so block ``n`` integrates the field with the effective step ``dt / (1 + k_n)``, and for
``k_n in (-1, 1)`` the ``u_tt`` term is an inertia (momentum) term of size ``(1 - k_n) / 2``
(relative to the damping ``1 + k_n``: ``(1 - k_n) / (2 (1 + k_n))``). The coefficients are
``C_1 = rho'(1)`` and ``C_2`` of `solvers.multistep.modified_equation_coefficients` with the
non-unit root ``r = -k``; that function is used here, so LM and ``lmm`` share one formula.

Input: ``odenets.coefficients(model)``, a dict ``{"<flow path>.k": [k_0, k_1, ...], ...}``
(per-channel k averaged), or such a dict built by hand; or the model itself.
"""
from __future__ import annotations

import csv
import io

import torch

from solvers.multistep import modified_equation_coefficients

from ..atomic import write_text
from ..build import coefficients as flow_coefficients


def lm_modified_equation(k) -> dict:
    """``{"k", "damping" = 1 + k, "momentum" = (1 - k) / 2, "ratio" = momentum / damping}`` as
    float64 tensors of the shape of ``k``. Every k must lie in (-1, 1) (zero-stability)."""
    k = torch.as_tensor(k, dtype=torch.float64)
    if not bool(torch.isfinite(k).all()) or not bool(((k > -1) & (k < 1)).all()):
        raise ValueError(f"LM coefficients k must lie in (-1, 1) (zero-stability), got {k.tolist()}")
    c = modified_equation_coefficients(torch.complex(-k, torch.zeros_like(k)).unsqueeze(-1), 2)
    damping, momentum = c[..., 0], c[..., 1]
    return dict(k=k, damping=damping, momentum=momentum, ratio=momentum / damping)


def lm_coefficients(source, name: str = "k") -> dict[str, list[float]]:
    """``{stage: [k per block]}`` from ``odenets.coefficients``-style dict or from a model.

    Entries whose key is ``name`` or ends with ``".<name>"`` are kept (the suffix is dropped to
    name the stage); a model is read with ``odenets.coefficients(model)`` at call time.
    """
    if not isinstance(source, dict):
        source = flow_coefficients(source)
    out = {}
    for key, values in source.items():
        if key == name or key.endswith("." + name):
            stage = key[: -len(name) - 1] if key != name else "flow"
            values = [float(torch.as_tensor(v, dtype=torch.float64).mean()) for v in values]
            out[stage or "flow"] = values
    if not out:
        raise ValueError(f"no LM coefficient {name!r} found: keys are {sorted(source)}; expected "
                         f"keys {name!r} or '<flow path>.{name}' (an LM / per-channel LM network)")
    return out


def lm_table(source, name: str = "k") -> list[dict]:
    """One row per block: ``stage``, ``block`` (index within the stage), ``index`` (across the
    network), ``k``, ``damping`` (1 + k), ``momentum`` ((1 - k) / 2), ``ratio``."""
    rows, index = [], 0
    for stage, ks in lm_coefficients(source, name).items():
        coeffs = lm_modified_equation(ks)
        for block in range(len(ks)):
            rows.append(dict(stage=stage, block=block, index=index,
                             **{key: float(value[block]) for key, value in coeffs.items()}))
            index += 1
    return rows


COLUMNS = ("stage", "block", "k", "damping", "momentum", "ratio")
HEADERS = ("stage", "block", "k_n", "1 + k_n", "(1 - k_n) / 2", "(1 - k_n) / (2 (1 + k_n))")


def table_markdown(rows: list[dict]) -> str:
    """The rows of `lm_table` as a markdown table."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['block']} | {r['k']:+.4f} | {r['damping']:.4f} | "
                     f"{r['momentum']:.4f} | {r['ratio']:.4f} |")
    return "\n".join(lines) + "\n"


def table_csv(rows: list[dict], path=None) -> str:
    """The rows of `lm_table` as CSV text (written to ``path`` when given)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([r["stage"], r["block"]] + [repr(r[c]) for c in COLUMNS[2:]])
    text = buffer.getvalue()
    if path is not None:
        write_text(path, text)
    return text
