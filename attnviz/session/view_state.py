"""What the user is looking at, as one evented value that every panel follows (no Qt).

Modelled on napari's EventedModel and glue's viewer state: each field has a docstring, is validated in
one place (:meth:`ViewState._validate`), and emits its own psygnal signal ``state.signal("<field>")``
with ``(new, old)`` only when its value really changes. Several changes can be made as one update::

    with state.batch():          # each changed field emits once, after the block, with its final value
        state.block, state.head = 3, 1

Choices that depend on the loaded capture (how many blocks, how many heads a block has, which query
tokens exist, how many classes) live in :class:`Limits`; :meth:`ViewState.set_limits` re-validates
every field against new limits (a head the block does not have is clamped, a patch query outside
the grid moves to the nearest patch).
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field, fields, replace
from typing import Iterator, Optional, Union

from psygnal import evented

from ..analysis.options import FUSIONS, MixOptions
from .query import Geometry, Patch, Prefix, Query, clamp_query

HeadChoice = Union[int, str]  # a head index, or one of FUSIONS
METHODS: tuple[str, ...] = ("attention", "rollout", "flow", "grad_rollout", "chefer")
METHOD_NAMES = {"attention": "Attention", "rollout": "Rollout", "flow": "Attention flow",
                "grad_rollout": "Gradient rollout", "chefer": "Relevance (Chefer)"}
COLORMAPS: tuple[str, ...] = ("inferno", "viridis", "magma", "cividis", "CET-D1")
NORMALISATIONS: tuple[str, ...] = ("map", "block", "global")
SCALES: tuple[str, ...] = ("linear", "log")
OVERLAYS: tuple[str, ...] = ("colour", "alpha")


@dataclass(frozen=True)
class Limits:
    """What the loaded capture offers; the view state is validated against it."""

    num_blocks: int = 1
    heads: tuple[int, ...] = (1,)  # heads of every block, forward order
    geometry: Optional[Geometry] = None
    num_classes: int = 0  # 0: no classifier head

    @classmethod
    def of(cls, cap) -> "Limits":
        """What a capture (attnviz.nets.Capture) offers: its blocks, each block's heads, its geometry, classes."""
        num_classes = 0 if cap.logits is None else int(cap.logits.shape[-1])
        return cls(len(cap.blocks), tuple(int(b.num_heads) for b in cap.blocks), Geometry.of(cap), num_classes)


@evented
@dataclass
class ViewState:
    """The view shared by every panel. Changing a field never reruns the model."""

    block: int = 0
    """Index into the capture's blocks, forward order (counted across Swin stages), 0-based."""
    head: HeadChoice = "mean"
    """A head of the block (0-based), or how heads are fused: 'mean', 'max' or 'min'."""
    query: Query = field(default_factory=Prefix)
    """The token whose attention is drawn: Prefix(i) or Patch(row, col) on the input patch grid."""
    hover: Optional[Patch] = None
    """The input patch under the mouse, shown by every panel that can (None: the mouse is elsewhere)."""
    class_idx: Optional[int] = None
    """Class the relevance maps explain; None: the predicted class."""
    method: str = "attention"
    """Map overlaid on the image: 'attention' (the query's row of the block), 'rollout', 'flow',
    'grad_rollout' or 'chefer' (class relevance)."""
    options: MixOptions = field(default_factory=MixOptions)
    """Residual weight, head fusion, discard ratio and block range of rollout, flow and relevance."""
    colormap: str = "inferno"
    """Colour map of the heat maps (perceptual ones; 'CET-D1' is diverging, for signed values)."""
    normalisation: str = "map"
    """Colour range: 'map' (this map's own range), 'block' (all heads of the block), 'global' (all blocks)."""
    scale: str = "linear"
    """'linear' or 'log' colour scale (log shows the small weights a softmax hides)."""
    opacity: float = 0.6
    """Opacity of the overlay, 0..1."""
    overlay: str = "colour"
    """'colour': the map in colour over the image; 'alpha': the image shows through where attention is high."""
    smooth: bool = False
    """Upsample maps smoothly (bilinear) instead of one colour per patch."""
    show_grid: bool = False
    """Draw the patch grid over the image."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_limits", Limits())
        object.__setattr__(self, "_batching", False)
        with warnings.catch_warnings():  # psygnal notes that 'block' shadows SignalGroup.block(): known, see signal()
            warnings.simplefilter("ignore", UserWarning)
            self.events  # noqa: B018 - builds the signal group now

    # -- validation, in one place -------------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if name in _FIELDS:
            value = self._validate(name, value)
        super().__setattr__(name, value)
        if name == "block" and hasattr(self, "head"):
            # the head is re-clamped to the new block's heads before the block's own event goes out
            head = self._valid_head(self.head, value)
            if head != self.head:
                self.head = head

    @property
    def limits(self) -> Limits:
        return getattr(self, "_limits", Limits())

    def _validate(self, name: str, value):
        lim = self.limits
        if name == "block":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"block must be an integer, got {value!r}")
            return min(max(int(value), 0), max(lim.num_blocks - 1, 0))
        if name == "head":
            return self._valid_head(value, getattr(self, "block", 0))
        if name == "query":
            if not isinstance(value, (Prefix, Patch)):
                raise ValueError(f"query must be Prefix(i) or Patch(row, col), got {value!r}")
            return value if lim.geometry is None else clamp_query(value, lim.geometry)
        if name == "hover":
            if value is not None and not isinstance(value, Patch):
                raise ValueError(f"hover must be a Patch or None, got {value!r}")
            return value if value is None or lim.geometry is None else clamp_query(value, lim.geometry)
        if name == "class_idx":
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < max(lim.num_classes, 1):
                raise ValueError(f"class {value!r} does not exist (the model has {lim.num_classes} classes)")
            return int(value)
        if name == "options":
            if not isinstance(value, MixOptions):
                raise ValueError(f"options must be MixOptions, got {value!r}")
            n = lim.num_blocks
            first, last = value.first_block, value.last_block
            if not -n <= first < n:
                first = 0  # a range of another model's depth: back to every block
            if last is not None and (not -n <= last < n or last % n == n - 1):
                last = None  # the last block (None) rather than its index, so the default reads as such
            if last is not None and last % n < first % n:
                first, last = 0, None
            return replace(value, first_block=first, last_block=last)
        if name == "opacity":
            return min(max(float(value), 0.0), 1.0)
        if name in ("smooth", "show_grid"):
            return bool(value)
        choices = _CHOICES.get(name)
        if choices is not None and value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def _valid_head(self, value, block: int):
        if isinstance(value, str):
            if value not in FUSIONS:
                raise ValueError(f"head must be a head index or one of {', '.join(FUSIONS)}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"head must be a head index or one of {', '.join(FUSIONS)}, got {value!r}")
        return min(max(int(value), 0), self.heads_of_block(block) - 1)

    def set_limits(self, limits: Limits) -> None:
        """New capture: store its limits and re-validate every field (one batched update)."""
        with self.batch():
            object.__setattr__(self, "_limits", limits)
            for name in _FIELDS:
                setattr(self, name, getattr(self, name))

    # -- batching -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def batch(self) -> Iterator["ViewState"]:
        """Make several changes; afterwards each field that ended up different emits once."""
        if getattr(self, "_batching", False):
            yield self
            return
        before = {name: getattr(self, name) for name in _FIELDS}
        object.__setattr__(self, "_batching", True)
        try:
            with self.events.blocked():
                yield self
                # the head depends on the block: re-clamp it against the block that was settled on
                super().__setattr__("head", self._valid_head(self.head, self.block))
        finally:
            object.__setattr__(self, "_batching", False)
        for name, old in before.items():
            new = getattr(self, name)
            if new != old:
                self.events[name].emit(new, old)

    def update(self, **changes) -> None:
        """Set several fields as one batched update: ``state.update(block=3, head=1)``."""
        with self.batch():
            for name, value in changes.items():
                if name not in _FIELDS:
                    raise ValueError(f"the view state has no field '{name}'")
                setattr(self, name, value)

    # -- helpers ------------------------------------------------------------------------------------
    def signal(self, name: str):
        """The psygnal signal of one field, emitted with (new, old). (``events.block`` is taken by
        psygnal's own ``SignalGroup.block()``, so fields are reached by name.)"""
        if name not in _FIELDS:
            raise ValueError(f"the view state has no field '{name}'")
        return self.events[name]

    def heads_of_block(self, block: Optional[int] = None) -> int:
        heads = self.limits.heads
        b = self.block if block is None else block
        return heads[min(b, len(heads) - 1)] if heads else 1

    def step_head(self, delta: int) -> None:
        """Cycle through the heads, then the fusions mean/max/min, and around (←/→)."""
        choices: list[HeadChoice] = list(range(self.heads_of_block())) + list(FUSIONS)
        i = choices.index(self.head) if self.head in choices else 0
        self.head = choices[(i + delta) % len(choices)]


_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ViewState))
_CHOICES = {"method": METHODS, "colormap": COLORMAPS, "normalisation": NORMALISATIONS, "scale": SCALES,
            "overlay": OVERLAYS}
