"""The in-memory form of a dataset and the errors raised while finding or reading one.

A split is held whole as one ``uint8`` tensor of shape ``(N, C, H, W)`` plus ``int64`` labels of
shape ``(N,)``: small enough for every dataset here (CIFAR-10 train is 150 MB) to live on the
training device, so batching and augmentation never leave it (airbench's recipe).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from solvers import checks


class DatasetNotFoundError(FileNotFoundError):
    """No copy of a dataset was found; the message says where we looked and how to get it."""


class CorruptDatasetError(ValueError):
    """A dataset file exists but is truncated, corrupt or of the wrong format (names the file)."""


@dataclass
class ImageData:
    """One split of an image-classification dataset, whole, as tensors.

    ``images``: ``uint8`` ``(N, C, H, W)``; ``labels``: ``int64`` ``(N,)`` in ``[0, num_classes)``;
    ``mean``/``std``: per-channel statistics of the *training* images in [0, 1] units, used as
    ``x = (images / 255 - mean) / std``.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"{self.name}: images must be uint8 (N, C, H, W), got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"{self.name}: {len(self.labels)} labels for {len(self.images)} images")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"{self.name}: mean/std need {self.channels} values")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[2:])

    def subset(self, n: int | None, seed: int = 0) -> "ImageData":
        """``n`` examples drawn without replacement by a fixed permutation (``seed``), so the
        same ``n`` always gives the same subset whatever the training seed; ``None`` or ``n ==
        len`` keeps everything; ``n > len`` is refused (as a validation split that large is),
        never silently clamped."""
        if n is None:
            return self
        if not checks.is_int(n, 1):
            raise ValueError(f"subset must be a positive integer or None, got {n!r}")
        if n > len(self):
            raise ValueError(f"cannot take a subset of {n} of the {len(self)} {self.name} "
                             f"images: --subset / --test-subset must lie in [1, {len(self)}] "
                             f"or be 'all'")
        if n == len(self):
            return self
        keep = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        keep = keep.sort().values.to(self.images.device)
        return ImageData(self.name, self.images[keep], self.labels[keep], self.num_classes,
                         self.mean, self.std, self.classes)

    def split(self, n: int, seed: int = 0) -> tuple["ImageData", "ImageData"]:
        """``(rest, held_out)``: ``n`` examples held out by a fixed permutation (``seed``), e.g. a
        validation set that is the same for every training seed and model."""
        if not checks.is_int(n) or not 0 < n < len(self):
            raise ValueError(f"cannot hold out {n!r} of the {len(self)} {self.name} training "
                             f"images: the validation split must lie in [1, {len(self) - 1}] (--val-split)")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        held, rest = order[:n].sort().values, order[n:].sort().values
        return tuple(ImageData(self.name, self.images[i.to(self.images.device)],
                               self.labels[i.to(self.labels.device)], self.num_classes, self.mean,
                               self.std, self.classes) for i in (rest, held))

    def to(self, device) -> "ImageData":
        """The same split with its tensors on ``device`` (one copy, still ``uint8``)."""
        return ImageData(self.name, self.images.to(device), self.labels.to(device),
                         self.num_classes, self.mean, self.std, self.classes)


def check_labels(labels: torch.Tensor, num_classes: int, path) -> None:
    """Raise `CorruptDatasetError` naming ``path`` if a label lies outside ``[0, num_classes)``."""
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise CorruptDatasetError(f"{path}: labels must lie in [0, {num_classes}), found "
                                  f"[{int(labels.min())}, {int(labels.max())}]")
