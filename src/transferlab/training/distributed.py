"""What a process of a multi-process run (torchrun / accelerate launch) needs: who writes, and shared values."""

from __future__ import annotations

from typing import Any


def state(cpu: bool = False):
    """accelerate's process state (sets up the process group under torchrun, gloo on CPUs; a no-op for one
    process). ``cpu`` must match the Trainer's ``use_cpu``, or a CPU-only launch is not seen as distributed."""
    from accelerate import PartialState

    return PartialState(cpu=cpu)


def broadcast(value: Any, src: int = 0) -> Any:
    """``value`` from process ``src`` on every process (identity without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def process_device(device):
    """This process's device: under a multi-process launch on GPUs its own GPU (``LOCAL_RANK``), else ``device``."""
    if device.type == "cuda" and device.index is None:
        return state(cpu=False).device
    return device
