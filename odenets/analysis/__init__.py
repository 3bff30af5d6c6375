"""Numerical analysis of the schemes and of trained networks, with PNG figures.

    odenets.analysis.plot_stability_regions("stability.png")   # every deterministic scheme
    odenets.analysis.plot_convergence("convergence.png")       # error vs steps, observed orders
    odenets.analysis.plot_lm_coefficients(odenets.coefficients(model), "lm_k.png")
    odenets.analysis.write_report("out/", model)                # all of them + markdown/CSV tables
"""
from .convergence import convergence, convergence_all, convergence_table, observed_order
from .figures import plot_convergence, plot_lm_coefficients, plot_stability_regions
from .modified_equation import (lm_coefficients, lm_modified_equation, lm_table, table_csv,
                                table_markdown)
from .report import write_lm_report, write_report
from .stability import (amplification, analytic_radius, deterministic_schemes,
                        real_stability_interval, stability_region, stability_regions, step_matrix)

__all__ = ["amplification", "analytic_radius", "convergence", "convergence_all", "convergence_table",
           "deterministic_schemes", "lm_coefficients", "lm_modified_equation", "lm_table",
           "observed_order", "plot_convergence", "plot_lm_coefficients", "plot_stability_regions",
           "real_stability_interval", "stability_region", "stability_regions", "step_matrix",
           "table_csv", "table_markdown", "write_lm_report", "write_report"]
