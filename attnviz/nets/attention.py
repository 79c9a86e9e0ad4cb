"""The one place attention probabilities are formed, and the recorder that captures them.

Every network in attnviz calls :func:`attend`. Without a recorder it uses PyTorch's fused
scaled-dot-product attention (fast; used for training and plain inference). With a recorder it writes
softmax(logits) out explicitly, hands the probabilities to the recorder and multiplies them with V,
so what is captured is exactly what produced the output, and gradients flow back through it.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .capture import BlockCapture, BlockQKV, SwinBlockCapture


def check_qkv_block(block: Optional[int], depth: int) -> None:
    """Refuse a qkv block the network does not have (rather than silently keeping nothing)."""
    if block is not None and not 0 <= int(block) < depth:
        raise ValueError(f"block {block} does not exist (the network has {depth} blocks)")


class Recorder:
    """Collects one BlockCapture (Swin: SwinBlockCapture) per attention block during a capturing forward pass.

    keep_graph=False: probabilities are detached and moved to the CPU as float32 right away, so
    a GPU forward never holds more than one block's attention on the device.
    keep_graph=True: they stay on the device inside the autograd graph (relevance methods need
    gradients with respect to them).
    qkv_block: the one block (forward index) whose q, k and v are kept as well (attention anatomy);
    None keeps them for no block. They are always detached float32 CPU copies.
    only_qkv_block=True: record that block alone (the others run but keep nothing), so asking for one
    block's q, k, v does not hold every block's attention a second time.
    """

    def __init__(self, keep_graph: bool = False, qkv_block: Optional[int] = None, only_qkv_block: bool = False):
        if only_qkv_block and qkv_block is None:
            raise ValueError("only_qkv_block needs the qkv_block to keep")
        self.keep_graph = keep_graph
        self.qkv_block = qkv_block
        self.only_qkv_block = only_qkv_block
        self.blocks: list[BlockCapture] = []
        self.seen = 0  # attention blocks run so far (the forward index of the next one)
        self._kept_last = False  # whether the block that ran last was recorded

    def _next(self, qkv: Optional[tuple]) -> tuple[int, bool, Optional[BlockQKV]]:
        """(index, record it?, its q/k/v copies if it is the chosen block) for the block that just ran."""
        i = self.seen
        self.seen += 1
        chosen = self.qkv_block is not None and i == self.qkv_block
        self._kept_last = chosen or not self.only_qkv_block
        if qkv is None or not chosen:
            return i, self._kept_last, None
        q, k, v, scale, cosine = qkv
        cpu = lambda t: t.detach().to("cpu", torch.float32).clone()  # noqa: E731
        return i, True, BlockQKV(cpu(q), cpu(k), cpu(v), float(scale), bool(cosine))

    def store(self, t: torch.Tensor) -> torch.Tensor:
        if self.keep_graph:
            return t
        return t.detach().to("cpu", torch.float32)

    def add(self, probs: torch.Tensor, qkv: Optional[tuple] = None, **fields) -> None:
        """Record a ViT block: ``fields`` are the other :class:`BlockCapture` fields; ``qkv`` is
        (q, k, v, scale, cosine) from :func:`attend`, kept only for the chosen block."""
        i, keep, kept = self._next(qkv)
        if keep:
            self.blocks.append(BlockCapture(index=i, attn=self.store(probs), qkv=kept, **fields))

    def add_swin(self, probs: torch.Tensor, qkv: Optional[tuple] = None, **fields) -> None:
        """Record a Swin block: ``fields`` are the other :class:`SwinBlockCapture` fields
        (geometry, bias, attn_mask, logit_scale, ...), already detached by the block; ``qkv`` as in add,
        q, k, v each shaped (B, windows, heads, M*M, head_dim)."""
        i, keep, kept = self._next(qkv)
        if keep:
            self.blocks.append(SwinBlockCapture(index=i, attn=self.store(probs), qkv=kept, **fields))

    def add_output(self, x: torch.Tensor) -> None:
        """Note the tokens a block handed on, (B, N, C) or Swin (B, H, W, C), as that block's
        ``token_norms``: their L2 norms over channels, (B, N) / (B, H*W), float32 on the CPU."""
        if not self._kept_last:
            return
        norms = x.detach().float().norm(dim=-1)  # (B, N) or (B, H, W)
        self.blocks[-1].token_norms = norms.reshape(norms.shape[0], -1).cpu()  # (B, N) / (B, H*W)


def attend(
    logits: Callable[[], torch.Tensor],
    v: torch.Tensor,
    fused: Callable[[], torch.Tensor],
    record: Optional[Callable[..., None]] = None,
    qk: Optional[tuple] = None,
) -> torch.Tensor:
    """softmax(logits) @ v for v of shape (B, heads, N, head_dim): the one capture point.

    ``logits()`` writes the network's own logits (scaled dot product or cosine, + biases and masks)
    in the reference implementation's order of operations; ``fused()`` computes the same attention
    output with PyTorch's fused kernel and is used when nothing records. With a recorder the
    probabilities are formed explicitly (softmax in float32, also for half-precision models),
    recorded, and multiplied with V, so gradients reach the recorded tensor.

    ``qk`` = (q, k, scale, cosine) says what the logits are formed from; it reaches the recorder with
    v as ``record(probs, (q, k, v, scale, cosine))`` so that one chosen block's q, k, v can be kept
    (the recorder copies them only for that block).
    """
    if record is None:
        return fused()
    probs = logits().float().softmax(dim=-1)  # (B, heads, N, N)
    record(probs, None if qk is None else (qk[0], qk[1], v, qk[2], qk[3]))
    return probs.to(v.dtype) @ v  # (B, heads, N, head_dim)
