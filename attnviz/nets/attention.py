"""The one place attention probabilities are formed, and the recorder that captures them.

Every network in attnviz calls :func:`attend`. Without a recorder it uses PyTorch's fused
scaled-dot-product attention (fast; used for training and plain inference). With a recorder it writes
softmax(logits) out explicitly, hands the probabilities to the recorder and multiplies them with V,
so what is captured is exactly what produced the output, and gradients flow back through it.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .capture import BlockCapture, SwinBlockCapture


class Recorder:
    """Collects one BlockCapture (Swin: SwinBlockCapture) per attention block during a capturing forward pass.

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

    def add(self, probs: torch.Tensor, **fields) -> None:
        """Record a ViT block: ``fields`` are the other :class:`BlockCapture` fields."""
        self.blocks.append(BlockCapture(index=len(self.blocks), attn=self.store(probs), **fields))

    def add_swin(self, probs: torch.Tensor, **fields) -> None:
        """Record a Swin block: ``fields`` are the other :class:`SwinBlockCapture` fields
        (geometry, bias, attn_mask, logit_scale, ...), already detached by the block."""
        self.blocks.append(SwinBlockCapture(index=len(self.blocks), attn=self.store(probs), **fields))


def attend(
    logits: Callable[[], torch.Tensor],
    v: torch.Tensor,
    fused: Callable[[], torch.Tensor],
    record: Optional[Callable[[torch.Tensor], None]] = None,
) -> torch.Tensor:
    """softmax(logits) @ v for v of shape (B, heads, N, head_dim): the one capture point.

    ``logits()`` writes the network's own logits (scaled dot product or cosine, + biases and masks)
    in the reference implementation's order of operations; ``fused()`` computes the same attention
    output with PyTorch's fused kernel and is used when nothing records. With a recorder the
    probabilities are formed explicitly (softmax in float32, also for half-precision models),
    recorded, and multiplied with V, so gradients reach the recorded tensor.
    """
    if record is None:
        return fused()
    probs = logits().float().softmax(dim=-1)  # (B, heads, N, N)
    record(probs)
    return probs.to(v.dtype) @ v  # (B, heads, N, head_dim)
