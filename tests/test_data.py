"""Datasets: Fashion-MNIST IDX (real copy when installed, fixtures otherwise), CIFAR pickles
(fixtures in the exact format), synthetic data, device batch augmentation and the loader."""
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures.datasets import idx_bytes, write_cifar10, write_cifar100, write_fashion_mnist
from odenets import data
from odenets.data import idx

REAL_FMNIST = Path(idx.SYSTEM_DIR, "train-images-idx3-ubyte.gz").is_file()


@pytest.fixture
def no_system_fmnist(monkeypatch):
    """Hide the installed Fashion-MNIST and $ODENETS_DATA so only explicit directories count."""
    monkeypatch.setattr(idx, "SYSTEM_DIR", "/nonexistent/fashion-mnist")
    monkeypatch.setattr(idx, "dpkg_dir", lambda *a: [])
    monkeypatch.delenv("ODENETS_DATA", raising=False)


# ---- Fashion-MNIST ----------------------------------------------------------------------------
@pytest.mark.skipif(not REAL_FMNIST, reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    train = data.load_dataset("fashion-mnist", "train")
    test = data.load_dataset("fashion-mnist", "test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.labels.bincount().tolist() == [6000] * 10
    pixels = train.images.float() / 255
    assert pixels.mean().item() == pytest.approx(train.mean[0], abs=1e-3)
    assert pixels.std().item() == pytest.approx(train.std[0], abs=1e-3)
    assert train.classes[9] == "Ankle boot"


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_fixture_roundtrip(tmp_path, no_system_fmnist, compress):
    arrays = write_fashion_mnist(tmp_path, compress=compress)
    train = data.load_dataset("fashion-mnist", "train", data_dir=tmp_path)
    test = data.load_dataset("fashion-mnist", "test", data_dir=tmp_path)
    assert np.array_equal(train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(train.labels.numpy(), arrays["train-labels-idx1-ubyte"])
    assert np.array_equal(test.images[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert len(test) == 20


def test_fashion_mnist_search_order(tmp_path, no_system_fmnist, monkeypatch):
    env_root, explicit = tmp_path / "env", tmp_path / "explicit"
    write_fashion_mnist(env_root / "fashion-mnist", n_train=30)  # found via the sub-directory
    write_fashion_mnist(explicit, n_train=40)
    monkeypatch.setenv("ODENETS_DATA", str(env_root))
    assert len(data.load_dataset("fashion-mnist")) == 30
    assert len(data.load_dataset("fashion-mnist", data_dir=explicit)) == 40  # --data-dir first


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path, no_system_fmnist):
    with pytest.raises(data.DatasetNotFoundError) as e:
        data.load_dataset("fashion-mnist", data_dir=tmp_path)
    message = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(tmp_path) in message and "train-images-idx3-ubyte.gz" in message


def _corrupt(path: Path, how: str):
    raw = gzip.decompress(path.read_bytes())
    if how == "truncated-gzip":
        path.write_bytes(path.read_bytes()[:-20])
    elif how == "truncated-data":
        path.write_bytes(gzip.compress(raw[:-5]))
    elif how == "bad-magic":
        path.write_bytes(gzip.compress(b"\x01\x02" + raw[2:]))
    elif how == "not-gzip":
        path.write_bytes(b"hello, this is not a gzip stream")


@pytest.mark.parametrize("how", ["truncated-gzip", "truncated-data", "bad-magic", "not-gzip"])
def test_corrupt_idx_names_the_file(tmp_path, no_system_fmnist, how):
    write_fashion_mnist(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    _corrupt(bad, how)
    with pytest.raises(data.CorruptDatasetError, match="train-images-idx3-ubyte.gz"):
        data.load_dataset("fashion-mnist", "train", data_dir=tmp_path)


def test_idx_label_checks(tmp_path, no_system_fmnist):
    write_fashion_mnist(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.full(60, 10, dtype=np.uint8))))
    with pytest.raises(data.CorruptDatasetError, match=r"labels must lie in \[0, 10\)"):
        data.load_dataset("fashion-mnist", data_dir=tmp_path)
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(59, dtype=np.uint8))))
    with pytest.raises(data.CorruptDatasetError, match="59"):
        data.load_dataset("fashion-mnist", data_dir=tmp_path)


# ---- CIFAR --------------------------------------------------------------------------------------
def test_cifar10_fixture(tmp_path, monkeypatch):
    monkeypatch.delenv("ODENETS_DATA", raising=False)
    written = write_cifar10(tmp_path)
    train = data.load_dataset("cifar10", "train", data_dir=tmp_path)
    test = data.load_dataset("cifar10", "test", data_dir=tmp_path / "cifar-10-batches-py")
    assert train.images.shape == (40, 3, 32, 32) and test.images.shape == (10, 3, 32, 32)
    first = written["data_batch_1"]
    # row = 1024 R, 1024 G, 1024 B, row-major: pixel (row 1, col 2) of the green plane
    assert train.images[0, 1, 1, 2].item() == first[b"data"][0, 1024 + 32 + 2]
    assert train.labels[:8].tolist() == first[b"labels"]
    assert train.labels[32:].tolist() == written["data_batch_5"][b"labels"]
    assert train.classes == [f"c{i}" for i in range(10)] and train.num_classes == 10


def test_cifar100_fine_and_coarse(tmp_path, monkeypatch):
    monkeypatch.setenv("ODENETS_DATA", str(tmp_path))  # found through the environment
    written = write_cifar100(tmp_path)
    fine = data.load_dataset("cifar100", "train")
    coarse = data.load_dataset("cifar100-coarse", "test")
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert fine.labels.tolist() == written["train"][b"fine_labels"]
    assert coarse.labels.tolist() == written["test"][b"coarse_labels"]
    assert fine.classes[3] == "f3" and coarse.classes[3] == "g3"


def test_cifar_missing_and_corrupt(tmp_path, monkeypatch):
    monkeypatch.delenv("ODENETS_DATA", raising=False)
    with pytest.raises(data.DatasetNotFoundError, match="cifar-10-python.tar.gz"):
        data.load_dataset("cifar10", data_dir=tmp_path)
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:200])
    with pytest.raises(data.CorruptDatasetError, match="data_batch_3"):
        data.load_dataset("cifar10", data_dir=tmp_path)


def test_cifar_refuses_code_in_pickles(tmp_path, monkeypatch):
    monkeypatch.delenv("ODENETS_DATA", raising=False)
    write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(data.CorruptDatasetError, match="refusing to load"):
        data.load_dataset("cifar10", "test", data_dir=tmp_path)


@pytest.mark.parametrize("how", ["bad-encoding", "text-labels"])
def test_cifar_corrupt_contents_name_the_file(tmp_path, monkeypatch, how):
    """Damage that unpickles into something odd (a flipped byte in the encoding name of a
    protocol-2 bytes object, labels that are not integers) is a CorruptDatasetError too."""
    monkeypatch.delenv("ODENETS_DATA", raising=False)
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    if how == "bad-encoding":
        assert b"latin1" in batch.read_bytes()
        batch.write_bytes(batch.read_bytes().replace(b"latin1", b"lbtin1", 1))
    else:
        with open(batch, "wb") as f:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [b"cat", b"dog"]}, f)
    with pytest.raises(data.CorruptDatasetError, match="test_batch"):
        data.load_dataset("cifar10", "test", data_dir=tmp_path)


def test_cifar_wrong_shape(tmp_path, monkeypatch):
    monkeypatch.delenv("ODENETS_DATA", raising=False)
    write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 1000), np.uint8), b"labels": [0] * 4}, f)
    with pytest.raises(data.CorruptDatasetError, match="N x 3072"):
        data.load_dataset("cifar10", "test", data_dir=tmp_path)


# ---- registry, synthetic, subsets -----------------------------------------------------------------
def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError) as e:
        data.load_dataset("cifar11")
    assert "cifar10" in str(e.value) and "fashion-mnist" in str(e.value) and "synthetic" in str(e.value)
    with pytest.raises(ValueError, match="train, test"):
        data.load_dataset("synthetic", "validation")


def test_synthetic_is_deterministic_and_balanced():
    a, b = data.load_dataset("synthetic"), data.load_dataset("synthetic")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape == (5000, 3, 32, 32) and a.labels.bincount().tolist() == [500] * 10
    test = data.load_dataset("synthetic", "test")
    assert not torch.equal(test.images[:10], a.images[:10])


def test_subset_is_fixed_and_independent_of_order():
    full = data.load_dataset("synthetic")
    s1, s2 = full.subset(300), full.subset(300)
    assert len(s1) == 300 and torch.equal(s1.images, s2.images)
    assert full.subset(None) is full and full.subset(len(full)) is full
    with pytest.raises(ValueError, match=r"must lie in \[1, 5000\]"):  # never clamped silently
        full.subset(10 ** 6)
    with pytest.raises(ValueError, match="subset"):
        full.subset(0)


# ---- augmentation -----------------------------------------------------------------------------------
def test_random_crop_is_a_zero_filled_shift():
    x = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8)  # no zeros inside the images
    out = data.random_crop(x, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifts = set()
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert matches, f"crop {i} is not a window of the padded image"
        shifts.add(matches[0])
    assert len(shifts) > 10  # the 25 offsets are all drawn


def test_random_flip_and_augment_reproducible():
    x = torch.randint(0, 256, (200, 1, 5, 5), dtype=torch.uint8)
    out = data.random_flip(x, torch.Generator().manual_seed(1))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | flipped).all()) and 50 < int(flipped.sum()) < 150
    aug = data.get_spec("fashion-mnist").augment
    a = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(3)))


# ---- loader --------------------------------------------------------------------------------------------
def _loader(dataset, **kw):
    kw = {"train": True, **kw}
    return data.Loader(dataset, kw.pop("batch_size", 32), **kw)


def test_loader_epochs_are_reproducible_and_distinct():
    d = data.load_dataset("synthetic").subset(256)
    aug = data.Augment(pad=4, flip=True)
    first = [x for x, _ in _loader(d, augment=aug, seed=5).epoch(3)]
    again = [x for x, _ in _loader(d, augment=aug, seed=5).epoch(3)]
    other = [x for x, _ in _loader(d, augment=aug, seed=5).epoch(4)]
    assert len(first) == 8 and all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_loader_shards_are_disjoint_and_cover_the_epoch():
    d = data.load_dataset("synthetic").subset(101)
    shards = [_loader(d, batch_size=10, rank=r, world_size=2).indices(7) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 50  # 5 full batches of 5 per rank
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
    ev = [data.Loader(d, 10, train=False, rank=r, world_size=2).indices(0) for r in range(2)]
    assert sorted(torch.cat(ev).tolist()) == list(range(101))


def test_loader_normalises_and_keeps_every_test_example():
    d = data.load_dataset("synthetic").subset(130)
    loader = data.Loader(d, 64, train=False, channels_last=True)
    batches = list(loader.epoch(0))
    assert [len(y) for _, y in batches] == [64, 64, 2] and len(loader) == 3
    x = torch.cat([b for b, _ in batches])
    assert batches[0][0].is_contiguous(memory_format=torch.channels_last)
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1
    assert torch.equal(torch.cat([y for _, y in batches]), d.labels)


def test_loader_rejects_bad_sizes():
    d = data.load_dataset("synthetic").subset(20)
    with pytest.raises(ValueError, match="divisible"):
        data.Loader(d, 33, train=True, world_size=2)
    with pytest.raises(ValueError, match="fewer than one batch"):
        data.Loader(d, 64, train=True)
    with pytest.raises(ValueError, match="world_size must be a positive integer"):
        data.Loader(d, 8, train=True, world_size=0)
