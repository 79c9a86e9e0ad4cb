"""Raw arrays for users' own analysis: a Capture as named float32 arrays, written atomically to .npz.

Keys (documented in README "Raw arrays"):
  logits            (classes,)                 only when the model has a classifier
  attn.{i}          ViT (heads, N, N); Swin (windows, heads, M², M²), block i in forward order
  attn_mask.{i}     (windows, M², M²)          Swin blocks that applied a shift mask (0 / -100)
  meta              JSON string                family, sizes, tokens, per-block heads/windows, class names
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Optional

import numpy as np

from .writing import write_npz as _write_npz

if TYPE_CHECKING:  # annotations only: the command line's parser imports this module before torch is needed
    from ..nets import Capture, ModelInfo


def capture_meta(cap: Capture, info: Optional[ModelInfo] = None) -> dict:
    """What a reader needs to interpret the attention arrays, as plain JSON-able values."""
    meta = {
        "family": cap.family,
        "img_size": list(cap.img_size),
        "patch_size": cap.patch_size,
        "grid_size": list(cap.grid_size),
        "num_prefix_tokens": cap.num_prefix_tokens,
        "prefix_tokens": list(cap.prefix_names),
        "num_blocks": len(cap.blocks),
        "num_heads": [b.num_heads for b in cap.blocks],
        "class_names": (info.class_names if info is not None else None),
    }
    if cap.family == "swin":
        meta["stage"] = [b.stage for b in cap.blocks]
        meta["window_size"] = [b.window_size for b in cap.blocks]
        meta["shift_size"] = [b.shift_size for b in cap.blocks]
        meta["block_grid_size"] = [list(b.grid_size) for b in cap.blocks]
        meta["padded_size"] = [list(b.padded_size) for b in cap.blocks]
    if info is not None:
        meta["model_name"] = info.name
        meta["source_format"] = info.source_format
    return meta


def capture_arrays(cap: Capture, info: Optional[ModelInfo] = None, index: int = 0) -> dict[str, np.ndarray]:
    """Image ``index`` of a captured batch as the arrays ``attnviz dump`` writes."""
    out: dict[str, np.ndarray] = {}
    if cap.logits is not None:
        out["logits"] = cap.logits[index].detach().cpu().float().numpy()
    for b in cap.blocks:
        out[f"attn.{b.index}"] = b.attn[index].detach().cpu().float().numpy()
        mask = getattr(b, "attn_mask", None)  # only Swin block captures carry one
        if mask is not None:
            out[f"attn_mask.{b.index}"] = mask.detach().cpu().float().numpy()
    out["meta"] = np.array(json.dumps(capture_meta(cap, info)))
    return out


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], force: bool = True) -> None:
    """Write arrays to ``path`` atomically (``attnviz dump`` replaces an existing file, as it always has):
    :func:`attnviz.export.writing.write_npz`."""
    _write_npz(path, arrays, force)
