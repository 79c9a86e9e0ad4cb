"""What one instrumented forward pass hands to the rest of attnviz.

A Capture is plain data (tensors + geometry), no module references, so analysis, the session and the
exporters can use it without knowing which network produced it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import torch


@dataclass
class BlockCapture:
    """One attention block's probabilities and the geometry needed to draw them."""

    index: int  # forward order, counted across Swin stages, 0-based
    # Softmax probabilities, float32. ViT: (B, heads, N, N) over prefix + patch tokens.
    # Swin: (B, windows, heads, M*M, M*M), windows in row-major order over the (shifted) padded grid.
    attn: torch.Tensor
    num_heads: int
    stage: int = 0  # Swin stage (0-based); 0 for ViT
    # Token grid this block attends over (ViT: patch grid; Swin: the stage's resolution).
    grid_size: tuple[int, int] = (0, 0)
    # Side of one token of this block in input pixels (ViT: patch size; Swin: patch_size * 2**stage).
    token_px: int = 0
    window_size: Optional[int] = None  # Swin: M
    shift_size: Optional[int] = None  # Swin: cyclic shift applied before partitioning (0 = none)
    padded_size: Optional[tuple[int, int]] = None  # Swin: grid after padding to a multiple of M
    # Swin shifted blocks: additive mask (windows, M*M, M*M) with 0 and -100 as the network used it.
    attn_mask: Optional[torch.Tensor] = None
    # Swin: the position bias added to the logits per head, (heads, M*M, M*M)
    # (v1: table[index]; v2: 16*sigmoid(cpb_mlp(log-spaced coords))).
    bias: Optional[torch.Tensor] = None


@dataclass
class Capture:
    """Logits (when the network has a classifier) and every block's attention, in forward order."""

    family: Literal["vit", "swin"]
    logits: Optional[torch.Tensor]  # (B, classes), float32 on the CPU; None without a classifier
    blocks: list[BlockCapture] = field(default_factory=list)
    img_size: tuple[int, int] = (0, 0)  # (H, W) of the input actually fed
    patch_size: int = 0
    grid_size: tuple[int, int] = (0, 0)  # patch grid of the input (Swin: first stage)
    num_prefix_tokens: int = 0  # ViT: class/distillation/register tokens before the patches
    prefix_names: list[str] = field(default_factory=list)  # e.g. ['cls', 'dist', 'reg0', ...]

    @property
    def has_logits(self) -> bool:
        return self.logits is not None

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)
