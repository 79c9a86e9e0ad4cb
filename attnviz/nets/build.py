"""Build an instrumented network from a config and a native (timm-layout) state dict."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Optional

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


# The torch.nn.init functions modules call from reset_parameters(); a network about to receive a full
# state dict does not need them (for ViT-B/16 they cost ~0.3 s of random numbers that are overwritten).
_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_", "xavier_uniform_",
                   "xavier_normal_", "kaiming_uniform_", "kaiming_normal_")
_init_lock = threading.Lock()


@contextmanager
def _weights_left_uninitialised() -> Iterator[None]:
    """Modules built inside get their parameters allocated, not initialised (torch.nn.init's functions
    do nothing), like transformers' ``no_init_weights``. Only for a network whose every parameter is then
    loaded strictly; serialised by a lock, as it swaps module-level functions."""
    with _init_lock:
        saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}
        try:
            for name in _INIT_FUNCTIONS:
                setattr(nn.init, name, lambda tensor, *a, **k: tensor)
            yield
        finally:
            for name, fn in saved.items():
                setattr(nn.init, name, fn)


def build_model(
    info: ModelInfo,
    state_dict: dict[str, torch.Tensor],
    device: Optional[torch.device | str] = None,
    dtype: Optional[torch.dtype] = None,
) -> AttnNet:
    """Network in eval mode with the weights loaded strictly (every tensor used, every shape equal).

    The network is built without random initialisation: the strict load below overwrites every
    parameter (a missing one is an error, so no uninitialised value survives). The network takes
    ``state_dict``'s tensors as its own (cast to its dtype where they differ): the caller hands them over.
    """
    with _weights_left_uninitialised():
        net = create_net(info.config)
    own = net.state_dict()
    # assign=True: no second copy of the weights (~0.2 s for ViT-B/16)
    weights = {k: v.to(own[k].dtype).contiguous() if k in own else v for k, v in state_dict.items()}
    missing, unexpected = net.load_state_dict(weights, strict=False, assign=True)
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


def capture_bytes_per_image(net: AttnNet, img_size: tuple[int, int]) -> int:
    """Bytes of attention probabilities (float32) that a capture of one ``img_size`` (H, W) input holds,
    every block together: what a batch costs in CPU memory (ViT-L/14 at 518 px: 2.9 GB an image).

    ViT: heads · N² per block, N the prefix plus patch tokens. Swin: heads · (windows · M²) · M² per block,
    windows · M² being the stage grid padded to a multiple of the window the block uses.
    """
    from .windows import effective_window, padded_size

    cfg = net.config
    H, W = img_size
    if isinstance(cfg, ViTConfig):
        n = net.num_prefix_tokens + (H // cfg.patch_size) * (W // cfg.patch_size)
        return 4 * cfg.depth * cfg.num_heads * n * n
    total = 0
    res = (H // cfg.patch_size, W // cfg.patch_size)  # (gh, gw) after the patch embedding
    for stage, (depth, heads, window) in enumerate(zip(cfg.depths, cfg.num_heads, cfg.window_size)):
        if stage > 0:
            res = ((res[0] + 1) // 2, (res[1] + 1) // 2)  # patch merging pads an odd side, then halves
        M, _shift = effective_window(res, window, 0)
        hp, wp = padded_size(res, M)
        total += 4 * depth * heads * hp * wp * M * M
    return total


def _few(keys: list[str], n: int = 4) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
