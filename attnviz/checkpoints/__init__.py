"""Checkpoint loading: find the files, read tensors without running code, convert foreign layouts.

``load_checkpoint(path)`` is the entry point; it returns a :class:`~attnviz.nets.config.ModelInfo`
and a state dict in attnviz's native layout, timm 1.0's. Sources: timm (files and hub folders),
transformers (``convert_hf``), original releases (DeiT, DINO, DINOv2, Swin v1/v2). Every failure
is a :class:`CheckpointError` whose message names the file and the problem.
"""
from attnviz.checkpoints.convert_timm import check_shapes, native_shapes
from attnviz.checkpoints.discover import CheckpointFiles, discover
from attnviz.checkpoints.errors import CheckpointError
from attnviz.checkpoints.io import read_state_dict
from attnviz.checkpoints.load import load_checkpoint

__all__ = [
    "CheckpointError",
    "CheckpointFiles",
    "check_shapes",
    "discover",
    "load_checkpoint",
    "native_shapes",
    "read_state_dict",
]
