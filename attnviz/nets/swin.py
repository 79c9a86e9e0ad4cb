"""Swin Transformer v1 (Liu et al., ICCV 2021) and v2 (Liu et al., CVPR 2022), instrumented.

v1: 4×4 patches, stages joined by 2×2 patch merging, attention inside M×M windows, every other block
shifted by M/2 (cyclic roll + additive mask), a learned relative position bias table.
v2: post-norm residuals, scaled cosine attention with a learned, clamped logit scale, and a
continuous position bias from a small MLP over log-spaced relative coordinates.
Module and parameter names follow timm's SwinTransformer / SwinTransformerV2, feature maps are
(B, H, W, C); the window geometry lives in :mod:`attnviz.nets.windows`.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Recorder, attend, check_qkv_block
from .capture import Capture, SwinBlockCapture
from .config import SwinConfig
from .vit import Mlp
from .windows import (block_geometry, log_spaced_coords, relative_position_index, shift_attn_mask,
                      window_partition, window_reverse)

LOGIT_SCALE_MAX = math.log(1.0 / 0.01)  # v2 clamps the learned temperature at 100


class WindowAttention(nn.Module):
    """v1 window attention: softmax(Q·Kᵀ/√d + B_rel + mask)·V inside each window."""

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        M = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * M - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self, M: int) -> torch.Tensor:
        """(heads, M², M²) bias added to the logits, looked up from the table.

        A window smaller than the trained one (a stage map smaller than M) uses the central part of the
        table: the offsets it can see, with their learned values. (timm instead resamples the table.)
        """
        table = self.relative_position_bias_table  # ((2T-1)², heads)
        T = (math.isqrt(table.shape[0]) + 1) // 2
        if M < T:
            side = 2 * T - 1
            table = table.view(side, side, -1)[T - M:T + M - 1, T - M:T + M - 1].reshape(-1, table.shape[1])
        elif M > T:
            raise ValueError(f"window {M} is larger than the {T}×{T} window the bias table was trained for")
        idx = relative_position_index(M).to(table.device)
        bias = table[idx.view(-1)].view(M * M, M * M, -1)  # (M², M², heads)
        return bias.permute(2, 0, 1)  # (heads, M², M²)

    def qkv_split(self, x: torch.Tensor):
        Bw, N, C = x.shape
        qkv = self.qkv(x).reshape(Bw, N, 3, self.num_heads, -1)  # (B*nW, N, 3, heads, hd)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 × (B*nW, heads, N, hd)

    def logits(self, q, k, bias):
        return (q * self.scale) @ k.transpose(-2, -1) + bias  # (B*nW, heads, N, N)

    def fused(self, q, k, v, bias):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)


class WindowAttentionV2(nn.Module):
    """v2 window attention: softmax(cos(Q, K)·τ + 16·σ(CPB) + mask)·V inside each window."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, pretrained_window_size: int):
        super().__init__()
        self.num_heads = num_heads
        self.pretrained_window_size = pretrained_window_size
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(num_heads, 1, 1)))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512, bias=True), nn.ReLU(inplace=True),
                                     nn.Linear(512, num_heads, bias=False))
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim)

    def position_bias(self, M: int) -> torch.Tensor:
        """(heads, M², M²): 16·sigmoid of the CPB MLP evaluated on log-spaced relative coordinates."""
        w = self.cpb_mlp[0].weight
        coords = log_spaced_coords(M, self.pretrained_window_size).to(w.device, w.dtype)  # (2M-1, 2M-1, 2)
        table = self.cpb_mlp(coords).view(-1, self.num_heads)  # ((2M-1)², heads)
        idx = relative_position_index(M).to(w.device)
        bias = table[idx.view(-1)].view(M * M, M * M, -1).permute(2, 0, 1)  # (heads, M², M²)
        return 16 * torch.sigmoid(bias)

    def qkv_split(self, x: torch.Tensor):
        Bw, N, C = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(Bw, N, 3, self.num_heads, -1)  # (B*nW, N, 3, heads, hd)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 × (B*nW, heads, N, hd)

    def temperature(self) -> torch.Tensor:
        """(heads, 1, 1) τ = exp(min(logit_scale, log 100)): what each head multiplies cosines by."""
        return torch.clamp(self.logit_scale, max=LOGIT_SCALE_MAX).exp()  # (heads, 1, 1)

    def logits(self, q, k, bias):
        cos = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)  # (B*nW, heads, N, N)
        return cos * self.temperature() + bias

    def fused(self, q, k, v, bias):
        # the temperature folded into q: softmax((q̂·τ)·k̂ᵀ + bias), the same function as logits()
        return F.scaled_dot_product_attention(F.normalize(q, dim=-1) * self.temperature(), F.normalize(k, dim=-1), v,
                                              attn_mask=bias.to(q.dtype), scale=1.0)


class SwinBlock(nn.Module):
    """One (shifted) window attention block; v1 pre-norm, v2 post-norm residuals."""

    def __init__(self, cfg: SwinConfig, dim: int, num_heads: int, window_size: int, shifted: bool, stage: int):
        super().__init__()
        self.version = cfg.version
        self.stage = stage
        self.target_window = window_size
        self.target_shift = window_size // 2 if shifted else 0
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        if cfg.version == 1:
            self.attn = WindowAttention(dim, num_heads, window_size, cfg.qkv_bias)
        else:
            self.attn = WindowAttentionV2(dim, num_heads, cfg.qkv_bias, cfg.pretrained_window_size[stage])
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def _window_attn(self, x: torch.Tensor, rec: Optional[Recorder], token_px: int) -> torch.Tensor:
        B, H, W, C = x.shape
        # The one geometry record: the windows below are run by it and the capture hands it on.
        geom = block_geometry((H, W), self.target_window, self.target_shift, token_px)
        M, s = geom.window_size, geom.shift_size
        Hp, Wp = geom.padded_size
        nW = geom.num_windows
        if s:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
        x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))  # (B, Hp, Wp, C)
        win = window_partition(x, M).reshape(-1, M * M, C)  # (B*nW, M², C)

        pos_bias = self.attn.position_bias(M)  # (heads, M², M²)
        mask = shift_attn_mask((Hp, Wp), M, s).to(x.device, x.dtype) if s else None  # (nW, M², M²)
        bias = pos_bias.unsqueeze(0)  # (1, heads, M², M²)
        if mask is not None:
            bias = (bias.unsqueeze(0) + mask.unsqueeze(1).unsqueeze(0)).view(nW, self.num_heads, M * M, M * M)
            bias = bias.repeat(B, 1, 1, 1)  # (B*nW, heads, M², M²)
        q, k, v = self.attn.qkv_split(win)
        record = None
        if rec is not None:
            tau = self.attn.temperature() if isinstance(self.attn, WindowAttentionV2) else None  # (heads, 1, 1)
            applied = dict(num_heads=self.num_heads, stage=self.stage, grid_size=(H, W), token_px=token_px,
                           geometry=geom, bias=pos_bias.detach().cpu().float(),
                           attn_mask=None if mask is None else mask.detach().cpu().float(),
                           logit_scale=None if tau is None else tau.detach().cpu().float().reshape(-1))  # (heads,)
            per_window = lambda t: t.view(B, nW, self.num_heads, M * M, -1)  # noqa: E731  (B, nW, heads, M², ·)

            def record(p, qkv):
                kept = None if qkv is None else tuple(map(per_window, qkv[:3])) + qkv[3:]
                rec.add_swin(per_window(p), qkv=kept, **applied)  # p: (B, nW, heads, M², M²)
        v2 = isinstance(self.attn, WindowAttentionV2)
        out = attend(lambda: self.attn.logits(q, k, bias), v,
                     lambda: self.attn.fused(q, k, v, bias), record,
                     qk=(q, k, 1.0 if v2 else self.attn.scale, v2))  # (B*nW, heads, M², hd)
        out = out.transpose(1, 2).reshape(-1, M * M, C)  # (B*nW, M², C)
        out = self.attn.proj(out).reshape(-1, M, M, C)  # (B*nW, M, M, C)
        x = window_reverse(out, M, Hp, Wp)[:, :H, :W, :]  # (B, H, W, C)
        if s:
            x = torch.roll(x, shifts=(s, s), dims=(1, 2))
        return x

    def forward(self, x: torch.Tensor, rec: Optional[Recorder], token_px: int) -> torch.Tensor:
        if self.version == 1:
            x = x + self._window_attn(self.norm1(x), rec, token_px)
            return x + self.mlp(self.norm2(x))
        x = x + self.norm1(self._window_attn(x, rec, token_px))
        return x + self.norm2(self.mlp(x))


class PatchMerging(nn.Module):
    """2×2 neighbouring tokens -> one token of twice the width (v1: norm then reduce; v2: reduce then norm)."""

    def __init__(self, dim: int, version: int, eps: float):
        super().__init__()
        self.version = version
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim if version == 1 else 2 * dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        H, W = x.shape[1], x.shape[2]
        # channel order x[0::2,0::2], x[1::2,0::2], x[0::2,1::2], x[1::2,1::2] as in the original release
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)  # (B, H/2, W/2, 4C)
        if self.version == 1:
            return self.reduction(self.norm(x))
        return self.norm(self.reduction(x))


class SwinStage(nn.Module):
    def __init__(self, cfg: SwinConfig, stage: int):
        super().__init__()
        dim = cfg.embed_dim * 2 ** stage
        self.downsample = PatchMerging(dim // 2, cfg.version, cfg.norm_eps) if stage > 0 else nn.Identity()
        M = cfg.window_size[stage]
        self.blocks = nn.ModuleList([
            SwinBlock(cfg, dim, cfg.num_heads[stage], M, shifted=(i % 2 == 1), stage=stage)
            for i in range(cfg.depths[stage])
        ])


class PatchEmbed(nn.Module):
    def __init__(self, cfg: SwinConfig):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # (B, gh, gw, C)


class ClassifierHead(nn.Module):
    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)


class SwinTransformer(nn.Module):
    family = "swin"

    def __init__(self, cfg: SwinConfig):
        super().__init__()
        self.config = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.layers = nn.ModuleList([SwinStage(cfg, i) for i in range(cfg.num_stages)])
        self.num_features = cfg.embed_dim * 2 ** (cfg.num_stages - 1)
        self.norm = nn.LayerNorm(self.num_features, eps=cfg.norm_eps)
        self.head = ClassifierHead(self.num_features, cfg.num_classes) if cfg.num_classes else None

    def _run(self, x: torch.Tensor, rec: Optional[Recorder]) -> torch.Tensor:
        x = self.patch_embed(x)  # (B, gh, gw, C)
        for i, stage in enumerate(self.layers):
            x = stage.downsample(x)
            for blk in stage.blocks:
                x = blk(x, rec, self.config.patch_size * 2 ** i)
                if rec is not None:
                    rec.add_output(x)  # (B, H, W, C): the stage grid, un-shifted and un-padded
        x = self.norm(x).mean(dim=(1, 2))  # (B, C)
        return self.head.fc(x) if self.head is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None)

    def capture_block(self, x: torch.Tensor, block: int, use_pos_embed: bool = True) -> SwinBlockCapture:
        """One block's capture with its q, k, v (``.qkv``), from a pass that records no other block."""
        if not use_pos_embed:
            raise ValueError("Swin has no absolute position embedding to turn off")
        check_qkv_block(block, sum(len(stage.blocks) for stage in self.layers))
        rec = Recorder(qkv_block=block, only_qkv_block=True)
        self._run(x, rec)
        return rec.blocks[0]

    def capture(self, x: torch.Tensor, keep_graph: bool = False, use_pos_embed: bool = True,
                qkv_block: Optional[int] = None) -> Capture:
        """Forward with every block's window attention recorded (see Recorder for keep_graph).

        ``use_pos_embed`` exists so every network takes the same capture arguments; Swin has no
        absolute position embedding to leave out (its position information is the relative bias
        inside each window's logits), so False is refused rather than silently ignored.
        ``qkv_block=i`` also keeps block i's q, k, v (``blocks[i].qkv``, per window; the attention anatomy).
        """
        if not use_pos_embed:
            raise ValueError("Swin has no absolute position embedding to turn off (its position information "
                             "is the relative position bias inside each window)")
        check_qkv_block(qkv_block, sum(len(stage.blocks) for stage in self.layers))
        rec = Recorder(keep_graph, qkv_block)
        out = self._run(x, rec)
        logits = None
        if self.head is not None:
            logits = out if keep_graph else out.detach().to("cpu", torch.float32)
        p = self.config.patch_size
        return Capture(
            family="swin", logits=logits, blocks=rec.blocks, img_size=(x.shape[-2], x.shape[-1]),
            patch_size=p, grid_size=(x.shape[-2] // p, x.shape[-1] // p),
        )
