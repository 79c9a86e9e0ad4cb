"""Class-specific relevance (attnviz.analysis.relevance): hand cases, layer pairing, real networks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attnviz.analysis.options import DEFAULT_OPTIONS, MixOptions
from attnviz.analysis.relevance import (attention_gradients, chefer_relevance, class_relevance, grad_rollout,
                                        grad_rollout_matrices, relevance_row, weighted_attention)
from attnviz.analysis.rollout import augment
from attnviz.nets import ModelInfo, SwinConfig, ViTConfig, build_model, create_net

# Two one-head blocks over 2 tokens (Chefer et al. by hand).
A1 = np.array([[0.5, 0.5], [0.25, 0.75]])
G1 = np.array([[2.0, -1.0], [0.0, 4.0]])  # A1⊙G1 = [[1, -.5], [0, 3]] -> clipped [[1, 0], [0, 3]]
A2 = np.array([[0.8, 0.2], [0.5, 0.5]])
G2 = np.array([[0.0, 5.0], [2.0, 2.0]])  # A2⊙G2 = [[0, 1], [1, 1]]
# R = (I + Ā2)(I + Ā1) = [[1, 1], [1, 2]]·[[2, 0], [0, 4]]
R_HAND = np.array([[2.0, 4.0], [2.0, 8.0]])


def _one_head(*mats):
    return [m[None] for m in mats]


def test_chefer_by_hand():
    R = chefer_relevance(_one_head(A1, A2), _one_head(G1, G2))
    np.testing.assert_allclose(R, R_HAND, atol=1e-15)
    np.testing.assert_allclose(relevance_row(_one_head(A1, A2), _one_head(G1, G2), 1), R_HAND[1], atol=1e-15)
    # the blocks multiplied the other way round would give another matrix: the test can tell
    assert not np.allclose(np.array([[2, 0], [0, 4]]) @ np.array([[1, 1], [1, 2]]), R_HAND)


def test_gradients_are_paired_with_their_own_block():
    swapped = chefer_relevance(_one_head(A1, A2), _one_head(G2, G1))
    # A1⊙G2 = [[0, 2.5], [.5, 1.5]], A2⊙G1 = [[1.6, -.2], [0, 2]] -> [[1.6, 0], [0, 2]]
    by_hand = np.array([[2.6, 0.0], [0.0, 3.0]]) @ np.array([[1.0, 2.5], [0.5, 2.5]])
    np.testing.assert_allclose(swapped, by_hand, atol=1e-14)
    assert not np.allclose(swapped, R_HAND)


def test_negative_contributions_are_clipped_per_head_before_the_head_mean():
    A = np.full((2, 2, 2), 0.5)
    G = np.stack([np.full((2, 2), -2.0), np.full((2, 2), 2.0)])  # head products -1 and +1
    bar = weighted_attention(torch.from_numpy(A), torch.from_numpy(G)).numpy()
    np.testing.assert_allclose(bar, 0.5)  # mean(max(-1, 0), max(1, 0)); clipping after the mean would give 0


def test_grad_rollout_is_rollout_of_the_weighted_attention():
    rng = np.random.default_rng(0)
    N, P = 7, 1
    attns = [rng.dirichlet(np.ones(N), size=(3, N)) for _ in range(3)]
    grads = [rng.normal(size=(3, N, N)) for _ in range(3)]
    mats = []
    for a, g in zip(attns, grads):
        F = np.clip(a * g, 0, None).max(0)
        F = np.where(F.sum(1, keepdims=True) > 0, F / np.maximum(F.sum(1, keepdims=True), 1e-300), np.eye(N))
        mats.append(0.5 * F + 0.5 * np.eye(N))
    expected = mats[2] @ mats[1] @ mats[0]
    by_max = MixOptions(fusion="max")
    R = grad_rollout(attns, grads, options=by_max, num_prefix_tokens=P)
    np.testing.assert_allclose(R, expected, atol=1e-14)
    np.testing.assert_allclose(R.sum(1), 1.0, atol=1e-14)
    np.testing.assert_allclose(relevance_row(attns, grads, 3, "grad_rollout", options=by_max), expected[3], atol=1e-14)
    # block 1 alone
    block_1 = MixOptions(fusion="max", first_block=1, last_block=1)
    np.testing.assert_allclose(grad_rollout(attns, grads, options=block_1), mats[1], atol=1e-14)


def test_all_negative_rows_pass_their_token_through():
    a = np.full((1, 3, 3), 1 / 3)
    g = -np.ones((1, 3, 3))
    (mat,) = grad_rollout_matrices([a], [g])
    np.testing.assert_allclose(mat.numpy(), np.eye(3))
    np.testing.assert_allclose(augment(torch.zeros(3, 3)).numpy(), np.eye(3))


@pytest.mark.parametrize("call", [
    lambda a, g: chefer_relevance(a, g[:1]),
    lambda a, g: chefer_relevance(a, [x[:, :2, :2] for x in g]),
    lambda a, g: relevance_row(a, g, 0, "lrp"),
    lambda a, g: relevance_row(a, g, 5),
])
def test_bad_input_gives_a_clear_error(call):
    rng = np.random.default_rng(1)
    a = [rng.dirichlet(np.ones(3), size=(2, 3)) for _ in range(2)]
    g = [rng.normal(size=(2, 3, 3)) for _ in range(2)]
    with pytest.raises(ValueError):
        call(a, g)


@pytest.fixture(scope="module")
def tiny_vit():
    torch.manual_seed(0)
    cfg = ViTConfig(img_size=(32, 48), patch_size=16, embed_dim=32, depth=3, num_heads=2, mlp_hidden_dim=64,
                    num_classes=5)
    sd = create_net(cfg).state_dict()
    g = torch.Generator().manual_seed(1)
    sd = {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in sd.items()}  # every weight matters
    return build_model(ModelInfo(family="vit", config=cfg), sd)


def test_real_network_gradients_come_from_the_logit_of_each_block(tiny_vit):
    x = torch.randn(1, 3, 32, 48)
    A, G, logits, cap = attention_gradients(tiny_vit, x, 3)
    assert len(A) == len(G) == 3
    # the class token alone feeds the head: in the last block only its query row can matter,
    # earlier blocks reach the class token through every token
    last, first = G[-1], G[0]
    assert last[:, 1:, :].abs().max() == 0 and last[:, 0, :].abs().max() > 0
    assert first[:, 1:, :].abs().max() > 0
    # gradients of the logit, not of its softmax probability
    cap2 = tiny_vit.capture(x, keep_graph=True)
    ref = torch.autograd.grad(cap2.logits[0, 3], [b.attn for b in cap2.blocks], retain_graph=True)
    prob = torch.autograd.grad(cap2.logits.softmax(-1)[0, 3], [b.attn for b in cap2.blocks])
    for g, r, p in zip(G, ref, prob):
        torch.testing.assert_close(g, r[0].float(), rtol=1e-5, atol=1e-7)
        assert not torch.allclose(g, p[0].float(), rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(logits, cap2.logits[0].detach())


@pytest.mark.parametrize("method", ["chefer", "grad_rollout"])
def test_class_relevance_on_a_real_network(tiny_vit, method):
    x = torch.randn(1, 3, 32, 48)
    with torch.inference_mode():  # the GUI worker runs without autograd; relevance must still work
        rel = class_relevance(tiny_vit, x, 2, method)
    A, G, logits, _ = attention_gradients(tiny_vit, x, 2)
    np.testing.assert_allclose(rel.values, relevance_row(A, G, 0, method), atol=1e-12)
    assert rel.map.shape == (2, 3) and np.isclose(rel.map.max(), 1.0)
    assert rel.logit == pytest.approx(float(logits[2]))
    other = class_relevance(tiny_vit, x, 4, method)
    assert not np.allclose(other.values, rel.values)  # another class, another map


def test_frozen_parameters_still_give_gradients(tiny_vit):
    for p in tiny_vit.parameters():
        p.requires_grad_(False)
    try:
        rel = class_relevance(tiny_vit, torch.randn(1, 3, 32, 48), 0)
        assert np.isfinite(rel.values).all() and rel.values[1:].max() > 0
    finally:
        for p in tiny_vit.parameters():
            p.requires_grad_(True)


def test_class_relevance_refuses_what_it_cannot_explain(tiny_vit):
    with pytest.raises(ValueError):
        class_relevance(tiny_vit, torch.randn(1, 3, 32, 48), 5)
    with pytest.raises(ValueError):
        class_relevance(tiny_vit, torch.randn(2, 3, 32, 48), 0)
    with pytest.raises(ValueError):
        class_relevance(tiny_vit, torch.randn(1, 3, 32, 48), 0, "lrp")
    cfg = SwinConfig(img_size=(32, 32), embed_dim=8, depths=(2,), num_heads=(2,), window_size=(4,),
                     pretrained_window_size=(0,), num_classes=3)
    swin = build_model(ModelInfo(family="swin", config=cfg), create_net(cfg).state_dict())
    with pytest.raises(ValueError, match="ViT"):
        class_relevance(swin, torch.randn(1, 3, 32, 32), 0)
    cfg = ViTConfig(img_size=(32, 32), patch_size=16, embed_dim=16, depth=1, num_heads=2, mlp_hidden_dim=32,
                    num_classes=0)
    headless = build_model(ModelInfo(family="vit", config=cfg), create_net(cfg).state_dict())
    with pytest.raises(ValueError, match="classifier"):
        class_relevance(headless, torch.randn(1, 3, 32, 32), 0)


def test_chefer_reads_only_the_block_range_of_the_options():
    rng = np.random.default_rng(2)
    a = [rng.dirichlet(np.ones(4), size=(2, 4)) for _ in range(3)]
    g = [rng.normal(size=(2, 4, 4)) for _ in range(3)]
    mixed = MixOptions(alpha=0.9, fusion="max", discard_ratio=0.5)
    np.testing.assert_allclose(chefer_relevance(a, g, options=mixed), chefer_relevance(a, g), atol=0)
    np.testing.assert_allclose(relevance_row(a, g, 1, "chefer", options=mixed), relevance_row(a, g, 1), atol=0)
    last_two = chefer_relevance(a, g, options=MixOptions(first_block=1))
    np.testing.assert_allclose(last_two, chefer_relevance(a[1:], g[1:]), atol=1e-15)


@pytest.mark.parametrize("method", ["chefer", "grad_rollout"])
def test_class_relevance_uses_and_records_its_options(tiny_vit, method):
    x = torch.randn(1, 3, 32, 48)
    options = MixOptions(alpha=0.2, fusion="max", discard_ratio=0.3, first_block=1)
    rel = class_relevance(tiny_vit, x, 1, method, start=2, options=options)
    assert rel.options == options and rel.start == 2
    A, G, _, _ = attention_gradients(tiny_vit, x, 1)
    np.testing.assert_allclose(rel.values, relevance_row(A, G, 2, method, options=options), atol=1e-12)
    assert class_relevance(tiny_vit, x, 1, method).options is DEFAULT_OPTIONS
