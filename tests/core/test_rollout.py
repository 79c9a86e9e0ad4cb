"""Attention rollout (attnviz.analysis.rollout): hand-computed cases and the known bugs of other tools."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import timm
import torch

from attnviz.analysis.options import DEFAULT_OPTIONS, MixOptions
from attnviz.analysis.query import image_attentions, patch_map
from attnviz.analysis.rollout import (augment, augmented_attention, augmented_attentions, rollout, rollout_map,
                                      rollout_row)
from attnviz.nets import ModelInfo, ViTConfig, build_model
from tests.parity.timm_attention import native_state_dict, perturb_, timm_attention

# Three one-head blocks over 3 tokens, chosen so that rollout is easy by hand (α = 0.5).
A1 = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], float)  # a cyclic shift
A2 = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0]], float)  # everyone reads token 0
A3 = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], float)  # tokens 0 and 2 swap
# Ã = 0.5·A + 0.5·I, written out:
T1 = np.array([[.5, .5, 0], [0, .5, .5], [.5, 0, .5]])
T2 = np.array([[1, 0, 0], [.5, .5, 0], [.5, 0, .5]])
T3 = np.array([[.5, 0, .5], [0, 1, 0], [.5, 0, .5]])
# R = Ã3·Ã2·Ã1, multiplied out by hand: Ã2·Ã1 = [[.5,.5,0],[.25,.5,.25],[.5,.25,.25]], then Ã3 on the left.
R_HAND = np.array([[.5, .375, .125], [.25, .5, .25], [.5, .375, .125]])


def _softmax_rows(rng, shape, scale=2.0):
    x = rng.normal(size=shape) * scale
    p = np.exp(x - x.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def test_three_blocks_by_hand():
    attns = [A[None] for A in (A1, A2, A3)]  # (1 head, 3, 3) each
    for mat, hand in zip(augmented_attentions(attns, num_prefix_tokens=0), (T1, T2, T3)):
        np.testing.assert_allclose(mat.numpy(), hand, atol=1e-15)
    R = rollout(attns, num_prefix_tokens=0)
    np.testing.assert_allclose(R, R_HAND, atol=1e-15)
    # the test can tell the product order apart: first block on the left is a different matrix
    assert not np.allclose(T1 @ T2 @ T3, R_HAND)
    for s in range(3):
        np.testing.assert_allclose(rollout_row(attns, s, num_prefix_tokens=0), R_HAND[s], atol=1e-15)


def test_heads_are_fused_before_the_residual_is_mixed_in():
    rng = np.random.default_rng(8)
    heads = _softmax_rows(rng, (3, 4, 4))
    F = heads.mean(0)
    np.testing.assert_allclose(augmented_attention(heads, num_prefix_tokens=0).numpy(),
                               0.5 * F + 0.5 * np.eye(4), atol=1e-15)
    # the blocks in another order: the product follows the list (forward) order
    attns = [np.stack([A1, A1]), np.stack([A3, A3]), np.stack([A2, A2])]
    np.testing.assert_allclose(rollout(attns, num_prefix_tokens=0), T2 @ T3 @ T1, atol=1e-15)


def test_rows_are_normalised_per_row_after_max_fusion():
    # max over heads gives rows with different sums; normalising "without keepdim" divides columns instead
    h0 = np.array([[.7, .2, .1], [.1, .8, .1], [.3, .3, .4]])
    h1 = np.array([[.1, .1, .8], [.6, .2, .2], [.2, .5, .3]])
    F = np.maximum(h0, h1)  # row sums 1.6, 1.4, 1.2
    right = 0.5 * F / F.sum(1, keepdims=True) + 0.5 * np.eye(3)
    wrong = 0.5 * F / F.sum(1) + 0.5 * np.eye(3)  # vit-explain's broadcast: column j divided by row sum j
    assert not np.allclose(right, wrong)
    two = np.stack([h0, h1])  # (2 heads, 3, 3)
    mat = augmented_attention(two, options=MixOptions(fusion="max"), num_prefix_tokens=0).numpy()
    np.testing.assert_allclose(mat, right, atol=1e-15)
    np.testing.assert_allclose(mat.sum(1), 1.0, atol=1e-15)
    # min fusion likewise
    G = np.minimum(h0, h1)
    np.testing.assert_allclose(augmented_attention(two, options=MixOptions(fusion="min"), num_prefix_tokens=0).numpy(),
                               0.5 * G / G.sum(1, keepdims=True) + 0.5 * np.eye(3), atol=1e-15)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard", [0.0, 0.5, 0.9])
def test_every_matrix_and_the_rollout_are_row_stochastic(fusion, discard):
    rng = np.random.default_rng(3)
    attns = [_softmax_rows(rng, (4, 11, 11), 3.0) for _ in range(5)]
    options = MixOptions(fusion=fusion, discard_ratio=discard)
    for mat in augmented_attentions(attns, options=options, num_prefix_tokens=2):
        np.testing.assert_allclose(mat.sum(1).numpy(), 1.0, atol=1e-14)
        assert (mat >= 0).all()
    R = rollout(attns, options=options, num_prefix_tokens=2)
    np.testing.assert_allclose(R.sum(1), 1.0, atol=1e-13)


def test_discard_drops_the_lowest_patch_entries_per_row_and_keeps_prefix_columns():
    rng = np.random.default_rng(4)
    P, n = 2, 10
    F = rng.random((P + n, P + n)) + 0.1
    F[:, :P] = 1e-3  # prefix columns are the smallest values of every row
    k = int(0.35 * n)  # 3 patch entries per row
    no_identity = MixOptions(alpha=0.0, discard_ratio=0.35)
    G = augment(torch.from_numpy(F), options=no_identity, num_prefix_tokens=P).numpy()
    for i in range(P + n):
        kept = G[i] > 0
        assert kept[:P].all()
        assert (~kept[P:]).sum() == k
        lowest = np.argsort(F[i, P:])[:k]
        assert not kept[P:][lowest].any()
        np.testing.assert_allclose(G[i, kept], F[i, kept] / F[i, kept].sum())


def test_an_emptied_row_keeps_its_token():
    F = torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    G = augment(F, options=MixOptions(alpha=0.25), num_prefix_tokens=1).numpy()
    np.testing.assert_allclose(G[0], [1.0, 0.0, 0.0])  # identity row
    np.testing.assert_allclose(G.sum(1), 1.0)


def test_block_ranges_and_map_on_a_non_square_grid():
    rng = np.random.default_rng(5)
    P, grid = 1, (2, 3)
    attns = [_softmax_rows(rng, (2, 7, 7)) for _ in range(4)]
    mats = [m.numpy() for m in augmented_attentions(attns)]
    np.testing.assert_allclose(rollout(attns, options=MixOptions(first_block=1, last_block=2)), mats[2] @ mats[1],
                               atol=1e-15)
    np.testing.assert_allclose(rollout(attns, options=MixOptions(last_block=-2)), mats[2] @ mats[1] @ mats[0],
                               atol=1e-15)
    R = rollout(attns)
    np.testing.assert_allclose(R, mats[3] @ mats[2] @ mats[1] @ mats[0], atol=1e-15)
    m = rollout_map(attns, P, grid, start=0)
    row = R[0, P:]
    np.testing.assert_allclose(m, np.array([row[:3], row[3:]]) / row.max(), atol=1e-14)
    assert m.max() == 1.0
    np.testing.assert_allclose(rollout_map(attns, P, grid, start=4, normalize=None), patch_map(R[4], P, grid))


def test_float32_torch_and_float64_numpy_inputs_agree():
    rng = np.random.default_rng(6)
    attns = [_softmax_rows(rng, (3, 9, 9)) for _ in range(3)]
    r64 = rollout(attns)
    r32 = rollout([torch.from_numpy(a).float() for a in attns])
    np.testing.assert_allclose(r32, r64, atol=1e-6)
    assert r32.dtype == np.float64


@pytest.mark.parametrize("call", [
    lambda a: rollout([]),
    lambda a: rollout(a, options=MixOptions(alpha=1.5)),
    lambda a: rollout(a, options=MixOptions(discard_ratio=1.0)),
    lambda a: rollout(a, options=MixOptions(fusion="median")),
    lambda a: rollout(a, options=MixOptions(last_block=4)),
    lambda a: rollout(a + [np.ones((1, 5, 5)) / 5]),
    lambda a: rollout([-x for x in a]),
    lambda a: rollout_row(a, 9),
    lambda a: rollout_row([-x for x in a]),
    lambda a: rollout_row([x * np.nan for x in a]),
    lambda a: rollout_row([x * np.inf for x in a]),
    lambda a: rollout_row(a, options=MixOptions(alpha=-0.1)),
])
def test_bad_input_gives_a_clear_error(call):
    rng = np.random.default_rng(7)
    with pytest.raises(ValueError):
        call([_softmax_rows(rng, (2, 4, 4)) for _ in range(2)])


def test_rollout_of_a_real_capture_equals_rollout_of_timms_explicit_attention():
    """timm's default (fused) attention path must not leave the capture empty or different."""
    torch.manual_seed(0)
    ref = timm.create_model("vit_tiny_patch16_224", img_size=64, depth=3, embed_dim=48, num_heads=3,
                            num_classes=4, pretrained=False)
    ref = perturb_(ref, scale=0.05)
    cfg = ViTConfig(img_size=(64, 64), patch_size=16, embed_dim=48, depth=3, num_heads=3, mlp_hidden_dim=192,
                    num_classes=4)
    net = build_model(ModelInfo(family="vit", config=cfg), native_state_dict(ref))
    x = torch.randn(1, 3, 64, 64)
    cap = net.capture(x)
    ours = image_attentions(cap)
    assert len(ours) == 3
    _, theirs = timm_attention(ref, x)  # fused_attn switched off there to read the softmax
    R_ours = rollout(ours, num_prefix_tokens=cap.num_prefix_tokens)
    R_ref = rollout([t[0] for t in theirs], num_prefix_tokens=1)
    np.testing.assert_allclose(R_ours, R_ref, atol=1e-5)
    assert not np.allclose(R_ours, np.eye(R_ours.shape[0]), atol=1e-3)  # attention really mixes tokens
    np.testing.assert_allclose(R_ours.sum(1), 1.0, atol=1e-12)
    m = rollout_map(ours, cap.num_prefix_tokens, cap.grid_size)
    assert m.shape == (4, 4) and np.isclose(m.max(), 1.0)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard", [0.0, 0.3])
def test_one_row_by_vector_products_equals_the_full_matrix(fusion, discard):
    rng = np.random.default_rng(9)
    attns = [_softmax_rows(rng, (3, 8, 8), 3.0) for _ in range(4)]
    attns[2][:, 5, :] = 0.0  # an empty row: that token keeps itself
    for first, last in ((0, None), (1, 2), (3, 3)):
        options = MixOptions(fusion=fusion, discard_ratio=discard, alpha=0.3, first_block=first, last_block=last)
        R = rollout(attns, options=options)
        for s in range(8):
            row = rollout_row(attns, s, options=options)
            np.testing.assert_allclose(row, R[s], atol=1e-15)


# ---------------------------------------------------------------------------------------------
# the options value: validated once, passed whole


@pytest.mark.parametrize("bad,field", [
    ({"alpha": 1.5}, "alpha"),
    ({"alpha": -0.1}, "alpha"),
    ({"alpha": float("nan")}, "alpha"),
    ({"alpha": "0.5"}, "alpha"),
    ({"fusion": "median"}, "fusion"),
    ({"fusion": None}, "fusion"),
    ({"discard_ratio": 1.0}, r"discard.ratio"),
    ({"discard_ratio": -0.2}, r"discard.ratio"),
    ({"first_block": 1.5}, "first_block"),
    ({"last_block": "2"}, "last_block"),
])
def test_bad_options_name_their_field(bad, field):
    with pytest.raises(ValueError, match=field):
        MixOptions(**bad)


def test_options_are_frozen_and_default_to_the_papers():
    assert DEFAULT_OPTIONS == MixOptions(alpha=0.5, fusion="mean", discard_ratio=0.0, first_block=0, last_block=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_OPTIONS.alpha = 0.1  # type: ignore[misc]
    assert hash(MixOptions(alpha=0.3)) == hash(MixOptions(alpha=0.3))  # usable in a cache key


@pytest.mark.parametrize("options", [
    MixOptions(),
    MixOptions(alpha=0.0, fusion="max", discard_ratio=0.9, first_block=-3, last_block=-1),
    MixOptions(alpha=1, fusion="min", discard_ratio=0.25, first_block=2, last_block=5),
])
def test_options_round_trip_through_a_dict_and_json(options):
    d = options.to_dict()
    assert set(d) == {"alpha", "fusion", "discard_ratio", "first_block", "last_block"}
    assert MixOptions.from_dict(d) == options
    assert MixOptions.from_dict(json.loads(json.dumps(d))) == options


def test_options_from_a_partial_or_foreign_dict():
    assert MixOptions.from_dict({}) == DEFAULT_OPTIONS
    assert MixOptions.from_dict({"alpha": 0.2, "method": "flow"}) == MixOptions(alpha=0.2)  # unknown keys ignored
    with pytest.raises(ValueError, match="fusion"):
        MixOptions.from_dict({"fusion": "median"})  # a stored value is validated like a new one


def _numpy_rollout_row(attns, start, P, alpha, fusion, discard, first, last):
    """Independent reference: Ã_l = (1 − α)·F_l + α·I, F_l the fused, discarded, row-normalised
    attention, R = Ã_last ⋯ Ã_first in plain numpy; returns R[start] (N,)."""
    L, N = len(attns), attns[0].shape[-1]
    first = first + L if first < 0 else first
    last = L - 1 if last is None else (last + L if last < 0 else last)
    reduce = {"mean": np.mean, "max": np.max, "min": np.min}[fusion]
    R = np.eye(N)
    for l in range(first, last + 1):
        F = reduce(attns[l], axis=0).copy()  # (heads, N, N) -> (N, N)
        k = int(discard * (N - P))
        for i in range(N):
            F[i, P + np.argsort(F[i, P:])[:k]] = 0.0  # the k lowest patch entries of row i
        F = F / F.sum(1, keepdims=True)
        R = ((1 - alpha) * F + alpha * np.eye(N)) @ R  # the later block on the left
    return R[start]


@pytest.mark.parametrize("options", [
    DEFAULT_OPTIONS,
    MixOptions(alpha=0.3, fusion="max", discard_ratio=0.4, first_block=1, last_block=-2),
    MixOptions(alpha=0.8, fusion="min", discard_ratio=0.0, first_block=-2),
    MixOptions(alpha=0.0, fusion="mean", discard_ratio=0.7, last_block=0),
])
def test_rollout_map_with_options_equals_the_explicit_computation(options):
    rng = np.random.default_rng(21)
    P, grid = 2, (3, 4)
    N = P + grid[0] * grid[1]
    attns = [_softmax_rows(rng, (3, N, N), 2.5) for _ in range(5)]
    start = 1
    row = _numpy_rollout_row(attns, start, P, options.alpha, options.fusion, options.discard_ratio,
                             options.first_block, options.last_block)
    expected = row[P:].reshape(grid)  # (N - P,) -> (gh, gw), row-major patches
    got = rollout_map(attns, P, grid, start, options=options)
    np.testing.assert_allclose(got, expected / expected.max(), atol=1e-13)
    np.testing.assert_allclose(rollout_map(attns, P, grid, start, options=options, normalize=None), expected,
                               atol=1e-14)
    np.testing.assert_allclose(rollout(attns, options=options, num_prefix_tokens=P)[start], row, atol=1e-14)
