"""The one entry point: a user's path in, (ModelInfo, native state dict) out.

discover (which files) -> read (tensors, safely) -> detect (which source and family) -> convert
(into timm's layout + a config) -> check (every tensor the config implies, with its shape).
"""
from __future__ import annotations

import os

import torch

from attnviz.checkpoints.convert_timm import check_shapes, normalize_img_size
from attnviz.checkpoints.detect import convert
from attnviz.checkpoints.discover import discover
from attnviz.checkpoints.errors import CheckpointError
from attnviz.checkpoints.io import read_state_dict
from attnviz.nets.config import ModelInfo, SwinConfig


def load_checkpoint(
    path: str | os.PathLike[str],
    img_size: tuple[int, int] | int | None = None,
) -> tuple[ModelInfo, dict[str, torch.Tensor]]:
    """Load a ViT / DeiT / DINO / DINOv2 / Swin v1/v2 checkpoint from a file or folder.

    ``path``: a weights file, a model folder (transformers or timm hub format, a Hugging Face cache
    entry ``models--org--name``) or its config.json. ``img_size``: run the model at this input size
    (H, W) or square side; Swin is built for it, ViT resamples its position embedding (its
    ``config.img_size`` stays the size the embedding was stored at).

    Returns the model description and a state dict in attnviz's native (timm 1.0) layout that
    a network built from ``info.config`` loads with ``strict=True``. Raises
    :class:`CheckpointError` with a message naming the file for anything it cannot load.
    """
    size = normalize_img_size(img_size, path)
    files = discover(path)
    sd = read_state_dict(files.weights)
    try:
        info, native = convert(sd, files.config, files.preprocessor, files.source, size, files.name)
    except CheckpointError:
        raise
    except KeyError as e:
        raise CheckpointError(files.source, f"the weights lack the tensor {e} that this architecture needs") from e
    except (ValueError, IndexError, TypeError, AttributeError, RuntimeError) as e:
        raise CheckpointError(files.source, f"the weights could not be interpreted ({type(e).__name__}: {e})") from e
    if size is not None:
        _apply_img_size(info, size)
    info.path = os.fspath(files.source)
    info.name = info.name or files.name
    _check_input_size(info, files.source)
    check_shapes(info.config, native, files.source)
    return info, native


def _apply_img_size(info: ModelInfo, size: tuple[int, int]) -> None:
    """Run at ``size``: Swin's geometry depends on it, ViT only resamples its position embedding."""
    if isinstance(info.config, SwinConfig):
        info.config.img_size = size
    info.preprocess.input_size = size


def _check_input_size(info: ModelInfo, path: os.PathLike[str] | str) -> None:
    patch = info.config.patch_size
    h, w = info.preprocess.input_size
    if h % patch or w % patch or h <= 0 or w <= 0:
        raise CheckpointError(path, f"input size {h}x{w} is not a multiple of the patch size {patch}")


__all__ = ["load_checkpoint", "ModelInfo", "CheckpointError"]
