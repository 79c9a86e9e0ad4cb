"""Vision Transformer family, instrumented: ViT (Dosovitskiy et al. 2021), DeiT (Touvron et al. 2021),
DINO / DINOv2 backbones, register tokens (Darcet et al. 2024).

Module and parameter names follow timm's ``VisionTransformer`` so timm state dicts load as they are.
Tokens are ordered [cls, dist, reg..., patches (row-major)]. ``capture()`` returns every block's
attention probabilities; ``forward()`` is the plain fast path.
"""
from __future__ import annotations

from functools import partial
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Recorder, attend, check_qkv_block
from .capture import BlockCapture, Capture
from .config import ViTConfig


class LayerScale(nn.Module):
    """Per-channel learned scale on a residual branch (CaiT / DINOv2)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention: softmax(Q·Kᵀ/√d)·V over all tokens."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, record=None) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)  # (B, N, 3, heads, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 × (B, heads, N, hd)
        x = attend(lambda: (q * self.scale) @ k.transpose(-2, -1),  # (B, heads, N, N)
                   v, lambda: F.scaled_dot_product_attention(q, k, v), record,
                   qk=(q, k, self.scale, False))  # (B, heads, N, hd)
        x = x.transpose(1, 2).reshape(B, N, C)  # (B, N, C)
        return self.proj(x)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)), optional layer scale."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads, cfg.qkv_bias)
        self.ls1 = LayerScale(dim) if cfg.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, cfg.mlp_hidden_dim)
        self.ls2 = LayerScale(dim) if cfg.layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor, record=None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), record))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens by a strided convolution (pixels beyond the last whole patch are dropped)."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size,
                              bias=cfg.patch_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # (B, gh, gw, C)


def resample_pos_embed(
    pos: torch.Tensor, new_grid: tuple[int, int], old_grid: tuple[int, int], num_prefix: int,
    mode: str = "bicubic", antialias: bool = True,
) -> torch.Tensor:
    """Resample the patch part of a (1, prefix + gh*gw, C) position embedding to another grid.

    Same as timm: the patch embeddings are treated as a (C, gh, gw) image and resampled (bicubic with
    antialias by default) in float32; the prefix tokens' embeddings are kept as they are.
    """
    if tuple(new_grid) == tuple(old_grid):
        return pos
    prefix, grid = pos[:, :num_prefix], pos[:, num_prefix:]
    C = pos.shape[-1]
    img = grid.float().reshape(1, old_grid[0], old_grid[1], C).permute(0, 3, 1, 2)  # (1, C, gh, gw)
    img = F.interpolate(img, size=new_grid, mode=mode, antialias=antialias)  # (1, C, gh', gw')
    grid = img.permute(0, 2, 3, 1).reshape(1, -1, C).to(pos.dtype)  # (1, gh'*gw', C)
    return torch.cat([prefix, grid], dim=1)


class VisionTransformer(nn.Module):
    family = "vit"

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.config = cfg
        C = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C)) if cfg.class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, C)) if cfg.distilled else None
        self.reg_token = nn.Parameter(torch.zeros(1, cfg.num_reg_tokens, C)) if cfg.num_reg_tokens else None
        if cfg.pos_embed == "learn":
            gh, gw = cfg.grid_size
            n = gh * gw + (0 if cfg.no_embed_class else cfg.num_prefix_tokens)
            self.pos_embed = nn.Parameter(torch.randn(1, n, C) * 0.02)
        else:
            self.pos_embed = None
        self.norm_pre = nn.LayerNorm(C, eps=cfg.norm_eps) if cfg.pre_norm else nn.Identity()
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.norm = nn.Identity() if cfg.fc_norm else nn.LayerNorm(C, eps=cfg.norm_eps)
        self.fc_norm = nn.LayerNorm(C, eps=cfg.norm_eps) if cfg.fc_norm else nn.Identity()
        self.head = nn.Linear(C, cfg.num_classes) if cfg.num_classes else None
        self.head_dist = nn.Linear(C, cfg.num_classes) if cfg.num_classes and cfg.distilled else None

    @property
    def num_prefix_tokens(self) -> int:
        return self.config.num_prefix_tokens

    def prefix_names(self) -> list[str]:
        names = ["cls"] if self.cls_token is not None else []
        names += ["dist"] if self.dist_token is not None else []
        return names + [f"reg{i}" for i in range(self.config.num_reg_tokens)]

    def pos_embed_for(self, grid: tuple[int, int]) -> Optional[torch.Tensor]:
        """The position embedding as used for a patch grid of this size (resampled like timm)."""
        if self.pos_embed is None:
            return None
        cfg = self.config
        n_prefix = 0 if cfg.no_embed_class else cfg.num_prefix_tokens
        return resample_pos_embed(self.pos_embed, grid, cfg.grid_size, n_prefix,
                                  cfg.pos_interp, cfg.pos_interp_antialias)

    def embed(self, x: torch.Tensor, use_pos_embed: bool = True) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image (B, 3, H, W) -> tokens (B, prefix + gh*gw, C) and the patch grid (gh, gw).

        The position embedding is added unless ``use_pos_embed`` is False: the permutation lesson runs
        the same weights without it, per call, so no switch on the network can be left set.
        """
        x = self.patch_embed(x)  # (B, gh, gw, C)
        B, gh, gw, C = x.shape
        x = x.reshape(B, gh * gw, C)  # (B, gh*gw, C)
        prefix = [t.expand(B, -1, -1) for t in (self.cls_token, self.dist_token, self.reg_token) if t is not None]
        pos = self.pos_embed_for((gh, gw)) if use_pos_embed else None
        if pos is not None and self.config.no_embed_class:
            x = x + pos
            pos = None
        x = torch.cat(prefix + [x], dim=1) if prefix else x  # (B, prefix + gh*gw, C)
        if pos is not None:
            x = x + pos
        return x, (gh, gw)

    def _run(self, x: torch.Tensor, rec: Optional[Recorder], use_pos_embed: bool = True) -> torch.Tensor:
        x, grid = self.embed(x, use_pos_embed)
        x = self.norm_pre(x)
        cfg = self.config
        record = None if rec is None else partial(rec.add, num_heads=cfg.num_heads, grid_size=grid,
                                                  token_px=cfg.patch_size)
        for blk in self.blocks:
            x = blk(x, record)
            if rec is not None:
                rec.add_output(x)
        x = self.norm(x)
        return self.head_out(x)

    def head_out(self, x: torch.Tensor) -> torch.Tensor:
        """Final tokens (B, N, C) -> logits (B, classes), or pooled features (B, C) without a classifier."""
        cfg = self.config
        if cfg.distilled:
            cls, dist = x[:, 0], x[:, 1]
            if self.head is None:
                return (cls + dist) / 2
            return (self.head(cls) + self.head_dist(dist)) / 2
        if cfg.global_pool == "avg":
            x = x[:, cfg.num_prefix_tokens:].mean(dim=1)
        else:
            x = x[:, 0]
        x = self.fc_norm(x)
        return self.head(x) if self.head is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None)

    def capture_block(self, x: torch.Tensor, block: int, use_pos_embed: bool = True) -> BlockCapture:
        """One block's capture with its q, k, v (``.qkv``), from a pass that records no other block."""
        check_qkv_block(block, len(self.blocks))
        rec = Recorder(qkv_block=block, only_qkv_block=True)
        self._run(x, rec, use_pos_embed)
        return rec.blocks[0]

    def capture(self, x: torch.Tensor, keep_graph: bool = False, use_pos_embed: bool = True,
                qkv_block: Optional[int] = None) -> Capture:
        """Forward with every block's attention recorded (see Recorder for keep_graph).

        ``use_pos_embed=False`` leaves the absolute position embedding out of this one pass (the
        permutation-equivariance lesson); a model without one runs the same either way.
        ``qkv_block=i`` also keeps block i's q, k, v (``blocks[i].qkv``; the attention anatomy).
        """
        check_qkv_block(qkv_block, len(self.blocks))
        rec = Recorder(keep_graph, qkv_block)
        out = self._run(x, rec, use_pos_embed)
        logits = None
        if self.head is not None:
            logits = out if keep_graph else out.detach().to("cpu", torch.float32)
        gh, gw = rec.blocks[0].grid_size if rec.blocks else (0, 0)
        return Capture(
            family="vit", logits=logits, blocks=rec.blocks, img_size=(x.shape[-2], x.shape[-1]),
            patch_size=self.config.patch_size, grid_size=(gh, gw),
            num_prefix_tokens=self.num_prefix_tokens, prefix_names=self.prefix_names(),
        )
