"""Shared pytest fixtures."""
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster and immune to spin-waiting when the 2 cores
    are shared. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def campaigns_in_process(monkeypatch):
    """Campaigns started by a test run in the test's own process unless the test asks for
    ``--workers``: the library default (one worker per core) would spawn processes on a
    multi-core CI machine, where a test's monkeypatches do not reach."""
    from odenets.campaign import local
    monkeypatch.setattr(local, "DEFAULT_CORES_PER_WORKER", None)
