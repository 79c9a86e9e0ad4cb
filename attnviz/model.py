"""A loaded, ready-to-run model: the network on its device plus what the files said about it.

This is the one call the GUI, the CLI and the tests use to go from a path on disk to a network:
checkpoints/ finds and converts the weights, nets/ builds the instrumented network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .checkpoints import CheckpointError, load_checkpoint
from .nets import AttnNet, Capture, ModelInfo, build_model
from .nets.device import pick_device, pick_dtype


@dataclass
class LoadedModel:
    net: AttnNet
    info: ModelInfo
    device: torch.device
    dtype: torch.dtype

    @property
    def family(self) -> str:
        return self.info.family

    @property
    def class_names(self) -> Optional[list[str]]:
        return self.info.class_names

    def capture(self, x: torch.Tensor, keep_graph: bool = False, use_pos_embed: bool = True) -> Capture:
        """Run one preprocessed image (3, H, W) or batch (B, 3, H, W) and capture every block.

        ``use_pos_embed=False`` runs a ViT without its absolute position embedding (the scramble
        lesson); a Swin network refuses it with a ValueError, having none to leave out.
        """
        if x.ndim == 3:
            x = x.unsqueeze(0)  # (1, 3, H, W)
        x = x.to(self.device, self.dtype)
        if keep_graph:
            return self.net.capture(x, keep_graph=True, use_pos_embed=use_pos_embed)
        with torch.inference_mode():
            return self.net.capture(x, use_pos_embed=use_pos_embed)


def load_model(
    path: str,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    img_size: Optional[int | tuple[int, int]] = None,
) -> LoadedModel:
    """Load a checkpoint file or folder onto a device ('auto' = CUDA, then MPS, then CPU).

    Raises CheckpointError (bad files) or ValueError (bad device/dtype) with a one-line message.
    """
    dev = pick_device(device)
    dt = pick_dtype(dtype)
    info, state_dict = load_checkpoint(path, img_size=img_size)
    try:
        net = build_model(info, state_dict, device=dev, dtype=dt)
    except ValueError as e:
        raise CheckpointError(path, str(e)) from None
    return LoadedModel(net=net, info=info, device=dev, dtype=dt)
