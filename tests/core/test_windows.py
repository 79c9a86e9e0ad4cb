"""Swin window geometry in image coordinates, against what timm's blocks and attnviz's nets do."""
from __future__ import annotations

import pytest
import timm
import torch
from timm.models.swin_transformer import SwinTransformerBlock

from attnviz.analysis.windows import (
    Rect,
    block_geometry,
    geometry_of,
    locate_pixel,
    locate_token,
    padding_slots,
    query_mask_map,
    slot_of_token,
    window_masks,
    window_of_token,
    window_rects,
    window_regions,
    window_token_index,
)
from attnviz.nets import ModelInfo, SwinConfig, build_model
from attnviz.nets.windows import MASK_VALUE


@pytest.fixture(scope="module")
def swin_tiny_geometry():
    """timm's swin_tiny layout (56/28/14/7 grids, M=7, shifts 3) with tiny channels: masks depend on geometry only."""
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, embed_dim=8,
                             num_heads=(1, 1, 1, 1), num_classes=0)


def _timm_windows_of_block(block: SwinTransformerBlock, H: int, W: int) -> torch.Tensor:
    """What timm's own block puts in each window slot: feed it 1 + token index and record x_windows."""
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x, mask=None):
            seen["x"] = x.detach().clone()
            seen["mask"] = mask
            return x

    block.attn = Spy()
    idx = (torch.arange(H * W, dtype=torch.float32) + 1).reshape(1, H, W, 1)
    block._attn(idx)
    return seen["x"][..., 0].long() - 1, seen["mask"]  # (nW, M²), padding (zeros) -> -1


def test_masks_equal_timm_swin_tiny_blocks(swin_tiny_geometry):
    n_shifted = 0
    for stage in swin_tiny_geometry.layers:
        for blk in stage.blocks:
            geom = block_geometry(blk.input_resolution, 7, 3 if blk.shift_size[0] else 0)
            assert geom.shift_size == blk.shift_size[0]
            ours = window_masks(geom)
            if blk.attn_mask is None:
                assert ours is None
            else:
                n_shifted += 1
                assert torch.equal(ours, blk.attn_mask)
    assert n_shifted == 5  # stage 3 (7x7) is one window: timm and we both drop its shift


@pytest.mark.parametrize("res,M,s", [((56, 56), 7, 3), ((28, 28), 12, 6), ((10, 13), 4, 2), ((9, 9), 4, 0)])
def test_window_contents_equal_what_timm_partitions(res, M, s):
    torch.manual_seed(0)
    blk = SwinTransformerBlock(dim=4, input_resolution=res, num_heads=1, window_size=M, shift_size=s)
    got, mask = _timm_windows_of_block(blk, *res)
    geom = block_geometry(res, M, s)
    assert torch.equal(window_token_index(geom), got)
    if s:
        assert torch.equal(window_masks(geom), mask)
    else:
        assert mask is None and window_masks(geom) is None


def test_every_token_in_exactly_one_window_and_lookups_agree():
    for res, M, s in [((56, 56), 7, 3), ((28, 28), 12, 6), ((7, 11), 3, 1)]:
        geom = block_geometry(res, M, s)
        table = window_token_index(geom)
        real = table[table >= 0]
        assert torch.equal(torch.sort(real).values, torch.arange(res[0] * res[1]))
        win, slot = window_of_token(geom), slot_of_token(geom)
        assert torch.equal(table[win.flatten(), slot.flatten()], torch.arange(res[0] * res[1]))
        for t in torch.randperm(res[0] * res[1], generator=torch.Generator().manual_seed(0))[:20].tolist():
            y, x = divmod(t, res[1])
            w, k = locate_token(geom, y, x)
            assert (w, k) == (int(win[y, x]), int(slot[y, x]))
        # The rectangles tile the grid: every token covered exactly once.
        cover = torch.zeros(res, dtype=torch.long)
        for w, rects in enumerate(window_rects(geom)):
            for r in rects:
                cover[r.y0:r.y1, r.x0:r.x1] += 1
                assert bool((win[r.y0:r.y1, r.x0:r.x1] == w).all())
        assert bool((cover == 1).all())


def test_shifted_windows_of_a_56_grid():
    geom = block_geometry((56, 56), 7, 3, token_px=4)
    rects = window_rects(geom)
    assert geom.num_windows == len(rects) == 64
    pieces = torch.tensor([len(r) for r in rects])
    assert int((pieces == 1).sum()) == 49 and int((pieces == 2).sum()) == 14 and int((pieces == 4).sum()) == 1
    # Window 0 starts 3 tokens in; the last window wraps around both edges.
    assert rects[0] == [Rect(3, 3, 10, 10)]
    assert rects[7] == [Rect(3, 52, 10, 56), Rect(3, 0, 10, 3)]
    assert set(rects[63]) == {Rect(52, 52, 56, 56), Rect(52, 0, 56, 3), Rect(0, 52, 3, 56), Rect(0, 0, 3, 3)}
    px = window_rects(geom, unit="pixels", img_size=(224, 224))
    assert Rect(208, 208, 224, 224) in px[63] and Rect(0, 0, 12, 12) in px[63]
    # Pixel lookup: pixel (5, 5) is token (1, 1), which wraps into the last window.
    assert locate_pixel(geom, 5, 5) == (63, 1, 1)
    assert locate_pixel(geom, 12, 12)[0] == 0
    # Unshifted: plain 8x8 tiling.
    flat = window_rects(block_geometry((56, 56), 7, 0))
    assert all(len(r) == 1 for r in flat) and flat[9] == [Rect(7, 7, 14, 14)]


def test_padded_28_grid_with_window_12():
    geom = block_geometry((28, 28), 12, 6)
    assert geom.padded_size == (36, 36) and geom.num_windows == 9
    pad = padding_slots(geom).reshape(3, 3)
    # Rolled rows/cols 28..35 are padding: the last window row/column holds 4 real lines of 12.
    assert pad.tolist() == [[0, 0, 96], [0, 0, 96], [96, 96, 128]]
    rects = window_rects(geom)
    assert rects[0] == [Rect(6, 6, 18, 18)]
    assert rects[4] == [Rect(18, 18, 28, 28), Rect(18, 0, 28, 2), Rect(0, 18, 2, 28), Rect(0, 0, 2, 2)]
    assert rects[8] == [Rect(2, 2, 6, 6)]
    # timm's padded-grid regions: original rows 0-1 wrap into the middle window row but share the region of
    # rows 18-27 (region bands are [0,24), [24,30), [30,36) of the padded grid), so they are not masked apart.
    reg = window_regions(geom)
    assert reg[0, 20] == reg[20, 20]
    assert reg[2, 20] != reg[20, 20]
    m = query_mask_map(geom, 20, 20)  # window 4
    assert m[0, 20] == 0 and m[25, 20] == 0
    assert torch.isnan(m[10, 10])  # window 0: outside


def test_query_mask_map_of_a_wrapped_window():
    geom = block_geometry((56, 56), 7, 3)
    m = query_mask_map(geom, 0, 0)  # in the corner window: four regions
    assert int(torch.isfinite(m).sum()) == 49
    assert m[0, 0] == 0 and m[2, 2] == 0
    assert m[55, 55] == MASK_VALUE and m[0, 55] == MASK_VALUE and m[55, 0] == MASK_VALUE
    assert torch.isnan(m[10, 10])
    # Regions of the corner window's four pieces differ pairwise; the unshifted map has one region.
    reg = window_regions(geom)
    assert len({int(reg[0, 0]), int(reg[0, 55]), int(reg[55, 0]), int(reg[55, 55])}) == 4
    assert int(window_regions(block_geometry((56, 56), 7, 0)).max()) == 0


def test_bad_geometry_is_one_clear_message():
    with pytest.raises(ValueError, match="shift"):
        block_geometry((14, 14), 7, 7)
    with pytest.raises(ValueError, match="outside"):
        locate_token(block_geometry((14, 14), 7, 3), 14, 0)
    with pytest.raises(ValueError, match="unit"):
        window_rects(block_geometry((14, 14), 7, 3), unit="inches")


def test_geometry_of_captured_blocks_matches_the_network():
    torch.manual_seed(0)
    cfg = SwinConfig(version=1, img_size=(56, 56), patch_size=4, embed_dim=16, depths=(2, 2), num_heads=(1, 2),
                     window_size=(4, 4), num_classes=3)
    tm = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=56, embed_dim=16,
                           depths=(2, 2), num_heads=(1, 2), window_size=4, num_classes=3)
    net = build_model(ModelInfo("swin", cfg), tm.state_dict())
    cap = net.capture(torch.randn(1, 3, 56, 56))  # 14x14 (padded to 16) then 7x7 (padded to 8)
    for b in cap.blocks:
        geom = geometry_of(b)
        assert geom.padded_size == b.padded_size and geom.num_windows == b.attn.shape[1]
        masks = window_masks(geom)
        if b.attn_mask is None:
            assert masks is None
        else:
            assert torch.equal(masks, b.attn_mask)
            # Masked pairs really got (numerically) zero attention.
            blocked = (b.attn_mask < 0)[None, :, None]  # (1, nW, 1, M², M²)
            assert float(b.attn[blocked.expand_as(b.attn)].max()) < 1e-20


def test_captured_swin_blocks_are_typed_and_vit_blocks_have_no_geometry():
    from attnviz.analysis import windows as analysis_windows
    from attnviz.nets import windows as net_windows
    from attnviz.nets import BlockCapture, SwinBlockCapture, ViTConfig, create_net

    # One definition, reachable from both places.
    assert analysis_windows.BlockGeometry is net_windows.BlockGeometry
    assert analysis_windows.block_geometry is net_windows.block_geometry
    torch.manual_seed(0)
    swin = create_net(SwinConfig(version=2, img_size=(40, 40), patch_size=4, embed_dim=8, depths=(2, 2),
                                 num_heads=(1, 2), window_size=(4, 4), pretrained_window_size=(0, 0),
                                 num_classes=0)).eval()
    cap = swin.capture(torch.randn(1, 3, 40, 40))  # 10x10 then 5x5, windows 4, padded
    for b in cap.blocks:
        assert isinstance(b, SwinBlockCapture)
        assert geometry_of(b) is b.geometry
        assert (b.window_size, b.shift_size, b.padded_size) == (b.geometry.window_size, b.geometry.shift_size,
                                                                b.geometry.padded_size)
        assert b.geometry.grid_size == b.grid_size and b.geometry.token_px == b.token_px
        assert b.bias.shape == (b.num_heads, 16, 16) and b.logit_scale.shape == (b.num_heads,)
        assert (b.attn_mask is None) == (b.shift_size == 0)
        with pytest.raises(AttributeError):
            b.window_size = 3  # derived from the geometry, read-only
    vit = create_net(ViTConfig(img_size=(32, 32), patch_size=8, embed_dim=16, depth=1, num_heads=2,
                               mlp_hidden_dim=32, num_classes=0)).eval()
    blk = vit.capture(torch.randn(1, 3, 32, 32)).blocks[0]
    assert type(blk) is BlockCapture and blk.attn_mask is None
    with pytest.raises(ValueError, match="block 0 has no windows"):
        geometry_of(blk)
    # A Swin capture whose fields disagree with its geometry is refused when it is made.
    g = block_geometry((5, 5), 4, 2, 8)
    with pytest.raises(ValueError, match="differ from its geometry"):
        SwinBlockCapture(index=0, attn=torch.zeros(1, 4, 1, 16, 16), num_heads=1, grid_size=(5, 6), token_px=8,
                         geometry=g, bias=torch.zeros(1, 16, 16))
    with pytest.raises(ValueError, match="position bias must be"):
        SwinBlockCapture(index=0, attn=torch.zeros(1, 4, 1, 16, 16), num_heads=1, grid_size=(5, 5), token_px=8,
                         geometry=g, bias=torch.zeros(2, 16, 16))
