"""What the Swin inspector computes, against independent computations and timm's own Swin block."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from timm.models.swin_transformer import SwinTransformerBlock

from attnviz.analysis.windows import block_geometry, pixel_window_index, window_rects

# (grid, M, configured shift, token_px, image size): unpadded, padded, image wider than the tokens,
# and a map no larger than the window (one window, no shift).
CASES = [
    ((8, 8), 4, 2, 4, (32, 32)),
    ((14, 14), 4, 2, 4, (56, 56)),
    ((7, 10), 4, 2, 8, (59, 83)),
    ((5, 7), 3, 1, 2, (11, 15)),
    ((3, 3), 4, 2, 16, (50, 48)),
]


def _reference(grid, M, s, token_px, img_size) -> np.ndarray:
    """Window per pixel the way the network builds windows: a token-index grid rolled by (-s, -s),
    padded bottom/right with -1, cut into M x M windows row-major; then each token painted on its
    token_px x token_px pixels."""
    H, W = grid
    idx = np.arange(H * W).reshape(H, W)  # (H, W)
    idx = np.roll(idx, (-s, -s), axis=(0, 1))
    Hp, Wp = -(-H // M) * M, -(-W // M) * M
    padded = np.full((Hp, Wp), -1)
    padded[:H, :W] = idx  # (Hp, Wp)
    win_of_token = np.empty(H * W, dtype=int)
    for wy in range(Hp // M):
        for wx in range(Wp // M):
            cell = padded[wy * M:(wy + 1) * M, wx * M:(wx + 1) * M]  # (M, M)
            win_of_token[cell[cell >= 0]] = wy * (Wp // M) + wx
    out = np.full(img_size, -1)
    for py in range(img_size[0]):
        for px in range(img_size[1]):
            y, x = py // token_px, px // token_px
            if y < H and x < W:
                out[py, px] = win_of_token[y * W + x]
    return out


@pytest.mark.parametrize("grid,M,s,token_px,img_size", CASES)
def test_pixel_window_index_matches_roll_pad_partition(grid, M, s, token_px, img_size):
    geom = block_geometry(grid, M, s, token_px)
    got = pixel_window_index(geom, img_size)
    assert got.shape == img_size and got.dtype == np.int32
    np.testing.assert_array_equal(got, _reference(grid, geom.window_size, geom.shift_size, token_px, img_size))


@pytest.mark.parametrize("grid,M,s,token_px,img_size", CASES)
def test_pixel_window_index_agrees_with_window_rects(grid, M, s, token_px, img_size):
    """Painting every window's pixel rectangles with its index gives the same picture."""
    geom = block_geometry(grid, M, s, token_px)
    painted = np.full(img_size, -1)
    for w, rects in enumerate(window_rects(geom, "pixels", img_size)):
        for r in rects:
            assert (painted[r.y0:r.y1, r.x0:r.x1] == -1).all()  # windows do not overlap
            painted[r.y0:r.y1, r.x0:r.x1] = w
    np.testing.assert_array_equal(pixel_window_index(geom, img_size), painted)


@pytest.mark.parametrize("res,M,s", [((8, 8), 4, 2), ((14, 14), 4, 2), ((7, 10), 4, 2)])
def test_pixel_window_index_is_timms_window(res, M, s):
    """timm's own block: feed it 1 + token index and read which window each token landed in."""
    blk = SwinTransformerBlock(dim=1, input_resolution=res, num_heads=1, window_size=M, shift_size=s)
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x, mask=None):
            seen["x"] = x.detach().clone()
            return x

    blk.attn = Spy()
    H, W = res
    blk._attn((torch.arange(H * W, dtype=torch.float32) + 1).reshape(1, H, W, 1))
    slots = seen["x"][..., 0].long() - 1  # (nW, M²) token index per slot, -1 padding
    token_px = 3
    geom = block_geometry(res, M, s, token_px)
    assert geom.shift_size == blk.shift_size[0]
    got = pixel_window_index(geom, (H * token_px + 2, W * token_px + 1))
    for w in range(slots.shape[0]):
        for t in slots[w][slots[w] >= 0].tolist():
            y, x = divmod(t, W)
            assert (got[y * token_px:(y + 1) * token_px, x * token_px:(x + 1) * token_px] == w).all()
    assert (got[H * token_px:, :] == -1).all() and (got[:, W * token_px:] == -1).all()


def test_pixel_window_index_rejects_empty_image():
    with pytest.raises(ValueError):
        pixel_window_index(block_geometry((4, 4), 2, 1, 4), (0, 16))


@pytest.fixture(scope="module")
def padded_capture():
    """A random-init Swin v1 at 56 px: 14×14 and 7×7 stage maps, padded to multiples of the 4-token window."""
    from attnviz.nets import create_net
    from attnviz.nets.config import SwinConfig

    torch.manual_seed(0)
    cfg = SwinConfig(img_size=(56, 56), embed_dim=16, depths=(2, 2, 2), num_heads=(2, 2, 4), window_size=(4, 4, 4),
                     num_classes=3)
    net = create_net(cfg).eval()
    with torch.no_grad():
        return net.capture(torch.randn(1, 3, 56, 56))


def test_pixel_window_index_is_the_first_index_of_the_captured_attention(padded_capture):
    """The network's attention of a token reaches exactly the pixels of its window (per this index)."""
    from attnviz.analysis.swin_maps import query_attention_image

    cap = padded_capture
    assert any(b.geometry.padded_size != b.geometry.grid_size for b in cap.blocks)
    for b in cap.blocks:
        g = b.geometry
        idx = pixel_window_index(g, (56, 56))
        assert b.attn.shape[1] == g.num_windows and set(np.unique(idx[idx >= 0])) == set(range(g.num_windows))
        t = g.token_px
        for py, px in ((0, 0), (55, 55), (27, 40), (50, 3)):
            if py // t >= g.grid_size[0] or px // t >= g.grid_size[1]:
                continue
            att = query_attention_image(b, (py, px), (56, 56)).numpy()  # zero outside the query's window
            assert (att[idx != idx[py, px]] == 0).all() and (att[idx == idx[py, px]] > 0).all()


def test_slot_regions_are_the_labels_of_the_captured_mask(padded_capture):
    from attnviz.analysis.windows import slot_regions

    shifted = [b for b in padded_capture.blocks if b.attn_mask is not None]
    assert shifted
    for b in shifted:
        lab = slot_regions(b.geometry)  # (nW, M²)
        expect = torch.where(lab[:, :, None] != lab[:, None, :], -100.0, 0.0)  # (nW, M², M²)
        torch.testing.assert_close(b.attn_mask, expect, rtol=0, atol=0)


def test_query_attention_heads_is_every_heads_map(padded_capture):
    """One pass over the window gives each head's map, and their mean is the fused map."""
    from attnviz.analysis.swin_maps import query_attention_heads, query_attention_map

    for b in padded_capture.blocks:
        H, W = b.geometry.grid_size
        for cell in ((0, 0), (H - 1, W - 1), (H // 2, 1)):
            maps = query_attention_heads(b, cell)
            assert maps.shape == (b.num_heads, H, W)
            for h in range(b.num_heads):
                torch.testing.assert_close(maps[h], query_attention_map(b, cell, head_fusion=h), rtol=0, atol=0)
            torch.testing.assert_close(maps.mean(0), query_attention_map(b, cell), rtol=0, atol=1e-7)


def test_stage_map_to_image_fill_and_dtype():
    """Each token over its pixels, ``fill`` past the last token, the map's dtype kept (labels stay ints)."""
    from attnviz.analysis.swin_maps import stage_map_to_image

    labels = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)  # (2, 3)
    img = stage_map_to_image(labels, 4, (10, 11), fill=-1)
    assert img.dtype == torch.int32 and img.shape == (10, 11)
    ref = np.full((10, 11), -1)
    for py in range(10):
        for px in range(11):
            if py // 4 < 2 and px // 4 < 3:
                ref[py, px] = labels[py // 4, px // 4]
    np.testing.assert_array_equal(img.numpy(), ref)  # rows 8-9 are below the tokens; col 8-10 is token 2
    big = stage_map_to_image(torch.ones(4, 4), 16, (56, 50))  # a merged grid past the image: cropped
    assert big.shape == (56, 50) and bool((big == 1).all())
    with pytest.raises(ValueError):
        stage_map_to_image(labels, 0, (4, 4))
