"""Build an instrumented network from a config and a native (timm-layout) state dict."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .capture import BlockCapture
from .config import ModelInfo, SwinConfig, ViTConfig
from .swin import SwinTransformer
from .vit import VisionTransformer

AttnNet = VisionTransformer | SwinTransformer


def create_net(config: ViTConfig | SwinConfig) -> AttnNet:
    """An untrained network for this config (the demo-model trainer starts here)."""
    if isinstance(config, ViTConfig):
        return VisionTransformer(config)
    if isinstance(config, SwinConfig):
        return SwinTransformer(config)
    raise TypeError(f"unsupported config {type(config).__name__}")


def build_model(
    info: ModelInfo,
    state_dict: dict[str, torch.Tensor],
    device: Optional[torch.device | str] = None,
    dtype: Optional[torch.dtype] = None,
) -> AttnNet:
    """Network in eval mode with the weights loaded strictly (every tensor used, every shape equal)."""
    net = create_net(info.config)
    missing, unexpected = net.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(
            "weights do not match the detected architecture: "
            + (f"missing {_few(missing)}" if missing else "")
            + ("; " if missing and unexpected else "")
            + (f"unexpected {_few(unexpected)}" if unexpected else "")
        )
    net.eval()
    if device is not None or dtype is not None:
        net.to(device=device, dtype=dtype)
    return net


def capture_qkv(net: AttnNet, x: torch.Tensor, block: int, use_pos_embed: bool = True) -> BlockCapture:
    """``block``'s capture with its q, k, v, from one inference pass of ``x`` (3, H, W) or (B, 3, H, W).

    The attention anatomy asks for this on demand, for the one block it shows: ``.qkv`` holds them
    (float32 on the CPU) and ``.attn`` that block's attention; the pass records no other block (a
    full ``capture(x, qkv_block=block)`` gives the same block among all the others). The input is
    moved to the network's device and dtype; a Swin network refuses ``use_pos_embed=False``.
    """
    if x.ndim == 3:
        x = x.unsqueeze(0)  # (1, 3, H, W)
    p = next(net.parameters())
    with torch.inference_mode():
        return net.capture_block(x.to(p.device, p.dtype), block, use_pos_embed)


def _few(keys: list[str], n: int = 4) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
