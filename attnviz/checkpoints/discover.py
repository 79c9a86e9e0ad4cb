"""Turn whatever path the user chose into the files that make up one checkpoint.

Accepted:

* a weights file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``, ``.ckpt``). When it carries a
  Hugging Face hub file name (``model.safetensors``, ``pytorch_model.bin``, shards) the
  ``config.json`` / ``preprocessor_config.json`` beside it are read too, as they belong to it;
* ``config.json`` itself: its folder is used;
* a model folder: transformers (``config.json`` with ``model_type``) or timm's hub format
  (``config.json`` with ``architecture`` and ``pretrained_cfg``), weights in ``model.safetensors``
  or ``pytorch_model.bin`` (safetensors preferred), or a folder holding exactly one weights file;
* a Hugging Face cache folder ``models--org--name``: the snapshot ``refs/main`` names, else the
  newest one;
* a weights file ``NAME.safetensors`` with a sidecar ``NAME.json`` beside it (timm's hub config
  format): attnviz's shipped demo models, and a convenient way to give a bare file its config.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from attnviz.checkpoints.errors import CheckpointError

# Hub weight file names, most preferred first (safetensors never runs code, so it wins).
HUB_WEIGHT_NAMES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".pth.tar")
# Files of a transformers Trainer checkpoint folder that are not model weights.
NOT_WEIGHTS = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth")
OTHER_FRAMEWORKS = ("tf_model.h5", "flax_model.msgpack", "model.onnx")
_SHARD_PREFIXES = ("model-0", "pytorch_model-0")  # model-00001-of-00003.safetensors, ...
CONFIG_NAME = "config.json"
PREPROCESSOR_NAME = "preprocessor_config.json"


@dataclass(frozen=True)
class CheckpointFiles:
    """The files of one checkpoint: weights, and the JSON configs that came with them."""

    weights: Path
    config: Optional[dict[str, Any]]  # config.json (transformers or timm hub format), if any
    preprocessor: Optional[dict[str, Any]]  # preprocessor_config.json (transformers), if any
    source: Path  # the path the user gave
    name: str  # a readable name guessed from the path (file stem, folder, or 'org/name' of a hub cache)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(path, f"the {what} is not valid JSON") from None
    except OSError as e:
        raise CheckpointError(path, f"cannot read the {what} ({e.strerror or e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(path, f"the {what} should hold a JSON object, found a {type(data).__name__}")
    return data


def _optional_json(folder: Path, name: str, what: str) -> Optional[dict[str, Any]]:
    p = folder / name
    return _read_json(p, what) if p.is_file() else None


def _is_weights_name(p: Path) -> bool:
    if p.name in NOT_WEIGHTS or p.name.startswith("rng_state"):
        return False
    return p.name.lower().endswith(WEIGHT_SUFFIXES) or p.name in HUB_WEIGHT_NAMES


def _hub_cache_snapshot(folder: Path) -> Optional[Path]:
    """The snapshot folder of a Hugging Face cache entry (``models--org--name``), if it is one."""
    snapshots = folder / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = folder / "refs" / "main"
    if ref.is_file():
        try:
            commit = ref.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            commit = ""
        if commit and (snapshots / commit).is_dir():
            return snapshots / commit
    candidates = [p for p in snapshots.iterdir() if p.is_dir()]
    if not candidates:
        raise CheckpointError(folder, "this Hugging Face cache folder has no downloaded snapshot")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def _cache_name(folder: Path) -> Optional[str]:
    """'org/name' from a cache folder called ``models--org--name``."""
    if folder.name.startswith("models--"):
        return folder.name[len("models--"):].replace("--", "/")
    return None


def _find_in_cache_path(p: Path) -> Optional[str]:
    for parent in (p, *p.parents):
        name = _cache_name(parent)
        if name:
            return name
    return None


def _from_folder(folder: Path, source: Path) -> CheckpointFiles:
    name = _find_in_cache_path(folder) or folder.name
    config = _optional_json(folder, CONFIG_NAME, "config.json")
    preprocessor = _optional_json(folder, PREPROCESSOR_NAME, "preprocessor_config.json")
    for weights_name in HUB_WEIGHT_NAMES:
        if (folder / weights_name).is_file():
            return CheckpointFiles(folder / weights_name, config, preprocessor, source, name)
    weights = sorted(p for p in folder.iterdir() if p.is_file() and _is_weights_name(p))
    if len(weights) == 1:
        return CheckpointFiles(weights[0], config, preprocessor, source, name)
    if not weights:
        others = [n for n in OTHER_FRAMEWORKS if (folder / n).is_file()]
        if others:
            raise CheckpointError(
                folder, f"this folder holds only {', '.join(others)}; attnviz reads PyTorch weights "
                "(model.safetensors or pytorch_model.bin)"
            )
        raise CheckpointError(
            folder,
            "no weights file in this folder (looked for model.safetensors, pytorch_model.bin "
            f"or a single {'/'.join(WEIGHT_SUFFIXES)} file)",
        )
    listed = ", ".join(p.name for p in weights[:5])
    raise CheckpointError(folder, f"several weights files in this folder ({listed}); choose one of them")


def _shard_index(shard: Path) -> Optional[Path]:
    """The ``*.index.json`` listing a shard like ``model-00001-of-00002.safetensors``, if present."""
    if not shard.name.startswith(_SHARD_PREFIXES):
        return None
    base = "model" if shard.name.startswith("model-") else "pytorch_model"
    ext = ".safetensors" if shard.suffix == ".safetensors" else ".bin"
    index = shard.parent / f"{base}{ext}.index.json"
    return index if index.is_file() else None


def discover(path: str | os.PathLike[str]) -> CheckpointFiles:
    """Resolve the user's ``path`` to a :class:`CheckpointFiles`; :class:`CheckpointError` if it cannot."""
    source = Path(path).expanduser()
    if not source.exists():
        raise CheckpointError(source, "no such file or folder")
    if source.is_dir():
        snapshot = _hub_cache_snapshot(source)
        return _from_folder(snapshot if snapshot is not None else source, source)
    if source.name == CONFIG_NAME:
        return _from_folder(source.parent, source)
    folder = source.parent
    if source.name in HUB_WEIGHT_NAMES or source.name.startswith(_SHARD_PREFIXES):
        # A hub file name: the configs beside it describe these weights.
        config = _optional_json(folder, CONFIG_NAME, "config.json")
        preprocessor = _optional_json(folder, PREPROCESSOR_NAME, "preprocessor_config.json")
        name = _find_in_cache_path(folder) or folder.name
        return CheckpointFiles(_shard_index(source) or source, config, preprocessor, source, name)
    stem = source.name
    for suffix in (".pth.tar", *WEIGHT_SUFFIXES):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    sidecar = folder / f"{stem}.json"
    config = _read_json(sidecar, sidecar.name) if stem and sidecar.is_file() else None
    return CheckpointFiles(source, config, None, source, stem or source.name)
