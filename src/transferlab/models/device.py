"""Devices and numeric precision, resolved once for every experiment (encoding and training alike).

``resolve_device("auto")`` is the GPU when one is visible, else the CPU. ``resolve_precision`` turns
``auto`` into a concrete ``fp32`` / ``bf16`` / ``fp16``: on a GPU, bf16 where it has it and fp16
otherwise; on a CPU, what the caller measured to be faster for its model (``cpu_auto``), falling
back to fp32 where the CPU has no bf16 instructions. ``autocast`` is the matching context.
"""

from __future__ import annotations

import contextlib
import functools

import torch

from transferlab.errors import TransferlabError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(name: str = "auto", key: str = "device") -> torch.device:
    """``auto``: CUDA when visible, else CPU; an explicit ``cuda`` without a GPU is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TransferlabError(f"{key}={name!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TransferlabError(f"{key}={name} but no CUDA GPU is visible: use {key}=auto or cpu")
    return device


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPU instructions that make bf16 matrix products fast."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_supported(device: torch.device | str) -> bool:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def resolve_precision(precision: str, device: torch.device | str, cpu_auto: str = "fp32",
                      key: str = "precision") -> str:
    """A concrete precision for ``device``. ``cpu_auto``: what ``auto`` means on a CPU (bf16 only where the
    CPU has it). An explicit precision the device cannot run is a one-line error naming ``key``."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise TransferlabError(f"{key} must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_auto == "bf16" and bf16_supported(device) else "fp32"
    if precision == "bf16" and not bf16_supported(device):
        raise TransferlabError(f"{key}=bf16 is not supported on this {device.type}: use {key}=auto or fp32")
    if precision == "fp16" and device.type != "cuda":
        raise TransferlabError(f"{key}=fp16 needs a CUDA GPU: use {key}=auto, fp32 or bf16")
    return precision


HALF_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device | str):
    """The autocast context of a resolved precision (a no-op for fp32)."""
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(n: int | None = None) -> int:
    """One thread budget for torch's intra-op pool, BLAS/OpenMP and the tokenizers, so they do not each start
    one thread per core and fight over the same cores (on 2 cores that can be 10x slower). Default: the
    cores available. Call it before any tokenizer runs; returns the number used."""
    import os

    n = available_cores() if n is None else n
    if n < 1:
        raise TransferlabError(f"--threads must be at least 1; got {n}")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS",
                "RAYON_RS_NUM_CPUS"):
        os.environ[var] = str(n)
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # scikit-learn brings threadpoolctl; without it the environment variables still apply
        pass
    return n
