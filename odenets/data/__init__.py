"""Datasets held whole on the training device, with batch augmentation there.

    from odenets.data import load_dataset, Loader, get_spec
    train = load_dataset("fashion-mnist", "train", data_dir=None, subset=5000)
    loader = Loader(train, 128, train=True, device="cuda", augment=get_spec("fashion-mnist").augment)
    for x, y in loader.epoch(3): ...

Registered: fashion-mnist (IDX .gz), cifar10 / cifar100 / cifar100-coarse (python pickles),
synthetic (generated). Files are looked for in ``--data-dir`` (only there, when given), else in
``$ODENETS_DATA``, then system locations; nothing is downloaded.
"""
from .augment import Augment, normalize, random_crop, random_flip
from .base import CorruptDatasetError, DatasetNotFoundError, ImageData
from .cifar import load_cifar
from .idx import load_fashion_mnist, read_idx
from .loader import Loader
from .registry import DATASETS, DatasetSpec, available_datasets, get_spec, load_dataset
from .synthetic import make_synthetic

__all__ = ["Augment", "CorruptDatasetError", "DATASETS", "DatasetNotFoundError", "DatasetSpec",
           "ImageData", "Loader", "available_datasets", "get_spec", "load_cifar", "load_dataset",
           "load_fashion_mnist", "make_synthetic", "normalize", "random_crop", "random_flip",
           "read_idx"]
