"""Attention anatomy: the three stages recomputed from one block's q, k, v.

Stage 2 (softmax of scores + bias + mask) must equal the attention the network captured; stage 1
must equal scores computed here directly from the block's weights (its qkv Linear applied to the
block's input, read by an independent forward pre-hook on the network, with the windows cut by hand
for Swin); stage 3 must equal |a|·‖v‖ with v from the same direct computation.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnviz.analysis.anatomy import formula, key_line, swin_anatomy, vit_anatomy
from attnviz.analysis.windows import locate_token
from attnviz.nets import SwinConfig, ViTConfig, capture_qkv, create_net
from attnviz.session.anatomy_products import FUSED_NOTE, attention_anatomy
from attnviz.session.products import Context
from attnviz.session.query import Geometry, Patch, Prefix
from tests.timm_ref import perturb_

ATOL = 1e-5


def _block_input(net, module, x, **kw):
    """What ``module`` receives as its first argument during ``net.capture(x)`` (a forward pre-hook)."""
    seen = []
    h = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    try:
        with torch.no_grad():
            net.capture(x, **kw)
    finally:
        h.remove()
    return seen[0]


def _heads(t, heads):
    """(B, N, 3C) -> q, k, v each (B, heads, N, hd), split as qkv Linear outputs are laid out."""
    B, N, C3 = t.shape
    t = t.detach()
    return t.reshape(B, N, 3, heads, C3 // 3 // heads).permute(2, 0, 3, 1, 4)  # (3, B, heads, N, hd)


# --------------------------------------------------------------------------------------------- ViT

@pytest.fixture(scope="module")
def vit():
    cfg = ViTConfig(img_size=(32, 32), patch_size=8, embed_dim=48, depth=3, num_heads=3, mlp_hidden_dim=96,
                    num_reg_tokens=2, num_classes=4)
    torch.manual_seed(0)
    net = perturb_(create_net(cfg), seed=1, scale=0.1)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    return net, x


def test_qkv_are_kept_for_the_chosen_block_only(vit):
    net, x = vit
    with torch.no_grad():
        cap = net.capture(x, qkv_block=1)
    assert [b.qkv is not None for b in cap.blocks] == [False, True, False]
    q = cap.blocks[1].qkv.q
    assert q.shape == (1, 3, 2 + 1 + 16, 16) and q.dtype == torch.float32 and q.device.type == "cpu"
    assert all(b.qkv is None for b in net.capture(x).blocks)  # a plain capture keeps none
    # capture_qkv: the same block from a pass that records no other block
    one = capture_qkv(net, x[0], 1)
    assert one.index == 1 and one.qkv is not None
    for name in ("q", "k", "v"):
        torch.testing.assert_close(getattr(one.qkv, name), getattr(cap.blocks[1].qkv, name))
    torch.testing.assert_close(one.attn, cap.blocks[1].attn)
    torch.testing.assert_close(one.token_norms, cap.blocks[1].token_norms)
    with pytest.raises(ValueError, match="does not exist"):
        capture_qkv(net, x, 3)
    with pytest.raises(ValueError, match="does not exist"):
        net.capture(x, qkv_block=-1)


@pytest.mark.parametrize("block", [0, 2])
def test_vit_stages_match_the_network_and_a_direct_computation(vit, block):
    net, x = vit
    plain = net.capture(x)  # the session's capture: stage 2 is compared with its attention
    blk = capture_qkv(net, x, block)
    # direct: the block's input (pre-hook), its norm1 and qkv weights, split into heads here
    m = net.blocks[block]
    inp = _block_input(net, m, x)  # (1, N, C)
    h = F.layer_norm(inp, (inp.shape[-1],), m.norm1.weight, m.norm1.bias, m.norm1.eps)
    q, k, v = _heads(F.linear(h, m.attn.qkv.weight, m.attn.qkv.bias), 3)  # each (1, heads, N, hd)
    d = q.shape[-1]
    P = net.num_prefix_tokens
    for head in range(3):
        for token in (0, 2, P + 5, P + 15):
            a = vit_anatomy(blk, head, token, P, captured=plain.blocks[block].attn[0])
            direct = (q[0, head, token] @ k[0, head].T / math.sqrt(d)).double().numpy()  # (N,)
            np.testing.assert_allclose(a.scores, direct, atol=ATOL, rtol=0)
            np.testing.assert_allclose(a.probs, plain.blocks[block].attn[0, head, token].double().numpy(),
                                       atol=ATOL, rtol=0)
            assert a.max_prob_error < ATOL
            vn = v[0, head].norm(dim=-1).double().numpy()  # (N,)
            np.testing.assert_allclose(a.contrib, np.abs(a.probs) * vn, atol=ATOL, rtol=1e-6)
            np.testing.assert_allclose(a.share.sum(), 1.0, atol=1e-12)
            out = (plain.blocks[block].attn[0, head, token] @ v[0, head]).norm().item()
            assert a.output_norm == pytest.approx(out, abs=1e-4)
            assert a.output_norm <= a.contrib.sum() + 1e-9  # triangle inequality: contributions can cancel
            assert a.bias is None and a.mask is None
    assert a.key_map(a.probs).shape == (4, 4) and a.prefix_values(a.probs).shape == (3,)


def test_vit_without_pos_embed_follows_the_pass(vit):
    """The anatomy of a capture without position embeddings is that pass's, not the default one's."""
    net, x = vit
    off = net.capture(x, use_pos_embed=False)
    blk = capture_qkv(net, x, 0, use_pos_embed=False)
    a = vit_anatomy(blk, 1, 0, net.num_prefix_tokens, captured=off.blocks[0].attn[0])
    assert a.max_prob_error < ATOL
    on = vit_anatomy(capture_qkv(net, x, 0), 1, 0, net.num_prefix_tokens)
    assert np.abs(on.scores - a.scores).max() > 1e-3


# -------------------------------------------------------------------------------------------- Swin

def _swin(version):
    cfg = SwinConfig(version=version, img_size=(40, 40), patch_size=4, embed_dim=16, depths=(2, 2),
                     num_heads=(2, 4), window_size=(4, 4), pretrained_window_size=(0, 0), num_classes=5)
    torch.manual_seed(version)
    net = perturb_(create_net(cfg), seed=2, scale=0.1)
    x = torch.randn(1, 3, 40, 40, generator=torch.Generator().manual_seed(7))
    return net, x


def _swin_direct(net, block, x):
    """q, k, v of every window of ``block`` computed here: the block's input from a pre-hook, (v1) its
    norm, the roll and zero padding, windows cut by reshaping, the qkv weights. Each (nW, heads, M², hd)."""
    m = [b for s in net.layers for b in s.blocks][block]
    inp = _block_input(net, m, x)  # (1, H, W, C)
    h = inp
    if m.version == 1:
        h = F.layer_norm(inp, (inp.shape[-1],), m.norm1.weight, m.norm1.bias, m.norm1.eps)
    M, s = 4, m.target_shift
    H, W, C = h.shape[1:]
    if s:
        h = torch.roll(h, shifts=(-s, -s), dims=(1, 2))
    Hp, Wp = -(-H // M) * M, -(-W // M) * M
    h = F.pad(h, (0, 0, 0, Wp - W, 0, Hp - H))  # (1, Hp, Wp, C)
    win = h.reshape(Hp // M, M, Wp // M, M, C).permute(0, 2, 1, 3, 4).reshape(-1, M * M, C)  # (nW, M², C)
    att = m.attn
    bias = att.qkv.bias if m.version == 1 else (
        torch.cat([att.q_bias, torch.zeros_like(att.q_bias), att.v_bias]) if att.q_bias is not None else None)
    q, k, v = _heads(F.linear(win, att.qkv.weight, bias), m.num_heads)  # each (nW, heads, M², hd)
    return m, q, k, v


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("block", [0, 1, 3])  # 1 and 3 are shifted; stage 1 (block 3) is 5×5 padded to 8
def test_swin_stages_match_the_network_and_a_direct_computation(version, block):
    net, x = _swin(version)
    plain = net.capture(x)
    blk = capture_qkv(net, x, block)
    assert bool(blk.shift_size) == (block % 2 == 1)
    m, q, k, v = _swin_direct(net, block, x)
    H, W = blk.grid_size
    masked_seen = False
    for head in range(m.num_heads):
        for cell in ((0, 0), (H // 2, W // 2 - 1), (H - 1, W - 1), (H - 1, 0)):
            a = swin_anatomy(blk, head, cell, captured=plain.blocks[block].attn[0])
            w, slot = locate_token(blk.geometry, *cell)
            assert (a.window, a.query_key) == (w, slot)
            if version == 1:
                direct = (q[w, head, slot] @ k[w, head].T) / math.sqrt(q.shape[-1])
            else:
                tau = torch.clamp(m.attn.logit_scale.detach().reshape(-1)[head], max=math.log(100.0)).exp()
                direct = F.cosine_similarity(q[w, head, slot][None], k[w, head], dim=-1) * tau
                assert a.temperature == pytest.approx(float(tau), rel=1e-6)
            np.testing.assert_allclose(a.scores, direct.double().numpy(), atol=ATOL, rtol=0)
            np.testing.assert_allclose(a.bias, blk.bias[head, slot].double().numpy())  # what the net added
            captured = plain.blocks[block].attn[0, w, head, slot].double().numpy()
            np.testing.assert_allclose(a.probs, captured, atol=ATOL, rtol=0)
            vn = v[w, head].norm(dim=-1).double().numpy()  # (M²,)
            np.testing.assert_allclose(a.contrib, a.probs * vn, atol=ATOL, rtol=1e-6)
            if a.mask is not None:
                masked_seen |= bool((a.mask < 0).any())
                assert set(np.unique(a.mask)) <= {0.0, -100.0}
                np.testing.assert_allclose(a.logits, a.scores + a.bias + a.mask)
            assert a.map_shape == (4, 4) and a.key_map(a.probs).shape == (4, 4)
    assert masked_seen == (block % 2 == 1)  # a shifted block masks some keys of the corner windows


def test_swin_padding_slots_are_keys_the_network_attends_to():
    net, x = _swin(1)
    blk = capture_qkv(net, x, 2)  # stage 1, unshifted: 5×5 grid padded to 8×8
    a = swin_anatomy(blk, 0, (4, 4))
    assert a.padding.any() and a.probs[a.padding].sum() > 0  # padding keys get probability too
    assert "padding" in key_line(a, int(np.nonzero(a.padding)[0][0]))


def test_text_names_the_formula_and_numbers(vit):
    net, x = vit
    blk = capture_qkv(net, x, 0)
    a = vit_anatomy(blk, 0, 0, net.num_prefix_tokens)
    assert "q·k/√d" in formula(a) and "d = 16" in formula(a)
    line = key_line(a, a.top_key(), net.prefix_names())
    assert f"prob {a.probs[a.top_key()]:.4f}" in line
    v2 = swin_anatomy(capture_qkv(*_swin(2), 1), 1, (9, 9))
    assert "cos(q, k)·τ" in formula(v2) and "+ B + mask" in formula(v2)
    with pytest.raises(ValueError, match="head 5"):
        vit_anatomy(blk, 5, 0, net.num_prefix_tokens)
    with pytest.raises(ValueError, match="without its q, k, v"):
        vit_anatomy(net.capture(x).blocks[0], 0, 0, net.num_prefix_tokens)


# ---------------------------------------------------------------------------------------- product

class _Model:
    def __init__(self, net):
        self.net = net


def test_product_reads_block_head_query_and_reuses_the_pass(vit):
    net, x = vit
    cap = net.capture(x)
    ctx = Context(cap, _Model(net), x, Geometry.of(cap), True, 1)
    calls = []
    hook = net.patch_embed.register_forward_hook(lambda *a: calls.append(1))
    try:
        v = attention_anatomy(ctx, 2, 1, Patch(1, 2))
        assert v.anatomy.block == 2 and v.anatomy.head == 1 and v.note == ""
        assert v.anatomy.query_key == net.num_prefix_tokens + 1 * 4 + 2
        assert v.anatomy.max_prob_error < ATOL
        fused = attention_anatomy(ctx, 2, "mean", Prefix(0))  # same block: no new pass
        assert fused.anatomy.head == 0 and fused.note == FUSED_NOTE.format(fusion="Mean")
        assert len(calls) == 1
        attention_anatomy(ctx, 0, 0, Prefix(1))
        assert len(calls) == 2
    finally:
        hook.remove()
