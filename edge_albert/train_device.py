"""Where and in what precision training runs: the process's rank in a ``torchrun`` world, the
device a config's ``device`` names, the precision its ``precision`` means there, and the name a
manifest records. Shared by the training loop and the stages that report on it."""
from __future__ import annotations

import os

import torch

from .errors import ConfigError


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) when not distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def resolve_device(name: str) -> torch.device:
    """The torch device for a config's ``device``: "auto" is the GPU when torch sees one (under
    torchrun, the one of this process's LOCAL_RANK), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but torch sees no GPU", key="device",
                              hint='use device = "cpu" or "auto"')
        if name == "cuda":
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(torch.device(name))
        # TF32 matmuls: the 10-bit mantissa is far below the noise of SGD on these models
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """The precision a config's ``precision`` means on ``device``: "auto" is bf16 where the
    hardware computes it natively (on a CPU without it, bf16 is emulated and slower), else fp32."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    from .runtime.cpu import cpu_facts, native_bf16

    return "bf16" if native_bf16(cpu_facts()["flags"]) else "fp32"


def device_name(device: torch.device) -> str:
    """What a manifest records as the training device."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.machine()})"


def init_distributed(device: torch.device | None = None) -> bool:
    """Join the process group torchrun set up (gloo on CPU, nccl on GPU). False if not launched so."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch.distributed.is_initialized():
        return torch.distributed.is_initialized()
    on_gpu = device.type == "cuda" if device is not None else torch.cuda.is_available()
    torch.distributed.init_process_group(backend="nccl" if on_gpu else "gloo")
    return True
