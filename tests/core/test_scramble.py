"""Patch permutations, applying them to images/tokens/attention, and the ViT equivariance check."""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from attnviz.analysis.scramble import (
    EquivarianceReport,
    apply_to_image,
    apply_to_tokens,
    check_permutation,
    compose,
    equivariance_check,
    identity_permutation,
    inverse_permutation,
    permutation_matrix,
    permute_attention,
    random_permutation,
    reverse_permutation,
    swap_permutation,
    unpermute_attention,
    window_permutation,
)
from attnviz.nets import ModelInfo, SwinConfig, ViTConfig, build_model, create_net

# ---------------------------------------------------------------- permutations


def test_inverse_and_composition():
    p = random_permutation((4, 5), seed=1)
    q = random_permutation((4, 5), seed=2)
    assert not torch.equal(p, q)
    assert torch.equal(p, random_permutation((4, 5), seed=1))  # seeded
    inv = inverse_permutation(p)
    assert torch.equal(compose(p, inv), identity_permutation((4, 5)))
    assert torch.equal(compose(inv, p), identity_permutation((4, 5)))
    x = torch.randn(1, 20, 3)
    once_then = apply_to_tokens(apply_to_tokens(x, p), q)
    assert torch.equal(apply_to_tokens(x, compose(p, q)), once_then)
    assert torch.equal(apply_to_tokens(apply_to_tokens(x, p), inv), x)
    # The matrix form: P x scrambles rows, and Pᵀ undoes it.
    P = permutation_matrix(p)
    assert torch.equal(P @ x[0], apply_to_tokens(x, p)[0])
    assert torch.equal(P.T @ P, torch.eye(20))


def test_simple_permutations():
    s = swap_permutation((3, 4), (0, 1), (2, 3))
    assert s[1] == 11 and s[11] == 1 and int((s != torch.arange(12)).sum()) == 2
    r = reverse_permutation((3, 4))
    assert r.tolist() == list(range(11, -1, -1))
    assert torch.equal(compose(r, r), torch.arange(12))
    with pytest.raises(ValueError, match="outside"):
        swap_permutation((3, 4), (3, 0), (0, 0))


def test_window_permutation_stays_inside_its_block():
    gh, gw, M = 5, 7, 3  # edge blocks are 2 rows / 1 column
    p = window_permutation((gh, gw), M, seed=4)
    check_permutation(p, gh * gw)
    assert not torch.equal(p, torch.arange(gh * gw))
    for i, src in enumerate(p.tolist()):
        (y, x), (sy, sx) = divmod(i, gw), divmod(src, gw)
        assert (y // M, x // M) == (sy // M, sx // M)


def test_custom_permutations_are_validated():
    assert torch.equal(check_permutation([2, 0, 1], 3), torch.tensor([2, 0, 1]))
    assert torch.equal(check_permutation(np.array([1, 0])), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="exactly once"):
        check_permutation([0, 0, 1])
    with pytest.raises(ValueError, match="has 3 entries, the grid has 4"):
        check_permutation([0, 1, 2], 4)
    with pytest.raises(ValueError, match="integers"):
        check_permutation([0.0, 1.0])
    with pytest.raises(ValueError, match="not a permutation"):
        check_permutation(["a", None])


# ---------------------------------------------------------------- images, tokens, attention


def test_image_level_equals_token_level_through_patch_embedding():
    torch.manual_seed(0)
    embed = timm.layers.PatchEmbed(img_size=(32, 40), patch_size=8, in_chans=3, embed_dim=6)  # 4x5 grid
    x = torch.randn(2, 3, 32, 40)
    p = random_permutation((4, 5), seed=3)
    with torch.no_grad():
        tokens = embed(x)  # (B, 20, 6)
        scrambled = embed(apply_to_image(x, p, 8))
    assert torch.allclose(scrambled, apply_to_tokens(tokens, p), atol=1e-6)


def test_image_layouts_and_leftover_border():
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 255, size=(35, 42, 3), dtype=np.uint8)  # 4x5 grid of 8-px patches + border
    p = reverse_permutation((4, 5))
    out = apply_to_image(hwc, p, 8)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == hwc.shape
    assert np.array_equal(out[:8, :8], hwc[24:32, 32:40])  # position 0 shows original patch 19
    assert np.array_equal(out[32:], hwc[32:]) and np.array_equal(out[:, 40:], hwc[:, 40:])
    chw = torch.from_numpy(hwc).permute(2, 0, 1)
    assert np.array_equal(apply_to_image(chw, p, 8).permute(1, 2, 0).numpy(), out)
    gray = hwc[..., 0]
    assert np.array_equal(apply_to_image(gray, p, 8), out[..., 0])
    back = apply_to_image(out, inverse_permutation(p), 8)
    assert np.array_equal(back, hwc)
    with pytest.raises(ValueError, match="layout"):
        apply_to_image(np.zeros((3, 16, 3)), p, 8)
    with pytest.raises(ValueError, match="no whole"):
        apply_to_image(np.zeros((5, 6, 3)), p, 8)


def test_attention_round_trip_keeps_prefix_fixed():
    torch.manual_seed(0)
    prefix, n = 2, 6
    A = torch.randn(2, 3, prefix + n, prefix + n)
    p = random_permutation((2, 3), seed=5)
    scrambled = permute_attention(A, p, prefix)
    assert torch.equal(unpermute_attention(scrambled, p, prefix), A)
    assert torch.equal(scrambled[..., :prefix, :prefix], A[..., :prefix, :prefix])
    # Matrix form on the patch block: Pᵀ A_s P.
    P = permutation_matrix(p)
    assert torch.allclose(P.T @ scrambled[..., prefix:, prefix:] @ P, A[..., prefix:, prefix:])
    # The class token's attention to patch i of the scrambled input is its attention to original patch perm[i].
    i = 4
    assert scrambled[0, 0, 0, prefix + i] == A[0, 0, 0, prefix + int(p[i])]
    with pytest.raises(ValueError, match=r"\(\.\.\., T, T\)"):
        unpermute_attention(torch.zeros(3, 4), p, 0)


# ---------------------------------------------------------------- position embeddings and equivariance


@pytest.fixture(scope="module")
def tiny_vit():
    """A tiny timm ViT (class + register token) loaded into attnviz's net, with a strong position embedding."""
    torch.manual_seed(0)
    tm = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32, depth=2,
                           num_heads=2, reg_tokens=1, num_classes=5)
    with torch.no_grad():
        for blk in tm.blocks:
            blk.attn.qkv.weight.mul_(4.0)  # sharper attention
        tm.head.weight.normal_(0, 1.0)
        tm.pos_embed.normal_(0, 1.0)
        tm.cls_token.normal_(0, 1.0)
        tm.reg_token.normal_(0, 1.0)
    cfg = ViTConfig(img_size=(32, 32), patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_hidden_dim=128,
                    num_reg_tokens=1, num_classes=5)
    return build_model(ModelInfo("vit", cfg), tm.state_dict())


def test_equivariance_without_position_embeddings(tiny_vit):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    p = random_permutation((4, 4), seed=7)
    off = equivariance_check(tiny_vit, x, p, use_pos_embed=False)
    on = equivariance_check(tiny_vit, x, p, use_pos_embed=True)
    assert isinstance(off, EquivarianceReport) and len(off.attn_max_abs_diff) == 2
    assert not off.pos_embed_used and on.pos_embed_used
    assert off.logits_max_abs_diff < 1e-5 and off.max_attn_diff < 1e-5
    assert off.is_equivariant()
    assert on.logits_max_abs_diff > 1e-3 and on.max_attn_diff > 1e-2  # far above float precision
    assert not on.is_equivariant()
    assert not hasattr(tiny_vit, "use_pos_embed")  # an argument of the capture, no switch left on the net


def test_position_embeddings_off_is_an_argument_of_one_capture(tiny_vit):
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        with_pe = tiny_vit(x)
        without = tiny_vit.capture(x, use_pos_embed=False).logits
        assert torch.allclose(tiny_vit.capture(x).logits, with_pe, atol=1e-5)  # the default uses them
        tokens, _ = tiny_vit.embed(x, use_pos_embed=False)  # (1, 2 + 16, C)
        assert torch.allclose(tiny_vit.embed(x)[0] - tokens, tiny_vit.pos_embed.expand_as(tokens), atol=1e-6)
        assert torch.equal(tiny_vit(x), with_pe)  # nothing stayed switched off
    assert not torch.allclose(with_pe, without)
    swin = create_net(SwinConfig(img_size=(32, 32), embed_dim=8, depths=(2,), num_heads=(1,), window_size=(4,),
                                 num_classes=2)).eval()
    with pytest.raises(ValueError, match="no absolute position embedding"):
        swin.capture(torch.randn(1, 3, 32, 32), use_pos_embed=False)


def test_equivariance_check_rejects_swin_and_bad_input(tiny_vit):
    swin = create_net(SwinConfig(img_size=(32, 32), embed_dim=8, depths=(2,), num_heads=(1,), window_size=(4,),
                                 num_classes=2)).eval()
    with pytest.raises(ValueError, match="ViT-family"):  # with position embeddings or without
        equivariance_check(swin, torch.randn(1, 3, 32, 32), random_permutation((8, 8)))
    with pytest.raises(ValueError, match="ViT-family"):
        equivariance_check(swin, torch.randn(1, 3, 32, 32), random_permutation((8, 8)), use_pos_embed=False)
    with pytest.raises(ValueError, match="has 4 entries, the grid has 16"):
        equivariance_check(tiny_vit, torch.randn(1, 3, 32, 32), [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        equivariance_check(tiny_vit, torch.randn(3, 32, 32), random_permutation((4, 4)))
