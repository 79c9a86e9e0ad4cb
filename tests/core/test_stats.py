"""Head statistics (attnviz.analysis.stats): hand cases, Swin windows with padding, running means."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnviz.analysis.flow import Cancelled
from attnviz.analysis.stats import dataset_head_stats, head_stats, swin_block_stats, vit_block_stats
from attnviz.analysis.windows import block_geometry, geometry_of, window_token_index
from attnviz.nets import ModelInfo, SwinConfig, ViTConfig, build_model, create_net
from attnviz.nets.capture import Capture, SwinBlockCapture

# One class token and a 1x3 patch grid; rows: queries [cls, p0, p1, p2], columns: keys in the same order.
ATTN_1x3 = np.array([
    [0.25, 0.25, 0.25, 0.25],
    [0.50, 0.25, 0.00, 0.25],  # over patches [.5, 0, .5] -> 0.5·0 + 0.5·32 = 16 px
    [0.00, 0.50, 0.00, 0.50],  # [.5, 0, .5] from the middle -> 16 px
    [0.20, 0.40, 0.40, 0.00],  # [.5, .5, 0] -> 0.5·32 + 0.5·16 = 24 px
])


def test_vit_statistics_by_hand():
    md, ent, share = vit_block_stats(torch.tensor(ATTN_1x3)[None, None], 1, (1, 3), 16)
    assert md.shape == ent.shape == share.shape == (1, 1)
    assert md[0, 0] == pytest.approx((16 + 16 + 24) / 3)
    h = lambda row: -sum(p * math.log(p) for p in row if p > 0)  # noqa: E731
    assert ent[0, 0] == pytest.approx(np.mean([h(r) for r in ATTN_1x3]))
    assert share[0, 0] == pytest.approx((0.5 + 0.0 + 0.2) / 3)


def test_mean_distance_is_euclidean_between_patch_centres():
    # 2x2 grid, no prefix; every query looks only at the diagonally opposite patch
    a = torch.zeros(1, 1, 4, 4)
    for q, k in ((0, 3), (1, 2), (2, 1), (3, 0)):
        a[0, 0, q, k] = 1.0
    md, ent, share = vit_block_stats(a, 0, (2, 2), 14)
    assert md[0, 0] == pytest.approx(14 * math.sqrt(2))
    assert ent[0, 0] == 0.0
    assert share[0, 0] == 0.0  # no prefix tokens: nothing goes to them


def _swin_reference(attn: np.ndarray, grid, M, token_px, shift=0):
    """Loop-by-loop mean distance and entropy over real tokens. Windows run row-major over the rolled,
    padded grid; a slot at rolled (r, c) holds the token of grid position ((r + shift) % H, (c + shift) % W)."""
    H, W = grid
    Wp = math.ceil(W / M) * M
    B, nW, heads = attn.shape[:3]
    md = np.zeros((B, heads))
    ent = np.zeros((B, heads))
    count = 0
    for w in range(nW):
        wr, wc = divmod(w, Wp // M)
        rolled = [(wr * M + q // M, wc * M + q % M) for q in range(M * M)]
        pos = [((r + shift) % H, (c + shift) % W) if r < H and c < W else None for r, c in rolled]
        for q in range(M * M):
            if pos[q] is None:
                continue
            count += 1
            row = attn[:, w, :, q, :]  # (B, heads, M²)
            kept = sum(row[..., j] for j in range(M * M) if pos[j] is not None)
            for k in range(M * M):
                if pos[k] is not None:
                    d = token_px * math.hypot(pos[q][0] - pos[k][0], pos[q][1] - pos[k][1])
                    md += row[..., k] / kept * d
                p = row[..., k]
                ent -= np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)
    return md / count, ent / count


def test_swin_block_leaves_padding_out():
    rng = np.random.default_rng(0)
    M, grid = 2, (3, 3)  # padded to 4x4: four windows, the last holds one real token
    x = rng.normal(size=(2, 4, 3, M * M, M * M)) * 2
    attn = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    blk = SwinBlockCapture(index=0, attn=torch.tensor(attn, dtype=torch.float32), num_heads=3, grid_size=grid,
                           token_px=8, geometry=block_geometry(grid, M, 0, 8), bias=torch.zeros(3, M * M, M * M))
    assert blk.padded_size == (4, 4)
    real = window_token_index(geometry_of(blk)) >= 0  # (nW, M²)
    assert real.sum() == 9
    assert real[3].tolist() == [True, False, False, False]
    assert real[1].tolist() == [True, False, True, False]  # the right column of window 1 is padding
    md, ent = swin_block_stats(blk)
    ref_md, ref_ent = _swin_reference(attn.astype(np.float32).astype(np.float64), grid, M, 8)
    np.testing.assert_allclose(md, ref_md, rtol=1e-10)
    np.testing.assert_allclose(ent, ref_ent, rtol=1e-10)


def _tiny_swin():
    cfg = SwinConfig(img_size=(40, 40), patch_size=4, embed_dim=8, depths=(2, 2), num_heads=(2, 4),
                     window_size=(4, 4), pretrained_window_size=(0, 0), num_classes=3)
    return build_model(ModelInfo(family="swin", config=cfg), create_net(cfg).state_dict())


def test_swin_capture_statistics_and_nan_padding():
    torch.manual_seed(0)
    net = _tiny_swin()  # grids 10x10 then 5x5 with 4x4 windows: both padded, second stage shifted
    cap = net.capture(torch.randn(1, 3, 40, 40))
    st = head_stats(cap)
    assert st.mean_distance.shape == (4, 4) and st.num_heads == [2, 2, 4, 4]
    assert np.isnan(st.mean_distance[:2, 2:]).all() and np.isfinite(st.mean_distance[:2, :2]).all()
    assert np.isnan(st.prefix_share).all()
    for i, blk in enumerate(cap.blocks):
        ref_md, ref_ent = _swin_reference(blk.attn.double().numpy(), blk.grid_size, blk.window_size, blk.token_px,
                                          blk.shift_size)
        np.testing.assert_allclose(st.mean_distance[i, : blk.num_heads], ref_md[0], rtol=1e-9)
        np.testing.assert_allclose(st.entropy[i, : blk.num_heads], ref_ent[0], rtol=1e-9)
    assert cap.blocks[2].token_px == 8  # second stage tokens cover 8 px


def _tiny_vit():
    cfg = ViTConfig(img_size=(32, 48), patch_size=16, embed_dim=32, depth=2, num_heads=2, mlp_hidden_dim=64,
                    num_reg_tokens=2, num_classes=4)
    return build_model(ModelInfo(family="vit", config=cfg), create_net(cfg).state_dict())


def test_vit_capture_statistics_and_batch_means():
    torch.manual_seed(1)
    net = _tiny_vit()
    x = torch.randn(3, 3, 32, 48)
    cap = net.capture(x)
    one = head_stats(cap, 1)
    md, ent, share = vit_block_stats(cap.blocks[1].attn, 3, (2, 3), 16)
    np.testing.assert_allclose(one.mean_distance[1], md[1])
    np.testing.assert_allclose(one.entropy[1], ent[1])
    np.testing.assert_allclose(one.prefix_share[1], share[1])
    assert (one.entropy <= math.log(3 + 6) + 1e-12).all() and (one.prefix_share > 0).all()
    whole = head_stats(cap)
    np.testing.assert_allclose(whole.entropy[1], ent.mean(0))
    assert whole.images == 3 and one.images == 1
    with pytest.raises(ValueError):
        head_stats(cap, 3)


def test_dataset_statistics_are_running_means_over_images():
    torch.manual_seed(2)
    net = _tiny_vit()
    x = torch.randn(3, 3, 32, 48)
    expected = head_stats(net.capture(x))
    seen = []

    def captures():
        yield net.capture(x[:2])
        yield net.capture(x[2:])

    got = dataset_head_stats(captures, total=2, progress=lambda d, t: seen.append((d, t)))
    assert got.images == 3 and seen == [(1, 2), (2, 2)]
    for name in ("mean_distance", "entropy", "prefix_share"):
        np.testing.assert_allclose(getattr(got, name), getattr(expected, name), rtol=1e-6)


def test_dataset_statistics_cancel_and_errors():
    net = _tiny_vit()
    caps = [net.capture(torch.randn(1, 3, 32, 48)) for _ in range(2)]
    with pytest.raises(Cancelled):
        dataset_head_stats(iter(caps), cancel=lambda: True)
    with pytest.raises(ValueError):
        dataset_head_stats(iter([]))
    swin_cap = _tiny_swin().capture(torch.randn(1, 3, 40, 40))
    with pytest.raises(ValueError):
        dataset_head_stats(iter([caps[0], swin_cap]))
    with pytest.raises(ValueError):
        head_stats(Capture(family="vit", logits=None))
