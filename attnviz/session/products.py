"""Derived products of a capture (a head's map, rollout, flow, relevance, head statistics), cached by key.

Each product is a pure function of the capture and the view fields it reads, computed by
attnviz.analysis. The table :data:`PRODUCTS` says which fields each one reads, so its cache key
(capture identity + those fields' values) is derived, never hand-written. Cheap products are computed
inline on a cache miss; slow ones (flow, relevance, statistics) run on the worker, report progress,
and a newer request of the same product cancels the superseded one (flow polls ``job.cancelled``).
A product that does not apply to the model raises :class:`NotApplicable` and is delivered as an
:class:`Unavailable` result with the reason, so a panel can say why instead of drawing nothing.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
from psygnal import Signal

from ..analysis.options import MixOptions
from .query import Geometry, Patch, Prefix, Query, stage_token, vit_token


class NotApplicable(Exception):
    """The product does not exist for this model; the message says why, for the user."""


@dataclass(frozen=True)
class Unavailable:
    """What a panel shows instead of a map: why the method does not apply, or (``failed``) that computing
    it raised, with the error; panels show ``reason`` either way, so it says which."""

    reason: str
    failed: bool = False

    @classmethod
    def failure(cls, e: BaseException) -> "Unavailable":
        """A product whose computation raised ``e`` (out of memory, a bug): not a property of the model."""
        return cls(f"Could not be computed: {' '.join(str(e).split()) or type(e).__name__}", failed=True)


@dataclass
class Context:
    """Everything a product reads besides the view: one capture and what produced it."""

    capture: Any  # attnviz.nets.Capture
    model: Any  # attnviz.model.LoadedModel
    x: Optional[torch.Tensor]  # (1, 3, H, W) float32 preprocessed input on the CPU
    geometry: Geometry
    use_pos_embed: bool = True
    ident: int = 0  # increases with every new capture: the capture part of each cache key
    # class -> (attentions, gradients of that class logit), per block; filled on the worker by relevance
    gradients: dict = field(default_factory=dict)


@dataclass
class QueryHeads:
    """One block's attention of the query, every head, on the block's token grid."""

    maps: np.ndarray  # (heads, H_b, W_b) float64 probabilities (Swin: zero outside the query's window)
    prefix: Optional[np.ndarray]  # (heads, P) what the query gives each prefix token (ViT), None for Swin
    token_px: int  # input pixels per token side of this block
    query_cell: Optional[tuple[int, int]]  # the query's (y, x) on this block's grid; None for a prefix query
    label: str  # e.g. "cls token" or "patch (3, 4) → stage-1 token (1, 2)"
    # Swin: (H_b, W_b) bool, the tokens of the query's window (the only keys it can attend to); None for ViT
    window: Optional[np.ndarray] = None

    def head_map(self, head) -> np.ndarray:
        """(H_b, W_b) for a head index or a fusion over heads (mean/max/min)."""
        return _select_head(self.maps, head)

    def head_prefix(self, head) -> Optional[np.ndarray]:
        """(P,) what the query gives each prefix token, for a head or a fusion; None for Swin."""
        return None if self.prefix is None else _select_head(self.prefix, head)


def _select_head(per_head: np.ndarray, head) -> np.ndarray:
    """One head of a (heads, ...) array, or the heads fused as attnviz.analysis fuses them."""
    from ..analysis.query import fuse_heads

    if isinstance(head, int):
        return per_head[head]
    return fuse_heads(torch.from_numpy(per_head), head).numpy()


@dataclass
class AttnMatrix:
    """The selected head's full attention matrix (ViT: N×N over all tokens; Swin: the query's window)."""

    matrix: np.ndarray  # (n, n) float64, rows = queries
    query_row: Optional[int]  # row of the query
    labels: list[str]  # names of the first len(labels) rows/columns (prefix tokens), empty for Swin
    title: str


@dataclass
class TokenMap:
    """A map over the input patch grid (rollout, flow, relevance)."""

    map: np.ndarray  # (gh, gw) float64 on the input patch grid
    note: str = ""  # e.g. the class a relevance map explains


# ---------------------------------------------------------------------------------------------
# the product functions (each reads the context and the named view fields)


def _vit_attns(ctx: Context) -> list[torch.Tensor]:
    from ..analysis.query import image_attentions

    return image_attentions(ctx.capture, 0)  # L × (heads, N, N)


def query_heads(ctx: Context, block: int, query: Query) -> QueryHeads:
    from ..analysis.query import prefix_attention, query_attention

    cap, g = ctx.capture, ctx.geometry
    b = cap.blocks[block]
    if cap.family == "vit":
        token = vit_token(query, g)
        attn = b.attn[0]  # (heads, N, N)
        maps = query_attention(attn, token, g.num_prefix_tokens, tuple(b.grid_size))  # (heads, gh, gw)
        prefix = prefix_attention(attn, token, g.num_prefix_tokens) if g.num_prefix_tokens else None
        cell = None if isinstance(query, Prefix) else (query.row, query.col)
        return QueryHeads(maps, prefix, int(b.token_px), cell, query.label(list(g.prefix_names)))
    from ..analysis.swin_maps import query_attention_heads
    from ..analysis.windows import geometry_of, locate_token, window_token_index

    if not isinstance(query, Patch):
        raise NotApplicable("Swin has no prefix tokens: pick a patch")
    cell = stage_token(query, b)
    maps = query_attention_heads(b, cell).numpy()  # (heads, H, W): every head in one pass over the window
    label = f"{query.label()} → stage-{b.stage} token {cell}" if b.stage else query.label()
    geom = geometry_of(b)
    w, _slot = locate_token(geom, *cell)
    members = window_token_index(geom)[w]  # (M²,) flat stage-grid tokens of the window, -1 = padding
    window = np.zeros(b.grid_size[0] * b.grid_size[1], dtype=bool)
    window[members[members >= 0].numpy()] = True
    return QueryHeads(maps.astype(np.float64), None, int(b.token_px), cell, label,
                      window.reshape(tuple(b.grid_size)))  # (H, W)


def model_query_maps(ctx: Context, query: Query) -> list[QueryHeads]:
    """The query's attention in every block (the block × head overview and global normalisation)."""
    return [query_heads(ctx, i, query) for i in range(len(ctx.capture.blocks))]


def attn_matrix(ctx: Context, block: int, head, query: Query) -> AttnMatrix:
    from ..analysis.query import fuse_heads

    cap, g = ctx.capture, ctx.geometry
    b = cap.blocks[block]
    hname = f"head {head}" if isinstance(head, int) else f"{head} over heads"
    if cap.family == "vit":
        a = b.attn[0]  # (heads, N, N)
        m = a[head] if isinstance(head, int) else fuse_heads(a, head)  # (N, N)
        return AttnMatrix(m.double().numpy(), vit_token(query, g), list(g.prefix_names),
                          f"block {block}, {hname}: all {m.shape[0]} tokens")
    from ..analysis.windows import geometry_of, locate_token

    if not isinstance(query, Patch):
        raise NotApplicable("Swin has no prefix tokens: pick a patch")
    y, x = stage_token(query, b)
    w, slot = locate_token(geometry_of(b), y, x)
    a = b.attn[0, w]  # (heads, M², M²)
    m = a[head] if isinstance(head, int) else fuse_heads(a, head)  # (M², M²)
    return AttnMatrix(m.double().numpy(), int(slot), [], f"block {block}, {hname}: window {w} of the query "
                      f"({m.shape[0]} tokens)")


def _start(ctx: Context, query: Query) -> int:
    g = ctx.geometry
    return vit_token(query, g)


def rollout(ctx: Context, query: Query, options: MixOptions) -> TokenMap:
    cap = ctx.capture
    if cap.family == "vit":
        from ..analysis.rollout import rollout_map

        m = rollout_map(_vit_attns(ctx), ctx.geometry.num_prefix_tokens, ctx.geometry.grid_size,
                        start=_start(ctx, query), options=options)
        return TokenMap(m, f"from the {query.label(list(ctx.geometry.prefix_names))}")
    from ..analysis.rollout import block_range
    from ..analysis.swin_maps import swin_rollout

    if not isinstance(query, Patch):
        raise NotApplicable("Swin has no prefix tokens: pick a patch")
    rng = block_range(len(cap.blocks), options.first_block, options.last_block)
    if rng.start != 0:
        raise NotApplicable("Swin rollout starts at the first block (patch merging needs every stage)")
    blocks = cap.blocks[: rng.stop]
    target = stage_token(query, blocks[-1])
    m = swin_rollout(blocks, target, alpha=options.alpha, head_fusion=options.fusion).double().numpy()
    return TokenMap(m / m.max() if m.max() > 0 else m, f"from stage-{blocks[-1].stage} token {target}")


def _need_vit(ctx: Context, what: str) -> None:
    if ctx.capture.family != "vit":
        raise NotApplicable(f"{what} needs token-to-token attention (ViT family); Swin attends inside windows")


def flow(ctx: Context, query: Query, options: MixOptions, job=None) -> TokenMap:
    from ..analysis.flow import attention_flow, flow_map

    _need_vit(ctx, "Attention flow")
    g = ctx.geometry
    values = attention_flow(_vit_attns(ctx), _start(ctx, query), options=options,
                            num_prefix_tokens=g.num_prefix_tokens,
                            progress=None if job is None else job.progress,
                            cancel=None if job is None else job.cancelled)
    m = flow_map(values, g.num_prefix_tokens, g.grid_size)
    return TokenMap(m / m.max() if m.max() > 0 else m, f"from the {query.label(list(g.prefix_names))}")


def predicted_class(ctx: Context) -> int:
    if ctx.capture.logits is None:
        raise NotApplicable("this model has no classifier head (a backbone), so there is no class to explain")
    return int(ctx.capture.logits[0].argmax())


def _relevance(ctx: Context, method: str, query: Query, options: MixOptions, class_idx: Optional[int]) -> TokenMap:
    """Relevance of ``class_idx`` from the query token. The gradient of the class logit with respect to
    every block's attention does not depend on the start token or the options, so it is computed once per
    (capture, class) — one forward and backward — and kept on the context: moving the query never reruns
    the model."""
    from ..analysis.query import patch_map
    from ..analysis.relevance import attention_gradients, relevance_row

    _need_vit(ctx, "Class relevance")
    c = predicted_class(ctx) if class_idx is None else int(class_idx)
    m, g = ctx.model, ctx.geometry
    if c not in ctx.gradients:
        A, G, _logits, _cap = attention_gradients(m.net, ctx.x.to(m.device, m.dtype), c, ctx.use_pos_embed)
        ctx.gradients[c] = (A, G)
    A, G = ctx.gradients[c]
    row = relevance_row(A, G, _start(ctx, query), method, options=options, num_prefix_tokens=g.num_prefix_tokens)
    names = m.class_names
    name = names[c] if names and c < len(names) else f"class {c}"
    return TokenMap(patch_map(row, g.num_prefix_tokens, g.grid_size, normalize="max"),
                    f"for {name}" + (" (predicted)" if class_idx is None else "")
                    + f", from the {query.label(list(g.prefix_names))}")


def grad_rollout(ctx: Context, query: Query, options: MixOptions, class_idx: Optional[int]) -> TokenMap:
    return _relevance(ctx, "grad_rollout", query, options, class_idx)


def chefer(ctx: Context, query: Query, options: MixOptions, class_idx: Optional[int]) -> TokenMap:
    return _relevance(ctx, "chefer", query, options, class_idx)


def stats(ctx: Context):
    from ..analysis.stats import head_stats

    return head_stats(ctx.capture, index=0)


@dataclass(frozen=True)
class ProductSpec:
    name: str
    fn: Callable[..., Any]
    reads: tuple[str, ...]  # view fields passed to fn, by name
    slow: bool = False  # run on the worker
    takes_job: bool = False  # fn accepts job= (progress and cancel)


PRODUCTS: dict[str, ProductSpec] = {p.name: p for p in (
    ProductSpec("query_heads", query_heads, ("block", "query")),
    ProductSpec("model_query_maps", model_query_maps, ("query",)),
    ProductSpec("attn_matrix", attn_matrix, ("block", "head", "query")),
    ProductSpec("rollout", rollout, ("query", "options"), slow=True),
    ProductSpec("flow", flow, ("query", "options"), slow=True, takes_job=True),
    ProductSpec("grad_rollout", grad_rollout, ("query", "options", "class_idx"), slow=True),
    ProductSpec("chefer", chefer, ("query", "options", "class_idx"), slow=True),
    ProductSpec("stats", stats, (), slow=True),
)}
MAP_PRODUCTS = ("rollout", "flow", "grad_rollout", "chefer")


def register(*specs: ProductSpec) -> None:
    """Add products defined beside the panels that read them (the lesson panels' modules call this when
    imported). Registering the same spec again is harmless; another function under a taken name is refused."""
    for spec in specs:
        old = PRODUCTS.get(spec.name)
        if old is not None and old.fn is not spec.fn:
            raise ValueError(f"a product named {spec.name!r} is already registered")
        PRODUCTS[spec.name] = spec


class Products:
    """The cache in front of :data:`PRODUCTS`. Signals: ``ready(name)``, ``progress(name, done, total)``,
    ``started(name)``; a product whose key changed is recomputed when asked again."""

    ready = Signal(str)
    progress = Signal(str, int, int)
    started = Signal(str)

    def __init__(self, worker, view, size: int = 96):
        self.worker = worker
        self.view = view
        self.context: Optional[Context] = None
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._size = size
        self._pending: dict[str, tuple] = {}

    def set_context(self, ctx: Optional[Context]) -> None:
        """A new capture (or none): cached products stay keyed by the old capture and age out; work for
        the old one is cancelled."""
        self.worker.cancel("product:")
        self._pending.clear()
        self.context = ctx

    def key(self, name: str, **override) -> tuple:
        spec = PRODUCTS[name]
        ctx = self.context
        values = tuple(override.get(f, getattr(self.view, f)) for f in spec.reads)
        return (name, None if ctx is None else ctx.ident, values)

    def _args(self, name: str, override: dict) -> dict:
        return {f: override.get(f, getattr(self.view, f)) for f in PRODUCTS[name].reads}

    def cached(self, name: str, **override) -> Any:
        """The product for the current view (or ``override`` fields) if it is already computed, else None."""
        k = self.key(name, **override)
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        return None

    def get(self, name: str, **override) -> Any:
        """The product now: cached, or computed inline (cheap products; slow ones too when forced by a
        synchronous worker). Returns None for a slow product that is being computed; ``ready`` follows."""
        if self.context is None:
            return None
        k = self.key(name, **override)
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        spec = PRODUCTS[name]
        if not spec.slow:
            return self._store(k, self._compute(spec, self.context, self._args(name, override), None))
        self.request(name, **override)
        return self._cache.get(k)

    def request(self, name: str, **override) -> None:
        """Compute a slow product on the worker (no-op when cached or already on its way)."""
        if self.context is None:
            return
        k = self.key(name, **override)
        if k in self._cache or self._pending.get(name) == k:
            return
        spec, ctx, args = PRODUCTS[name], self.context, self._args(name, override)
        self._pending[name] = k

        def work(job):
            return self._compute(spec, ctx, args, job)

        def done(result):
            if self._pending.get(name) == k:
                del self._pending[name]
            self._store(k, result)
            self.ready.emit(name)

        def failed(e: Exception):
            done(Unavailable.failure(e))

        self.started.emit(name)
        self.worker.submit(f"product:{name}", work, done, failed,
                           on_progress=lambda d, t: self.progress.emit(name, d, t), pass_job=True)

    def cancel(self, name: str) -> None:
        """Stop computing ``name`` (the user pressed Cancel)."""
        self.worker.cancel(f"product:{name}")
        self._pending.pop(name, None)

    @staticmethod
    def _compute(spec: ProductSpec, ctx: Context, args: dict, job) -> Any:
        try:
            if spec.takes_job:
                return spec.fn(ctx, **args, job=job)
            return spec.fn(ctx, **args)
        except NotApplicable as e:
            return Unavailable(str(e))

    def _store(self, k: tuple, value: Any) -> Any:
        self._cache[k] = value
        self._cache.move_to_end(k)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return value
