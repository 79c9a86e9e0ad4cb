"""Token norms in the capture: every block's output token norms equal those of timm's own blocks.

The reference is a timm model with the same (perturbed) weights: forward hooks on its blocks read the
residual stream each block hands on, and the L2 norm over channels is taken here, independently of
attnviz's recorder. ViT norms are over prefix + patch tokens in token order; Swin norms are row-major
over the stage grid (timm's blocks return (B, H, W, C) un-shifted and un-padded).
"""
from __future__ import annotations

import pytest
import torch

timm = pytest.importorskip("timm")

from attnviz.nets import SwinConfig, ViTConfig, create_net  # noqa: E402
from tests.parity.timm_attention import native_state_dict  # noqa: E402
from tests.timm_ref import perturb_, timm_swin_for, timm_vit_for  # noqa: E402


def _block_outputs(blocks, model, x):
    """Outputs of every module in ``blocks`` during ``model(x)``, in forward order."""
    outs = []
    hooks = [b.register_forward_hook(lambda m, i, o: outs.append(o.detach().clone())) for b in blocks]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return outs


def _pair(cfg, timm_model):
    ref = perturb_(timm_model, seed=3, scale=0.05)
    net = create_net(cfg)
    net.load_state_dict(native_state_dict(ref), strict=True)
    return ref, net.eval()


def test_vit_token_norms_match_timm_block_outputs():
    cfg = ViTConfig(img_size=(32, 32), patch_size=8, embed_dim=32, depth=3, num_heads=2, mlp_hidden_dim=64,
                    num_reg_tokens=2, num_classes=5)
    ref, net = _pair(cfg, timm_vit_for(cfg))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cap = net.capture(x)
    outs = _block_outputs(list(ref.blocks), ref, x)
    assert len(outs) == cap.num_blocks == 3
    N = cap.num_prefix_tokens + 16
    for blk, out in zip(cap.blocks, outs):
        assert out.shape == (2, N, 32)
        assert blk.token_norms.shape == (2, N) and blk.token_norms.dtype == torch.float32
        assert blk.token_norms.device.type == "cpu"
        torch.testing.assert_close(blk.token_norms, out.norm(dim=-1), atol=1e-5, rtol=1e-5)


def test_vit_token_norms_without_pos_embed_differ_and_follow_the_pass():
    """The norms are those of the pass that ran: leaving the position embedding out changes them."""
    cfg = ViTConfig(img_size=(32, 32), patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_hidden_dim=64,
                    num_classes=5)
    ref, net = _pair(cfg, timm_vit_for(cfg))
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    on, off = net.capture(x), net.capture(x, use_pos_embed=False)
    assert (on.blocks[0].token_norms - off.blocks[0].token_norms).abs().max() > 1e-3
    # keep_graph captures carry the same norms, detached on the CPU
    kept = net.capture(x, keep_graph=True)
    assert not kept.blocks[-1].token_norms.requires_grad
    torch.testing.assert_close(kept.blocks[-1].token_norms, on.blocks[-1].token_norms)


@pytest.mark.parametrize("version", [1, 2])
def test_swin_token_norms_match_timm_block_outputs(version):
    # 40×40 input, patch 4, window 4: stage grids 10×10 then 5×5, both padded (to 12 and 8) and shifted
    cfg = SwinConfig(version=version, img_size=(40, 40), patch_size=4, embed_dim=16, depths=(2, 2),
                     num_heads=(2, 4), window_size=(4, 4), pretrained_window_size=(0, 0), num_classes=5)
    ref, net = _pair(cfg, timm_swin_for(cfg))
    x = torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    cap = net.capture(x)
    timm_blocks = [b for layer in ref.layers for b in layer.blocks]
    outs = _block_outputs(timm_blocks, ref, x)
    assert len(outs) == cap.num_blocks == 4
    for blk, out in zip(cap.blocks, outs):
        B, H, W, C = out.shape
        assert (H, W) == tuple(blk.grid_size)
        assert blk.token_norms.shape == (B, H * W)
        expected = out.norm(dim=-1).reshape(B, H * W)  # (B, H*W) row-major
        torch.testing.assert_close(blk.token_norms, expected, atol=1e-5, rtol=1e-5)
    assert any(b.shift_size for b in cap.blocks)  # a shifted block was covered
