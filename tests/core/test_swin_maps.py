"""Swin query maps and the Swin rollout on constructed attention, a dense reference and real captures."""
from __future__ import annotations

import pytest
import timm
import torch
from timm.models.swin_transformer import SwinTransformerBlock

from attnviz.analysis.swin_maps import (
    merge_matrix,
    query_attention_image,
    query_attention_map,
    stage_map_to_image,
    stage_map_to_patch_grid,
    swin_rollout,
    swin_rollout_matrix,
    swin_rollout_rows,
)
from attnviz.nets import BlockCapture, ModelInfo, SwinBlockCapture, SwinConfig, build_model
from attnviz.nets.windows import block_geometry, effective_window, padded_size


def _timm_slots(res: tuple[int, int], M: int, s: int) -> torch.Tensor:
    """(nW, M²) original token index in every window slot, read off timm's own block (-1 = padding)."""
    blk = SwinTransformerBlock(dim=1, input_resolution=res, num_heads=1, window_size=M, shift_size=s)
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x, mask=None):
            seen["x"] = x.detach().clone()
            return x

    blk.attn = Spy()
    H, W = res
    blk._attn((torch.arange(H * W, dtype=torch.float32) + 1).reshape(1, H, W, 1))
    return seen["x"][..., 0].long() - 1  # (nW, M²)


def _block(index: int, stage: int, res: tuple[int, int], M: int, s: int, attn: torch.Tensor, heads: int = 1):
    px = 4 * 2**stage
    geom = block_geometry(res, M, s, px)  # resolves the effective window and shift
    M2 = geom.window_size**2
    return SwinBlockCapture(index=index, attn=attn, num_heads=heads, stage=stage, grid_size=res, token_px=px,
                            geometry=geom, bias=torch.zeros(heads, M2, M2))


def _attn_from_rule(res, M, s, rule, heads: int = 1) -> torch.Tensor:
    """(1, nW, heads, M², M²) attention with A[q, k] = rule(q_token, k_token) on original token indices."""
    M, s = effective_window(res, M, s)
    slots = _timm_slots(res, M, s)
    nW, M2 = slots.shape
    A = torch.zeros(nW, M2, M2)
    for w in range(nW):
        for i in range(M2):
            for j in range(M2):
                A[w, i, j] = rule(int(slots[w, i]), int(slots[w, j]), slots[w])
    return A[None, :, None].repeat(1, 1, heads, 1, 1)


def _random_attn(res, M, s, heads, gen) -> torch.Tensor:
    M, s = effective_window(res, M, s)
    Hp, Wp = padded_size(res, M)
    nW = (Hp // M) * (Wp // M)
    return torch.randn(1, nW, heads, M * M, M * M, generator=gen).mul(2).softmax(-1)


# ---------------------------------------------------------------- the query's window attention


def _right_neighbour_rule(W):
    def rule(q, k, window):
        if q < 0:
            return 0.0
        y, x = divmod(q, W)
        target = y * W + (x + 1) % W  # the token right of q, wrapping at the right edge
        if target in window.tolist():
            return 1.0 if k == target else 0.0
        return 1.0 if k == q else 0.0

    return rule


def test_shift_is_undone_query_attends_to_its_right_neighbour():
    res, M, s = (8, 8), 4, 2
    blk = _block(0, 0, res, M, s, _attn_from_rule(res, M, s, _right_neighbour_rule(8)))
    # Original rows/columns 2..5 form ordinary windows; 6, 7, 0, 1 wrapped ones. (3, 3) -> (3, 4) in an ordinary
    # window; (6, 7) -> (6, 0) and (0, 0) -> (0, 1) in wrapped ones; (0, 1) has no right neighbour in its window.
    for (y, x), (ty, tx) in [((3, 3), (3, 4)), ((6, 7), (6, 0)), ((0, 0), (0, 1)), ((0, 1), (0, 1))]:
        m = query_attention_map(blk, (y, x))
        expected = torch.zeros(8, 8)
        expected[ty, tx] = 1.0
        assert torch.equal(m, expected), (y, x)
        # The same through the rollout of this one block, with the residual switched off.
        r = swin_rollout([blk], target=(y, x), alpha=0.0)
        assert torch.allclose(r, expected)


def test_query_map_zero_outside_window_and_padding_dropped():
    res, M, s = (6, 6), 4, 2  # padded to 8: windows hold padding slots
    blk = _block(0, 0, res, M, s, torch.full((1, 4, 1, 16, 16), 1.0 / 16))
    m = query_attention_map(blk, (0, 0))
    slots = _timm_slots(res, M, s)
    w = int((slots == 0).nonzero()[0, 0])
    members = slots[w][slots[w] >= 0]
    expected = torch.zeros(36)
    expected[members] = 1.0 / 16
    assert torch.allclose(m.flatten(), expected)
    assert float(m.sum()) < 1.0  # padding keys are not shown
    # Rollout renormalises without padding: uniform over the real tokens of the window.
    r = swin_rollout([blk], target=(0, 0), alpha=0.0).flatten()
    assert torch.allclose(r[members], torch.full((len(members),), 1.0 / len(members)))
    assert float(r.sum()) == pytest.approx(1.0, abs=1e-6)


def test_head_selection_and_fusion():
    res, M = (4, 4), 2
    gen = torch.Generator().manual_seed(0)
    attn = _random_attn(res, M, 0, 3, gen)
    blk = _block(0, 0, res, M, 0, attn, heads=3)
    per_head = torch.stack([query_attention_map(blk, (1, 2), head_fusion=h) for h in range(3)])
    assert torch.allclose(query_attention_map(blk, (1, 2)), per_head.mean(0))
    assert torch.allclose(query_attention_map(blk, (1, 2), head_fusion="max"), per_head.amax(0))
    with pytest.raises(ValueError, match="head 3 does not exist"):
        query_attention_map(blk, (0, 0), head_fusion=3)
    with pytest.raises(ValueError, match="head_fusion"):
        query_attention_map(blk, (0, 0), head_fusion="median")


# ---------------------------------------------------------------- Swin rollout


def _identity_blocks(grids, M=2):
    blocks = []
    for stage, res in enumerate(grids):
        for k in range(2):
            Mi, si = effective_window(res, M, (M // 2) if k else 0)
            nW = (padded_size(res, Mi)[0] // Mi) * (padded_size(res, Mi)[1] // Mi)
            eye = torch.eye(Mi * Mi).expand(1, nW, 2, -1, -1).clone()
            blocks.append(_block(len(blocks), stage, res, M, (M // 2) if k else 0, eye, heads=2))
    return blocks


def test_identity_attention_gives_the_receptive_field():
    blocks = _identity_blocks([(8, 8), (4, 4), (2, 2)])
    # A final token is made of its 4x4 patch block, equally.
    r = swin_rollout(blocks, target=(1, 0))
    expected = torch.zeros(8, 8)
    expected[4:8, 0:4] = 1.0 / 16
    assert torch.allclose(r, expected)
    # The pooled prediction draws on every patch equally.
    assert torch.allclose(swin_rollout(blocks, target="mean"), torch.full((8, 8), 1.0 / 64))
    # Stage 0 alone: identity.
    assert torch.allclose(swin_rollout_matrix(blocks[:2]), torch.eye(64))


def test_hand_built_two_stage_toy():
    # Stage 0: 4x4 grid, 2x2 windows, every token attends to its window's top-left token.
    # Stage 1: 2x2 grid, one window, token slot i attends to slot (i + 1) % 4.
    top_left = torch.zeros(4, 4)
    top_left[:, 0] = 1.0
    a0 = top_left.expand(1, 4, 1, 4, 4).clone()
    nxt = torch.roll(torch.eye(4), 1, dims=1)  # row i has its 1 at column i + 1
    a1 = nxt.expand(1, 1, 1, 4, 4).clone()
    blocks = [_block(0, 0, (4, 4), 2, 0, a0), _block(1, 1, (2, 2), 2, 0, a1)]
    r = swin_rollout(blocks, target=(0, 0), alpha=0.5)
    # Stage 1: 0.5 on token (0, 0) itself + 0.5 on (0, 1). Merge: 1/8 on each child of both.
    # Stage 0: a window holding mass m spread evenly keeps m/2 spread and moves m/2 to its top-left.
    expected = torch.zeros(4, 4)
    for x0 in (0, 2):
        expected[0:2, x0:x0 + 2] = 0.0625
        expected[0, x0] += 0.25
    assert torch.allclose(r, expected)


def _dense_reference(blocks, alpha, fusion="mean"):
    """R = Ã_L ... D ... Ã_1 with explicit N x N matrices built slot by slot from timm's partition."""
    R = None
    prev = None
    for b in blocks:
        H, W = b.grid_size
        N = H * W
        if R is None:
            R = torch.eye(N, dtype=torch.float64)
        elif prev.stage != b.stage:
            Hf, Wf = prev.grid_size
            D = torch.zeros(N, Hf * Wf, dtype=torch.float64)
            for i in range(H):
                for j in range(W):
                    kids = [(2 * i + a) * Wf + 2 * j + c for a in (0, 1) for c in (0, 1)
                            if 2 * i + a < Hf and 2 * j + c < Wf]
                    for k in kids:
                        D[i * W + j, k] = 1.0 / len(kids)
            R = D @ R
        slots = _timm_slots((H, W), b.window_size, b.shift_size)
        fused = {"mean": b.attn[0].mean(1), "max": b.attn[0].amax(1)}[fusion].double()  # (nW, M², M²)
        A = torch.zeros(N, N, dtype=torch.float64)
        for w in range(slots.shape[0]):
            for i, q in enumerate(slots[w].tolist()):
                if q < 0:
                    continue
                for j, k in enumerate(slots[w].tolist()):
                    if k >= 0:
                        A[q, k] = fused[w, i, j]
        A = A / A.sum(1, keepdim=True)
        R = ((1 - alpha) * A + alpha * torch.eye(N, dtype=torch.float64)) @ R
        prev = b
    return R.float()


@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_rollout_equals_a_dense_reference_with_shifts_padding_and_odd_grids(fusion):
    gen = torch.Generator().manual_seed(3)
    blocks = []
    for stage, res in enumerate([(5, 7), (3, 4), (2, 2)]):  # odd sizes: padded windows and merges
        for k in range(2):
            s = 1 if k else 0
            blocks.append(_block(len(blocks), stage, res, 2, s, _random_attn(res, 2, s, 2, gen), heads=2))
    ref = _dense_reference(blocks, alpha=0.3, fusion=fusion)
    ours = swin_rollout_matrix(blocks, alpha=0.3, head_fusion=fusion)
    assert ours.shape == (4, 35)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert torch.allclose(ours.sum(1), torch.ones(4), atol=1e-6)
    # Rollout up to an intermediate block (first block of stage 1) and the pooled map.
    assert torch.allclose(swin_rollout_matrix(blocks[:3], alpha=0.3, head_fusion=fusion),
                          _dense_reference(blocks[:3], alpha=0.3, fusion=fusion), atol=1e-6)
    mean = swin_rollout(blocks, "mean", alpha=0.3, head_fusion=fusion)
    assert torch.allclose(mean.flatten(), ref.mean(0), atol=1e-6)


def test_merge_matrix_rows_average_the_real_children():
    D = merge_matrix((3, 5), (2, 3))
    assert D.shape == (6, 15)
    assert torch.allclose(D.sum(1), torch.ones(6))
    assert D[0, 0] == 0.25 and D[0, 6] == 0.25  # (0,0) has children (0,0),(0,1),(1,0),(1,1)
    assert D[5, 14] == 1.0  # (1,2) has one real child: (2,4)
    with pytest.raises(ValueError, match="merges to"):
        merge_matrix((4, 4), (3, 2))


def test_rollout_rejects_bad_input():
    blk = _block(0, 0, (4, 4), 2, 0, torch.full((1, 4, 1, 4, 4), 0.25))
    with pytest.raises(ValueError, match="no attention blocks"):
        swin_rollout([])
    with pytest.raises(ValueError, match="outside"):
        swin_rollout([blk], target=(4, 0))
    with pytest.raises(ValueError, match="alpha"):
        swin_rollout([blk], alpha=1.5)
    with pytest.raises(ValueError, match="targets must be"):
        swin_rollout_rows([blk], torch.ones(1, 5))
    vit_like = BlockCapture(index=0, attn=torch.ones(1, 1, 5, 5) / 5, num_heads=1)
    with pytest.raises(ValueError, match="not a Swin block"):
        swin_rollout([vit_like])


def test_stage_maps_to_patch_grid_and_pixels():
    m = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    up = stage_map_to_patch_grid(m, 2, (3, 5))
    assert up.shape == (3, 5) and up[2, 4] == m[1, 2] and up[1, 1] == m[0, 0]
    px = stage_map_to_image(m, 4, (9, 13))
    assert px.shape == (9, 13) and px[7, 11] == m[1, 2] and px[8, 12] == 0


# ---------------------------------------------------------------- real captures


@pytest.fixture(scope="module")
def tiny_swin_capture():
    torch.manual_seed(0)
    tm = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=56, embed_dim=16,
                           depths=(2, 2, 2), num_heads=(1, 2, 2), window_size=4, num_classes=3)
    with torch.no_grad():
        for name, p in tm.named_parameters():
            if "qkv.weight" in name:
                p.mul_(20)  # sharpen attention so the maps are far from uniform
    cfg = SwinConfig(version=1, img_size=(56, 56), patch_size=4, embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 2),
                     window_size=(4, 4, 4), pretrained_window_size=(0, 0, 0), num_classes=3)
    net = build_model(ModelInfo("swin", cfg), tm.state_dict())
    # 14x14 (padded to 16), 7x7 (padded to 8), both with shifted blocks; 4x4 (one window, no shift)
    return net.capture(torch.randn(1, 3, 56, 56))


def test_rollout_on_a_real_capture(tiny_swin_capture):
    blocks = tiny_swin_capture.blocks
    assert [b.grid_size for b in blocks] == [(14, 14)] * 2 + [(7, 7)] * 2 + [(4, 4)] * 2
    assert [b.shift_size for b in blocks] == [0, 2, 0, 2, 0, 0]
    ref = _dense_reference(blocks, alpha=0.5)
    ours = swin_rollout_matrix(blocks)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert torch.allclose(ours.sum(1), torch.ones(16), atol=1e-6)
    assert float(ours.std()) > 1e-4  # not uniform: the check above has something to compare


def test_query_map_on_a_real_capture_is_the_captured_row(tiny_swin_capture):
    b = tiny_swin_capture.blocks[1]  # shifted 14x14 block, padded to 16
    slots = _timm_slots((14, 14), 4, 2)
    for (y, x) in [(0, 0), (13, 13), (5, 10)]:
        w, i = (slots == y * 14 + x).nonzero()[0].tolist()
        m = query_attention_map(b, (y, x), head_fusion=0).flatten()
        real = slots[w] >= 0
        assert torch.allclose(m[slots[w][real]], b.attn[0, w, 0, i][real])
        outside = torch.ones(196, dtype=torch.bool)
        outside[slots[w][slots[w] >= 0]] = False
        assert float(m[outside].abs().max()) == 0.0


def test_query_map_from_a_pixel_over_the_image(tiny_swin_capture):
    b = tiny_swin_capture.blocks[3]  # stage 1: 8-pixel tokens on a 7x7 grid, shifted
    img = query_attention_image(b, (20, 41), (56, 56), head_fusion=1)
    stage = query_attention_map(b, (20 // 8, 41 // 8), head_fusion=1)
    assert img.shape == (56, 56)
    assert torch.equal(img[::8, ::8], stage)
    assert torch.equal(img[7::8, 7::8], stage)
    with pytest.raises(ValueError, match="outside"):
        query_attention_image(b, (56, 0), (56, 56))
