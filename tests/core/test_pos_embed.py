"""Position-embedding similarity (ViT) and relative position bias (Swin v1/v2) against timm/transformers."""
from __future__ import annotations

import math

import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.swin_transformer import WindowAttention as TimmWindowAttention
from timm.models.swin_transformer_v2 import WindowAttention as TimmWindowAttentionV2
from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

from attnviz.analysis.pos_embed import (
    attention_bias_image,
    bias_for_query,
    bias_matrix,
    captured_bias,
    captured_bias_image,
    captured_logit_scale,
    cosine_similarity_grid,
    distance_rank_correlation,
    patch_position_embeddings,
    position_similarity,
    similarity_by_distance,
    similarity_distance_profile,
    sincos_2d_position_embedding,
    spatial_structure,
    v1_bias_image,
    v2_bias_image,
    v2_logit_scale,
    vit_position_similarity,
)
from attnviz.nets import ModelInfo, SwinConfig, ViTConfig, build_model, create_net
from attnviz.nets.windows import relative_position_index

# ---------------------------------------------------------------- ViT absolute position embeddings


def test_hand_built_cosine_similarities_exclude_prefix_and_ignore_norm():
    # 2x2 grid in 3-D, one prefix (class) entry that must not take part.
    e = torch.tensor([
        [9.0, 9.0, 9.0],  # class token entry
        [1.0, 0.0, 0.0],  # (0, 0)
        [2.0, 0.0, 0.0],  # (0, 1): same direction, twice the norm -> cosine 1 (dot product would be 2)
        [0.0, 3.0, 0.0],  # (1, 0): orthogonal -> 0
        [1.0, 1.0, 0.0],  # (1, 1): 45 degrees -> 1/sqrt(2)
    ])[None]
    sim = position_similarity(e, (2, 2), num_prefix_tokens=1)
    assert sim.shape == (2, 2, 2, 2)
    assert sim[0, 0, 0, 1] == pytest.approx(1.0, abs=1e-6)
    assert sim[0, 0, 1, 0] == pytest.approx(0.0, abs=1e-6)
    assert sim[0, 0, 1, 1] == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert sim[1, 0, 1, 1] == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    flat = sim.reshape(4, 4)
    assert torch.allclose(flat, flat.T)
    assert torch.allclose(flat.diagonal(), torch.ones(4))


def test_resampling_matches_timm_and_the_network():
    torch.manual_seed(0)
    pe = torch.randn(1, 2 + 6 * 6, 16)  # 2 prefix entries, 6x6 grid
    ours = patch_position_embeddings(pe, (6, 6), (9, 4), num_prefix_tokens=2)
    ref = resample_abs_pos_embed(pe, new_size=[9, 4], old_size=[6, 6], num_prefix_tokens=2)[0, 2:]
    assert ours.shape == (36, 16)
    assert torch.allclose(ours, ref, atol=1e-6)
    # Same size: used as is (timm's early exit), prefix dropped.
    assert torch.equal(patch_position_embeddings(pe, (6, 6), (6, 6), num_prefix_tokens=2), pe[0, 2:])


@pytest.mark.parametrize("no_embed_class", [False, True])
def test_vit_net_similarity_uses_the_embedding_the_net_adds(no_embed_class):
    torch.manual_seed(1)
    cfg = ViTConfig(img_size=(32, 32), patch_size=8, embed_dim=16, depth=1, num_heads=2, mlp_hidden_dim=32,
                    num_reg_tokens=2, no_embed_class=no_embed_class, num_classes=3)
    net = create_net(cfg)
    for grid in [(4, 4), (6, 5)]:
        used = net.pos_embed_for(grid)[0]  # (prefix? + N, C) as the net adds it
        patches = used[0 if no_embed_class else cfg.num_prefix_tokens:]
        expected = cosine_similarity_grid(patches, grid)
        assert torch.allclose(vit_position_similarity(net, grid), expected, atol=1e-6)
    net.pos_embed = None
    with pytest.raises(ValueError, match="no learned absolute position embedding"):
        vit_position_similarity(net)


def test_bad_embedding_shapes_give_one_clear_message():
    with pytest.raises(ValueError, match="expected 2 prefix"):
        position_similarity(torch.randn(1, 10, 8), (3, 3), num_prefix_tokens=2)
    with pytest.raises(ValueError, match=r"\(1, L, D\) or \(L, D\)"):
        position_similarity(torch.randn(4), (2, 2))
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d_position_embedding(10, (3, 3))


def test_sincos_matches_mae_layout_in_transformers():
    ref = build_2d_sinusoidal_position_embedding(5, 7, embed_dim=32, cls_token=True)
    half = ref.shape[-1] // 2
    ref = torch.cat([ref[..., half:], ref[..., :half]], dim=-1)  # the layout MAE's weights use
    ours = sincos_2d_position_embedding(32, (5, 7), num_prefix_tokens=1)
    assert ours.shape == (1 + 35, 32)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_sincos_shows_2d_structure_and_random_does_not():
    grid = (12, 12)
    sim = position_similarity(sincos_2d_position_embedding(64, grid), grid)
    st = spatial_structure(sim)
    assert st.neighbour_mean > st.distant_mean + 0.2
    assert st.contrast == pytest.approx(st.neighbour_mean - st.distant_mean)
    # Similarity decreases with distance over the first few steps.
    d, m = similarity_by_distance(sim)
    assert d[0] == pytest.approx(1.0) and d[1] == pytest.approx(math.sqrt(2))
    assert m[0] > m[1] > m[2]
    # A random embedding has no such structure.
    torch.manual_seed(0)
    rnd = spatial_structure(position_similarity(torch.randn(144, 64), grid))
    assert abs(rnd.contrast) < 0.05


def test_similarity_by_distance_on_a_known_grid():
    # sim = -distance on a 1x3 grid: distances 1 and 2 with means -1 and -2.
    pos = torch.tensor([0.0, 1.0, 2.0])
    sim = -(pos[:, None] - pos[None, :]).abs().reshape(1, 3, 1, 3)
    d, m = similarity_by_distance(sim)
    assert torch.allclose(d, torch.tensor([1.0, 2.0]))
    assert torch.allclose(m, torch.tensor([-1.0, -2.0]))


def _spearman_by_hand(a: list[float], b: list[float]) -> float:
    """Spearman's rho from first principles: average ranks (ties share the mean of their positions),
    then Pearson's correlation of the ranks, in plain Python."""

    def ranks(v: list[float]) -> list[float]:
        out = [0.0] * len(v)
        order = sorted(range(len(v)), key=lambda i: v[i])
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return out

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))


def _pairs(sim: torch.Tensor) -> tuple[list[float], list[float]]:
    gh, gw = sim.shape[:2]
    flat = sim.reshape(gh * gw, gh * gw)
    s, d = [], []
    for i in range(gh * gw):
        for j in range(i + 1, gh * gw):
            (yi, xi), (yj, xj) = divmod(i, gw), divmod(j, gw)
            s.append(float(flat[i, j]))
            d.append(math.hypot(yi - yj, xi - xj))
    return s, d


@pytest.mark.parametrize("grid", [(5, 5), (4, 7)])
def test_distance_rank_correlation_equals_spearman_by_hand(grid):
    torch.manual_seed(1)
    for pe in (sincos_2d_position_embedding(32, grid), torch.randn(grid[0] * grid[1], 16)):
        sim = position_similarity(pe, grid)
        assert distance_rank_correlation(sim) == pytest.approx(_spearman_by_hand(*_pairs(sim)), abs=1e-9)


def test_distance_rank_correlation_extremes_and_bad_input():
    ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], 1)  # (16, 2)
    minus_dist = -torch.cdist(pos, pos).reshape(4, 4, 4, 4)
    assert distance_rank_correlation(minus_dist) == pytest.approx(-1.0)
    assert distance_rank_correlation(-minus_dist) == pytest.approx(1.0)
    # A 2-D sin-cos embedding falls with distance; a random one does not.
    assert distance_rank_correlation(position_similarity(sincos_2d_position_embedding(64, (8, 8)), (8, 8))) < -0.5
    torch.manual_seed(0)
    assert abs(distance_rank_correlation(position_similarity(torch.randn(64, 64), (8, 8)))) < 0.1
    with pytest.raises(ValueError, match="same for every pair"):
        distance_rank_correlation(torch.ones(3, 3, 3, 3))
    with pytest.raises(ValueError, match="similarity grid"):
        distance_rank_correlation(torch.ones(3, 3, 9))


def test_distance_profile_mean_and_spread_by_hand():
    torch.manual_seed(2)
    grid = (3, 4)
    sim = position_similarity(torch.randn(12, 8), grid)
    prof = similarity_distance_profile(sim)
    d_ref, m_ref = similarity_by_distance(sim)
    assert torch.equal(prof.distances, d_ref) and torch.allclose(prof.mean, m_ref, atol=1e-6)
    flat = sim.reshape(12, 12)
    for k, d in enumerate(prof.distances.tolist()):
        vals = [float(flat[i, j]) for i in range(12) for j in range(12) if i != j
                and abs(math.hypot(i // 4 - j // 4, i % 4 - j % 4) - d) < 1e-5]
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
        assert prof.count[k] == len(vals)
        assert float(prof.std[k]) == pytest.approx(std, abs=1e-6)
    assert int(prof.count.sum()) == 12 * 11


# ---------------------------------------------------------------- Swin relative position bias


def test_v1_image_indexing_convention():
    M = 3
    table = torch.arange((2 * M - 1) ** 2, dtype=torch.float32)[:, None].repeat(1, 2)  # row id per head
    table[:, 1] *= -1
    img = v1_bias_image(table)
    assert img.shape == (2, 5, 5)
    for dy in range(-(M - 1), M):
        for dx in range(-(M - 1), M):
            row = (dy + M - 1) * (2 * M - 1) + (dx + M - 1)
            assert img[0, dy + M - 1, dx + M - 1] == row
            assert img[1, dy + M - 1, dx + M - 1] == -row
    # bias seen by query (qy, qx) for key (ky, kx) is the entry at offset query - key
    q = bias_for_query(img, (0, 2))
    assert q.shape == (2, M, M)
    assert q[0, 2, 0] == img[0, 0 - 2 + M - 1, 2 - 0 + M - 1]


@pytest.mark.parametrize("M", [2, 7])
def test_v1_matches_timm_window_attention(M):
    torch.manual_seed(M)
    attn = TimmWindowAttention(dim=24, num_heads=3, window_size=M)
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()
    ref = attn._get_rel_pos_bias()[0]  # (heads, M², M²)
    img = attention_bias_image(attn)
    assert torch.allclose(bias_matrix(img), ref)
    # The per-query view is a row of the same matrix.
    for qy, qx in [(0, 0), (M - 1, 0), (M // 2, M - 1)]:
        row = ref[:, qy * M + qx].reshape(3, M, M)
        assert torch.allclose(bias_for_query(img, (qy, qx)), row)


@pytest.mark.parametrize("M,pretrained", [(4, 0), (6, 4)])
def test_v2_matches_timm_continuous_position_bias(M, pretrained):
    torch.manual_seed(M)
    attn = TimmWindowAttentionV2(dim=32, window_size=(M, M), num_heads=4, pretrained_window_size=(pretrained, pretrained))
    with torch.no_grad():
        for p in attn.cpb_mlp.parameters():
            p.normal_(0, 0.5)
        attn.logit_scale.normal_(2.0, 2.0)
    # timm's own computation (its forward, without the attention logits).
    table = attn.cpb_mlp(attn.relative_coords_table).view(-1, 4)
    ref = 16 * torch.sigmoid(table[attn.relative_position_index.view(-1)].view(M * M, M * M, -1).permute(2, 0, 1))
    img = attention_bias_image(attn, window_size=M, pretrained_window_size=pretrained)
    assert img.shape == (4, 2 * M - 1, 2 * M - 1)
    assert torch.allclose(bias_matrix(img), ref, atol=1e-5)
    fc1, fc2 = attn.cpb_mlp[0], attn.cpb_mlp[2]
    img2 = v2_bias_image(fc1.weight, fc1.bias, fc2.weight, M, pretrained)
    assert torch.allclose(img, img2)
    assert torch.allclose(v2_logit_scale(attn), torch.clamp(attn.logit_scale, max=math.log(100)).exp().flatten())


def test_relative_index_round_trip_through_bias_matrix():
    M = 4
    img = torch.randn(2, 2 * M - 1, 2 * M - 1)
    mat = bias_matrix(img)
    idx = relative_position_index(M)
    assert torch.equal(mat[1], img[1].reshape(-1)[idx])


def _swin_pair(version: int, img: int = 56):
    """A tiny timm Swin and the attnviz net built from its state dict, weights perturbed."""
    torch.manual_seed(version)
    if version == 1:
        tm = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=img, embed_dim=16,
                               depths=(2, 2), num_heads=(1, 2), window_size=4, num_classes=3)
    else:
        tm = timm.create_model("swinv2_tiny_window8_256", pretrained=False, img_size=img, embed_dim=16,
                               depths=(2, 2), num_heads=(1, 2), window_size=4, num_classes=3)
    with torch.no_grad():
        for name, p in tm.named_parameters():
            if "relative_position_bias_table" in name or "cpb_mlp" in name:
                p.normal_(0, 0.5)
    cfg = SwinConfig(version=version, img_size=(img, img), patch_size=4, embed_dim=16, depths=(2, 2),
                     num_heads=(1, 2), window_size=(4, 4), pretrained_window_size=(0, 0), num_classes=3)
    return tm, build_model(ModelInfo("swin", cfg), tm.state_dict())


@pytest.mark.parametrize("version", [1, 2])
def test_bias_equals_what_the_network_captured(version):
    _, net = _swin_pair(version, img=40)  # 10x10 then 5x5 grids, windows 4 (padded)
    cap = net.capture(torch.randn(1, 3, 40, 40))
    blocks = [b for stage in net.layers for b in stage.blocks]
    assert len(blocks) == len(cap.blocks)
    for mod, bc in zip(blocks, cap.blocks):
        img = attention_bias_image(mod.attn, window_size=bc.window_size)
        assert torch.allclose(bias_matrix(img), bc.bias, atol=1e-6)


@pytest.mark.parametrize("version", [1, 2])
def test_captured_bias_and_temperature_equal_the_modules_and_timm(version):
    tm, net = _swin_pair(version, img=40)  # 10x10 then 5x5 grids, windows 4 (padded)
    with torch.no_grad():
        for name, p in tm.named_parameters():
            if "logit_scale" in name:
                p.normal_(2.0, 2.0)  # some heads above the clamp at log 100
    net.load_state_dict(tm.state_dict(), strict=False)
    cap = net.capture(torch.randn(1, 3, 40, 40))
    ours = [b for stage in net.layers for b in stage.blocks]
    theirs = [b for stage in tm.layers for b in stage.blocks]
    for mod, ref, bc in zip(ours, theirs, cap.blocks):
        M = bc.window_size
        img = attention_bias_image(mod.attn, window_size=M)  # (heads, 2M-1, 2M-1) from the module
        assert torch.allclose(captured_bias(bc), bias_matrix(img), atol=1e-6)
        assert torch.allclose(captured_bias_image(bc), img, atol=1e-6)
        if version == 1:
            timm_bias = ref.attn._get_rel_pos_bias()[0]  # (heads, M², M²)
            with pytest.raises(ValueError, match="no logit scale"):
                captured_logit_scale(bc)
        else:
            a = ref.attn
            table = a.cpb_mlp(a.relative_coords_table).view(-1, bc.num_heads)
            timm_bias = 16 * torch.sigmoid(table[a.relative_position_index.view(-1)].view(M * M, M * M, -1)
                                           .permute(2, 0, 1))  # (heads, M², M²)
            tau = captured_logit_scale(bc)  # (heads,)
            assert torch.allclose(tau, v2_logit_scale(mod.attn))
            assert torch.allclose(tau, torch.clamp(a.logit_scale, max=math.log(100)).exp().flatten())
        assert torch.allclose(captured_bias(bc), timm_bias.detach(), atol=1e-5)
    vit = create_net(ViTConfig(img_size=(32, 32), patch_size=8, embed_dim=16, depth=1, num_heads=2,
                               mlp_hidden_dim=32, num_classes=0)).eval()
    with pytest.raises(ValueError, match="not a Swin block"):
        captured_bias(vit.capture(torch.randn(1, 3, 32, 32)).blocks[0])


def test_v1_bias_for_a_window_smaller_than_the_table_is_the_central_part():
    # A 3x3 stage map with a 4x4 trained window: the net uses a 3x3 window and the central offsets.
    torch.manual_seed(0)
    cfg = SwinConfig(version=1, img_size=(24, 24), patch_size=4, embed_dim=8, depths=(1, 1), num_heads=(1, 2),
                     window_size=(4, 4), num_classes=0)
    net = create_net(cfg).eval()
    with torch.no_grad():
        for stage in net.layers:
            for blk in stage.blocks:
                blk.attn.relative_position_bias_table.normal_()
    cap = net.capture(torch.randn(1, 3, 24, 24))
    last = cap.blocks[-1]
    assert last.window_size == 3
    img = attention_bias_image(net.layers[1].blocks[0].attn, window_size=3)
    assert img.shape == (2, 5, 5)
    assert torch.allclose(bias_matrix(img), last.bias)
    assert torch.allclose(captured_bias_image(last), img)
    with pytest.raises(ValueError, match="does not fit"):
        attention_bias_image(net.layers[1].blocks[0].attn, window_size=5)
