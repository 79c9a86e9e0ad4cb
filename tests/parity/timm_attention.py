"""Reference attention probabilities from timm models, for parity tests.

timm hides the softmax in its fused path; switching every module's ``fused_attn`` off makes it take the
explicit path, where hooks can read the probabilities: ViT's ``attn_drop`` receives them, Swin's
``softmax`` module returns them.
"""
from __future__ import annotations

import torch
from torch import nn

from tests.timm_ref import perturb_

__all__ = ["native_state_dict", "perturb_", "timm_attention"]


def native_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """timm 1.0's state dict is attnviz's native checkpoint layout (its recomputed buffers are not persistent)."""
    return {k: v.contiguous() for k, v in model.state_dict().items()}


@torch.no_grad()
def timm_attention(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Output of ``model(x)`` and every block's attention, ViT (B, H, N, N) / Swin (B, nW, H, N, N)."""
    probs: list[torch.Tensor] = []
    hooks = []
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
        if isinstance(getattr(m, "softmax", None), nn.Softmax):  # Swin v1/v2 WindowAttention
            hooks.append(m.softmax.register_forward_hook(lambda mod, inp, out: probs.append(out.clone())))
        elif hasattr(m, "qkv") and isinstance(getattr(m, "attn_drop", None), nn.Dropout):  # ViT Attention
            hooks.append(m.attn_drop.register_forward_hook(lambda mod, inp, out: probs.append(inp[0].clone())))
    try:
        out = model(x)
    finally:
        for h in hooks:
            h.remove()
    B = x.shape[0]
    shaped = []
    for p in probs:
        if hasattr(model, "layers"):  # Swin: (B*nW, H, N, N) -> (B, nW, H, N, N)
            p = p.reshape(B, -1, *p.shape[1:])
        shaped.append(p)
    return out, shaped
