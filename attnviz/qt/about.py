"""The device line of Help → About: which device runs the model and how much memory it has."""
from __future__ import annotations

import os


def device_summary(session) -> str:
    import torch

    lines = []
    m = session.model
    if m is not None:
        lines.append(f"Model on <b>{m.device}</b> ({str(m.dtype).replace('torch.', '')})")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            lines.append(f"cuda:{i} {torch.cuda.get_device_name(i)}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free")
    else:
        lines.append("No CUDA GPU found")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        lines.append("Apple MPS available")
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        lines.append(f"System memory {total / 2**30:.1f} GiB")
    except (ValueError, OSError, AttributeError):
        pass
    lines.append(f"torch {torch.__version__}")
    return "<br>".join(lines)
