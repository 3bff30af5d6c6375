"""Batches from a device-resident dataset, reproducible from (seed, epoch, rank) alone.

Each epoch draws one permutation of the split from a generator seeded by ``(seed, epoch)``, the
same on every rank; with ``world_size`` processes the first ``world_size * floor(N / world_size)``
entries are dealt round-robin, so rank r takes ``perm[r::world_size]`` (its own shard; the
shards are disjoint and equal in size). Augmentation draws from a second generator seeded by
``(seed, epoch, rank)``. Because nothing else feeds the order or the augmentation, a run resumed
at the start of epoch e sees exactly the batches an uninterrupted run sees, with no generator
state to save. ``batch_size`` is the *global* batch; each rank takes ``batch_size / world_size``.
Training drops the last incomplete batch (equal batch shapes, no 1-example BatchNorm batches);
evaluation keeps it and does not shuffle.
"""
from __future__ import annotations

import torch

from solvers import checks

from .augment import Augment, normalize
from .base import ImageData


def _seed(*parts: int) -> int:
    """Mix integers into one 63-bit seed (splitmix64-style), so nearby epochs/ranks differ."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) + 0x9E3779B97F4A7C15 + (x << 6) + (x >> 2))) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


class Loader:
    """Iterate ``(x, y)`` batches of ``data`` on ``device``: ``x`` float32 normalised
    ``(b, C, H, W)`` (channels_last if asked), ``y`` int64 ``(b,)``.

    ``loader.epoch(e)`` yields epoch ``e``'s batches; ``len(loader)`` is the number of batches
    per epoch on this rank.
    """

    def __init__(self, data: ImageData, batch_size: int, *, train: bool, device="cpu",
                 augment: Augment | None = None, seed: int = 0, rank: int = 0, world_size: int = 1,
                 channels_last: bool = False):
        if not checks.is_int(batch_size, 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not checks.is_int(world_size, 1):
            raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} must be divisible by the number of "
                             f"processes ({world_size})")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        self.device = torch.device(device)
        self.data = data.to(self.device)
        self.local_batch = batch_size // world_size
        self.train, self.seed, self.rank, self.world_size = train, seed, rank, world_size
        self.augment = augment if (train and augment is not None and augment.active) else None
        self.channels_last = channels_last
        shape = (1, data.channels, 1, 1)
        self.mean = torch.tensor(data.mean, device=self.device).view(shape)
        self.std = torch.tensor(data.std, device=self.device).view(shape)
        self.shard_size = len(data) // world_size if train else len(range(rank, len(data), world_size))
        if train and self.shard_size < self.local_batch:
            raise ValueError(f"{data.name}: {len(data)} training examples give {self.shard_size} per "
                             f"process, fewer than one batch of {self.local_batch}; lower "
                             "--batch-size or enlarge --subset")

    def __len__(self) -> int:
        if self.train:
            return self.shard_size // self.local_batch
        return -(-self.shard_size // self.local_batch)

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's example indices for ``epoch``, in the order they are visited."""
        n = len(self.data)
        if not self.train:
            return torch.arange(self.rank, n, self.world_size, device=self.device)
        gen = torch.Generator(device=self.device).manual_seed(_seed(self.seed, epoch))
        perm = torch.randperm(n, generator=gen, device=self.device)
        perm = perm[: self.world_size * (n // self.world_size)]
        return perm[self.rank:: self.world_size][: len(self) * self.local_batch]

    def epoch(self, epoch: int = 0):
        """Yield the batches of ``epoch`` (augmented when training and the dataset asks for it)."""
        index = self.indices(epoch)
        gen = None
        if self.augment is not None:
            gen = torch.Generator(device=self.device).manual_seed(_seed(self.seed, epoch, self.rank, 1))
        for start in range(0, len(index), self.local_batch):
            idx = index[start: start + self.local_batch]
            x = self.data.images[idx]
            if self.augment is not None:
                x = self.augment(x, gen)
            x = normalize(x, self.mean, self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.data.labels[idx]

    def __iter__(self):
        return self.epoch(0)
