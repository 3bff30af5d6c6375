"""Optional TensorBoard logging of a run (``odenets train --tensorboard``).

Written into the run directory (``tensorboard --logdir RUN_DIR``):

    train/loss_step, train/lr    every training step (global step on the x axis)
    train/loss, train/acc, test/loss, test/acc, img_per_s    every epoch
    coefficients/<block>/<i>     the learned scheme coefficients (LM's k_n, ...) every epoch

Needs the ``tensorboard`` package (``pip install tensorboard``); asking for it without the
package is a ValueError naming the fix, raised before any training.
"""
from __future__ import annotations

from .rundir import flatten


def summary_writer():
    """torch's SummaryWriter class (ValueError naming the fix if tensorboard is missing)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's module imports the tensorboard package
        raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard "
                         "(metrics.jsonl and metrics.csv are written without it)") from None
    return SummaryWriter


def open_log(run_dir) -> "TensorBoardLog":
    """A `TensorBoardLog` writing into ``run_dir``."""
    return TensorBoardLog(summary_writer()(log_dir=str(run_dir)))


class TensorBoardLog:
    def __init__(self, writer):
        self.writer = writer

    def steps(self, first_step: int, losses, lrs) -> None:
        """Per-step training loss and learning rate from global step ``first_step`` on."""
        for i, (loss, lr) in enumerate(zip(losses, lrs)):
            self.writer.add_scalar("train/loss_step", loss, first_step + i + 1)
            self.writer.add_scalar("train/lr", lr, first_step + i + 1)

    def epoch(self, record: dict) -> None:
        """An epoch's record (as in metrics.jsonl), at x = its epoch number."""
        epoch = record["epoch"]
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            self.writer.add_scalar(key.replace("_", "/", 1), record[key], epoch)
        self.writer.add_scalar("img_per_s", record["img_per_s"], epoch)
        for name, value in flatten(record.get("coefficients", {})).items():
            self.writer.add_scalar(f"coefficients/{name}", value, epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
