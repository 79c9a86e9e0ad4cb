"""Compare mode as plain Python: a second model (B) on the same image, whose view follows the main one.

Model B lives in its own :class:`~attnviz.session.state.Session` that shares the main session's worker
(one thread owns the models) through :class:`PrefixedWorker`, so B's requests neither supersede nor
cancel the main session's: they run under kinds of their own ('compare:capture', ...).

:func:`follow` carries the main view over to B where it applies and says where it cannot:

- block: the same index when both models have the same depth; otherwise the block at the same relative
  depth (block i of L_A → round(i·(L_B−1)/(L_A−1)) of L_B), stated in the note;
- head: the same head index when B's block has it, else the mean over B's heads, stated;
- query: the same place in the image (:func:`~attnviz.session.query.remap_query`); a prefix token B
  lacks (Swin has no class token) becomes B's default query, stated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .query import Geometry, Patch, Prefix, Query, default_query, remap_query


class PrefixedWorker:
    """The same worker under other request kinds: ``submit('capture')`` runs as ``prefix + 'capture'``."""

    def __init__(self, worker: Any, prefix: str):
        self.inner, self.prefix = worker, prefix

    @property
    def synchronous(self) -> bool:
        return getattr(self.inner, "synchronous", False)

    def submit(self, kind: str, fn: Callable[..., Any], *args, **kwargs):
        return self.inner.submit(self.prefix + kind, fn, *args, **kwargs)

    def cancel(self, prefix: str = "") -> None:
        self.inner.cancel(self.prefix + prefix)

    def busy(self, prefix: str = "") -> bool:
        return self.inner.busy(self.prefix + prefix)

    def shutdown(self) -> None:
        self.cancel()  # the shared worker itself belongs to the main session


@dataclass
class Followed:
    """What B's view was set to, and the notes on what could not be carried over as is."""

    block: int
    head: Any
    query: Query
    notes: list[str] = field(default_factory=list)


def map_block(block: int, depth_a: int, depth_b: int) -> int:
    """The block of model B at the same relative depth as ``block`` of model A."""
    if depth_a == depth_b:
        return int(block)
    if depth_b <= 1:
        return 0
    if depth_a <= 1:
        return depth_b - 1
    return int(round(block * (depth_b - 1) / (depth_a - 1)))


def follow(block: int, head: Any, query: Query, geom_a: Geometry, depth_a: int,
           geom_b: Geometry, heads_b: tuple[int, ...]) -> Followed:
    """The view of model B that matches (block, head, query) of model A; see the module docstring."""
    notes: list[str] = []
    depth_b = len(heads_b)
    b = map_block(block, depth_a, depth_b)
    if depth_b != depth_a:
        notes.append(f"model B has {depth_b} blocks, model A {depth_a}: block {block} of A is shown as block {b} "
                     "of B (the same relative depth)")
    h = head
    if isinstance(head, int) and head >= heads_b[b]:
        h = "mean"
        notes.append(f"block {b} of model B has {heads_b[b]} heads, no head {head}: showing their mean")
    if isinstance(query, Prefix) and query.index >= geom_b.num_prefix_tokens:
        q = default_query(geom_b)
        what = "no prefix tokens" if geom_b.num_prefix_tokens == 0 else f"only {geom_b.num_prefix_tokens} prefix tokens"
        notes.append(f"model B has {what}: showing its {_label(q)}")
    else:
        q = remap_query(query, geom_a, geom_b)
        if isinstance(query, Patch) and geom_b.patch_size != geom_a.patch_size:
            notes.append(f"the query patch is {_label(q)} on B's {geom_b.patch_size}-pixel grid (the same place "
                         "in the image)")
    return Followed(b, h, q, notes)


def _label(q: Query) -> str:
    return q.label() if isinstance(q, Patch) else "first prefix token" if q.index == 0 else q.label()


__all__ = ["Followed", "PrefixedWorker", "follow", "map_block"]
