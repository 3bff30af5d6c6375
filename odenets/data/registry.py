"""The dataset registry: one name -> one `DatasetSpec` (loader, shape, classes, augmentation).

Augmentation per dataset (training split only; evaluation never augments):
  fashion-mnist    crop (pad 2) + flip: every class (garments, bags, shoes) keeps its label under a
                   left-right mirror; only the collection convention (shoes face left) changes.
                   Not suitable for digits (MNIST), hence decided per dataset.
  cifar10/100      crop (pad 4) + flip, the recipe of He et al. that the paper's tables use.
  synthetic        none: the class prototypes are not mirror-symmetric (a flip would blur the
                   classes) and the data already hold random shifts.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from solvers import checks

from .augment import Augment
from .base import ImageData
from .cifar import load_cifar
from .idx import load_fashion_mnist
from .synthetic import make_synthetic


@dataclass(frozen=True)
class DatasetSpec:
    """How to load one dataset and what it looks like: ``load(split, data_dir)`` -> `ImageData`."""

    name: str
    load: Callable[..., ImageData]
    num_classes: int
    input_size: tuple[int, int, int]  # (C, H, W)
    augment: Augment
    description: str


DATASETS: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec("fashion-mnist", load_fashion_mnist, 10, (1, 28, 28),
                                 Augment(pad=2, flip=True),
                                 "Zalando Fashion-MNIST, 60k/10k 28x28 grey (IDX .gz files)"),
    "cifar10": DatasetSpec("cifar10", partial(load_cifar, "cifar10"), 10, (3, 32, 32),
                           Augment(pad=4, flip=True), "CIFAR-10, 50k/10k 32x32 colour (python pickles)"),
    "cifar100": DatasetSpec("cifar100", partial(load_cifar, "cifar100"), 100, (3, 32, 32),
                            Augment(pad=4, flip=True), "CIFAR-100 fine labels (python pickles)"),
    "cifar100-coarse": DatasetSpec("cifar100-coarse", partial(load_cifar, "cifar100-coarse"), 20,
                                   (3, 32, 32), Augment(pad=4, flip=True),
                                   "CIFAR-100 with its 20 coarse superclass labels"),
    "synthetic": DatasetSpec("synthetic", lambda split, data_dir=None: make_synthetic(split), 10,
                             (3, 32, 32), Augment(),
                             "generated 5k/1k 32x32 task for smoke tests and benchmarks (no files)"),
}
ALIASES = {"fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10",
           "cifar-100": "cifar100"}
SPLITS = ("train", "test")


def available_datasets() -> list[str]:
    """Sorted names of the registered datasets (aliases not included)."""
    return sorted(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The `DatasetSpec` for ``name`` (or an alias); unknown names raise ValueError listing all."""
    name = ALIASES.get(name, name)
    if name not in DATASETS:
        raise checks.unknown("dataset", name, list(DATASETS) + list(ALIASES),
                             listed=", ".join(available_datasets()))
    return DATASETS[name]


def load_dataset(name: str | DatasetSpec, split: str = "train", data_dir=None,
                 subset: int | None = None, subset_seed: int = 0) -> ImageData:
    """Load ``split`` of dataset ``name`` (on the CPU; move it with ``.to(device)`` or let
    `Loader` do it), optionally a fixed random ``subset`` of ``subset`` examples. ``name`` may
    be the `DatasetSpec` that `get_spec` returned: a name already checked is not looked up
    again."""
    spec = name if isinstance(name, DatasetSpec) else get_spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; available: {', '.join(SPLITS)}")
    return spec.load(split, data_dir=data_dir).subset(subset, seed=subset_seed)
