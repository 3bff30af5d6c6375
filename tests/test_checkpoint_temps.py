"""A run killed while writing its checkpoint leaves a temp file; resuming removes it."""
import torch

from odenets.train import checkpoint


def test_stale_temps_are_removed_and_the_checkpoint_kept(tmp_path):
    path = checkpoint.save_atomic({"epoch": 3}, tmp_path / checkpoint.NAME)
    stale = tmp_path / f".{checkpoint.NAME}.12345.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / "notes.tmp"
    other.write_text("not ours")
    assert checkpoint.remove_stale_temps(path) == [stale]
    assert not stale.exists() and other.exists()
    assert checkpoint.load(path)["epoch"] == 3
    assert torch.load(path, weights_only=True) == {"epoch": 3}
