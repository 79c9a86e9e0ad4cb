"""The arrays an export writes (attnviz.export.views) equal attnviz.analysis for that state, computed
here independently from the capture; figures are built from those very arrays."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnviz.analysis.flow import attention_flow, flow_map
from attnviz.analysis.options import MixOptions
from attnviz.analysis.pos_embed import captured_bias, captured_bias_image, vit_position_similarity
from attnviz.analysis.query import fuse_heads, image_attentions, query_attention, token_index
from attnviz.analysis.relevance import class_relevance
from attnviz.analysis.rollout import rollout_map
from attnviz.analysis.stats import head_stats
from attnviz.analysis.windows import locate_token, pixel_window_index
from attnviz.export.arrays import capture_arrays
from attnviz.export.command import _prepare, _source, slice_capture
from attnviz.export.source import view_for
from attnviz.export.view_file import ViewFile
from attnviz.export.views import FIGURE_PARTS, NotApplicable, figure_of, view_arrays
from attnviz.images import load_image, preprocess
from attnviz.model import load_model
from attnviz.session.query import Patch, Prefix

VIT = "models/faces-vit.safetensors"
SWIN = "models/faces-swin.safetensors"
IMAGE = "assets/images/face-02.png"


@pytest.fixture(scope="module")
def vit():
    return load_model(VIT, device="cpu")


@pytest.fixture(scope="module")
def swin():
    return load_model(SWIN, device="cpu")


def source(model, **view):
    x, img = _prepare(IMAGE, model)
    cap = model.capture(x)
    v = view_for(cap, **view)
    return _source(model, cap, x.unsqueeze(0), img, ViewFile(model=VIT), v, IMAGE), cap, x


def test_overlay_and_heads_equal_the_query_row(vit):
    src, cap, _x = source(vit, block=2, head=1, query=Patch(3, 5))
    P, grid = cap.num_prefix_tokens, tuple(cap.grid_size)
    token = token_index(3, 5, grid, P)
    expected = query_attention(cap.blocks[2].attn[0], token, P, grid)  # (heads, gh, gw)
    a = view_arrays(src, "heads")
    np.testing.assert_allclose(a["maps"], expected, rtol=1e-6)
    o = view_arrays(src, "overlay")
    np.testing.assert_allclose(o["map"], expected[1], rtol=1e-6)
    fused = src.with_view(head="max")
    np.testing.assert_allclose(view_arrays(fused, "overlay")["map"], fuse_heads(torch.from_numpy(expected), "max"),
                               rtol=1e-6)
    meta = json.loads(str(o["meta"]))
    assert meta["view"] == "overlay" and meta["state"]["block"] == 2 and meta["state"]["query"] == "3,5"
    assert meta["geometry"]["grid_size"] == list(grid)


def test_rollout_flow_relevance_equal_analysis(vit):
    opts = MixOptions(alpha=0.3, fusion="max", discard_ratio=0.1)
    src, cap, x = source(vit, query=Prefix(0), options=opts, class_idx=1)
    P, grid = cap.num_prefix_tokens, tuple(cap.grid_size)
    attns = image_attentions(cap, 0)
    np.testing.assert_allclose(view_arrays(src, "rollout")["map"],
                               rollout_map(attns, P, grid, start=0, options=opts), rtol=1e-5)
    f = flow_map(attention_flow(attns, 0, options=opts, num_prefix_tokens=P), P, grid)
    np.testing.assert_allclose(view_arrays(src, "flow")["map"], f / f.max(), rtol=1e-5)
    rel = class_relevance(vit.net, x.unsqueeze(0), 1, "chefer", start=0, options=opts)
    np.testing.assert_allclose(view_arrays(src, "relevance")["map"], rel.map, rtol=1e-4, atol=1e-6)
    g = src.with_view(method="grad_rollout")
    rel_g = class_relevance(vit.net, x.unsqueeze(0), 1, "grad_rollout", start=0, options=opts)
    np.testing.assert_allclose(view_arrays(g, "relevance")["map"], rel_g.map, rtol=1e-4, atol=1e-6)
    assert not np.allclose(rel.map, rel_g.map)  # the method really changes the export


def test_pos_embed_and_stats(vit):
    src, cap, _x = source(vit)
    sim = vit_position_similarity(vit.net, tuple(cap.grid_size)).numpy()
    np.testing.assert_allclose(view_arrays(src, "pos-embed")["similarity"], sim, rtol=1e-6)
    s = head_stats(cap, index=0)
    a = view_arrays(src, "stats")
    np.testing.assert_allclose(a["mean_attention_distance"], s.mean_distance, rtol=1e-6)
    np.testing.assert_allclose(a["attention_entropy"], s.entropy, rtol=1e-6)
    np.testing.assert_allclose(a["prefix_share"], s.prefix_share, rtol=1e-6)
    with pytest.raises(NotApplicable, match="Swin"):
        view_arrays(src, "windows")


def test_swin_windows_mask_bias(swin):
    src, cap, _x = source(swin, block=1, query=Patch(5, 6))
    b = cap.blocks[1]
    assert b.shift_size > 0
    a = view_arrays(src, "windows")
    np.testing.assert_array_equal(a["window_index"], pixel_window_index(b.geometry, tuple(cap.img_size)))
    assert a["window_index"].dtype == np.int32 and a["window_index"].shape == tuple(cap.img_size)
    w, slot = locate_token(b.geometry, 5, 6)
    np.testing.assert_array_equal(a["mask"], b.attn_mask[w].numpy())
    # the bias the block added (analysis reads it from the capture), mean over heads as the view says
    M = b.window_size
    np.testing.assert_array_equal(a["bias"], b.bias.numpy())  # (heads, M², M²): what the block added, per head
    np.testing.assert_allclose(a["bias_table"], captured_bias_image(b).double().mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(a["query_bias"], captured_bias(b)[:, slot, :].double().mean(0).reshape(M, M).numpy(),
                               rtol=1e-6)
    # and exactly what the Swin panel's product holds for that state
    np.testing.assert_array_equal(a["query_bias"], src.products.get("swin_bias").query_bias.astype(np.float32))
    # the window index of the query's pixel is the window the mask came from
    assert a["window_index"][5 * cap.patch_size, 6 * cap.patch_size] == w
    with pytest.raises(NotApplicable):
        view_arrays(src, "pos-embed")


def test_figure_holds_every_view_that_applies(vit, swin):
    src, _cap, _x = source(vit, query=Patch(1, 1))
    a = view_arrays(src, "figure")
    assert {"overlay.map", "heads.maps", "rollout.map", "flow.map", "relevance.map", "pos-embed.similarity",
            "stats.attention_entropy"} <= set(a)
    assert not any(k.startswith("windows.") for k in a)
    np.testing.assert_array_equal(a["overlay.map"], view_arrays(src, "overlay")["map"])
    fig = figure_of(src, "figure")
    names = [p.name for p in fig.parts]
    assert names[0] == "input" and "pos-embed" in names and "windows" not in names
    assert "faces" in fig.title and "block 0" in fig.title and "patch (1, 1)" in fig.title
    s_src, _c, _x = source(swin, query=Patch(2, 2))
    s_names = [p.name for p in figure_of(s_src, "figure").parts]
    assert "windows" in s_names and "flow" not in s_names and "pos-embed" not in s_names
    assert FIGURE_PARTS[0] == "input"


def test_batched_capture_slices_equal_single_images(vit):
    xs = [preprocess(load_image(p), vit.info.preprocess) for p in (IMAGE, "assets/images/none-01.png")]
    cap = vit.capture(torch.stack(xs))  # (2, 3, H, W)
    one = vit.capture(xs[1])
    sliced = slice_capture(cap, 1)
    for b1, b2 in zip(sliced.blocks, one.blocks):
        np.testing.assert_allclose(b1.attn.numpy(), b2.attn.numpy(), atol=1e-5)
    np.testing.assert_allclose(sliced.logits.numpy(), one.logits.numpy(), atol=1e-4)


def test_capture_arrays_masks_only_where_they_exist(vit, swin):
    x, _img = _prepare(IMAGE, swin)
    a = capture_arrays(swin.capture(x), swin.info)
    shifted = [b.index for b in swin.capture(x).blocks if b.shift_size]
    assert sorted(int(k.split(".")[1]) for k in a if k.startswith("attn_mask.")) == shifted
    xv, _ = _prepare(IMAGE, vit)
    assert not any(k.startswith("attn_mask.") for k in capture_arrays(vit.capture(xv), vit.info))


def test_anatomy_export_equals_the_stages_computed_from_the_blocks_weights(vit, swin):
    """The anatomy view's arrays: stage 1 recomputed here from the block's own q and k, stage 2 equal to the
    captured attention, stage 3 from the block's v; the figure draws one part per stage, side by side."""
    from attnviz.nets import capture_qkv

    src, cap, x = source(vit, block=2, head=1, query=Patch(3, 3))
    a = view_arrays(src, "anatomy")
    blk = capture_qkv(vit.net, x, 2)
    q, k, v = (t[0, 1].double() for t in (blk.qkv.q, blk.qkv.k, blk.qkv.v))  # (N, hd) of head 1
    token = token_index(3, 3, tuple(cap.grid_size), cap.num_prefix_tokens)
    scores = (k @ q[token]) * blk.qkv.scale  # (N,)
    probs = torch.softmax(scores, 0)
    contrib = (probs[:, None] * v).norm(dim=-1)  # (N,) ‖a_k v_k‖
    P = cap.num_prefix_tokens
    np.testing.assert_allclose(a["scores"], scores[P:].reshape(8, 8).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a["prefix_scores"], scores[:P].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a["probs"], cap.blocks[2].attn[0, 1, token, P:].reshape(8, 8).numpy(), atol=1e-6)
    np.testing.assert_allclose(a["contrib"], contrib[P:].reshape(8, 8).numpy(), rtol=1e-5, atol=1e-7)
    fig = figure_of(src, "anatomy", a)
    assert [p.name for p in fig.parts] == ["anatomy-scores", "anatomy-probs", "anatomy-contrib"]
    assert fig.columns == 3
    np.testing.assert_array_equal(fig.parts[1].tiles[0].values, a["probs"].astype(np.float64))

    ssrc, scap, _ = source(swin, block=1, head=0, query=Patch(5, 6))
    sa = view_arrays(ssrc, "anatomy")
    assert sorted(k for k in sa if k != "meta") == ["bias", "captured", "contrib", "probs", "scores"]
    np.testing.assert_allclose(sa["probs"], sa["captured"], atol=1e-6)
    assert [p.name for p in figure_of(ssrc, "anatomy", sa).parts][1] == "anatomy-bias"


def test_scramble_export_equals_the_two_captures(vit):
    """The scramble view: the permutation of the view's settings, the query's attention on the original and
    (wherever its patch went) on the scrambled input, computed here from a capture of the scrambled input."""
    from attnviz.analysis.scramble import apply_to_image, inverse_permutation, random_permutation, window_permutation

    src, cap, x = source(vit, block=3, head=0, query=Patch(3, 3))
    src.scramble = {"kind": "window", "seed": 5}
    a = view_arrays(src, "scramble")
    perm = window_permutation((8, 8), 4, seed=5)
    np.testing.assert_array_equal(a["permutation"], perm.numpy())
    P = cap.num_prefix_tokens
    np.testing.assert_allclose(a["map"], query_attention(cap.blocks[3].attn[0], token_index(3, 3, (8, 8), P), P,
                                                         (8, 8))[0], atol=1e-6)
    scr = vit.capture(apply_to_image(x, perm, 8, layout="chw"))
    pos = int(inverse_permutation(perm)[3 * 8 + 3])  # where patch (3, 3) went
    want = query_attention(scr.blocks[3].attn[0], P + pos, P, (8, 8))[0]
    np.testing.assert_allclose(a["scrambled_map"], want, atol=1e-6)
    np.testing.assert_allclose(a["scrambled_probs"], scr.logits[0].softmax(-1).numpy(), atol=1e-6)
    fig = figure_of(src, "scramble", a)
    assert [p.name for p in fig.parts] == ["scramble-original", "scramble-scrambled"] and fig.columns == 2
    assert "largest probability change" in fig.subtitle

    src.scramble = {"kind": "random", "seed": 0, "show_original": True}
    src.scrambled = None
    back = view_arrays(src, "scramble")["scrambled_map"]
    scr = vit.capture(apply_to_image(x, random_permutation((8, 8), 0), 8, layout="chw"))
    inv = inverse_permutation(random_permutation((8, 8), 0))
    row = query_attention(scr.blocks[3].attn[0], P + int(inv[27]), P, (8, 8))[0].reshape(-1)  # scrambled positions
    np.testing.assert_allclose(back.reshape(-1), row[inv.numpy()], atol=1e-6)  # original patch j sits at inv[j]


def test_scramble_export_without_position_embeddings_shows_equivariance():
    nope = load_model("models/faces-vit-nope.safetensors", device="cpu")
    src, _cap, _x = source(nope, block=2, head="mean", query=Patch(2, 5))
    a = view_arrays(src, "scramble")
    assert float(a["attention_difference"].max()) < 1e-5 and float(a["logit_difference"][0]) < 1e-4
    np.testing.assert_allclose(a["probs"], a["scrambled_probs"], atol=1e-5)
    src.scramble = {"kind": "none"}
    src.scrambled = None
    with pytest.raises(NotApplicable, match="no scramble"):
        view_arrays(src, "scramble")
