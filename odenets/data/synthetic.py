"""A synthetic image-classification task for smoke tests and quick benchmarks (no files).

Smooth random patterns (white noise at 1/4 resolution, bilinearly upsampled, unit std): one
prototype P_c per class and 64 class-free distractors D_j. An example of class c is

    x = (0.3 P_c + D_j + Z) / sqrt(0.3^2 + 1 + 1),   j uniform, Z standard normal pixel noise,

shifted by up to 2 pixels and stored as ``uint8(clip(128 + 64 x))``. The class signal is weaker
than the distractor, so the task is learnable but not trivial: a 1.5k-parameter conv net
(tests/fixtures/tiny_models.py, batch 64, lr 0.05) reaches ~67% test accuracy after one epoch
of the 5000 training images and ~79% after three (measured here).
Everything is drawn from a `torch.Generator` seeded by ``seed``: identical data on every machine.
The test split uses the same patterns and a different stream.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import ImageData

SIZES = {"train": 5000, "test": 1000}
SIGNAL, DISTRACTORS = 0.3, 64


def _patterns(k: int, channels: int, size: int, gen: torch.Generator) -> torch.Tensor:
    low = max(2, size // 4)
    p = F.interpolate(torch.randn(k, channels, low, low, generator=gen), size=(size, size),
                      mode="bilinear", align_corners=False)
    return p / p.std(dim=(1, 2, 3), keepdim=True)


def make_synthetic(split: str = "train", num_classes: int = 10, channels: int = 3, size: int = 32,
                   n: int | None = None, seed: int = 0) -> ImageData:
    """The ``split`` of the synthetic task: ``n`` (default 5000 train / 1000 test) uint8 images
    of shape ``(channels, size, size)``, classes balanced."""
    n = SIZES[split] if n is None else n
    gen = torch.Generator().manual_seed(seed)
    prototypes = _patterns(num_classes, channels, size, gen)
    distractors = _patterns(DISTRACTORS, channels, size, gen)
    gen.manual_seed(seed + (1 if split == "train" else 2))
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
    which = torch.randint(0, DISTRACTORS, (n,), generator=gen)
    x = SIGNAL * prototypes[labels] + distractors[which] + torch.randn(n, channels, size, size, generator=gen)
    x = x / (SIGNAL ** 2 + 2) ** 0.5
    shifts = torch.randint(-2, 3, (n, 2), generator=gen)
    for dy in range(-2, 3):  # roll each example by its own (dy, dx), one group at a time
        for dx in range(-2, 3):
            sel = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            x[sel] = torch.roll(x[sel], (dy, dx), dims=(2, 3))
    images = (128 + 64 * x).round().clamp(0, 255).to(torch.uint8)
    return ImageData("synthetic", images, labels.long(), num_classes, (0.5,) * channels,
                     (0.24,) * channels, [f"class{c}" for c in range(num_classes)])
