"""Trust (issue 26, items 2-4, 7, 8, 11, 12, 14, 18): one-line errors instead of tracebacks,
no silent re-interpretation of a trained network, no gradient silently lost, no user file
overwritten, command-line values read as a shell user types them."""
import json

import pytest
import torch
from torch import nn

import odenets
import solvers
from odenets import cli
from odenets.resolve import with_solver
from odenets.train.config import _key_value, _literal
from odenets.train.rundir import LOCK, check_run_dir

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(num_classes=3, in_channels=3, depths=(1, 1, 1), widths=(4, 8, 8))
X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
TINY = ["--dataset", "synthetic", "--subset", "32", "--test-subset", "16", "--batch-size", "16",
        "--no-progress", "--epochs", "1", "--model-arg", "depths=(1,1,1)", "--model-arg",
        "widths=(4,8,8)"]


def run_cli(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def ode_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ode") / "run"
    assert cli.main(["train", "--model", "ode_resnet20", *TINY, "--run-dir", str(run)]) == 0
    return run


# ---- 2: adaptive step limits are one-line errors naming the option --------------------------
@pytest.mark.parametrize("solver", ["dopri5", "torchode:dopri5"])
def test_eval_max_num_steps_is_a_one_line_error(ode_run, capsys, solver):
    if solver.startswith("torchode"):
        pytest.importorskip("torchode")
    status, _, err = run_cli(capsys, "eval", ode_run, "--solver", solver, "--solver-opt",
                             "max_num_steps=1")
    assert status == 3 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "max_num_steps=1" in err and "--solver-opt max_num_steps=N" in err


# ---- 3: a continuous run re-solved by a scheme with learnable coefficients ------------------
@pytest.mark.parametrize("name", ["ode_resnet20", "hbode_resnet20"])
def test_lm_on_a_continuous_run_is_refused(name):
    model = odenets.create(name, **SMALL).eval()
    with pytest.raises(ValueError, match=r"lm learns coefficient 'k'.*did not learn.*"
                                         r"--solver-opt k="):
        with_solver(model, "lm", steps=2)
    new, _ = with_solver(model, "lm", steps=2, k=-0.05)  # a fixed k: the same network each time
    assert new(X).shape == (2, 3)


def test_eval_lm_on_an_ode_run_is_refused(ode_run, capsys):
    status, _, err = run_cli(capsys, "eval", ode_run, "--solver", "lm", "--steps", "2")
    assert status == 2 and "did not learn" in err


# ---- 4 (and 2): a pair of fields is never read with another meaning -------------------------
@pytest.mark.parametrize("solver,options", [("damped_leapfrog", {}),
                                            ("euler_maruyama", {"noise": "shake"})])
def test_revnet_pairs_are_not_read_as_another_pair(solver, options):
    model = odenets.create("rev_resnet20", **SMALL).eval()
    with pytest.raises(ValueError, match=r"the meanings differ; solve it with leapfrog"):
        with_solver(model, solver, **options)
    assert with_solver(model, "leapfrog")[0](X).shape == (2, 3)  # its own kind of pair


def test_momentum_with_shake_noise_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"MomentumField is a pair \(G, gamma\)"):
        odenets.build(nn.Linear(3, 3), "euler_maruyama", steps=2, momentum=True, noise="shake")


# ---- 7: leapfrog's memory-saving backward never drops a gradient silently -------------------
class Unregistered(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.extra = [nn.Parameter(torch.ones(2))]  # a plain list: not a registered parameter

    def forward(self, t, z):
        return self.lin(z) * self.extra[0]


def test_leapfrog_detects_an_unregistered_parameter():
    torch.manual_seed(0)
    f, g, u0 = Unregistered(), Unregistered(), torch.randn(3, 4)
    solvers.integrate((f, g), u0, 4, "leapfrog", memory_efficient=False).sum().backward()
    assert f.extra[0].grad is not None  # plain autograd reaches it
    out = solvers.integrate((f, g), u0, 4, "leapfrog")
    with pytest.raises(ValueError, match=r"not a registered parameter.*memory_efficient=False"):
        out.sum().backward()  # old code: W.grad silently None


# ---- 8: values that were silently converted or clamped --------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    (dict(features_only=True, out_indices="12"), "out_indices must be"),
    (dict(features_only=True, out_indices=(1.0,)), "out_indices must be"),
    (dict(in_chans=1, in_channels=3), "disagree"),
])
def test_create_refuses_ambiguous_timm_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        odenets.create("resnet20", **kwargs)
    assert odenets.create("resnet20", in_chans=1).stem[0].in_channels == 1


def test_a_subset_larger_than_the_data_is_refused(tmp_path, capsys):
    status, _, err = run_cli(capsys, "train", "--model", "resnet20", *TINY[:2], "--subset",
                             "100000", "--epochs", "1", "--run-dir", tmp_path / "run")
    assert status == 2 and "--subset / --test-subset must lie in [1, 5000]" in err


# ---- 11, 14: the lock file ------------------------------------------------------------------
def test_a_users_lock_named_file_is_not_overwritten(tmp_path, capsys):
    (tmp_path / LOCK).write_text("my notes\n")
    status, _, err = run_cli(capsys, "train", "--model", "resnet20", *TINY, "--run-dir",
                             tmp_path)
    assert status == 2 and "is not empty" in err
    assert (tmp_path / LOCK).read_text() == "my notes\n"
    (tmp_path / LOCK).write_text("12345\n")  # a stale lock of odenets' own is no user file
    check_run_dir(tmp_path, resume=False)


# ---- 12: --model-arg as a shell user types it -----------------------------------------------
def test_model_args_accept_shell_spellings(tmp_path, capsys):
    assert [_literal(t) for t in ("true", "False", "null", "[1, 2]", "[true, null]", "3")] == [
        True, False, None, [1, 2], [True, None], 3]
    assert _key_value("tied=1") == ("tied", True) and _key_value("k=1") == ("k", 1)
    run = tmp_path / "run"
    status, _, err = run_cli(capsys, "train", "--model", "preact_resnet20", *TINY,
                             "--model-arg", "tied=true", "--run-dir", run)
    assert status == 0, err
    assert json.loads((run / "config.json").read_text())["model_args"]["tied"] is True


# ---- 18: messages that named the wrong thing ------------------------------------------------
def test_messages_name_the_right_thing():
    with pytest.raises(ValueError, match=r"^momentum must be True or False, got 'yes'$"):
        odenets.build(nn.Linear(3, 3), "euler", steps=2, momentum="yes")
    with pytest.raises(ValueError, match=r"sigma must be a finite number >= 0.0, got -1.0$"):
        solvers.get("euler_maruyama", sigma=-1)
    lm = odenets.create("lm_resnet20", **SMALL).eval()
    _, notes = with_solver(lm, "lm", k=0.1)
    assert notes and all("replaced by the fixed k=0.1" in n for n in notes)


def test_seed_and_subset_messages(tmp_path, capsys):
    status, _, err = run_cli(capsys, "train", "--model", "resnet20", *TINY, "--seed",
                             "99999999999999999999999", "--run-dir", tmp_path / "run")
    assert status == 2 and "seed (--seed) must be an integer in [0, 4294967295]" in err
    with pytest.raises(SystemExit):
        cli.main(["eval", str(tmp_path), "--subset", "0"])
    assert "training set" not in capsys.readouterr().err
