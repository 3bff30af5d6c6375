"""Fashion-MNIST from its four IDX files (``.gz`` or uncompressed).

IDX format (LeCun): big-endian; bytes 0-1 zero, byte 2 the type code (0x08 = uint8), byte 3 the
number of dimensions d, then d uint32 sizes, then the data in C order. Every check below raises
`CorruptDatasetError` naming the file: bad gzip stream or CRC, wrong magic, wrong shape, a
length that does not match the header (truncated or padded), labels outside [0, 10).
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from .base import CorruptDatasetError, ImageData, check_labels
from .paths import dpkg_dir, find_dir

SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"  # Debian/Ubuntu package dataset-fashion-mnist
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]
MEAN, STD = (0.2860,), (0.3530,)  # Fashion-MNIST train set, pixels in [0, 1]
HOW_TO_GET = ("Get it with `sudo apt-get install dataset-fashion-mnist` (installs it in "
              f"{SYSTEM_DIR}), or pass --data-dir DIR (or set ODENETS_DATA=DIR) where DIR holds "
              "the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
              "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz "
              "(from https://github.com/zalandoresearch/fashion-mnist).")


MAX_BYTES = 1 << 31  # no IDX file odenets reads comes near this (Fashion-MNIST: 47 MB)


def read_idx(path) -> np.ndarray:
    """Parse one IDX file (gzip-compressed if it ends in ``.gz``) into a uint8 array.

    The header is read first; then at most the bytes it declares (+1, to detect excess) are
    read or decompressed, so a small ``.gz`` that inflates to gigabytes (a gzip bomb) costs no
    more memory than its header promises, and headers above ``MAX_BYTES`` are refused."""
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            return _parse(path, f)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise CorruptDatasetError(f"{path}: cannot decompress ({e}); the file is truncated or "
                                  "corrupt, get a fresh copy") from None


def _parse(path: Path, f) -> np.ndarray:
    magic = f.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise CorruptDatasetError(f"{path}: not an IDX file (bad magic number)")
    if magic[2] != 0x08:
        raise CorruptDatasetError(f"{path}: IDX type code {magic[2]:#04x}, expected 0x08 (uint8)")
    ndim = magic[3]
    header = 4 + 4 * ndim
    sizes = f.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise CorruptDatasetError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", sizes)
    expected = header + math.prod(shape)  # Python ints: no overflow
    if expected > MAX_BYTES:
        raise CorruptDatasetError(f"{path}: the header {shape} declares {expected:,} bytes, more "
                                  f"than the {MAX_BYTES:,} an IDX dataset may have; the file is "
                                  "corrupt")
    data = f.read(expected - header + 1)
    if header + len(data) != expected:
        got = f"{header + len(data)}" if len(data) <= expected - header else f"more than {expected}"
        raise CorruptDatasetError(f"{path}: {got} bytes but the header {shape} needs "
                                  f"{expected}; the file is truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def find(data_dir=None) -> Path:
    """The directory holding Fashion-MNIST (see `paths.find_dir` for the search order)."""
    required = [(f + ".gz", f) for pair in FILES.values() for f in pair]
    system = [SYSTEM_DIR]
    if not Path(SYSTEM_DIR, FILES["train"][0] + ".gz").is_file():
        system += dpkg_dir("dataset-fashion-mnist", FILES["train"][0] + ".gz")
    return find_dir("Fashion-MNIST", required, data_dir,
                    ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"), system, HOW_TO_GET)


def _file(directory: Path, name: str) -> Path:
    gz = directory / (name + ".gz")
    return gz if gz.is_file() else directory / name


def load_fashion_mnist(split: str = "train", data_dir=None) -> ImageData:
    """Fashion-MNIST ``split`` ("train": 60000, "test": 10000) as 1x28x28 uint8 images."""
    directory = find(data_dir)
    image_path, label_path = (_file(directory, n) for n in FILES[split])
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise CorruptDatasetError(f"{image_path}: expected images of shape (N, 28, 28), "
                                  f"got {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise CorruptDatasetError(f"{label_path}: {labels.shape} labels for {len(images)} images "
                                  f"in {image_path.name}")
    labels = torch.from_numpy(labels.astype(np.int64))
    check_labels(labels, len(CLASSES), label_path)
    return ImageData("fashion-mnist", torch.from_numpy(images.copy()).unsqueeze(1), labels,
                     len(CLASSES), MEAN, STD, list(CLASSES))
