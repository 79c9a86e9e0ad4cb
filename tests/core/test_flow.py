"""Attention flow (attnviz.analysis.flow) against networkx's maximum flow on the same layered graph."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

import attnviz.analysis.flow as flow_mod
from attnviz.analysis.flow import Cancelled, attention_flow, flow_map, layered_max_flow
from attnviz.analysis.options import MixOptions
from attnviz.analysis.rollout import augmented_attentions, rollout


def _softmax_rows(rng, shape, scale=2.0):
    x = rng.normal(size=shape) * scale
    p = np.exp(x - x.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def _caps(rng, L, N, heads=3, scale=3.0, discard=0.0):
    attns = [_softmax_rows(rng, (heads, N, N), scale) for _ in range(L)]
    options = MixOptions(discard_ratio=discard)
    return [m.numpy() for m in augmented_attentions(attns, options=options, num_prefix_tokens=1)]


def _local_caps(rng, L, side, sigma=0.8):
    """Attention that mostly stays near the query on a side×side grid (plus a class token): hard for flow."""
    pos = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)
    pos = np.concatenate([[[-2.0, -2.0]], pos])  # the class token sits off the grid
    d2 = ((pos[:, None] - pos[None]) ** 2).sum(-1)
    N = len(pos)
    attns = []
    for _ in range(L):
        x = -d2[None] / sigma**2 + rng.normal(size=(2, N, N))
        p = np.exp(x - x.max(-1, keepdims=True))
        attns.append(p / p.sum(-1, keepdims=True))
    return [m.numpy() for m in augmented_attentions(attns)]


def _networkx_flow(caps, source, sink):
    """Reference: the layered graph of Abnar & Zuidema, edges from layer l+1 token i to layer l token j."""
    L, N = len(caps), caps[0].shape[0]
    G = nx.DiGraph()
    for l in range(L):
        for i in range(N):
            for j in range(N):
                if caps[l][i, j] > 0:
                    G.add_edge((l + 1, i), (l, j), capacity=float(caps[l][i, j]))
    if (L, source) not in G or (0, sink) not in G:
        return 0.0
    return nx.maximum_flow_value(G, (L, source), (0, sink))


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("method", ["auto", "push_relabel"])
def test_equals_networkx_on_small_random_graphs(seed, method):
    rng = np.random.default_rng(seed)
    L = int(rng.integers(1, 6))
    N = int(rng.integers(2, 9))
    scale = float(rng.choice([0.5, 3.0, 10.0, 30.0]))
    discard = float(rng.choice([0.0, 0.5, 0.8]))
    caps = _caps(rng, L, N, scale=scale, discard=discard)
    source = int(rng.integers(N))
    got = layered_max_flow(caps, source, method=method)
    for t in range(N):
        assert got[t] == pytest.approx(_networkx_flow(caps, source, t), abs=1e-9)


def _bottleneck_caps():
    """Block 1 sends every token to token 0: the flow must squeeze through one token, well below the trivial cut."""
    rng = np.random.default_rng(11)
    N = 6
    attns = [_softmax_rows(rng, (2, N, N), 1.0) for _ in range(4)]
    one_hot = np.zeros((2, N, N))
    one_hot[:, :, 0] = 1.0
    attns[1] = one_hot
    attns[2] = one_hot
    return [m.numpy() for m in augmented_attentions(attns)]


def test_a_real_bottleneck_is_solved_by_push_relabel(monkeypatch):
    caps = _bottleneck_caps()
    calls = []
    original = flow_mod._solve_sink

    def counting(C, a, t):
        calls.append(t)
        return original(C, a, t)

    monkeypatch.setattr(flow_mod, "_solve_sink", counting)
    got = layered_max_flow(caps, 0)
    assert calls, "the certificate cannot hold here, push-relabel must run"
    trivial = np.minimum(caps[-1][0].sum(), caps[0].sum(0))
    for t in range(caps[0].shape[0]):
        ref = _networkx_flow(caps, 0, t)
        assert got[t] == pytest.approx(ref, abs=1e-9)
    assert (got < trivial - 1e-3).any(), "the case should have cuts below the trivial one"


def test_diffuse_attention_is_settled_by_the_certificate(monkeypatch):
    rng = np.random.default_rng(12)
    caps = _caps(rng, 8, 30, heads=12, scale=1.0)  # deep enough to mix, like a real ViT

    def fail(*a, **k):
        raise AssertionError("push-relabel should not be needed")

    monkeypatch.setattr(flow_mod, "_solve_sink", fail)
    got = layered_max_flow(caps, 0)
    for t in (0, 1, 17, 29):
        assert got[t] == pytest.approx(_networkx_flow(caps, 0, t), abs=1e-9)


def test_structured_attention_on_a_grid_matches_networkx_on_some_sinks():
    rng = np.random.default_rng(13)
    caps = _local_caps(rng, 5, 4)  # 17 tokens, 5 blocks
    auto = layered_max_flow(caps, 0)
    exact = layered_max_flow(caps, 0, method="push_relabel")
    np.testing.assert_allclose(auto, exact, atol=1e-10)
    for t in (0, 1, 6, 16):
        assert auto[t] == pytest.approx(_networkx_flow(caps, 0, t), abs=1e-9)


def _sink_heavy_caps(rng, L, side):
    """Local heads, heads dominated by two "attention sink" tokens and sharp random heads, as in trained
    ViTs: the certificate fails for most sinks, and the solver needs its global relabelling."""
    pos = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)
    pos = np.concatenate([[[side / 2, side / 2]], pos])
    d2 = ((pos[:, None] - pos[None]) ** 2).sum(-1)
    N = len(pos)
    attns = []
    for _ in range(L):
        local = -d2 / rng.uniform(0.5, 3.0) ** 2 + rng.normal(size=(N, N))
        sunk = 2 * rng.normal(size=(N, N))
        sunk[:, rng.choice(N, 2, replace=False)] += 8
        sharp = 8 * rng.normal(size=(N, N))
        x = np.stack([local, sunk, sharp])
        p = np.exp(x - x.max(-1, keepdims=True))
        attns.append(p / p.sum(-1, keepdims=True))
    return [m.numpy() for m in augmented_attentions(attns)]


@pytest.mark.parametrize("cores", [1, 2])
def test_trained_like_attention_matches_networkx_serial_and_threaded(monkeypatch, cores):
    monkeypatch.setattr(flow_mod, "_cores", lambda: cores)
    rng = np.random.default_rng(17)
    caps = _sink_heavy_caps(rng, 7, 6)  # 37 tokens, 7 blocks
    got = layered_max_flow(caps, 0, method="push_relabel")
    solved = []
    original = flow_mod._solve_sink
    monkeypatch.setattr(flow_mod, "_solve_sink", lambda C, a, t: solved.append(t) or original(C, a, t))
    auto = layered_max_flow(caps, 0)
    np.testing.assert_allclose(auto, got, atol=1e-10)
    assert len(solved) > 5, "the certificate should fail on many sinks here"
    for t in range(0, 37, 3):
        assert got[t] == pytest.approx(_networkx_flow(caps, 0, t), abs=1e-9)


def test_flow_is_at_least_rollout_and_at_most_one():
    rng = np.random.default_rng(14)
    attns = [_softmax_rows(rng, (3, 10, 10), 4.0) for _ in range(4)]
    f = attention_flow(attns, 0)
    r = rollout(attns)[0]  # the rollout-proportional flow is one feasible flow into each token
    assert (f >= r - 1e-12).all()
    assert (f <= 1 + 1e-12).all()


def test_attention_flow_builds_rollouts_graph():
    rng = np.random.default_rng(15)
    attns = [_softmax_rows(rng, (2, 5, 5), 3.0) for _ in range(3)]
    caps = [0.5 * a.mean(0) / a.mean(0).sum(1, keepdims=True) + 0.5 * np.eye(5) for a in attns]
    got = attention_flow(attns, 2)
    for t in range(5):
        assert got[t] == pytest.approx(_networkx_flow(caps, 2, t), abs=1e-9)
    # block ranges and a subset of sinks
    part = attention_flow(attns, 1, options=MixOptions(first_block=1), sinks=[0, 3])
    assert np.isnan(part[[1, 2, 4]]).all()
    for t in (0, 3):
        assert part[t] == pytest.approx(_networkx_flow(caps[1:], 1, t), abs=1e-9)


def test_flow_map_normalises_over_all_input_tokens():
    v = np.array([2.0, 1.0, 3.0, 0.0, 4.0, np.nan, 0.0])  # one prefix token, a 2x3 grid
    m = flow_map(v, 1, (2, 3))
    np.testing.assert_allclose(m, np.array([[1, 3, 0], [4, 0, 0]]) / 10)


def test_progress_and_cancel():
    caps = _bottleneck_caps()
    seen = []
    layered_max_flow(caps, 0, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (6, 6) and all(t == 6 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    with pytest.raises(Cancelled):
        layered_max_flow(caps, 0, cancel=lambda: True)
    polls = []

    def cancel_later():
        polls.append(1)
        return len(polls) > 3

    with pytest.raises(Cancelled):
        layered_max_flow(caps, 0, method="push_relabel", cancel=cancel_later)


@pytest.mark.parametrize("call", [
    lambda c: layered_max_flow([], 0),
    lambda c: layered_max_flow(c, 7),
    lambda c: layered_max_flow([-x for x in c], 0),
    lambda c: layered_max_flow(c, 0, sinks=[9]),
    lambda c: layered_max_flow(c, 0, method="dinic"),
    lambda c: layered_max_flow(c + [np.ones((3, 3))], 0),
])
def test_bad_input_gives_a_clear_error(call):
    with pytest.raises(ValueError):
        call(_caps(np.random.default_rng(16), 3, 5))


def test_flow_of_a_trained_vit_on_a_real_image_matches_networkx():
    """The shipped faces-vit on a sample face: trained attention, where the certificate rarely holds."""
    from pathlib import Path

    from attnviz.analysis.query import image_attentions
    from attnviz.images import load_image, preprocess
    from attnviz.model import load_model

    root = Path(__file__).resolve().parents[2]
    model = load_model(str(root / "models" / "faces-vit.safetensors"), device="cpu")
    x = preprocess(load_image(root / "assets" / "images" / "face-01.png"), model.info.preprocess)
    attns = image_attentions(model.capture(x[None]))  # (1, 3, 64, 64)
    got = attention_flow(attns, 0)
    caps = [m.numpy() for m in augmented_attentions(attns)]
    for t in range(0, len(got), 8):
        assert got[t] == pytest.approx(_networkx_flow(caps, 0, t), abs=1e-9)


@pytest.mark.parametrize("method", ["auto", "push_relabel"])
def test_tiny_capacities_count_in_full(method):
    """No cut-off: many arcs near 1e-13 (or a whole layer at 1e-10 beside 1e3) still carry their flow."""
    N = 30
    thin = [np.eye(N) * 0.5 + 0.5 / N, np.full((N, N), 9e-14), np.full((N, N), 1 / N)]
    thin[1][0, 0] = 1.0
    faint = [np.full((6, 6), 1e-10), np.full((6, 6), 1e3), np.full((6, 6), 1e3)]
    for caps in (thin, faint):
        got = layered_max_flow(caps, 0, method=method)
        for t in range(0, caps[0].shape[0], 5):
            assert got[t] == pytest.approx(_networkx_flow(caps, 0, t), abs=1e-15)


def test_flow_takes_rollouts_options_whole_and_starts_from_start():
    rng = np.random.default_rng(18)
    attns = [_softmax_rows(rng, (3, 7, 7), 3.0) for _ in range(5)]
    options = MixOptions(alpha=0.3, fusion="min", discard_ratio=0.4, first_block=1, last_block=-1)
    caps = [m.numpy() for m in augmented_attentions(attns, options=options, num_prefix_tokens=2)]
    assert len(caps) == 4
    got = attention_flow(attns, start=3, options=options, num_prefix_tokens=2)
    np.testing.assert_allclose(got, layered_max_flow(caps, start=3, method="push_relabel"), atol=1e-10)
    for t in (0, 2, 6):
        assert got[t] == pytest.approx(_networkx_flow(caps, 3, t), abs=1e-9)
    with pytest.raises(ValueError, match="start token"):
        attention_flow(attns, start=7)
