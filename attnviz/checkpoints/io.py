"""Read a weights file into a flat ``{name: tensor}`` dict without ever running code from the file.

Two readers, chosen by the file's content (not its extension):

* safetensors (a little-endian u64 header length, then a JSON header): read with the
  ``safetensors`` library, which only ever parses tensors;
* PyTorch (a zip archive or a legacy pickle stream): ``torch.load(weights_only=True)``, whose
  unpickler only builds tensors and plain containers. A file that would need to import and call
  anything else to unpickle (a pickled ``nn.Module``, a custom class, a ``__reduce__`` payload) is
  refused with a message naming what it asked for; nothing from it is executed.

Training checkpoints keep the weights inside wrappers (``{'model': ...}``, ``{'state_dict': ...}``,
DINO's ``{'teacher': {'backbone.…': ...}}``, DDP's ``module.`` prefixes); :func:`read_state_dict`
unwraps them so callers always receive the bare network state dict.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import struct
import threading
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from attnviz.checkpoints.errors import CheckpointError

FileKind = Literal["safetensors", "torch-zip", "torch-pickle", "json", "npz", "torchscript", "unknown"]

# Wrapper keys of training checkpoints, in order of preference: the plain weights first, then the
# EMA copy, then DINO's teacher (the network DINO evaluates and visualises), then its student.
_WRAPPER_KEYS = (
    "model",
    "state_dict",
    "model_ema",
    "state_dict_ema",
    "teacher",
    "student",
    "module",
    "net",
    "network",
)
# Prefixes that wrap a whole network: DDP / DataParallel, torch.compile, PyTorch Lightning modules.
_WHOLE_PREFIXES = ("module.", "_orig_mod.", "model.")
# Key prefixes of a ViT / Swin body (as opposed to a projection head trained beside it).
_BODY_PREFIXES = ("patch_embed.", "blocks.", "layers.", "cls_token", "pos_embed")
_MAX_NESTING = 5
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def sniff_format(path: str | os.PathLike[str]) -> FileKind:
    """What a file holds, judged from its first bytes (and, for zips, its member names)."""
    with open(path, "rb") as f:
        head = f.read(64)
        size = os.fstat(f.fileno()).st_size
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and size - 8 < header_len < 100_000_000:
            return "safetensors"  # a header cut short: the reader reports the damage
        if 2 <= header_len <= size - 8 and head[8:9] == b"{":
            with open(path, "rb") as f:
                f.seek(8)
                header = f.read(min(header_len, 100_000_000))
            try:
                if isinstance(json.loads(header), dict):
                    return "safetensors"
            except (ValueError, UnicodeDecodeError):
                pass
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return "torch-zip"  # damaged; torch.load will say how
        if any(n.endswith("data.pkl") for n in names):
            if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
                return "torchscript"
            return "torch-zip"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        return "unknown"
    if head[:1] == b"\x80":  # pickle protocol >= 2: torch's legacy (pre-1.6) format
        return "torch-pickle"
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        return "json"
    return "unknown"


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The network weights in ``path`` as a flat ``{name: tensor}`` dict (CPU tensors).

    ``path`` may also be a sharded checkpoint's ``*.index.json`` (its ``weight_map`` names the
    shard files next to it). Raises :class:`CheckpointError` for anything that is not a readable,
    safe weights file.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(p, "no such file")
    if p.is_dir():
        raise CheckpointError(p, "this is a folder, not a weights file")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise CheckpointError(p, f"cannot read the file ({e.strerror or e})") from None
    if size == 0:
        raise CheckpointError(p, "the file is empty")
    if p.name.endswith(".index.json"):
        return _read_sharded(p)
    try:
        kind = sniff_format(p)
    except OSError as e:
        raise CheckpointError(p, f"cannot read the file ({e.strerror or e})") from None

    if kind == "safetensors":
        obj: Any = _load_safetensors(p)
    elif kind in ("torch-zip", "torch-pickle"):
        obj = _load_torch(p)
    elif kind == "json":
        raise CheckpointError(
            p, "this is a JSON file, not weights; choose the weights file or the folder holding both"
        )
    elif kind == "npz":
        raise CheckpointError(
            p, "this is a NumPy .npz archive (e.g. original JAX ViT weights), which attnviz does not read; "
            "use the timm or Hugging Face release of the model"
        )
    elif kind == "torchscript":
        raise CheckpointError(
            p, "this is a TorchScript (compiled) model, not a state dict; save model.state_dict() instead"
        )
    else:
        raise CheckpointError(
            p, "not a recognised weights file (expected safetensors or a PyTorch .pth/.pt/.bin/.ckpt)"
        )
    return unwrap_state_dict(obj, p)


def _load_safetensors(p: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(p), device="cpu")
    except Exception as e:  # safetensors raises its own error type for every malformed file
        raise CheckpointError(
            p, f"the safetensors file is damaged or incomplete (truncated download?): {e}"
        ) from None


# torch keeps the safe_globals allowance in one process-wide set that every exit of the context
# clears, so two overlapping loads (the model browser's detection beside the session's load) could
# take the allowance away from each other: loads of pickle-based files go one at a time.
_TORCH_LOAD_LOCK = threading.Lock()


def _load_torch(p: Path) -> Any:
    with _TORCH_LOAD_LOCK:
        return _load_torch_unlocked(p)


def _load_torch_unlocked(p: Path) -> Any:
    try:
        # argparse.Namespace holds training arguments in DeiT/DINO/timm training checkpoints; it
        # is a plain attribute bag (unpickling it only sets attributes), so it is allowed too.
        # torch warns about pickle protocols it may not support; a failure is reported as our one message.
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = _GLOBAL_RE.findall(str(e))
        if found:
            raise CheckpointError(
                p,
                f"the file needs to run Python code to load (it refers to {found[0]}), so it was "
                "refused and nothing in it was executed; attnviz only loads plain tensors. Save the "
                "weights with torch.save(model.state_dict(), ...) or as safetensors",
            ) from None
        raise CheckpointError(
            p, "not a PyTorch checkpoint that can be read safely (a plain Python pickle, or damaged)"
        ) from None
    except (PermissionError, FileNotFoundError, IsADirectoryError) as e:
        raise CheckpointError(p, f"cannot read the file ({e.strerror or e})") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, struct.error) as e:
        # OSError here is the zip reader stumbling over a cut archive (EINVAL), not access.
        detail = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(p, f"the file is damaged or incomplete (truncated download?): {detail}") from None


def _read_sharded(index: Path) -> dict[str, torch.Tensor]:
    """Merge the shards a ``*.index.json`` names (transformers' sharded checkpoints)."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise CheckpointError(index, "not a valid shard index (expected JSON with a 'weight_map')") from None
    out: dict[str, torch.Tensor] = {}
    for shard in shards:
        out.update(read_state_dict(index.parent / shard))
    missing = [k for k in weight_map if k not in out]
    if missing:
        raise CheckpointError(index, f"the shards lack {len(missing)} tensors the index names, e.g. {missing[0]!r}")
    return out


def _tensor_items(d: Mapping[Any, Any]) -> dict[str, torch.Tensor]:
    return {str(k): v for k, v in d.items() if isinstance(v, torch.Tensor)}


def unwrap_state_dict(obj: Any, path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Dig the network's state dict out of a loaded checkpoint object.

    Follows the first wrapper key present (``model``, ``state_dict``, ``model_ema``, ...,
    ``teacher``) until a mapping of tensors is reached, then strips prefixes that cover every key
    (``module.``, ``_orig_mod.``, ``model.``) and keeps DINO's ``backbone.`` part, dropping its
    projection head.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, f"the file holds a {type(obj).__name__}, not a dict of weights")
    for _ in range(_MAX_NESTING):
        tensors = _tensor_items(obj)
        nested = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if nested is None or len(tensors) > 0:
            break
        obj = obj[nested]
    sd = _tensor_items(obj)
    if not sd:
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        raise CheckpointError(path, f"no weights found in the file (top-level entries: {keys or 'none'})")

    changed = True
    while changed:
        changed = False
        for prefix in _WHOLE_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                changed = True
        # DINO training checkpoints: the ViT under 'backbone.', a projection MLP under 'head.'.
        # Keep the backbone when nothing outside it looks like a network body.
        backbone = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
        body_outside = any(k.startswith(_BODY_PREFIXES) for k in sd if not k.startswith("backbone."))
        if backbone and not body_outside:
            sd = backbone
            changed = True
    return sd
