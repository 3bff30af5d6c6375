"""`write_report`: every analysis figure and table into one folder (for ``odenets plot``)."""
from __future__ import annotations

import os

from ..atomic import write_text
from ..build import coefficients as flow_coefficients
from .convergence import convergence_table
from .figures import plot_convergence, plot_lm_coefficients, plot_stability_regions
from .modified_equation import lm_table, table_csv, table_markdown


def _has_lm(coefficients) -> bool:
    return any(key == "k" or key.endswith(".k") for key in coefficients)


def write_report(out_dir, model=None, coefficients=None) -> dict[str, str]:
    """Write into ``out_dir``: ``stability_regions.png``, ``convergence.png``,
    ``convergence.md``; and, for an LM network (``model`` or its ``coefficients`` dict),
    ``lm_coefficients.png``, ``lm_modified_equation.md`` and ``.csv``. Returns
    ``{artifact: path}``."""
    if model is not None and coefficients is not None:
        raise ValueError("give model or coefficients, not both")
    os.makedirs(out_dir, exist_ok=True)
    join = lambda name: os.path.join(out_dir, name)  # noqa: E731
    paths = {"stability": join("stability_regions.png"), "convergence": join("convergence.png"),
             "convergence_table": join("convergence.md")}
    plot_stability_regions(paths["stability"])
    results = plot_convergence(paths["convergence"])
    write_text(paths["convergence_table"], convergence_table(results))
    if model is not None:
        coefficients = flow_coefficients(model)
    paths.update(write_lm_report(out_dir, coefficients or {}))
    return paths


def write_lm_report(out_dir, coefficients, figure: bool = True) -> dict[str, str]:
    """For an LM network's ``coefficients`` (`odenets.coefficients`): ``lm_coefficients.png``
    (unless ``figure=False``), ``lm_modified_equation.md`` and ``.csv`` (k_n, 1 + k_n,
    (1 - k_n)/2 per block). Writes nothing and returns ``{}`` when there is no LM k."""
    if not _has_lm(coefficients):
        return {}
    join = lambda name: os.path.join(out_dir, name)  # noqa: E731
    paths = dict(lm=join("lm_coefficients.png"), lm_table=join("lm_modified_equation.md"),
                 lm_csv=join("lm_modified_equation.csv"))
    if figure:
        rows = plot_lm_coefficients(coefficients, paths["lm"])
    else:
        rows = lm_table(coefficients)
        del paths["lm"]
    write_text(paths["lm_table"], table_markdown(rows))
    table_csv(rows, paths["lm_csv"])
    return paths
