"""Batch augmentation and normalisation on the training device; no per-sample Python work.

``random_crop``: pad each image by ``p`` zero pixels on every side and cut a random ``H x W``
window, i.e. translate by (dy, dx) uniform in {-p..p}^2 with zero fill (torchvision's
``RandomCrop(size, padding=p)``). Done with one gather over index grids for the whole batch.
``random_flip``: mirror left-right with probability 1/2 per image.
``normalize``: ``(x / 255 - mean) / std`` per channel, in float32 (autocast lowers it later).
All randomness comes from the caller's `torch.Generator`, which lives on the batch's device.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """What a dataset's training batches get: crop padding (0 = no crop) and horizontal flip."""

    pad: int = 0
    flip: bool = False

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None):
        if self.pad:
            images = random_crop(images, self.pad, generator)
        if self.flip:
            images = random_flip(images, generator)
        return images

    @property
    def active(self) -> bool:
        return bool(self.pad or self.flip)


def random_crop(images: torch.Tensor, pad: int, generator: torch.Generator | None = None):
    """Random ``H x W`` crops of the zero-padded ``(B, C, H, W)`` batch (any dtype)."""
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (2, b), device=images.device, generator=generator)
    rows = offsets[0, :, None] + torch.arange(h, device=images.device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(w, device=images.device)  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None):
    """Mirror each image of ``(B, C, H, W)`` left-right with probability 1/2."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(images / 255 - mean) / std`` with ``mean``/``std`` of shape ``(1, C, 1, 1)``."""
    return (images.float() / 255.0 - mean) / std
