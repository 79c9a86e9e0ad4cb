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
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

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
        if b.attn_mask is not None:
            out[f"attn_mask.{b.index}"] = b.attn_mask.detach().cpu().float().numpy()
    out["meta"] = np.array(json.dumps(capture_meta(cap, info)))
    return out


def check_output(path: str | os.PathLike) -> Path:
    """Raise OSError with a plain message unless a file can be written at ``path``; checked before
    any work so that a wrong output path fails at once."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OSError(f"{path} is a folder; give a file name, e.g. {path / 'attention.npz'}")
    if not parent.exists():
        raise OSError(f"{path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise OSError(f"{path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OSError(f"{path}: no permission to write in folder {parent}")
    return parent


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays to ``path`` atomically: a reader never sees a half-written file. The file gets the
    permissions a new file gets under the process umask."""
    parent = check_output(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".attnviz-", suffix=".npz.part", dir=parent)
    except OSError as e:
        raise OSError(f"{path}: cannot write in folder {parent} ({(e.strerror or str(e)).lower()})") from e
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.strerror:
            raise OSError(f"{path}: could not write the file ({e.strerror.lower()})") from e
        raise


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (other threads may be creating
    files); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
