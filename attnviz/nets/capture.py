"""What one instrumented forward pass hands to the rest of attnviz.

A Capture is plain data (tensors + geometry), no module references, so analysis, the session and the
exporters can use it without knowing which network produced it. Block captures are typed per family:
a ViT block is a :class:`BlockCapture`; a Swin block is a :class:`SwinBlockCapture`, which adds the
window geometry the block ran, the shift mask and position bias it added to its logits and (v2) the
temperature it multiplied its cosine similarities by. Analysis tells them apart with ``isinstance``
and reads what the network applied instead of recomputing it beside the network.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import torch

from .windows import BlockGeometry


@dataclass
class BlockQKV:
    """Queries, keys and values of one block, as its attention used them (float32 on the CPU).

    Captured only for the block asked for (``capture(..., qkv_block=i)``): the attention anatomy
    recomputes that block's logits from them. ViT: each (B, heads, N, head_dim) over prefix + patch
    tokens; Swin: each (B, windows, heads, M*M, head_dim), windows and slots as in ``attn``.
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    # What the block multiplies q·kᵀ by: ViT and Swin v1 head_dim ** -0.5; Swin v2 1.0 (its scores are
    # cosines times the per-head temperature in SwinBlockCapture.logit_scale).
    scale: float
    cosine: bool = False  # Swin v2: the scores are cos(q, k), not dot products


@dataclass
class BlockCapture:
    """One attention block's probabilities and the token grid they are drawn on (ViT family)."""

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
    # L2 norm of every token of the block's OUTPUT (the residual stream after the block), float32 on
    # the CPU. ViT: (B, N) over prefix + patch tokens in token order; Swin: (B, H*W) row-major over the
    # stage grid (un-shifted, un-padded). High-norm outlier tokens are what register tokens absorb.
    token_norms: Optional[torch.Tensor] = None
    # q, k, v of this block when the capture was asked for them (qkv_block); None for every other block.
    qkv: Optional[BlockQKV] = None

    @property
    def attn_mask(self) -> Optional[torch.Tensor]:
        """None: a ViT block adds no mask to its logits (a SwinBlockCapture holds the one it added).

        Kept on the base class so exporters that write "the mask, where there is one" need no family
        test; analysis code asks ``isinstance(block, SwinBlockCapture)`` instead.
        """
        return None


@dataclass(kw_only=True)
class SwinBlockCapture(BlockCapture):
    """One Swin window-attention block: probabilities plus everything the block added to its logits.

    ``grid_size`` and ``token_px`` repeat ``geometry``'s (checked equal), so code written for any block
    capture keeps reading them from the block.
    """

    geometry: BlockGeometry  # windows as the block ran them (effective window, shift, padding)
    # Position bias added to every window's logits, per head: (heads, M*M, M*M), float32 on the CPU.
    # v1: the learned table looked up by relative offset; v2: 16*sigmoid(cpb_mlp(log-spaced offsets)).
    bias: torch.Tensor
    # Shifted blocks: the additive mask (windows, M*M, M*M) with 0 and -100 as the block added it;
    # None for an unshifted block.
    attn_mask: Optional[torch.Tensor] = None
    # Swin v2: per-head temperature τ = exp(min(logit_scale, log 100)) the cosine similarities were
    # multiplied by, (heads,) float32 on the CPU; None for v1 (scaled dot product, no temperature).
    logit_scale: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        g = self.geometry
        if tuple(self.grid_size) != tuple(g.grid_size) or self.token_px != g.token_px:
            raise ValueError(
                f"block grid {tuple(self.grid_size)} / token_px {self.token_px} differ from its geometry's "
                f"{g.grid_size} / {g.token_px}"
            )
        M2 = g.window_size**2
        if tuple(self.bias.shape) != (self.num_heads, M2, M2):
            raise ValueError(f"position bias must be ({self.num_heads}, {M2}, {M2}), got {tuple(self.bias.shape)}")
        if self.attn_mask is not None and tuple(self.attn_mask.shape) != (g.num_windows, M2, M2):
            raise ValueError(f"shift mask must be ({g.num_windows}, {M2}, {M2}), got {tuple(self.attn_mask.shape)}")
        if self.logit_scale is not None and tuple(self.logit_scale.shape) != (self.num_heads,):
            raise ValueError(f"logit scale must be ({self.num_heads},), got {tuple(self.logit_scale.shape)}")

    @property
    def window_size(self) -> int:
        """M the block used (smaller than configured when the stage map is smaller than the window)."""
        return self.geometry.window_size

    @property
    def shift_size(self) -> int:
        """Cyclic shift applied before partitioning (0 = regular windows)."""
        return self.geometry.shift_size

    @property
    def padded_size(self) -> tuple[int, int]:
        """(Hp, Wp): the stage grid after padding bottom/right to a multiple of M."""
        return self.geometry.padded_size


@dataclass
class Capture:
    """Logits (when the network has a classifier) and every block's attention, in forward order."""

    family: Literal["vit", "swin"]
    logits: Optional[torch.Tensor]  # (B, classes), float32 on the CPU; None without a classifier
    blocks: list[BlockCapture] = field(default_factory=list)  # Swin: every entry is a SwinBlockCapture
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
