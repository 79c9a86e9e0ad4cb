"""Attention anatomy: the three stages of softmax(QKᵀ/√d + B)V for one block, head and query.

1. similarity: the query's score against every key it can see, q·k/√d (ViT, Swin v1) or, for Swin v2,
   cos(q, k)·τ with the head's clamped temperature τ;
2. logits = score + position bias (Swin) + shift mask (shifted Swin windows), then the softmax: the
   probabilities a_k, which are the attention the network captured;
3. the weighted sum o = Σ_k a_k v_k: each key's contribution ‖a_k v_k‖ and its share of the total.

Everything is recomputed from the q, k, v the network itself used (``BlockCapture.qkv``, captured on
demand for one block by ``attnviz.nets.capture_qkv``) and from the bias and mask it added (the Swin
block capture), in float64, so the panel can show where every number comes from and check that
stage 2 reproduces the captured attention.

Keys: a ViT query sees every token, prefix tokens first, then the patch grid row-major; a Swin query
sees the M×M slots of its window (row-major inside the window, padding slots included: the network
attends to them too, their features are zero before the projections).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from attnviz.nets.capture import BlockCapture, SwinBlockCapture

from .windows import locate_token, window_token_index


@dataclass
class Anatomy:
    """The query's row of one head's attention, taken apart. Every per-key array is (n_keys,) float64."""

    block: int
    head: int
    family: str  # 'vit' | 'swin'
    query_key: int  # the query's own position among the keys
    scores: np.ndarray  # stage 1: q·k/√d, or cos(q, k)·τ (Swin v2)
    bias: Optional[np.ndarray]  # Swin: the position bias row the block added; None for ViT
    mask: Optional[np.ndarray]  # shifted Swin block: the mask row (0 / -100); None otherwise
    logits: np.ndarray  # scores + bias + mask
    probs: np.ndarray  # stage 2: softmax(logits)
    captured: np.ndarray  # the network's captured attention for the same row (to compare with probs)
    value_norms: np.ndarray  # ‖v_k‖
    contrib: np.ndarray  # stage 3: ‖a_k v_k‖
    share: np.ndarray  # contrib / Σ contrib
    output_norm: float  # ‖Σ_k a_k v_k‖ (≤ Σ contrib: contributions pointing apart cancel)
    num_prefix: int  # ViT prefix keys before the grid keys; 0 for Swin
    map_shape: tuple[int, int]  # grid keys as a map: ViT patch grid (gh, gw); Swin window (M, M)
    key_tokens: np.ndarray  # (n_keys,) int: flat stage-grid token y*W+x of each key; -1 prefix / padding
    grid_size: tuple[int, int]  # the block's token grid (for key_tokens)
    scale: float  # ViT / Swin v1: the 1/√d the dot products were multiplied by; Swin v2: 1.0
    temperature: Optional[float]  # Swin v2: τ of this head; None otherwise
    cosine: bool  # Swin v2 scores are cosines × τ
    head_dim: int
    window: Optional[int] = None  # Swin: index of the query's window (as in the block's attn)

    @property
    def num_keys(self) -> int:
        return int(self.scores.shape[0])

    @property
    def max_prob_error(self) -> float:
        """Largest |recomputed − captured| probability: how exactly stage 2 reproduces the network."""
        return float(np.abs(self.probs - self.captured).max())

    @property
    def padding(self) -> np.ndarray:
        """(n_keys,) bool: Swin window slots that hold padding (ViT: none)."""
        pad = self.key_tokens < 0
        pad[: self.num_prefix] = False
        return pad

    def key_map(self, values: np.ndarray) -> np.ndarray:
        """The grid keys of a per-key array as a map: (gh, gw) for ViT, (M, M) window slots for Swin."""
        return np.asarray(values)[self.num_prefix:].reshape(self.map_shape)  # (h, w)

    def prefix_values(self, values: np.ndarray) -> np.ndarray:
        """(P,) the prefix keys of a per-key array (empty for Swin)."""
        return np.asarray(values)[: self.num_prefix]

    def key_of_cell(self, row: int, col: int) -> int:
        """Key index of map cell (row, col)."""
        h, w = self.map_shape
        if not (0 <= row < h and 0 <= col < w):
            raise ValueError(f"cell ({row}, {col}) is outside the {h}×{w} map")
        return self.num_prefix + row * w + col

    def top_key(self) -> int:
        """The key the query attends to most."""
        return int(np.argmax(self.probs))


def _check(block: BlockCapture, head: int) -> None:
    if block.qkv is None:
        raise ValueError(f"block {block.index} was captured without its q, k, v (capture it with qkv_block)")
    if not 0 <= int(head) < block.num_heads:
        raise ValueError(f"head {head} does not exist (block {block.index} has {block.num_heads} heads)")


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _stage3(probs: np.ndarray, v: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per-key ‖v_k‖, ‖a_k v_k‖, their shares, and ‖Σ a_k v_k‖ for v (n_keys, hd)."""
    v64 = v.double().numpy()  # (n, hd)
    weighted = probs[:, None] * v64  # (n, hd): a_k v_k
    contrib = np.linalg.norm(weighted, axis=1)  # (n,)
    total = contrib.sum()
    share = contrib / total if total > 0 else np.zeros_like(contrib)
    return np.linalg.norm(v64, axis=1), contrib, share, float(np.linalg.norm(weighted.sum(axis=0)))


def vit_anatomy(block: BlockCapture, head: int, token: int, num_prefix: int,
                captured: Optional[torch.Tensor] = None, batch: int = 0) -> Anatomy:
    """Anatomy of query token ``token`` (row among prefix + patch tokens) of a ViT block.

    ``captured`` is the (heads, N, N) attention to compare stage 2 with (default: the block's own).
    """
    _check(block, head)
    qkv = block.qkv
    q = qkv.q[batch, head].double()  # (N, hd)
    k = qkv.k[batch, head].double()  # (N, hd)
    N = q.shape[0]
    if not 0 <= int(token) < N:
        raise ValueError(f"token {token} does not exist (the block has {N} tokens)")
    scores = ((q[token] * qkv.scale) @ k.T).numpy()  # (N,)
    probs = _softmax(scores)
    cap = (block.attn[batch] if captured is None else captured)[head, token]  # (N,)
    vn, contrib, share, out = _stage3(probs, qkv.v[batch, head])
    gh, gw = tuple(block.grid_size)
    if N != num_prefix + gh * gw:
        raise ValueError(f"{N} tokens do not make {num_prefix} prefix tokens and a {gh}×{gw} grid")
    key_tokens = np.concatenate([np.full(num_prefix, -1), np.arange(gh * gw)])  # (N,)
    return Anatomy(block.index, int(head), "vit", int(token), scores, None, None, scores.copy(), probs,
                   cap.detach().double().numpy(), vn, contrib, share, out, num_prefix, (gh, gw), key_tokens,
                   (gh, gw), float(qkv.scale), None, False, int(q.shape[1]))


def swin_anatomy(block: SwinBlockCapture, head: int, cell: tuple[int, int],
                 captured: Optional[torch.Tensor] = None, batch: int = 0) -> Anatomy:
    """Anatomy of the stage-grid token ``cell`` = (y, x) of a Swin block, inside its window.

    ``captured`` is the block's (windows, heads, M², M²) attention to compare stage 2 with (default:
    its own). Bias and mask are read from the capture: what the network added.
    """
    if not isinstance(block, SwinBlockCapture):
        raise ValueError(f"block {block.index} is not a Swin block")
    _check(block, head)
    geom, qkv = block.geometry, block.qkv
    w, slot = locate_token(geom, *cell)
    q = qkv.q[batch, w, head].double()  # (M², hd)
    k = qkv.k[batch, w, head].double()  # (M², hd)
    tau = None
    if qkv.cosine:
        if block.logit_scale is None:
            raise ValueError(f"block {block.index} computes cosine scores but carries no logit scale")
        tau = float(block.logit_scale[head])
        qn, kn = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12), k / k.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        scores = (qn[slot] @ kn.T).numpy() * tau  # (M²,) cos(q, k)·τ
    else:
        scores = ((q[slot] * qkv.scale) @ k.T).numpy()  # (M²,)
    bias = block.bias[head, slot].double().numpy()  # (M²,)
    mask = None if block.attn_mask is None else block.attn_mask[w, slot].double().numpy()  # (M²,)
    logits = scores + bias + (0.0 if mask is None else mask)
    probs = _softmax(logits)
    cap = (block.attn[batch] if captured is None else captured)[w, head, slot]  # (M²,)
    vn, contrib, share, out = _stage3(probs, qkv.v[batch, w, head])
    M = geom.window_size
    key_tokens = window_token_index(geom)[w].numpy()  # (M²,) flat stage-grid token, -1 = padding
    return Anatomy(block.index, int(head), "swin", int(slot), scores, bias, mask, logits, probs,
                   cap.detach().double().numpy(), vn, contrib, share, out, 0, (M, M), key_tokens,
                   tuple(geom.grid_size), float(qkv.scale), tau, bool(qkv.cosine), int(q.shape[1]), w)


def key_name(a: Anatomy, key: int, prefix_names: Optional[list[str]] = None) -> str:
    """How the panel names a key: 'cls token', 'patch (3, 4)' or, for Swin, 'token (y, x)' / 'padding'."""
    if key < a.num_prefix:
        names = prefix_names or []
        return f"{names[key]} token" if key < len(names) else f"prefix {key}"
    t = int(a.key_tokens[key])
    if t < 0:
        return "padding slot"
    W = a.grid_size[1]
    return f"{'patch' if a.family == 'vit' else 'token'} ({t // W}, {t % W})"


def key_line(a: Anatomy, key: int, prefix_names: Optional[list[str]] = None) -> str:
    """One line with every number of one key: score, bias, mask, logit, probability, ‖a·v‖, share."""
    parts = [f"score {a.scores[key]:+.3f}"]
    if a.bias is not None:
        parts.append(f"bias {a.bias[key]:+.3f}")
    if a.mask is not None:
        parts.append(f"mask {a.mask[key]:+.0f}")
    if a.bias is not None or a.mask is not None:
        parts.append(f"logit {a.logits[key]:+.3f}")
    parts += [f"prob {a.probs[key]:.4f}", f"‖a·v‖ {a.contrib[key]:.4f}", f"share {100 * a.share[key]:.1f}%"]
    return f"{key_name(a, key, prefix_names)}: " + ", ".join(parts)


def formula(a: Anatomy) -> str:
    """The formula this block computes, with its constants filled in."""
    if a.cosine:
        stage1 = f"cos(q, k)·τ  (τ = {a.temperature:.3f})"
    else:
        stage1 = f"q·k/√d  (d = {a.head_dim}, 1/√d = {a.scale:.4f})"
    extra = " + B" if a.bias is not None else ""
    extra += " + mask" if a.mask is not None else ""
    return f"a = softmax({stage1}{extra}),  o = Σ a_k v_k  (‖o‖ = {a.output_norm:.3f})"


__all__ = ["Anatomy", "formula", "key_line", "key_name", "swin_anatomy", "vit_anatomy"]
