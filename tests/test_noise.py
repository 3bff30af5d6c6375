"""`solvers.Noise`: the random stream of stochastic solves as an object of its own. Same draws
as a generator seeded the old way, state round trips, Euler-Maruyama keeping nothing on
``self``, and checkpoints saving each Noise once however many flows share it."""
import copy
import math

import pytest
import torch
from torch import nn

import odenets
import solvers
from odenets.train import checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _draws(source, device):
    """The draws Euler-Maruyama and sde: flows make, from a Noise or (the old way) a generator."""
    if isinstance(source, solvers.Noise):
        return [source.randn((3, 4), device, torch.float32), source.rand((5,), device, torch.float64),
                source.bernoulli((6, 1), 0.3, device, torch.float32),
                source.bernoulli((6,), torch.tensor(0.7, device=device), device, torch.float32),
                source.randint(0, 2 ** 31 - 1, (1,), device), source.randn((2,), device, torch.float64)]
    g = source
    return [torch.randn((3, 4), generator=g, device=device, dtype=torch.float32),
            torch.rand((5,), generator=g, device=device, dtype=torch.float64),
            torch.empty((6, 1), device=device).bernoulli_(0.3, generator=g),
            torch.empty((6,), device=device).bernoulli_(torch.tensor(0.7, device=device), generator=g),
            torch.randint(0, 2 ** 31 - 1, (1,), generator=g, device=device),
            torch.randn((2,), generator=g, device=device, dtype=torch.float64)]


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("device", DEVICES)
def test_seeded_noise_draws_what_a_generator_seeded_the_old_way_draws(device):
    old = torch.Generator(device).manual_seed(11)
    noise = solvers.Noise(seed=11)
    assert _same(_draws(noise, device) + _draws(noise, device), _draws(old, device) + _draws(old, device))
    user = solvers.Noise(generator=torch.Generator(device).manual_seed(4))
    assert _same(_draws(user, device), _draws(torch.Generator(device).manual_seed(4), device))
    torch.manual_seed(2)
    first = _draws(solvers.Noise(), device)  # neither: torch's global RNG
    torch.manual_seed(2)
    assert _same(first, _draws(solvers.Noise(), device))


def test_euler_maruyama_steps_draw_the_old_way():
    """Each noise kind draws from the scheme's Noise exactly as the scheme drew from its own
    generator before: randn for dW, one bernoulli_ per step, two rand per shake step."""
    u = torch.randn(4, 3)
    f, f1, f2 = (lambda t, v: v.sin()), (lambda t, v: v.cos()), (lambda t, v: -v)
    g = torch.Generator().manual_seed(5)
    dt = 0.25
    for _ in range(2):  # the second step continues the stream
        dW = torch.randn(u.shape, generator=g) * math.sqrt(dt)
        expect = torch.add(torch.add(u, f(0, u), alpha=dt), dW, alpha=0.3)
    scheme = solvers.get("euler_maruyama", sigma=0.3, seed=5)
    for _ in range(2):
        got, _ = scheme.step(f, 0.0, dt, u, None)
    # the same variates; sigma sqrt(dt) is now one factor of the draw (normal_): equal to rounding
    torch.testing.assert_close(got, expect, rtol=1e-6, atol=1e-7)
    g = torch.Generator().manual_seed(5)
    eta = torch.empty(4, 1).bernoulli_(0.4, generator=g)
    got, _ = solvers.get("euler_maruyama", noise="bernoulli", seed=5).step(f, 0.0, dt, u, None, p=0.4)
    torch.testing.assert_close(got, torch.addcmul(u, eta, f(0, u), value=dt), rtol=0, atol=0)
    g = torch.Generator().manual_seed(5)
    eta, eta_b = torch.rand(4, 1, generator=g), torch.rand(4, 1, generator=g)
    got, _ = solvers.get("euler_maruyama", noise="shake", seed=5).step((f1, f2), 0.0, dt, u, None)
    mix = solvers.shake_mix(f1(0, u), f2(0, u), eta, eta_b)
    torch.testing.assert_close(got, torch.add(u, mix, alpha=dt), rtol=0, atol=0)


def _snapshot(obj):
    return {k: (id(v), copy.copy(v) if isinstance(v, (dict, list, set)) else v)
            for k, v in vars(obj).items()}


@pytest.mark.parametrize("noise", ["gaussian", "bernoulli", "shake"])
@pytest.mark.parametrize("source", [dict(seed=1), dict(generator=torch.Generator().manual_seed(1)),
                                    dict()])
def test_euler_maruyama_keeps_nothing_on_self_during_a_solve(noise, source):
    torch.manual_seed(0)
    scheme = solvers.get("euler_maruyama", noise=noise, **source)
    before = _snapshot(scheme)
    f = (lambda t, v: v, lambda t, v: -v) if noise == "shake" else (lambda t, v: v)
    a, _ = scheme.solve([f] * 3, torch.ones(4, 2), 0.0, 0.5)
    b, _ = scheme.solve([f] * 3, torch.ones(4, 2), 0.0, 0.5)
    assert _snapshot(scheme) == before
    assert not torch.equal(a, b)  # the stream went on, in the Noise


def test_state_round_trip_and_mismatched_states():
    noise = solvers.Noise(seed=5)
    assert noise.state_dict() == {}  # generators are made on first use, per device
    noise.randn((3,))
    state = noise.state_dict()
    assert list(state) == ["cpu"]
    after = _draws(noise, "cpu")
    fresh = solvers.Noise(seed=5)
    fresh.load_state_dict(state)
    assert _same(_draws(fresh, "cpu"), after)
    assert _same(_draws(noise.manual_seed(5), "cpu"), _draws(torch.Generator().manual_seed(5), "cpu"))
    user = solvers.Noise(generator=torch.Generator().manual_seed(1))
    assert list(user.state_dict()) == ["generator"]
    with pytest.raises(ValueError, match="a seed, but this one has a generator"):
        user.load_state_dict(state)
    with pytest.raises(ValueError, match="a generator, but this one has neither"):
        solvers.Noise().load_state_dict(user.state_dict())
    solvers.Noise().load_state_dict({})  # global RNG: nothing to restore
    with pytest.raises(ValueError, match="seed or generator, not both"):
        solvers.Noise(seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="seed must be an integer, got 'a'"):
        solvers.Noise(seed="a")
    with pytest.raises(ValueError, match="generator is on cpu but the draw is on meta"):
        user.randn((2,), "meta")


def test_scheme_options_build_or_take_a_noise():
    shared = solvers.Noise(seed=3)
    assert solvers.get("euler_maruyama", noise_source=shared).noise_source is shared
    assert solvers.get("euler_maruyama", seed=3).noise_source.seed == 3
    with pytest.raises(ValueError, match="give one of seed, generator and noise_source, got seed "
                                         "and noise_source"):
        solvers.get("euler_maruyama", seed=3, noise_source=shared)
    with pytest.raises(ValueError, match="noise_source must be a solvers.Noise, got int"):
        solvers.get("euler_maruyama", noise_source=3)


def _forward(model, x, n=2):
    model.train()
    with torch.no_grad():
        return torch.stack([model(x) for _ in range(n)])


def test_flows_sharing_one_noise_are_saved_once():
    """Two Euler-Maruyama flows of different schemes and, when torchsde is there, two sde:
    flows all drawing from one Noise: one entry in the checkpoint, and it replays the noise."""
    def model():
        torch.manual_seed(0)
        shared = solvers.Noise(seed=7)
        flows = [odenets.build(nn.Linear(3, 3), solvers.get("euler_maruyama", noise_source=shared), 2),
                 odenets.build(nn.Linear(3, 3), solvers.get("euler_maruyama", noise="bernoulli",
                                                           noise_source=shared), 2)]
        if "sde:euler" in odenets.available_solvers():
            flows += [odenets.build(nn.Linear(3, 3), "sde:euler", steps=2, noise_source=shared)
                      for _ in range(2)]
        return nn.Sequential(*flows), shared

    net, shared = model()
    x = torch.randn(4, 3)
    _forward(net, x)
    assert checkpoint.noise_sources(net) == [shared]
    state = checkpoint.rng_state(net)
    assert len(state["noise"]) == 1
    first = _forward(net, x)
    assert not torch.equal(first[0], first[1])
    fresh, _ = model()
    checkpoint.set_rng_state(state, fresh)
    assert torch.equal(_forward(fresh, x), first)


def test_old_checkpoint_of_a_seeded_sde_flow_still_loads():
    """Format 1 saved a seeded sde: flow's CPU generator as {"generator": state}; it loads into
    the flow's Noise. A format-2 state of that shape (a user generator) is refused."""
    pytest.importorskip("torchsde")
    flow = odenets.build(nn.Linear(3, 3), "sde:euler", steps=4, seed=5)
    x = torch.randn(2, 3)
    _forward(flow, x)
    state = checkpoint.rng_state(flow)
    old = {"cpu": state["cpu"], "noise": [{"generator": state["noise"][0]["cpu"]}]}
    first = _forward(flow, x)
    fresh = odenets.build(nn.Linear(3, 3), "sde:euler", steps=4, seed=5)
    fresh.load_state_dict(flow.state_dict())
    checkpoint.set_rng_state(old, fresh)
    assert torch.equal(_forward(fresh, x), first)
    with pytest.raises(ValueError, match="noise generator 0 .* a generator, but this one has a seed"):
        checkpoint.set_rng_state(dict(old, noise_format=2), fresh, "x.pt")
