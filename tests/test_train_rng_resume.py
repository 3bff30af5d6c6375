"""Noise generators owned by the model (a scheme's ``seed=``, an ``sde:`` flow's ``seed``) are
checkpointed, so a resumed stochastic run is bit-exact; DDP runs models that leave parameters
without a gradient (``lmm4_resnet20``) with ``find_unused_parameters``."""
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import odenets
import solvers
from fixtures.dist import free_port, worker_env
from fixtures.tiny_models import Crash, raise_at
from odenets.train import TrainConfig, build_model, checkpoint, distributed, load_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(depths=(2, 2, 2), widths=(4, 8, 8))  # flows of 2, 1, 1 steps: ~1.4k parameters
NOISY = {"sd": dict(SMALL, solver_options={"seed": 3}),
         "shake": dict(SMALL, solver_options={"seed": 3})}


def noisy_config(tmp_path, name, preset, model_args, **kw):
    base = dict(model=f"{preset}_resnet20", model_args=model_args, dataset="synthetic",
                subset=256, test_subset=64, batch_size=32, lr=0.05, epochs=2, progress=False,
                device="cpu", amp="off", run_dir=str(tmp_path / name))  # amp: no probe forwards
    return TrainConfig(**{**base, **kw})


def crashing(cfg, call: int):
    """The model `train` would build for ``cfg`` (seed 0, rank 0), raising `Crash` at its
    ``call``-th training forward."""
    torch.manual_seed(cfg.seed)
    return raise_at(build_model(cfg, 10, 3), call)


def crash_in_epoch_2(tmp_path, preset, name="part"):
    cfg = noisy_config(tmp_path, name, preset, NOISY[preset])
    with pytest.raises(Crash):  # 8 steps per epoch: dies at step 3 of epoch 2
        train(cfg, model=crashing(cfg, 8 + 3))
    return cfg


@pytest.mark.parametrize("preset", ["sd", "shake"])
def test_resume_with_a_seeded_noise_scheme_is_exact(tmp_path, preset):
    """The scheme draws its noise from its own generator (seed=), not torch's global RNG: without
    its state in the checkpoint the resumed run restarts the noise stream and differs."""
    train(noisy_config(tmp_path, "full", preset, NOISY[preset]))
    cfg = crash_in_epoch_2(tmp_path, preset)
    saved = load_checkpoint(tmp_path / "part" / checkpoint.NAME)
    assert saved["epoch"] == 1
    assert len(saved["rng"][0]["noise"]) == 1  # one scheme shared by the three flows
    assert list(saved["rng"][0]["noise"][0]) == ["cpu"]
    train(cfg, resume=True)
    full = load_checkpoint(tmp_path / "full" / checkpoint.NAME)
    part = load_checkpoint(tmp_path / "part" / checkpoint.NAME)
    for key in full["model"]:
        assert torch.equal(full["model"][key], part["model"][key]), f"{key} differs"
    assert torch.equal(full["rng"][0]["noise"][0]["cpu"], part["rng"][0]["noise"][0]["cpu"])
    assert full["history"][-1]["test_loss"] == part["history"][-1]["test_loss"]


def test_old_checkpoint_without_noise_states_still_resumes(tmp_path):
    cfg = crash_in_epoch_2(tmp_path, "sd")
    path = tmp_path / "part" / checkpoint.NAME
    state = load_checkpoint(path)
    for rank_state in state["rng"]:
        del rank_state["noise"]
    checkpoint.save_atomic(state, path)
    assert train(cfg, resume=True)["epochs_done"] == 2


def test_resume_with_other_noise_generators_names_the_checkpoint(tmp_path):
    crash_in_epoch_2(tmp_path, "sd")
    unseeded = noisy_config(tmp_path, "part", "sd", SMALL)  # the run had solver_options seed=3
    path = tmp_path / "part" / checkpoint.NAME
    with pytest.raises(ValueError, match=f"{path}: cannot restore noise generator 0.*seed"):
        train(unseeded, resume=True)
    state = load_checkpoint(path)["rng"][0]
    state["noise"].append({})
    with pytest.raises(ValueError, match=r"x/checkpoint.pt holds the states of 2 noise generator"
                                         r".* the model has 1"):
        checkpoint.set_rng_state(state, odenets.create("sd_resnet20", **NOISY["sd"]),
                                 "x/checkpoint.pt")


def _draws(model, x, n=2):
    model.train()
    with torch.no_grad():
        return torch.stack([model(x) for _ in range(n)])


@pytest.mark.parametrize("preset, args, sources", [
    ("sd_resnet20", NOISY["sd"], 1),
    ("shake_resnet20", NOISY["shake"], 1),
    ("resnet20", dict(SMALL, solver="euler_maruyama", solver_options={"seed": 1, "sigma": 0.1}), 1),
    ("preact_resnet20", dict(SMALL, solver="sde:euler", solver_options={"seed": 1, "steps": 2}), 1),
    ("resnet20", SMALL, 0)])
def test_rng_state_round_trip_replays_the_noise(preset, args, sources):
    """`checkpoint.rng_state(model)` then `set_rng_state` replays the same noisy forwards, in a
    fresh model too (whose seeded generators do not exist yet). A network's flows share one
    noise stream (one Noise), sde: flows too."""
    torch.manual_seed(0)
    model = odenets.create(preset, **args)
    x = torch.randn(2, 3, 8, 8)
    _draws(model, x)
    assert len(checkpoint.noise_sources(model)) == sources
    state = checkpoint.rng_state(model)
    first = _draws(model, x)
    assert not torch.equal(first[0], first[1]) or sources == 0
    checkpoint.set_rng_state(state, model)
    assert torch.equal(_draws(model, x), first)
    torch.manual_seed(0)
    fresh = odenets.create(preset, **args)
    checkpoint.set_rng_state(state, fresh)
    assert torch.equal(_draws(fresh, x), first)


@pytest.mark.parametrize("preset,args", [
    ("sd_resnet20", NOISY["sd"]),
    ("preact_resnet20", dict(SMALL, solver="sde:euler", solver_options={"seed": 1, "steps": 2}))])
def test_each_rank_draws_its_own_seeded_noise(preset, args):
    """Under DDP rank r > 0 reseeds the model's seeded noise (rank 0 keeps it), so ranks do not
    share stochastic-depth gates or Brownian increments."""
    x = torch.randn(2, 3, 8, 8)
    draws = []
    for rank in (0, 0, 1):
        torch.manual_seed(0)
        model = odenets.create(preset, **args)
        checkpoint.decorrelate_noise(model, rank)
        torch.manual_seed(1)
        draws.append(_draws(model, x))
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])


def test_scheme_noise_state_replays_its_steps():
    """A scheme's stream lives in its `solvers.Noise`: restoring that state into another
    scheme's Noise replays the step (generators are made on first use, per device)."""
    scheme = solvers.get("euler_maruyama", seed=5)
    assert scheme.noise_source.state_dict() == {}
    u = torch.zeros(4, 3)
    scheme.step(lambda t, v: v, 0.0, 1.0, u, None)
    state = scheme.noise_source.state_dict()
    a, _ = scheme.step(lambda t, v: v, 0.0, 1.0, u, None)
    other = solvers.get("euler_maruyama", seed=5)
    other.noise_source.load_state_dict(state)
    assert torch.equal(other.step(lambda t, v: v, 0.0, 1.0, u, None)[0], a)


# -- DDP: parameters without a gradient -------------------------------------------------------

def test_unused_parameters_probe_leaves_the_model_untouched():
    """A parameter the forward never uses is found; the probe runs on a copy, so weights,
    BatchNorm statistics, noise generators and the global RNG are as before. (lmm4_resnet20's
    unreachable root r3 was such a parameter; it is no longer created, issue 25.)"""
    torch.manual_seed(0)
    lmm4 = _with_unused(odenets.create("lmm4_resnet20", widths=(4, 8, 8)))
    x = torch.randn(2, 3, 8, 8)
    assert distributed.unused_parameters(lmm4, x) == ["unused"]
    sd = odenets.create("sd_resnet20", **NOISY["sd"])
    _draws(sd, x, 1)
    before = {k: v.clone() for k, v in sd.state_dict().items()}, checkpoint.rng_state(sd)
    assert distributed.unused_parameters(sd, x) == []
    after = sd.state_dict(), checkpoint.rng_state(sd)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert torch.equal(before[1]["cpu"], after[1]["cpu"])
    assert torch.equal(before[1]["noise"][0]["cpu"], after[1]["noise"][0]["cpu"])
    assert all(p.grad is None for p in sd.parameters())


def _with_unused(model):
    model.unused = torch.nn.Parameter(torch.zeros(1))  # never used by forward
    return model


def _worker(rank: int, world: int, port: int, out: str):
    worker_env(rank, world, port)
    cfg = TrainConfig(model="lmm4_resnet20", model_args=dict(widths=(4, 8, 8)), dataset="synthetic",
                      subset=64, test_subset=32, batch_size=32, epochs=1, lr=0.05, progress=False,
                      device="cpu", run_dir=str(Path(out) / "run"))
    torch.manual_seed(0)
    train(cfg, model=_with_unused(odenets.create("lmm4_resnet20", widths=(4, 8, 8))))


def test_ddp_trains_a_model_with_parameters_without_gradient(tmp_path, capfd):
    """Two steps per rank: without find_unused_parameters DDP raises at the second one
    ("Expected to have finished reduction in the prior iteration")."""
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    assert load_checkpoint(tmp_path / "run" / checkpoint.NAME)["epoch"] == 1
    assert "find_unused_parameters=True" in capfd.readouterr().err
