"""Products: cached by the key they read, computed by attnviz.analysis, superseded work cancelled."""
from __future__ import annotations

import threading

import numpy as np
import torch

from attnviz.analysis.options import MixOptions
from attnviz.analysis.rollout import rollout_map
from attnviz.nets import Capture, ViTConfig, create_net
from attnviz.session import Geometry, Limits, Patch, Prefix, Products, Unavailable, ViewState, Worker
from attnviz.session.products import PRODUCTS, Context


def _context(depth=3, classes=4):
    torch.manual_seed(0)
    net = create_net(ViTConfig(img_size=(32, 32), patch_size=8, embed_dim=32, num_heads=2, depth=depth,
                               mlp_hidden_dim=32, num_classes=classes)).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        cap: Capture = net.capture(x)

    class Model:  # what products read of a LoadedModel
        device, dtype, class_names = torch.device("cpu"), torch.float32, None

    m = Model()
    m.net = net
    return Context(cap, m, x, Geometry.of(cap), True, 1)


def _products(ctx, worker=None):
    view = ViewState()
    view.set_limits(Limits(len(ctx.capture.blocks), tuple(b.num_heads for b in ctx.capture.blocks), ctx.geometry, 4))
    p = Products(worker or Worker(synchronous=True), view)
    p.set_context(ctx)
    return p, view


def test_keys_are_derived_from_the_fields_a_product_reads():
    ctx = _context()
    p, view = _products(ctx)
    k = p.key("rollout")
    view.block, view.head, view.colormap = 2, 1, "magma"  # rollout does not read these
    assert p.key("rollout") == k
    view.options = MixOptions(alpha=0.7)
    assert p.key("rollout") != k
    assert PRODUCTS["query_heads"].reads == ("block", "query")


def test_cached_products_equal_analysis_and_are_not_recomputed(monkeypatch):
    ctx = _context()
    p, view = _products(ctx)
    view.query = Patch(1, 2)
    opts = MixOptions(alpha=0.25, fusion="min")
    view.options = opts
    r = p.get("rollout")
    attns = [b.attn[0] for b in ctx.capture.blocks]
    np.testing.assert_array_equal(r.map, rollout_map(attns, 1, (4, 4), start=1 + 1 * 4 + 2, options=opts))
    import sys

    ro = sys.modules["attnviz.analysis.rollout"]  # the module (the package exports a function of that name)
    monkeypatch.setattr(ro, "rollout_map", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert p.get("rollout") is r  # same key: from the cache
    view.block = 2
    assert p.get("rollout") is r


def test_relevance_reruns_the_model_once_per_class_not_per_query(monkeypatch):
    ctx = _context()
    p, view = _products(ctx)
    runs = []
    real = ctx.model.net.capture
    monkeypatch.setattr(ctx.model.net, "capture", lambda *a, **k: (runs.append(1), real(*a, **k))[1])
    a = p.get("chefer")
    view.query = Patch(0, 0)
    b = p.get("chefer")
    assert len(runs) == 1 and not np.array_equal(a.map, b.map)
    view.class_idx = 3
    p.get("chefer")
    assert len(runs) == 2


def test_a_superseded_flow_request_is_cancelled_not_just_dropped():
    ctx = _context(depth=6)
    gate = threading.Event()
    worker = Worker()
    p, view = _products(ctx, worker)
    jobs = []
    import attnviz.session.products as products

    real_flow = products.flow

    def slow_flow(ctx, query, options, job=None):
        jobs.append(job)
        if len(jobs) == 1:
            gate.wait(5)  # the first request is still running when the second arrives
            assert job.cancelled()
        return real_flow(ctx, query, options, job=job)

    spec = PRODUCTS["flow"]
    PRODUCTS["flow"] = type(spec)(spec.name, slow_flow, spec.reads, spec.slow, spec.takes_job)
    try:
        ready = threading.Event()
        p.ready.connect(lambda name: ready.set())
        p.request("flow")
        while not jobs:
            threading.Event().wait(0.01)
        view.options = MixOptions(alpha=0.9)
        p.request("flow")
        gate.set()
        assert ready.wait(20)
        worker.shutdown()
        assert jobs[0].cancelled() and not jobs[1].cancelled()
        assert p.cached("flow") is not None and p.cached("flow", options=MixOptions()) is None
    finally:
        PRODUCTS["flow"] = spec


def test_not_applicable_says_why():
    ctx = _context(classes=0)
    p, view = _products(ctx)
    r = p.get("chefer")
    assert isinstance(r, Unavailable) and "no classifier head" in r.reason
    view.query = Prefix(0)
    assert isinstance(p.get("rollout").map, np.ndarray)


def test_relevance_follows_the_position_embedding_switch_of_the_capture():
    from attnviz.analysis.query import patch_map
    from attnviz.analysis.relevance import attention_gradients, relevance_row

    ctx = _context()
    with torch.inference_mode():
        ctx.capture = ctx.model.net.capture(ctx.x, use_pos_embed=False)
    ctx.use_pos_embed = False
    p, view = _products(ctx)
    got = p.get("chefer").map
    c = int(ctx.capture.logits[0].argmax())
    A, G, _, _ = attention_gradients(ctx.model.net, ctx.x, c, use_pos_embed=False)
    want = patch_map(relevance_row(A, G, 0, "chefer", num_prefix_tokens=1), 1, (4, 4), normalize="max")
    np.testing.assert_array_equal(got, want)
    A_on, G_on, _, _ = attention_gradients(ctx.model.net, ctx.x, c)
    assert not np.allclose(patch_map(relevance_row(A_on, G_on, 0, "chefer", num_prefix_tokens=1), 1, (4, 4),
                                     normalize="max"), got)


def test_a_slow_product_that_raises_says_it_failed_not_that_it_does_not_apply(monkeypatch):
    import sys

    ctx = _context()
    p, view = _products(ctx)
    fl = sys.modules["attnviz.analysis.flow"]

    def boom(*a, **k):
        raise MemoryError("out of memory while allocating 12 GB")

    monkeypatch.setattr(fl, "attention_flow", boom)
    r = p.get("flow")  # a synchronous worker: computed (and failed) at once
    assert isinstance(r, Unavailable) and r.failed
    assert r.reason.startswith("Could not be computed") and "12 GB" in r.reason
    not_applicable = _products(_context(classes=0))[0].get("chefer")
    assert isinstance(not_applicable, Unavailable) and not not_applicable.failed
