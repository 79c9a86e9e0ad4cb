"""The one place attention probabilities are formed, and the recorder that captures them.

Every network in attnviz calls :func:`attend`. Without a recorder it uses PyTorch's fused
scaled-dot-product attention (fast; used for training and plain inference). With a recorder it writes
softmax(logits) out explicitly, hands the probabilities to the recorder and multiplies them with V,
so what is captured is exactly what produced the output, and gradients flow back through it.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .capture import BlockCapture


class Recorder:
    """Collects one BlockCapture per attention block during a capturing forward pass.

    keep_graph=False: probabilities are detached and moved to the CPU as float32 right away, so
    a GPU forward never holds more than one block's attention on the device.
    keep_graph=True: they stay on the device inside the autograd graph (relevance methods need
    gradients with respect to them).
    """

    def __init__(self, keep_graph: bool = False):
        self.keep_graph = keep_graph
        self.blocks: list[BlockCapture] = []

    def store(self, t: torch.Tensor) -> torch.Tensor:
        if self.keep_graph:
            return t
        return t.detach().to("cpu", torch.float32)

    def add(self, probs: torch.Tensor, **geometry) -> None:
        self.blocks.append(BlockCapture(index=len(self.blocks), attn=self.store(probs), **geometry))


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    logits_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    fused_bias: Optional[torch.Tensor] = None,
    fused_scale: Optional[float] = None,
    record: Optional[Callable[[torch.Tensor], None]] = None,
) -> torch.Tensor:
    """softmax(logits_fn(q, k)) @ v for q, k, v of shape (B, heads, N, head_dim).

    ``logits_fn`` writes the network's own logits (scaled dot product, cosine, + biases and masks)
    in the same order of operations as the reference implementation. The fused path must compute
    the same function: softmax(q·kᵀ·fused_scale + fused_bias) @ v.
    Softmax runs in float32 even for half-precision models, then casts back.
    """
    if record is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=fused_bias, scale=fused_scale)
    logits = logits_fn(q, k)  # (B, heads, N, N)
    probs = logits.float().softmax(dim=-1)
    record(probs)
    return probs.to(v.dtype) @ v  # (B, heads, N, head_dim)
