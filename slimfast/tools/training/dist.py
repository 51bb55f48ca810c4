"""Several processes under ``torchrun`` (DistributedDataParallel: gloo on CPU, NCCL on CUDA)."""
from __future__ import annotations

import inspect
import os

import torch


class Dist:
    """This process's place in a ``torchrun`` job (or a world of one) and its device."""

    def __init__(self, device: str = "auto"):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0")) if self.world > 1 else 0
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0")) if self.world > 1 else 0
        self.device = self._device(device)
        self.dist = None
        if self.world > 1:
            import torch.distributed as dist

            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
            self.dist = dist

    def _device(self, device: str) -> torch.device:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device != "cuda":
            return torch.device(device)
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda but CUDA is not available")
        idx = self.local_rank % torch.cuda.device_count() if self.world > 1 else torch.cuda.current_device()
        d = torch.device("cuda", idx)
        torch.cuda.set_device(d)
        return d

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast_flags(self, flags: list[int]) -> list[int]:
        """Rank 0's decisions (stop, checkpoint, ...) for every rank: time and signals differ."""
        if self.dist is None:
            return flags
        t = torch.tensor(flags, dtype=torch.int64, device=self.device)
        self.dist.broadcast(t, 0)
        return [int(v) for v in t.tolist()]

    def all_gather(self, obj) -> list:
        if self.dist is None:
            return [obj]
        out = [None] * self.world
        self.dist.all_gather_object(out, obj)
        return out

    def all_reduce_mean_(self, tensors: list[torch.Tensor]) -> None:
        if self.dist is None:
            return
        for t in tensors:
            self.dist.all_reduce(t)
            t.div_(self.world)

    def barrier(self) -> None:
        if self.dist is not None:
            self.dist.barrier()

    def close(self) -> None:
        if self.dist is not None:
            self.dist.destroy_process_group()
            self.dist = None


def wrap_ddp(objective, model, device: torch.device):
    """``objective`` under DistributedDataParallel, the entropy bottlenecks' quantiles left out.

    The quantiles only get gradients from the aux loss: kept out of DDP, averaged by hand
    (:meth:`Dist.all_reduce_mean_`).
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    aux_ids = {id(p) for p in model.aux_parameters()}
    ignore = [f"model.{n}" for n, p in model.named_parameters() if id(p) in aux_ids]
    DDP._set_params_and_buffers_to_ignore_for_model(objective, ignore)
    # Buffers (integer tables, scale tables) never change while training: no per-step sync.
    no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
               else {"broadcast_buffers": False})
    return DDP(objective, device_ids=[device.index] if device.type == "cuda" else None, **no_sync,
               # a slimmable model trained at one width leaves the other widths unused
               find_unused_parameters=bool(model.widths) and len(objective.terms) == 1)
