"""Query maps and token <-> grid helpers (attnviz.analysis.query)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attnviz.analysis.query import (as_heads, image_attentions, patch_map, prefix_attention, query_attention,
                                    query_map, token_index, token_position)
from attnviz.nets import ModelInfo, SwinConfig, ViTConfig, build_model, create_net


def _softmax_rows(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 2.0) -> np.ndarray:
    x = rng.normal(size=shape) * scale
    p = np.exp(x - x.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def test_token_index_and_position_are_inverse_on_a_non_square_grid():
    grid, P = (3, 5), 2  # 3 rows, 5 columns, behind two prefix tokens
    seen = set()
    for r in range(3):
        for c in range(5):
            i = token_index(r, c, grid, P)
            assert token_position(i, grid, P) == (r, c)
            seen.add(i)
    assert seen == set(range(P, P + 15))
    assert token_index(1, 0, grid, P) == P + 5  # row-major: one row is gw tokens
    assert token_position(0, grid, P) is None and token_position(1, grid, P) is None


@pytest.mark.parametrize("call", [
    lambda: token_index(3, 0, (3, 5), 1),
    lambda: token_index(0, 5, (3, 5), 1),
    lambda: token_position(16, (3, 5), 1),
    lambda: token_position(-1, (3, 5), 1),
])
def test_positions_outside_the_grid_are_refused(call):
    with pytest.raises(ValueError):
        call()


def test_query_attention_reads_the_query_row_at_every_patch():
    rng = np.random.default_rng(0)
    grid, P, H = (3, 4), 2, 3
    N = P + 12
    attn = _softmax_rows(rng, (H, N, N))
    for q in (0, 1, P, N - 1):
        m = query_attention(attn, q, P, grid)
        assert m.shape == (H, 3, 4) and m.dtype == np.float64
        for r in range(3):
            for c in range(4):
                np.testing.assert_array_equal(m[:, r, c], attn[:, q, token_index(r, c, grid, P)])


@pytest.mark.parametrize("fusion,reduce", [("mean", np.mean), ("max", np.max), ("min", np.min)])
def test_query_map_fuses_heads(fusion, reduce):
    rng = np.random.default_rng(1)
    grid, P, H = (2, 3), 1, 4
    attn = torch.from_numpy(_softmax_rows(rng, (H, 7, 7))).float()  # torch float32 input
    m = query_map(attn, 3, P, grid, fusion)
    expected = reduce(attn.double().numpy()[:, 3, 1:], axis=0).reshape(2, 3)
    np.testing.assert_allclose(m, expected, rtol=1e-6)
    np.testing.assert_array_equal(query_map(attn, 3, P, grid, 2), attn.double().numpy()[2, 3, 1:].reshape(2, 3))
    with pytest.raises(ValueError):
        query_map(attn, 3, P, grid, 4)
    with pytest.raises(ValueError):
        query_map(attn, 3, P, grid, "median")


def test_patch_map_normalisations():
    v = np.array([9.0, 1.0, 2.0, 3.0, 0.0, 4.0, 2.0])  # one prefix token, a 2x3 grid
    np.testing.assert_array_equal(patch_map(v, 1, (2, 3)), [[1, 2, 3], [0, 4, 2]])
    np.testing.assert_allclose(patch_map(v, 1, (2, 3), "max"), np.array([[1, 2, 3], [0, 4, 2]]) / 4)
    np.testing.assert_allclose(patch_map(v, 1, (2, 3), "sum"), np.array([[1, 2, 3], [0, 4, 2]]) / 12)
    np.testing.assert_array_equal(patch_map(np.zeros(7), 1, (2, 3), "max"), np.zeros((2, 3)))
    with pytest.raises(ValueError):
        patch_map(v, 2, (2, 3))  # 2 + 6 != 7


def test_prefix_attention_and_input_forms():
    rng = np.random.default_rng(2)
    attn = _softmax_rows(rng, (2, 6, 6))
    np.testing.assert_array_equal(prefix_attention(attn, 4, 2), attn[:, 4, :2])
    assert as_heads(attn[None]).shape == (2, 6, 6)  # a batch of one is accepted
    with pytest.raises(ValueError):
        as_heads(attn[0])  # (N, N): heads missing
    with pytest.raises(ValueError):
        query_attention(attn, 6, 2, (2, 2))


def test_image_attentions_from_a_real_capture():
    cfg = ViTConfig(img_size=(32, 48), patch_size=16, embed_dim=32, depth=3, num_heads=2, mlp_hidden_dim=64,
                    num_reg_tokens=1, num_classes=5)
    net = build_model(ModelInfo(family="vit", config=cfg), create_net(cfg).state_dict())
    cap = net.capture(torch.randn(2, 3, 32, 48))
    attns = image_attentions(cap, 1)
    assert len(attns) == 3
    for a, blk in zip(attns, cap.blocks):
        assert a.shape == (2, 2 + 6, 2 + 6)
        torch.testing.assert_close(a, blk.attn[1])
    m = query_map(attns[0], 0, cap.num_prefix_tokens, cap.grid_size)
    assert m.shape == (2, 3)
    with pytest.raises(ValueError):
        image_attentions(cap, 2)


def test_image_attentions_refuses_swin():
    cfg = SwinConfig(img_size=(32, 32), embed_dim=8, depths=(2,), num_heads=(2,), window_size=(4,),
                     pretrained_window_size=(0,), num_classes=3)
    net = build_model(ModelInfo(family="swin", config=cfg), create_net(cfg).state_dict())
    with pytest.raises(ValueError, match="Swin"):
        image_attentions(net.capture(torch.randn(1, 3, 32, 32)))
