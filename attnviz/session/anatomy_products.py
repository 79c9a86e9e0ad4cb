"""The attention-anatomy product: one block, head and query's attention taken apart into its stages.

The anatomy needs the q, k, v of one block, which the session's capture does not keep (it would be
every block's). The product runs one more pass of the same input on the worker with
``attnviz.nets.capture_qkv`` for the selected block only, and keeps that block's capture for the
capture it came from, so changing the head or the query reuses it and only a new block (or a new
capture) reruns the network. Stage 2 is compared with the session's captured attention.

Registered with :func:`attnviz.session.products.register` when this module is imported (the anatomy
panel imports it).
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..analysis.anatomy import Anatomy, swin_anatomy, vit_anatomy
from ..nets import capture_qkv
from ..nets.capture import BlockCapture
from .display import levels
from .products import Context, NotApplicable, ProductSpec, register
from .query import Patch, Prefix, Query, stage_token, vit_token

FUSED_NOTE = ("{fusion} over heads is not one head: the anatomy of a softmax exists per head. Showing head 0; "
              "pick a head to see another.")


@dataclass
class AnatomyView:
    """What the anatomy panel draws: the analysis result and how it was chosen."""

    anatomy: Anatomy
    query_label: str  # e.g. "patch (3, 4)" or "patch (3, 4) → stage-1 token (1, 2)"
    prefix_names: list[str]
    note: str = ""  # e.g. why head 0 is shown instead of a fusion


class _QKVCache:
    """The last few (capture, block) → block capture with q, k, v. An entry refers to its capture
    weakly (a replaced capture is not kept alive by it) and answers only for that very capture."""

    def __init__(self, size: int = 2):
        self.size = size
        self._items: list[tuple[weakref.ref, int, BlockCapture]] = []
        self._lock = threading.Lock()  # the worker thread and a synchronous caller may both ask

    def get(self, ctx: Context, block: int) -> BlockCapture:
        with self._lock:
            for ref, b, blk in self._items:
                if ref() is ctx.capture and b == block:
                    return blk
        if ctx.model is None or ctx.x is None:
            raise NotApplicable("the anatomy needs the model and the input that made the capture")
        blk = capture_qkv(ctx.model.net, ctx.x, block, ctx.use_pos_embed)
        with self._lock:
            self._items = [(weakref.ref(ctx.capture), block, blk)] + self._items[: self.size - 1]
        return blk


_QKV = _QKVCache()


def block_with_qkv(ctx: Context, block: int) -> BlockCapture:
    """The selected block's capture carrying its q, k, v (one extra pass per block and capture)."""
    return _QKV.get(ctx, block)


def attention_anatomy(ctx: Context, block: int, head, query: Query) -> AnatomyView:
    """The anatomy of ``query``'s attention in ``block`` / ``head`` (head 0 when a fusion is selected)."""
    cap, g = ctx.capture, ctx.geometry
    if not 0 <= block < len(cap.blocks):
        raise NotApplicable(f"block {block} does not exist (the model has {len(cap.blocks)} blocks)")
    note = ""
    if not isinstance(head, int):
        note, head = FUSED_NOTE.format(fusion=str(head).capitalize()), 0
    shown = cap.blocks[block]
    if cap.family == "vit":
        token = vit_token(query, g)
        blk = block_with_qkv(ctx, block)
        a = vit_anatomy(blk, head, token, g.num_prefix_tokens, captured=shown.attn[0])
        return AnatomyView(a, query.label(list(g.prefix_names)), list(g.prefix_names), note)
    if isinstance(query, Prefix) or not isinstance(query, Patch):
        raise NotApplicable("Swin has no prefix tokens: pick a patch")
    cell = stage_token(query, shown)
    blk = block_with_qkv(ctx, block)
    a = swin_anatomy(blk, head, cell, captured=shown.attn[0])
    label = f"{query.label()} → stage-{shown.stage} token {cell}" if shown.stage else query.label()
    return AnatomyView(a, label, [], note)


@dataclass
class StageMap:
    """One stage of the anatomy as a map over the keys: what the panel and the exported figure draw."""

    key: str  # 'scores' | 'bias' (Swin: bias + mask) | 'probs' | 'contrib'
    values: np.ndarray  # (h, w) the stage's numbers over the grid keys (ViT patches; Swin window slots)
    shown: np.ndarray  # (h, w) what is coloured: the values, NaN where the shift mask removes a key
    levels: tuple[float, float]
    title: tuple[str, str]  # two lines: which stage, and what it computes
    fmt: str  # how one number is written
    marks: Optional[np.ndarray]  # (h, w) str written in the cells ('×' masked, 'pad' padding), or None
    prefix: np.ndarray  # (P,) the same stage's numbers for the prefix keys (ViT; empty for Swin)

    def prefix_text(self, names: list[str]) -> str:
        """'cls: 1.5  reg0: 0.2': the prefix keys' numbers, which the map over the grid keys cannot show."""
        return "  ".join(f"{names[i] if i < len(names) else i}: {self.fmt.format(v)}" for i, v in enumerate(self.prefix))


def stage_keys(family: str) -> list[str]:
    """The stages drawn, in order (Swin adds its position bias and shift mask as a stage of its own)."""
    return ["scores", "bias", "probs", "contrib"] if family == "swin" else ["scores", "probs", "contrib"]


def _span(lo: float, hi: float) -> tuple[float, float]:
    return lo, hi if hi > lo else lo + 1.0


def stage_map(a: Anatomy, key: str) -> StageMap:
    """Stage ``key`` of the anatomy ``a`` as a map, with its colour range, title, format and cell marks."""
    pad = a.key_map(a.padding)
    pad_marks = np.where(pad, "pad", "") if pad.any() else None
    per_key = {"scores": a.scores, "bias": a.bias, "probs": a.probs, "contrib": a.contrib}[key]
    prefix = a.prefix_values(per_key) if per_key is not None else np.zeros(0)
    if key == "scores":
        values = a.key_map(a.scores)
        title = ("1 · score", "cos(q, k)·τ" if a.cosine else "q·k/√d")
        return StageMap(key, values, values, _span(float(a.scores.min()), float(a.scores.max())), title, "{:.1f}",
                        pad_marks, prefix)
    if key == "bias":
        if a.bias is None:
            raise ValueError("a ViT block adds no position bias to its logits")
        bias = a.key_map(a.bias)
        masked = np.zeros(bias.shape, dtype=bool) if a.mask is None else a.key_map(a.mask) < 0
        values = bias if a.mask is None else bias + a.key_map(a.mask)
        marks = np.where(masked, "×", "") if masked.any() else None
        if pad_marks is not None:
            marks = np.where(pad_marks != "", pad_marks, marks if marks is not None else "")
        title = ("2 · + position bias", "+ mask (× = −100)" if a.mask is not None else "(relative, per head)")
        return StageMap(key, values, np.where(masked, np.nan, values),  # masked keys drawn dark, marked ×
                        _span(float(bias.min()), float(bias.max())), title, "{:+.1f}", marks, prefix)
    if key == "probs":
        values = a.key_map(a.probs)
        return StageMap(key, values, values, levels(a.probs, "linear"), ("2 · softmax", "→ probability a"), "{:.0%}",
                        None, prefix)
    values = a.key_map(a.contrib)
    return StageMap(key, values, values, levels(a.contrib, "linear"), ("3 · contribution", "‖a·v‖ to the output"),
                    "{:.2f}", None, prefix)


register(ProductSpec("attention_anatomy", attention_anatomy, ("block", "head", "query"), slow=True))

__all__ = ["AnatomyView", "StageMap", "attention_anatomy", "block_with_qkv", "stage_keys", "stage_map"]
