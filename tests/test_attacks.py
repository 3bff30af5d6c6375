"""FGSM and PGD in pixel space (`odenets.analysis.attacks`): the budget is eps in [0, 1] pixel
units whatever the normalisation, PGD is at least as strong as FGSM, accuracy falls with eps."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from odenets.analysis.attacks import Normalized, attack_accuracy, fgsm, pgd
from odenets.data import ImageData

pytestmark = pytest.mark.usefixtures("one_thread")


def linear(channels=1, size=4, classes=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, classes))


def test_fgsm_moves_every_interior_pixel_by_eps_in_pixel_units():
    """std = 0.25: an attack on the normalised input with the same eps would move pixels by
    eps * 0.25; the pixel-space attack moves each pixel by exactly eps (unless clipped)."""
    x = torch.full((2, 1, 4, 4), 0.5)
    y = torch.tensor([0, 1])
    model = Normalized(linear(), (0.5,), (0.25,))
    adv = fgsm(model, x, y, 0.03)
    assert torch.allclose((adv - x).abs(), torch.full_like(x, 0.03), atol=1e-6)
    loss = lambda z: F.cross_entropy(model(z), y).item()  # noqa: E731
    assert loss(adv) > loss(x)


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_perturbation_stays_in_the_ball_and_the_image_range(attack):
    torch.manual_seed(1)
    x = torch.rand(8, 1, 4, 4)
    x[:, :, 0] = 0.0  # pixels on the bounds: clipping must keep them in [0, 1]
    x[:, :, 1] = 1.0
    y = torch.randint(0, 3, (8,))
    model = Normalized(linear(), (0.3,), (0.2,))
    adv = fgsm(model, x, y, 0.1) if attack == "fgsm" else pgd(model, x, y, 0.1, steps=7)
    assert (adv - x).abs().max() <= 0.1 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(fgsm(model, x, y, 0.0), x)


def test_bad_arguments():
    model, x, y = linear(), torch.rand(1, 1, 4, 4), torch.tensor([0])
    with pytest.raises(ValueError, match=r"eps must lie in \[0, 1\]"):
        fgsm(model, x, y, 8)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        pgd(model, x, y, 0.1, steps=0)


def separable(n, seed):
    """4 classes of 1x8x8 images: a fixed random pattern per class plus pixel noise."""
    gen = torch.Generator().manual_seed(0)
    prototypes = torch.randn(4, 1, 8, 8, generator=gen)
    gen.manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=gen)
    x = 128 + 40 * prototypes[labels] + 40 * torch.randn(n, 1, 8, 8, generator=gen)
    return ImageData("separable", x.round().clamp(0, 255).to(torch.uint8), labels, 4, (0.5,), (0.2,))


@pytest.fixture(scope="module")
def trained():
    """A small MLP trained for a second on `separable` images (well above chance)."""
    torch.manual_seed(0)
    train, test = separable(800, 1), separable(200, 2)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(5):
        for s in range(0, 800, 50):
            x = (train.images[s:s + 50].float() / 255 - 0.5) / 0.2
            loss = F.cross_entropy(net(x), train.labels[s:s + 50])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.zero_grad(set_to_none=True)
    return net.eval(), test


def test_pgd_is_stronger_than_fgsm_and_accuracy_falls_with_eps(trained):
    net, test = trained
    eps = [0.0, 0.01, 0.03, 0.1]
    f, p = attack_accuracy(net, test, eps, "fgsm"), attack_accuracy(net, test, eps, "pgd")
    assert f["0"] == p["0"] > 0.6  # clean
    assert all(p[k] <= f[k] + 0.01 for k in f)
    values = [p[f"{e:g}"] for e in eps]
    assert values == sorted(values, reverse=True) and values[-1] < values[0] - 0.2
    x, y = test.images.float() / 255, test.labels
    model = Normalized(net, test.mean, test.std)
    loss = lambda z: F.cross_entropy(model(z), y).item()  # noqa: E731
    assert loss(pgd(model, x, y, 0.03)) >= loss(fgsm(model, x, y, 0.03)) > loss(x)
    assert all(p.grad is None for p in net.parameters())  # the model's gradients are untouched


def test_unknown_attack():
    with pytest.raises(ValueError, match="unknown attack 'cw'; available: fgsm, pgd"):
        attack_accuracy(linear(), separable(4, 0), [0.1], "cw")
