"""CIFAR-10 and CIFAR-100 from the standard "python version" pickle batches.

Layout (https://www.cs.toronto.edu/~kriz/cifar.html), each file a pickled dict with bytes keys:
    cifar-10-batches-py/data_batch_1..5, test_batch   b"data": N x 3072 uint8, b"labels": N ints
    cifar-10-batches-py/batches.meta                   b"label_names"
    cifar-100-python/train, test                        b"data", b"fine_labels", b"coarse_labels"
    cifar-100-python/meta                               b"fine_label_names", b"coarse_label_names"
A row of ``data`` is the 1024 red, then green, then blue values of a 32x32 image, row-major, so
``data.reshape(N, 3, 32, 32)`` is already NCHW. The pickles are read with a restricted
unpickler that only builds dicts, lists and numpy arrays (a pickle can run arbitrary code).
"""
from __future__ import annotations

import pickle

import numpy as np
import torch

from .base import CorruptDatasetError, ImageData, check_labels
from .paths import find_dir

URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
STATS = {  # per-channel mean/std of the training images, pixels in [0, 1]
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
LAYOUT = {  # name -> (sub-directory, train files, test files, meta file, label key, names key, classes)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", b"labels", b"label_names", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", b"fine_labels",
                 b"fine_label_names", 100),
    "cifar100-coarse": ("cifar-100-python", ["train"], ["test"], "meta", b"coarse_labels",
                        b"coarse_label_names", 20),
}
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_batch(path) -> dict:
    """One pickled CIFAR batch as a dict with bytes keys; errors name the file."""
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
            LookupError, MemoryError, OverflowError) as e:  # what damaged bytes make pickle raise
        raise CorruptDatasetError(f"{path}: not a readable CIFAR pickle ({type(e).__name__}: "
                                  f"{e}); the file is truncated or corrupt") from None
    if not isinstance(obj, dict):
        raise CorruptDatasetError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _images_labels(path, label_key, num_classes):
    batch = read_batch(path)
    for key in (b"data", label_key):
        if key not in batch:
            raise CorruptDatasetError(f"{path}: missing key {key!r} (has {sorted(batch)})")
    data = np.asarray(batch[b"data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise CorruptDatasetError(f"{path}: b'data' must be N x 3072 uint8, got "
                                  f"{data.shape} {data.dtype}")
    try:
        labels = torch.as_tensor(np.asarray(batch[label_key], dtype=np.int64))
    except (ValueError, TypeError, OverflowError) as e:
        raise CorruptDatasetError(f"{path}: {label_key!r} must be integers ({e})") from None
    if labels.shape != (len(data),):
        raise CorruptDatasetError(f"{path}: {len(labels)} labels for {len(data)} images")
    check_labels(labels, num_classes, path)
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), labels


def load_cifar(name: str, split: str = "train", data_dir=None) -> ImageData:
    """CIFAR ``name`` ("cifar10", "cifar100" or "cifar100-coarse") ``split`` as 3x32x32 uint8."""
    sub, train, test, meta, label_key, names_key, num_classes = LAYOUT[name]
    title = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
    archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
    how = (f"Download {archive} from {URL} on a machine with network access, extract it, and pass "
           f"--data-dir DIR (or set ODENETS_DATA=DIR) where DIR holds {sub}/ or its files.")
    directory = find_dir(title, [(f,) for f in train + test], data_dir, (sub,), (), how)
    parts = [_images_labels(directory / f, label_key, num_classes)
             for f in (train if split == "train" else test)]
    images = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    classes = []
    if (directory / meta).is_file():
        names = read_batch(directory / meta).get(names_key, [])
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    mean, std = STATS["cifar10" if name == "cifar10" else "cifar100"]
    return ImageData(name, images, labels, num_classes, mean, std, classes)
