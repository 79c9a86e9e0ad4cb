"""Choosing where and in which precision a network runs."""
from __future__ import annotations

import os
from typing import Optional

import torch

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
          "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def pick_device(override: Optional[str] = None) -> torch.device:
    """CUDA, then Apple MPS, then CPU; ``override`` ('cpu', 'cuda', 'cuda:1', 'mps', 'auto') wins.

    An override naming a device this machine lacks raises ValueError with a clear message.
    """
    if override and override != "auto":
        try:
            dev = torch.device(override)
        except RuntimeError as e:
            raise ValueError(f"unknown device '{override}' (use auto, cpu, cuda, cuda:N or mps)") from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device '{override}' requested but CUDA is not available here")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device '{override}' requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        if dev.type == "mps" and not _mps_available():
            raise ValueError("device 'mps' requested but Apple MPS is not available here")
        if dev.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"unsupported device '{override}' (use auto, cpu, cuda, cuda:N or mps)")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def available_devices() -> list[tuple[str, str]]:
    """(label, value) of every device this machine offers, 'auto' first: the device chooser's entries."""
    out = [("auto", "auto"), ("CPU", "cpu")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            out.append((f"cuda:{i} — {torch.cuda.get_device_name(i)}", f"cuda:{i}"))
    if _mps_available():
        out.append(("Apple MPS", "mps"))
    return out


def device_report() -> list[str]:
    """Lines on the accelerators present and their free memory, system memory and torch's version."""
    lines = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            lines.append(f"cuda:{i} {torch.cuda.get_device_name(i)}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free")
    else:
        lines.append("No CUDA GPU found")
    if _mps_available():
        lines.append("Apple MPS available")
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        lines.append(f"System memory {total / 2**30:.1f} GiB")
    except (ValueError, OSError, AttributeError):
        pass
    lines.append(f"torch {torch.__version__}")
    return lines


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def pick_dtype(name: Optional[str]) -> torch.dtype:
    """'fp32' (default), 'fp16' or 'bf16' -> torch dtype; anything else raises ValueError."""
    if not name:
        return torch.float32
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype '{name}' (use fp32, fp16 or bf16)") from None
