"""Device and precision resolution, and the one autocast context every forward pass uses."""

from __future__ import annotations

import torch

from nmt.errors import NMTError

# precision name -> autocast dtype (None: plain fp32, autocast off)
AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; asking for an absent cuda is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise NMTError(
            "--device cuda was asked for but no CUDA device is visible; use --device cpu"
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """auto -> bf16 on a CUDA device that supports it, else fp32; fp16 needs CUDA."""
    if name == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise NMTError("--precision fp16 needs a CUDA device; use fp32 (or bf16) on the CPU")
    return name


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> torch.autocast:
    """Mixed precision by flag, not branch: autocast to amp_dtype, or disabled when None."""
    return torch.autocast(
        device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
    )
