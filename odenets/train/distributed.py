"""Multi-process training with ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node G -m odenets train ...`` sets RANK, WORLD_SIZE, LOCAL_RANK and
MASTER_ADDR/PORT; `setup` joins the process group (NCCL on CUDA, gloo on CPU) and picks the
device ``cuda:LOCAL_RANK``. Each rank holds the dataset on its device and takes its own shard
of every epoch's permutation (`odenets.data.Loader`); DDP averages gradients, so all ranks keep
identical weights. Only rank 0 writes files. Without WORLD_SIZE > 1 everything is a no-op.

DDP waits for a gradient of every parameter; a model that leaves some without one (e.g.
``lmm4_resnet20``: its 2-step flows never reach the third root r3 of the learned scheme) needs
``find_unused_parameters=True``, which costs a graph traversal per step. `unused_parameters`
finds them once, at start-up, so only such models pay.
"""
from __future__ import annotations

import copy
import gc
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we called init_process_group, so we destroy it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:LOCAL_RANK if CUDA is available, else cpu; explicit names are checked."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available here; use cpu")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    elif device.type not in ("cpu", "mps", "xpu"):
        raise ValueError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return device


def setup(device_name: str = "auto") -> tuple[Dist, torch.device]:
    """Join the torchrun process group if there is one; returns (`Dist`, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return Dist(), resolve_device(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    owns = False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, owns), device


def unused_parameters(model: torch.nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the parameters (``requires_grad``) that get no gradient from one training
    forward and backward of ``model`` on ``example`` (loss: the sum of the output).

    Runs on a deep copy under a forked torch RNG, so the model's weights, BatchNorm statistics,
    noise generators and the global RNG are untouched."""
    probe = copy.deepcopy(model).train()
    cuda = [example.device] if example.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        probe(example).float().sum().backward()
    return [name for name, p in probe.named_parameters() if p.requires_grad and p.grad is None]


def wrap_ddp(model, raw, image_shape, cfg, info, device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel; with ``find_unused_parameters=True`` only when a
    probe step of ``raw`` (on a copy, see `unused_parameters`) leaves a parameter
    without a gradient on some rank, or cannot be run."""
    example = torch.randn((2, *image_shape), generator=torch.Generator().manual_seed(0)).to(
        device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    try:
        unused = unused_parameters(raw, example)
        more = ", ..." if len(unused) > 4 else ""
        why = (f"{len(unused)} parameter(s) get no gradient in a training step "
               f"({', '.join(unused[:4])}{more})")
    except Exception as e:  # e.g. a model that cannot be deep-copied: take the safe setting
        unused = None
        why = f"the probe for parameters without a gradient failed ({type(e).__name__}: {e})"
    find_unused = any_rank(unused is None or bool(unused), info, device)
    if find_unused and info.main:
        print(f"odenets: {cfg.model}: {why}: DDP runs with find_unused_parameters=True", file=sys.stderr)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def any_rank(flag: bool, info: Dist, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any rank."""
    box = torch.tensor([int(flag)], device=device)
    return bool(all_reduce(box, info, op=dist.ReduceOp.MAX).item()) if info.enabled else flag


def teardown(info: Dist, *, finished: bool = True) -> None:
    """Leave the process group we joined. After a finished run every rank first waits for the
    others (rank 0 is still writing files when the rest are done; a rank that closes its gloo
    connections meanwhile can abort the process), and the DDP wrapper, which sits in reference
    cycles, is collected so its reducer lets go of the group now rather than at interpreter
    exit. After a failure no rank waits: the others may never arrive."""
    if not (info.owns_group and dist.is_initialized()):
        return
    gc.collect()
    if finished:
        dist.barrier()
    dist.destroy_process_group()


def all_reduce(tensor: torch.Tensor, info: Dist, op=None) -> torch.Tensor:
    """Sum (or ``op``) ``tensor`` over ranks in place; identity in a single process."""
    if info.enabled:
        dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj, info: Dist) -> list:
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, info: Dist):
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: Dist) -> None:
    if info.enabled:
        dist.barrier()
