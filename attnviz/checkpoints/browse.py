"""List the checkpoints a user already has, and say what each one is, before anything is loaded.

The model browser (``attnviz/qt/model_browser.py``) shows this; the module itself has no Qt so the
listing and the descriptions are tested headless. Three steps, each cheap enough for a worker thread:

* :func:`cache_roots`: where the Hugging Face hub cache and torch hub's checkpoint folder are,
  resolved from the environment the way ``huggingface_hub`` and ``torch.hub`` resolve them;
* :func:`find_checkpoints`: the :class:`Entry` rows: the shipped demo models, the model repos in the
  Hugging Face cache (through ``huggingface_hub.scan_cache_dir``), the weight files in torch hub's
  folder, and what the folders the user added hold (weight files, model folders, cache folders);
* :func:`describe`: family and architecture of one entry, read from its config and the tensor
  *shapes* only. Safetensors headers are parsed, zip ``.pth`` files are memory-mapped
  (``torch.load(weights_only=True, mmap=True)``, never unpickling code), every tensor becomes a
  ``meta`` tensor, and the loader's own converters run on those: the architecture shown is the one
  ``load_checkpoint`` will build, without reading the weights or building a network. Files that
  cannot be inspected that way (old-format ``.pth``, training checkpoints carrying their arguments)
  are read by the loader's reader if they are small enough (:data:`MAX_FULL_READ`).

Nothing here raises for a bad file or a missing folder: a listing skips what it cannot read, a
description carries the loader's one-line error instead.
"""
from __future__ import annotations

import json
import os
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Optional

import torch

from attnviz.checkpoints.convert_timm import check_shapes
from attnviz.checkpoints.detect import convert, is_transformers_config
from attnviz.checkpoints.discover import (
    CONFIG_NAME,
    HUB_WEIGHT_NAMES,
    OTHER_FRAMEWORKS,
    _is_weights_name,  # the loader's own rule for what counts as weights (not optimizer.pt, ...)
    discover,
)
from attnviz.checkpoints.errors import CheckpointError
from attnviz.errors import one_line
from attnviz.checkpoints.io import read_state_dict, sniff_format, unwrap_state_dict
from attnviz.nets.config import ModelInfo, SwinConfig, ViTConfig

Origin = Literal["demo", "hf-cache", "torch-hub", "folder"]

HF_CACHE_LABEL = "Hugging Face cache"
TORCH_HUB_LABEL = "Torch hub cache"
# How far below a user's folder weights are looked for: FOLDER/a/b/x.pth is found, FOLDER/a/b/c/x.pth
# is not. Deep enough for "runs/<name>/checkpoint-500/", shallow enough not to crawl a home folder.
MAX_DEPTH = 2
# Files larger than this are never read whole just to be described (an old-format .pth cannot be
# memory-mapped, so describing it means reading it); they are described when they are opened.
MAX_FULL_READ = 2 * 1024**3

_SHARD_PREFIXES = ("model-0", "pytorch_model-0")  # shards are listed through their index file
_FULL_READ_LOCK = threading.Lock()


@dataclass(frozen=True)
class Entry:
    """One checkpoint the browser lists: a path ``load_checkpoint`` accepts, and where it was found."""

    path: Path  # a weights file, a model folder, or a Hugging Face cache folder models--org--name
    origin: Origin
    name: str  # shown to the user: 'org/name' for cache repos, the path below its root otherwise
    size_bytes: int  # on disk: the file, a model folder's weights and configs, a cache repo's blobs
    root: Optional[Path] = None  # the folder it was found under (groups the user folders in the GUI)


class Problem(NamedTuple):
    """A folder the user added that could not be listed (it vanished, or cannot be read)."""

    path: Path
    message: str


@dataclass(frozen=True)
class Description:
    """What the detector reads from an entry; ``error`` set (one line) when it cannot be loaded."""

    family: Optional[Literal["vit", "swin"]]
    architecture: str  # e.g. 'ViT-S/16 · 12 blocks · 6 heads · 224 px'; '' when unknown
    source_format: Optional[str]  # ModelInfo.source_format: 'timm' | 'transformers' | 'official'
    error: Optional[str] = None


# ---------------------------------------------------------------------------------------------
# Where the caches are


def _env_path(name: str) -> Optional[Path]:
    value = os.environ.get(name)
    if not value:
        return None
    return Path(os.path.expanduser(os.path.expandvars(value)))


def _xdg_cache() -> Path:
    return _env_path("XDG_CACHE_HOME") or Path(os.path.expanduser("~")) / ".cache"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, resolved as ``huggingface_hub.constants`` does, but now (its
    constants are frozen at import): HF_HUB_CACHE, the legacy HUGGINGFACE_HUB_CACHE, $HF_HOME/hub,
    else $XDG_CACHE_HOME/huggingface/hub (~/.cache/huggingface/hub)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        p = _env_path(name)
        if p is not None:
            return p
    home = _env_path("HF_HOME") or _xdg_cache() / "huggingface"
    return home / "hub"


def torch_hub_checkpoints() -> Path:
    """torch hub's download folder: $TORCH_HOME/hub/checkpoints, TORCH_HOME defaulting to
    $XDG_CACHE_HOME/torch (~/.cache/torch), as ``torch.hub.get_dir`` resolves it."""
    home = _env_path("TORCH_HOME") or _xdg_cache() / "torch"
    return home / "hub" / "checkpoints"


def cache_roots() -> list[tuple[str, Path]]:
    """(label, folder) of the two caches the browser scans; the folders need not exist."""
    return [(HF_CACHE_LABEL, hf_hub_cache()), (TORCH_HUB_LABEL, torch_hub_checkpoints())]


# ---------------------------------------------------------------------------------------------
# Listing


def _file_size(p: Path) -> int:
    try:
        return p.stat().st_size  # follows symlinks: the blob's size for a cache snapshot file
    except OSError:
        return 0


def _children(folder: Path) -> list[Path]:
    """The folder's entries, sorted; [] when it cannot be read. Hidden entries are skipped."""
    try:
        return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name.lower())
    except OSError:
        return []


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:
        return False


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except OSError:
        return False


def _is_cache_repo(folder: Path) -> bool:
    """A Hugging Face cache folder of a *model* repo (datasets--*, spaces--* hold no checkpoints)."""
    return folder.name.startswith("models--") and _is_dir(folder / "snapshots")


def _is_model_folder(folder: Path) -> bool:
    """A transformers / timm hub folder: config.json beside weights (or beside another framework's
    weights, which the description then explains)."""
    if not _is_file(folder / CONFIG_NAME):
        return False
    names = {p.name for p in _children(folder)}
    if names & set(HUB_WEIGHT_NAMES) or names & set(OTHER_FRAMEWORKS):
        return True
    return any(_is_weights_name(Path(n)) for n in names)


def _model_folder_size(folder: Path) -> int:
    """The weights and JSON configs of a model folder; a Trainer folder's optimizer state is not part
    of the checkpoint."""
    return sum(
        _file_size(p) for p in _children(folder)
        if _is_file(p) and (_is_weights_name(p) or p.name.endswith(".json") or p.name.startswith(_SHARD_PREFIXES))
    )


def _cache_repo_size(folder: Path) -> int:
    """Size on disk of a cache repo: its blobs (each file once, whatever number of snapshots link it)."""
    blobs = folder / "blobs"
    if _is_dir(blobs):
        return sum(_file_size(p) for p in _children(blobs) if _is_file(p))
    seen: dict[Path, int] = {}
    for p in (folder / "snapshots").rglob("*"):
        if _is_file(p):
            seen.setdefault(p.resolve(), _file_size(p))
    return sum(seen.values())


def _index_size(index: Path) -> int:
    try:
        shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return _file_size(index)
    return _file_size(index) + sum(_file_size(index.parent / s) for s in shards)


def _scan_folder(root: Path, origin: Origin, max_depth: int) -> list[Entry]:
    """Checkpoints in ``root`` and up to ``max_depth`` folders below it, in path order."""
    out: list[Entry] = []

    def name_of(p: Path) -> str:
        return p.name if p == root else p.relative_to(root).as_posix()

    def visit(folder: Path, depth: int) -> None:
        if _is_cache_repo(folder):
            repo = folder.name[len("models--"):].replace("--", "/")
            out.append(Entry(folder, origin, repo, _cache_repo_size(folder), root))
            return
        if _is_model_folder(folder):
            out.append(Entry(folder, origin, name_of(folder), _model_folder_size(folder), root))
            return
        children = _children(folder)
        has_index = {p.name for p in children} & {n for n in HUB_WEIGHT_NAMES if n.endswith(".index.json")}
        subfolders = []
        for p in children:
            if _is_dir(p):
                subfolders.append(p)
            elif _is_weights_name(p) and _is_file(p):
                if has_index and p.name.startswith(_SHARD_PREFIXES):
                    continue  # a shard: its index file is the entry
                size = _index_size(p) if p.name.endswith(".index.json") else _file_size(p)
                out.append(Entry(p, origin, name_of(p), size, root))
        if depth < max_depth:
            for p in subfolders:
                visit(p, depth + 1)

    visit(root, 0)
    return out


def _scan_hf_cache(cache: Path) -> list[Entry]:
    """The model repos ``huggingface_hub`` finds in its cache (corrupted repos are left out)."""
    if not _is_dir(cache):
        return []
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir(cache)
    except Exception:  # CacheNotFound, a permission error, a cache layout it rejects
        return []
    repos = sorted((r for r in info.repos if r.repo_type == "model"), key=lambda r: r.repo_id.lower())
    return [Entry(Path(r.repo_path), "hf-cache", r.repo_id, int(r.size_on_disk), cache) for r in repos]


def find_checkpoints(
    demo_dir: Optional[os.PathLike[str] | str],
    extra_folders: Iterable[os.PathLike[str] | str] = (),
    problems: Optional[list[Problem]] = None,
) -> list[Entry]:
    """Every checkpoint the browser lists, grouped by origin in this order: demo models, Hugging Face
    cache, torch hub cache, then each of ``extra_folders`` (the user's, searched :data:`MAX_DEPTH`
    folders deep).

    Missing or unreadable caches and demo folder are skipped silently (most users have only some of
    them); a user folder that is gone or unreadable is appended to ``problems`` when it is given, so
    the GUI can say so instead of showing an empty group.
    """
    entries: list[Entry] = []
    if demo_dir is not None and _is_dir(Path(demo_dir)):
        entries += _scan_folder(Path(demo_dir), "demo", 0)
    entries += _scan_hf_cache(hf_hub_cache())
    hub = torch_hub_checkpoints()
    if _is_dir(hub):
        entries += _scan_folder(hub, "torch-hub", 0)
    for folder in extra_folders:
        root = Path(folder).expanduser()
        message = None
        if not root.exists():
            message = "folder not found"
        elif not _is_dir(root):
            message = "not a folder"
        elif not os.access(root, os.R_OK | os.X_OK):
            message = "cannot read this folder (permission denied)"
        if message is not None:
            if problems is not None:
                problems.append(Problem(root, message))
            continue
        entries += _scan_folder(root, "folder", MAX_DEPTH)
    return entries


# ---------------------------------------------------------------------------------------------
# Describing: the loader's own detection over tensor shapes


_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _meta(shape: Iterable[int], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(tuple(int(s) for s in shape), dtype=dtype, device="meta")


def _safetensors_shapes(p: Path) -> dict[str, torch.Tensor]:
    """Meta tensors with the shapes and dtypes the header lists; no tensor data is read."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(p), framework="pt", device="cpu") as f:
        for k in f.keys():
            s = f.get_slice(k)
            out[k] = _meta(s.get_shape(), _ST_DTYPES.get(s.get_dtype(), torch.float32))
    return out


def _torch_zip_shapes(p: Path) -> dict[str, torch.Tensor]:
    """A zip ``.pth`` memory-mapped with torch's safe unpickler (tensors and plain containers only),
    unwrapped as ``io.read_state_dict`` unwraps it, then turned into meta tensors.

    Unlike the loader this does not allow ``argparse.Namespace`` (training arguments): torch keeps
    the allowed extras in one process-wide set that ``safe_globals`` adds to and removes from, so
    entering it here, on browser threads, could withdraw it from a load running elsewhere. A file
    that needs it fails here and is read by the loader's own reader instead (see _shape_state_dict).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        obj = torch.load(str(p), map_location="cpu", weights_only=True, mmap=True)
    sd = unwrap_state_dict(obj, p)
    return {k: _meta(v.shape, v.dtype) for k, v in sd.items()}


def _shape_state_dict(p: Path) -> dict[str, torch.Tensor]:
    """The weights at ``p`` as meta tensors, reading only headers where the format allows it.

    Falls back to the loader's full read (:func:`read_state_dict`, whose messages the user would see
    on opening) for formats that cannot be inspected lazily and for files the lazy reader rejects,
    as long as the file is small; a large file that cannot be inspected raises CheckpointError.
    """
    try:
        if p.name.endswith(".index.json"):
            weight_map = json.loads(p.read_text(encoding="utf-8"))["weight_map"]
            out: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                out.update(_shape_state_dict(p.parent / shard))
            return out
        kind = sniff_format(p)
        if kind == "safetensors":
            return _safetensors_shapes(p)
        if kind == "torch-zip":
            return _torch_zip_shapes(p)
    except CheckpointError:
        raise
    except Exception:
        pass  # the full read below says what is wrong, in the loader's words
    size = _index_size(p) if p.name.endswith(".index.json") else _file_size(p)
    if size > MAX_FULL_READ:
        raise CheckpointError(
            p, f"this file ({human_size(size)}) cannot be inspected without reading it whole; "
            "open it to load it"
        )
    # One at a time: it bounds memory, and two browser threads never race on torch's safe_globals set.
    with _FULL_READ_LOCK:
        sd = read_state_dict(p)
    return {k: _meta(v.shape, v.dtype) for k, v in sd.items()}


_VIT_SIZES = {192: "Ti", 384: "S", 768: "B", 1024: "L", 1280: "H", 1408: "g", 1536: "g", 1664: "G"}
# (embed_dim, depths) of the named Swin sizes (Liu et al. 2021, Table 1).
_SWIN_SIZES = {(96, (2, 2, 6, 2)): "T", (96, (2, 2, 18, 2)): "S", (128, (2, 2, 18, 2)): "B",
               (192, (2, 2, 18, 2)): "L"}


def _px(size: tuple[int, int]) -> str:
    h, w = size
    return f"{h} px" if h == w else f"{h}×{w} px"


def architecture_text(info: ModelInfo) -> str:
    """A short line naming the architecture: 'ViT-S/16 · 12 blocks · 6 heads · 224 px',
    'Swin v2-T · depths 2-2-6-2 · window 8 · 256 px'."""
    c = info.config
    size = info.preprocess.input_size
    if isinstance(c, ViTConfig):
        letter = _VIT_SIZES.get(c.embed_dim)
        head = f"ViT-{letter}/{c.patch_size}" if letter else f"ViT/{c.patch_size} · {c.embed_dim} dim"
        parts = [head, f"{c.depth} blocks", f"{c.num_heads} heads", _px(size)]
        if c.distilled:
            parts.append("distilled")
        if c.num_reg_tokens:
            parts.append(f"{c.num_reg_tokens} registers")
        if c.pos_embed == "none":
            parts.append("no position embedding")
        return " · ".join(parts)
    if isinstance(c, SwinConfig):
        letter = _SWIN_SIZES.get((c.embed_dim, tuple(c.depths)))
        head = f"Swin v{c.version}" + (f"-{letter}" if letter else "")
        windows = sorted(set(c.window_size), key=c.window_size.index)
        window = f"window {windows[0]}" if len(windows) == 1 else "windows " + "-".join(map(str, c.window_size))
        parts = [head, "depths " + "-".join(map(str, c.depths)), window, _px(size)]
        if not letter:
            parts.insert(1, f"{c.embed_dim} dim")
        return " · ".join(parts)
    return type(c).__name__


def _one_line(e: BaseException) -> str:
    """A checkpoint's problem as the browser lists it: the first line, the class named unless it is a
    CheckpointError (whose ``problem`` is already said for the user)."""
    if isinstance(e, CheckpointError):
        return one_line(e.problem, first_line=True) or type(e).__name__
    return one_line(e, with_type=True, first_line=True)


def describe(entry: Entry | os.PathLike[str] | str) -> Description:
    """Family and architecture of a checkpoint as ``load_checkpoint`` would detect them, from its
    configs and tensor shapes, without reading the weights or building the network. Never raises:
    a file that cannot be loaded gives a Description whose ``error`` says why (one line)."""
    path = entry.path if isinstance(entry, Entry) else Path(entry)
    try:
        files = discover(path)
        config: Optional[Mapping[str, Any]] = files.config
        if is_transformers_config(config) and config is not None:
            from attnviz.checkpoints.convert_hf import SUPPORTED_MODEL_TYPES

            if config.get("model_type") not in SUPPORTED_MODEL_TYPES:
                # An LLM or another vision model in the cache: say so without touching its weights.
                # convert refuses it from the config alone, in the loader's words.
                convert({}, config, files.preprocessor, files.source, None, files.name)
        sd = _shape_state_dict(files.weights)
        info, native = convert(sd, config, files.preprocessor, files.source, None, files.name)
    except CheckpointError as e:
        return Description(None, "", None, _one_line(e))
    except KeyError as e:
        return Description(None, "", None, f"the weights lack the tensor {e} that this architecture needs")
    except Exception as e:  # a converter tripping over something unexpected: still a bad file, not a crash
        return Description(None, "", None, f"the weights could not be interpreted ({_one_line(e)})")
    architecture = architecture_text(info)
    try:
        check_shapes(info.config, native, files.source)
    except CheckpointError as e:  # detected, but the tensors disagree with it: show both
        return Description(info.family, architecture, info.source_format, _one_line(e))
    except Exception as e:
        return Description(info.family, architecture, info.source_format, _one_line(e))
    return Description(info.family, architecture, info.source_format, None)


def human_size(n: int) -> str:
    """Bytes in decimal units with one decimal, as file managers show them: '86.6 MB'."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        value /= 1000.0
        if value < 999.95 or unit == "PB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


__all__ = [
    "Description",
    "Entry",
    "Problem",
    "architecture_text",
    "cache_roots",
    "describe",
    "find_checkpoints",
    "hf_hub_cache",
    "human_size",
    "torch_hub_checkpoints",
]
