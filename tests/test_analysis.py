"""Analysis: stability regions from the update rules, convergence orders, LM modified equation,
and the PNG figures behind them."""
import csv
import io
import math

import pytest
import torch

import solvers
from odenets import analysis
from odenets.analysis.stability import VARIANTS

SCHEMES = analysis.deterministic_schemes()
CASES = [(name, options) for name in SCHEMES for options in VARIANTS.get(name, [{}])]
CLOSED_FORM = {"euler", "midpoint", "heun", "rk4", "rk4_38", "backward_euler", "ab2", "lm", "leapfrog"}


def random_points(n=400, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(scale * (2 * torch.rand(n, generator=g, dtype=torch.float64) - 1.3),
                         scale * (2 * torch.rand(n, generator=g, dtype=torch.float64) - 1))


def test_registry_driven_scheme_list():
    assert "euler_maruyama" not in SCHEMES  # stochastic: skipped
    assert {"euler", "rk4", "lm", "leapfrog", "ab2", "backward_euler"} <= set(SCHEMES)
    assert len({solvers.SCHEMES[n] for n in SCHEMES}) == len(SCHEMES)  # aliases (rk2) once


def test_euler_region_is_the_disc_around_minus_one():
    inside = torch.tensor([-1.0, -1 + 0.9j, -1.9, -0.05, -1 - 0.99j], dtype=torch.complex128)
    outside = torch.tensor([0.1, -2.1, -1 + 1.1j, 0.5j, -1.8 + 0.9j], dtype=torch.complex128)
    assert (analysis.amplification("euler", inside) <= 1).all()
    assert (analysis.amplification("euler", outside) > 1).all()
    z = random_points()
    assert torch.allclose(analysis.amplification("euler", z), (1 + z).abs(), atol=1e-12)
    region = analysis.stability_region("euler", n=101, re=(-2.5, 0.5), im=(-1.5, 1.5))
    zz = torch.complex(region["x"][None, :].expand(101, -1), region["y"][:, None].expand(-1, 101))
    assert torch.equal(region["stable"], (1 + zz).abs() <= 1 + 1e-9)


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_region_from_update_rule_matches_closed_form(name, options):
    z = random_points(seed=len(name))
    radius = analysis.amplification(name, z, options)
    if name in CLOSED_FORM:
        assert torch.allclose(radius, analysis.analytic_radius(name, z, **options), rtol=1e-9, atol=1e-9)
    # every scheme is consistent: an eigenvalue 1 at z = 0 and none outside the unit circle
    assert analysis.amplification(name, torch.zeros(1), options).item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", [n for n in SCHEMES if n not in ("leapfrog", "damped_leapfrog")])
def test_small_negative_real_z_is_stable_for_dissipative_schemes(name):
    z = torch.tensor([-1e-3, -0.05 + 0.01j], dtype=torch.complex128)
    assert (analysis.amplification(name, z) <= 1 + 1e-12).all()


def test_explicit_rk_real_stability_intervals():
    assert analysis.real_stability_interval("euler") == pytest.approx(-2.0, abs=1e-3)
    assert analysis.real_stability_interval("heun") == pytest.approx(-2.0, abs=1e-3)
    assert analysis.real_stability_interval("ab2") == pytest.approx(-1.0, abs=1e-3)
    # RK4: the real root of 1 + z + z^2/2 + z^3/6 + z^4/24 = 1 besides 0
    roots = torch.linalg.eigvals(torch.tensor([[-4.0, -12.0, -24.0], [1, 0, 0], [0, 1, 0]],
                                              dtype=torch.float64))
    edge = min(r.real.item() for r in roots if abs(r.imag) < 1e-9)
    assert analysis.real_stability_interval("rk4") == pytest.approx(edge, abs=1e-3)


def test_backward_euler_is_the_truncated_series():
    z = random_points(seed=5, scale=0.9)
    one = analysis.amplification("backward_euler", z, dict(iterations=1))
    assert torch.allclose(one, (1 + z).abs(), atol=1e-12)  # K = 1 is forward Euler
    inner = torch.tensor([-0.5, 0.3j, -0.2 + 0.4j], dtype=torch.complex128)  # |z| < 1
    many = analysis.amplification("backward_euler", inner, dict(iterations=80))
    assert torch.allclose(many, 1 / (1 - inner).abs(), atol=1e-10)  # -> implicit Euler
    # far left, implicit Euler is stable but the fixed-point iteration (K = 2) is not
    assert analysis.analytic_radius("backward_euler_implicit", torch.tensor([-5.0 + 0j])) < 1
    assert analysis.amplification("backward_euler", torch.tensor([-5.0 + 0j])) > 1


@pytest.mark.parametrize("k", [-0.7, -0.05, 0.0, 0.4, 0.9])
def test_lm_roots_at_zero_are_one_and_minus_k(k):
    matrix = analysis.step_matrix("lm", torch.zeros(1), k=k)[0]
    eig = sorted(torch.linalg.eigvals(matrix).real.tolist())
    assert eig == pytest.approx(sorted([1.0, -k]), abs=1e-12)
    z = random_points(seed=2)
    assert torch.allclose(analysis.amplification("lm", z, k=k),
                          analysis.analytic_radius("lm", z, k=k), atol=1e-9)
    if k == 0.0:  # LM with k = 0 is Euler with a spare history slot
        assert torch.allclose(analysis.amplification("lm", z, k=0.0), (1 + z).abs(), atol=1e-12)


@pytest.mark.parametrize("variant", ["verlet", "revnet"])
def test_leapfrog_region_is_a_segment_of_the_imaginary_axis(variant):
    opts = dict(variant=variant)
    stable = torch.tensor([1.9j, -1.5j, 0.5j, 1.99j], dtype=torch.complex128)
    unstable = torch.tensor([2.1j, -0.1, 0.05 + 0.5j, -0.5 + 0.1j, 0.3], dtype=torch.complex128)
    assert (analysis.amplification("leapfrog", stable, opts) <= 1 + 1e-9).all()
    assert (analysis.amplification("leapfrog", unstable, opts) > 1 + 1e-6).all()
    det = torch.linalg.det(analysis.step_matrix("leapfrog", random_points(50), opts))
    assert torch.allclose(det, torch.ones_like(det), atol=1e-9)  # volume preserving


def test_stochastic_schemes_and_bad_names_raise():
    with pytest.raises(ValueError, match="stochastic"):
        analysis.amplification("euler_maruyama", torch.zeros(1))
    with pytest.raises(ValueError, match="unknown scheme"):
        analysis.stability_regions(["nope"])
    with pytest.raises(ValueError, match="no closed form"):
        analysis.analytic_radius("lmm", torch.zeros(1))
    with pytest.raises(ValueError, match="unknown coefficient"):
        analysis.step_matrix("euler", torch.zeros(1), k=0.3)


# -- convergence ------------------------------------------------------------------------------------
def test_observed_order_of_exact_power_law():
    steps = [8, 16, 32, 64]
    assert analysis.observed_order(steps, [3.0 * n ** -2.5 for n in steps]) == pytest.approx(2.5)


@pytest.mark.parametrize("name", SCHEMES)
def test_every_scheme_converges_at_its_order(name):
    result = analysis.convergence(name)
    assert result["order"] == pytest.approx(result["expected"], abs=0.2)
    assert all(a > b for a, b in zip(result["errors"], result["errors"][1:]))


def test_lm_converges_to_the_rescaled_equation():
    k = 0.3
    result = analysis.convergence("lm", dict(k=k))
    assert result["order"] == pytest.approx(1.0, abs=0.15)
    u = solvers.integrate(lambda t, u: -u, torch.ones(1, dtype=torch.float64), 256, scheme="lm", k=k)
    assert abs(u.item() - math.exp(-1 / (1 + k))) < 5e-3 < abs(u.item() - math.exp(-1))


def test_convergence_table_lists_every_scheme():
    results = analysis.convergence_all(["euler", ("rk4", {})], steps=(4, 8, 16))
    table = analysis.convergence_table(results)
    assert table.count("\n") == 4 and "| rk4 | 4 |" in table
    with pytest.raises(ValueError, match="at least two"):
        analysis.convergence("euler", steps=(8,))
    with pytest.raises(ValueError, match="steps must be a sequence of positive step counts"):
        analysis.convergence("euler", steps="ab")


# -- LM modified equation -----------------------------------------------------------------------------
def test_lm_modified_equation_coefficients():
    k = torch.empty(20, dtype=torch.float64).uniform_(-0.99, 0.99)
    coeffs = analysis.lm_modified_equation(k)
    assert torch.allclose(coeffs["damping"], 1 + k)
    assert torch.allclose(coeffs["momentum"], (1 - k) / 2)
    assert torch.allclose(coeffs["ratio"], (1 - k) / (2 * (1 + k)))
    with pytest.raises(ValueError, match=r"\(-1, 1\)"):
        analysis.lm_modified_equation([0.2, 1.0])


def test_lm_modified_equation_matches_a_taylor_expansion():
    """On a smooth u(t), (1+k) u' + (1-k)(dt/2) u'' matches the LM residual up to O(dt^2)."""
    k, t = 0.35, 0.4
    errors = []
    for dt in (1e-2, 5e-3):
        lhs = (math.exp(t + dt) - (1 - k) * math.exp(t) - k * math.exp(t - dt)) / dt  # u = e^t
        coeffs = analysis.lm_modified_equation(k)
        rhs = float(coeffs["damping"]) * math.exp(t) + float(coeffs["momentum"]) * dt * math.exp(t)
        errors.append(abs(lhs - rhs))
    assert errors[1] < errors[0] / 3.5  # O(dt^2)


def test_lm_table_from_coefficient_dict():
    coeffs = {"stages.0.flow.k": [-0.05, 0.1], "stages.1.flow.k": [[0.2, 0.4], [0.0, 0.0]],
              "stages.1.flow.p": [0.9, 0.8]}
    rows = analysis.lm_table(coeffs)
    assert [(r["stage"], r["block"], r["index"]) for r in rows] == [
        ("stages.0.flow", 0, 0), ("stages.0.flow", 1, 1), ("stages.1.flow", 0, 2), ("stages.1.flow", 1, 3)]
    assert rows[2]["k"] == pytest.approx(0.3)  # per-channel values averaged
    assert rows[0]["damping"] == pytest.approx(0.95) and rows[0]["momentum"] == pytest.approx(0.525)
    md = analysis.table_markdown(rows)
    assert md.count("\n") == 2 + len(rows) and "1 + k_n" in md
    parsed = list(csv.DictReader(io.StringIO(analysis.table_csv(rows))))
    assert [float(r["k"]) for r in parsed] == pytest.approx([r["k"] for r in rows])
    with pytest.raises(ValueError, match="no LM coefficient"):
        analysis.lm_table({"stages.0.flow.p": [0.5]})


def test_lm_table_from_a_built_network():
    odenets = pytest.importorskip("odenets")
    if not hasattr(odenets, "coefficients"):
        pytest.skip("odenets.coefficients is not there yet")
    flow = odenets.build(torch.nn.Linear(4, 4), solver="lm", steps=5)
    rows = analysis.lm_table(flow)
    assert len(rows) == 5 and all(-0.1 <= r["k"] <= 0.0 for r in rows)  # the authors' init range
    assert all(r["damping"] == pytest.approx(1 + r["k"]) for r in rows)


# -- figures ------------------------------------------------------------------------------------------
def is_png(path):
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_figures_are_written_with_their_numbers(tmp_path):
    regions = analysis.plot_stability_regions(tmp_path / "stability.png", ["euler", "lm", "leapfrog"], n=41)
    assert is_png(tmp_path / "stability.png")
    assert [r["label"] for r in regions] == ["euler", "lm (k=-0.5)", "lm (k=0.0)", "lm (k=0.5)",
                                             "leapfrog (variant=verlet)", "leapfrog (variant=revnet)"]
    results = analysis.plot_convergence(tmp_path / "sub" / "convergence.png", ["euler", "rk4"], steps=(4, 8, 16))
    assert is_png(tmp_path / "sub" / "convergence.png")
    assert [round(r["order"]) for r in results] == [1, 4]
    rows = analysis.plot_lm_coefficients({"a.k": [0.1, -0.2], "b.k": [0.0]}, tmp_path / "lm.png")
    assert is_png(tmp_path / "lm.png") and len(rows) == 3
    with pytest.raises(ValueError, match=r"\.png"):
        analysis.plot_convergence(tmp_path / "c.pdf", ["euler"])


def test_write_report(tmp_path, monkeypatch):
    # the default grids are fine but slow for a unit test: shrink them
    from odenets.analysis import report
    monkeypatch.setattr(report, "plot_stability_regions",
                        lambda path: analysis.plot_stability_regions(path, ["euler"], n=31))
    paths = analysis.write_report(tmp_path, coefficients={"stages.0.flow.k": [0.1, -0.1]})
    assert set(paths) == {"stability", "convergence", "convergence_table", "lm", "lm_table", "lm_csv"}
    for key in ("stability", "convergence", "lm"):
        assert is_png(paths[key])
    with open(paths["convergence_table"]) as fh:
        assert "| rk4 |" in fh.read()
    with open(paths["lm_csv"]) as fh:
        assert "stages.0.flow" in fh.read()
    no_lm = analysis.write_report(tmp_path / "plain", coefficients={})
    assert "lm" not in no_lm


def test_unanalysable_scheme_is_skipped_by_the_figures_only(monkeypatch, tmp_path):
    class PairOnly(solvers.Scheme):
        name, order = "pair_only", 1

        def step(self, f, t, dt, u, state):
            if not isinstance(f, tuple):
                raise ValueError("pair_only needs a pair of fields")
            return u + dt * f[0](t, u), state

    monkeypatch.setitem(solvers.SCHEMES, "pair_only", PairOnly)
    assert "pair_only" in analysis.deterministic_schemes()
    with pytest.raises(ValueError, match="pair of fields"):
        analysis.stability_regions(["pair_only"])
    with pytest.warns(UserWarning, match="pair_only"):
        regions = analysis.stability_regions(["euler", "pair_only"], n=21, skip_errors=True)
    assert [r["name"] for r in regions] == ["euler"]
    with pytest.warns(UserWarning, match="pair_only"):
        results = analysis.convergence_all(["pair_only", "euler"], steps=(4, 8), skip_errors=True)
    assert [r["name"] for r in results] == ["euler"]


def test_every_stability_panel_spans_the_window_without_offset_labels():
    """A region without interior (damped_leapfrog, leapfrog: a segment of the imaginary axis)
    used to collapse its panel's x axis to that segment, with a '1e-17' offset label."""
    pytest.importorskip("matplotlib")
    from odenets.analysis.figures import stability_figure
    from odenets.analysis.stability import stability_regions
    re_, im_ = (-3.5, 1.5), (-3.2, 3.2)
    regions = stability_regions(["damped_leapfrog", "leapfrog", "euler"], re_, im_, n=41)
    fig = stability_figure(regions, re_, im_)
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 4  # leapfrog: verlet and revnet
    for ax in panels:
        assert ax.get_xlim() == re_ and ax.get_ylim() == im_, ax.get_title()
        assert ax.xaxis.get_offset_text().get_text() == "" == ax.yaxis.get_offset_text().get_text()
    damped = next(ax for ax in panels if ax.get_title().startswith("damped_leapfrog"))
    assert "γ = 0" in damped.get_title() and damped.lines and damped.collections  # points + closed form
