"""Scramble mode as plain Python: which permutation of the patches the user asked for, and the capture
of the scrambled input (no Qt).

:class:`ScrambleState` holds the settings the Scramble panel edits and a view-state file saves: the
kind (original order, seeded random, random within windows, reversed), the seed, the window size, and
the swaps dragged on top of it (a list, so that undo takes the last one back). Its permutation follows
the convention of :mod:`attnviz.analysis.scramble`: position i of the scrambled image shows original
patch ``perm[i]``. The same settings are written as a short text for the command line
(``attnviz dump --scramble random:3``): see :meth:`ScrambleState.from_spec`.

:func:`scramble_capture` runs the model on the scrambled input (on the worker) and measures what
changed against the session's capture of the original: the largest change of a class probability, and
for the ViT family the equivariance numbers of :func:`attnviz.analysis.scramble.compare_captures`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from psygnal import Signal

from ..analysis.scramble import (EquivarianceReport, apply_to_image, compare_captures, compose,
                                 identity_permutation, probability_change, random_permutation,
                                 reverse_permutation, swap_permutation, window_permutation)

KINDS = ("none", "random", "window", "reverse")
KIND_NAMES = {"none": "original order", "random": "random", "window": "random within windows",
              "reverse": "reversed order"}
VIT_WINDOW = 4  # default window side (in patches) for a ViT, which has no windows of its own

Cell = tuple[int, int]


def default_window(source: Any, grid: Optional[tuple[int, int]] = None) -> int:
    """The window side, in input patches, that 'within windows' uses unless the user sets one.

    ``source`` is a capture (the app: a Swin's first block's window as the network ran it) or a loaded
    model or its config (the command line, before any capture: the configured stage-0 window,
    ``config.window_size[0]``). A Swin block shrinks its window to a stage-0 map no larger than it
    (timm's rule, :func:`attnviz.nets.windows.effective_window`), so a Swin's side is clamped to
    ``grid``, the input patch grid (a capture's own when not given), the same way; the app and
    ``attnviz dump --scramble window:S`` then shuffle inside the same windows. A ViT, which has no
    windows, always gets ``VIT_WINDOW`` patches.
    """
    if getattr(source, "family", "") != "swin":
        return VIT_WINDOW
    from ..nets.windows import effective_window

    blocks = getattr(source, "blocks", None)
    if blocks:  # a capture: the window its first block really used
        side = int(blocks[0].window_size)
    else:  # a loaded model (or its config): the configured one
        config = getattr(getattr(source, "info", None), "config", source)
        side = int(config.window_size[0])
    if grid is None and getattr(source, "grid_size", None) is not None:
        grid = tuple(source.grid_size)
    if grid is not None:
        side = effective_window((int(grid[0]), int(grid[1])), side, 0)[0]
    return max(int(side), 1)


class ScrambleState:
    """The scramble settings; ``changed(name)`` says which one changed ('kind', 'seed', 'window', 'swaps',
    'grid', 'show_original' or 'all' after :meth:`load`)."""

    changed = Signal(str)

    def __init__(self) -> None:
        self.kind: str = "random"  # what the Scramble panel shows when first opened
        self.seed: int = 0
        self.window: Optional[int] = None  # None: the model's own (see default_window)
        self.swaps: list[tuple[Cell, Cell]] = []  # in the order they were made, applied after the kind
        self.show_original: bool = False  # draw the scrambled attention in original patch positions
        self.grid: Optional[tuple[int, int]] = None  # the patch grid of the current capture
        self.auto_window: int = VIT_WINDOW  # what window=None means for the current model

    # -- editing ---------------------------------------------------------------------------------
    def set_kind(self, kind: str) -> None:
        """A new scramble from scratch: the swaps made on the previous one are dropped."""
        if kind not in KINDS:
            raise ValueError(f"scramble kind {kind!r} is not one of {', '.join(KINDS)}")
        if kind != self.kind:
            self.kind, self.swaps = kind, []
            self.changed.emit("kind")

    def set_seed(self, seed: int) -> None:
        seed = int(seed)
        if seed < 0:
            raise ValueError(f"the seed must be 0 or more, got {seed}")
        if seed != self.seed:
            self.seed, self.swaps = seed, []
            self.changed.emit("seed")

    def set_window(self, window: Optional[int]) -> None:
        if window is not None:
            window = int(window)
            if window < 1:
                raise ValueError(f"the window side must be at least 1 patch, got {window}")
        if window != self.window:
            self.window, self.swaps = window, []
            self.changed.emit("window")

    def set_show_original(self, on: bool) -> None:
        if bool(on) != self.show_original:
            self.show_original = bool(on)
            self.changed.emit("show_original")

    def swap(self, a: Cell, b: Cell) -> None:
        """Exchange what the scrambled image shows at grid positions a and b (row, col)."""
        a, b = (int(a[0]), int(a[1])), (int(b[0]), int(b[1]))
        if self.grid is not None:
            gh, gw = self.grid
            for r, c in (a, b):
                if not (0 <= r < gh and 0 <= c < gw):
                    raise ValueError(f"patch ({r}, {c}) is outside the {gh}×{gw} patch grid")
        if a == b:
            return
        self.swaps.append((a, b))
        self.changed.emit("swaps")

    def undo(self) -> bool:
        """Take the last swap back; False when there is none."""
        if not self.swaps:
            return False
        self.swaps.pop()
        self.changed.emit("swaps")
        return True

    def set_grid(self, grid: tuple[int, int], auto_window: int = VIT_WINDOW) -> None:
        """The capture's patch grid (and the model's window) changed: swaps on another grid are dropped."""
        grid = (int(grid[0]), int(grid[1]))
        self.auto_window = int(auto_window)
        if grid != self.grid:
            if self.grid is not None:  # swaps made on another model's grid; loaded ones are checked when applied
                self.swaps = [s for s in self.swaps if all(0 <= r < grid[0] and 0 <= c < grid[1] for r, c in s)]
            self.grid = grid
            self.changed.emit("grid")

    # -- the permutation -------------------------------------------------------------------------
    @property
    def window_side(self) -> int:
        return self.auto_window if self.window is None else self.window

    @property
    def is_identity(self) -> bool:
        return self.kind == "none" and not self.swaps

    def base_permutation(self, grid: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """The permutation of the kind and seed alone, before the swaps."""
        grid = self._grid(grid)
        if self.kind == "random":
            return random_permutation(grid, self.seed)
        if self.kind == "window":
            return window_permutation(grid, self.window_side, self.seed)
        if self.kind == "reverse":
            return reverse_permutation(grid)
        return identity_permutation(grid)

    def permutation(self, grid: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """(gh·gw,) LongTensor: position i of the scrambled image shows original patch perm[i]."""
        grid = self._grid(grid)
        perm = self.base_permutation(grid)
        for a, b in self.swaps:
            # swapping positions a and b of what is shown: new[i] = perm[s[i]]
            perm = compose(perm, swap_permutation(grid, a, b))
        return perm

    def _grid(self, grid: Optional[tuple[int, int]]) -> tuple[int, int]:
        grid = self.grid if grid is None else grid
        if grid is None:
            raise ValueError("no patch grid yet: open a model and an image")
        return (int(grid[0]), int(grid[1]))

    def describe(self) -> str:
        """'random (seed 3) + 2 swaps' style text for captions."""
        text = KIND_NAMES[self.kind]
        if self.kind == "random":
            text += f" (seed {self.seed})"
        elif self.kind == "window":
            text += f" (seed {self.seed}, {self.window_side}×{self.window_side} windows)"
        if self.swaps:
            n = len(self.swaps)
            text += f" + {n} swap" + ("s" if n > 1 else "")
        return text

    # -- saving ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able settings; ``permutation`` (the applied one, when a grid is known) is for readers only."""
        d = {"kind": self.kind, "seed": self.seed, "window": self.window,
             "swaps": [[list(a), list(b)] for a, b in self.swaps], "show_original": self.show_original}
        if self.grid is not None:
            d["grid"] = list(self.grid)
            d["permutation"] = self.permutation().tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ScrambleState":
        s = cls()
        s.load(d)
        return s

    def load(self, d: dict) -> None:
        """Take the settings of :meth:`to_dict` (validated: bad values raise ValueError, nothing changes)."""
        if not isinstance(d, dict):
            raise ValueError("scramble settings must be a JSON object")
        kind = d.get("kind", "random")
        if kind not in KINDS:
            raise ValueError(f"scramble kind {kind!r} is not one of {', '.join(KINDS)}")
        try:
            seed = int(d.get("seed", 0))
            window = None if d.get("window") is None else int(d["window"])
            swaps = [((int(a[0]), int(a[1])), (int(b[0]), int(b[1]))) for a, b in d.get("swaps", [])]
        except (TypeError, ValueError, IndexError) as e:
            raise ValueError(f"bad scramble settings: {e}") from None
        if seed < 0 or (window is not None and window < 1):
            raise ValueError("bad scramble settings: the seed must be ≥ 0 and the window ≥ 1")
        self.kind, self.seed, self.window, self.swaps = kind, seed, window, swaps
        self.show_original = bool(d.get("show_original", False))
        self.changed.emit("all")

    # -- the command-line text -------------------------------------------------------------------
    @classmethod
    def from_spec(cls, text: str) -> "ScrambleState":
        """Parse ``random:S``, ``window:S`` (or ``window:S:M`` for M×M windows), ``reverse``, ``none``
        or ``swap:R,C:R,C`` (more ``:R,C:R,C`` pairs swap again, in order)."""
        s = cls()
        t = text.strip().lower()
        parts = t.split(":")
        kind, args = parts[0], parts[1:]
        usage = "use random:SEED, window:SEED[:SIDE], reverse or swap:ROW,COL:ROW,COL"
        try:
            if kind == "random" and len(args) == 1:
                s.set_kind("random")
                s.set_seed(_int(args[0], "seed"))
            elif kind == "window" and len(args) in (1, 2):
                s.set_kind("window")
                s.set_seed(_int(args[0], "seed"))
                if len(args) == 2:
                    s.set_window(_int(args[1], "window side"))
            elif kind in ("reverse", "none") and not args:
                s.set_kind(kind)
            elif kind == "swap" and args and len(args) % 2 == 0:
                s.set_kind("none")
                cells = []
                for a in args:
                    rc = a.split(",")
                    if len(rc) != 2:
                        raise ValueError(f"{a!r} is not ROW,COL")
                    r, c = _int(rc[0], "row"), _int(rc[1], "column")
                    if r < 0 or c < 0:
                        raise ValueError(f"patch ({r}, {c}) is outside the grid")
                    cells.append((r, c))
                for a, b in zip(cells[::2], cells[1::2]):
                    s.swap(a, b)
            else:
                raise ValueError("")
        except ValueError as e:
            why = f" ({e})" if str(e) else ""
            raise ValueError(f"bad scramble {text!r}{why}: {usage}") from None
        return s


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"the {what} {text!r} is not a whole number") from None


@dataclass
class ScrambledPair:
    """The capture of the scrambled input, and what changed against the capture of the original."""

    permutation: torch.Tensor  # (N,) position i shows original patch permutation[i]
    x: torch.Tensor  # (1, 3, H, W) float32 scrambled network input on the CPU
    input_image: np.ndarray  # (h, w, 3) uint8 scrambled input as shown
    capture: Any  # attnviz.nets.Capture of the scrambled input
    use_pos_embed: bool  # the setting both captures ran with
    prob_change: Optional[float]  # largest change of a class probability; None without a classifier
    report: Optional[EquivarianceReport]  # ViT family: attention and logit differences; None for Swin
    ident: int = 0  # the session capture it belongs to


def scramble_capture(model: Any, x: torch.Tensor, input_image: np.ndarray, ref: Any, perm: torch.Tensor,
                     use_pos_embed: bool = True, ident: int = 0) -> ScrambledPair:
    """Run ``model`` on the scrambled input P x (the caller runs this on the worker) and compare with
    ``ref``, the capture of x made with the same ``use_pos_embed``."""
    p = int(ref.patch_size)
    xs = apply_to_image(x, perm, p, layout="chw")  # (1, 3, H, W)
    shown = apply_to_image(input_image, perm, p, layout="hwc")  # (h, w, 3)
    scr = model.capture(xs, use_pos_embed=use_pos_embed)
    change = None
    if ref.logits is not None and scr.logits is not None:
        change = probability_change(ref.logits[0], scr.logits[0])
    report = None
    if ref.family == "vit":
        net = getattr(model, "net", None)
        used = bool(use_pos_embed) and getattr(net, "pos_embed", None) is not None
        report = compare_captures(ref, scr, perm, used)
    return ScrambledPair(perm, xs, shown, scr, bool(use_pos_embed), change, report, ident)


@dataclass
class PairMap:
    """One side of the Scramble panel: the query's attention map and where to draw it."""

    values: Optional[np.ndarray]  # (h, w) float64 on a token grid of ``token_px`` pixels; None: nothing to draw
    token_px: int = 0
    query_cell: Optional[tuple[int, int]] = None  # the query's cell on that grid (None: a prefix query)
    window: Optional[np.ndarray] = None  # Swin: (h, w) bool, the query's window
    note: str = ""


def query_in_scrambled(query: Any, perm: torch.Tensor, grid: tuple[int, int]) -> Any:
    """Where the query's patch went: original patch (r, c) is shown at scrambled position inv[r·gw + c];
    a prefix query stays itself."""
    from ..analysis.scramble import inverse_permutation
    from .query import Patch

    if not isinstance(query, Patch):
        return query
    gw = int(grid[1])
    pos = int(inverse_permutation(perm)[query.row * gw + query.col])
    return Patch(pos // gw, pos % gw)


def scrambled_map(pair: ScrambledPair, model: Any, block: int, head: Any, query: Any,
                  original_positions: bool) -> PairMap:
    """The scrambled capture's attention of the same query (the token showing the query's patch, wherever
    it went), on the scrambled grid, or with ``original_positions`` put back where each patch came from
    (ViT: the query row of :func:`~attnviz.analysis.scramble.unpermute_attention`, Pᵀ A(Px) P)."""
    from ..analysis.query import query_attention
    from ..analysis.scramble import inverse_permutation
    from .products import Context, query_heads, _select_head
    from .query import Geometry, Patch, vit_token

    cap, perm = pair.capture, pair.permutation
    g = Geometry.of(cap)
    b = cap.blocks[block]
    q = query_in_scrambled(query, perm, g.grid_size)  # the token that shows the query's patch
    if cap.family == "vit":
        token = vit_token(q, g)
        maps = query_attention(b.attn[0], token, g.num_prefix_tokens, tuple(b.grid_size))  # (heads, gh, gw)
        if not original_positions:
            return PairMap(_select_head(maps, head), int(b.token_px), (q.row, q.col) if isinstance(q, Patch) else None)
        # The query row of Pᵀ·A(Px)·P is this row with its keys put back: one row, not the (heads, T, T)
        # matrix (16 × 1370² at ViT-L/14 518). Tested equal to unpermute_attention's row.
        back = _to_original(maps, inverse_permutation(perm))  # (heads, gh, gw)
        cell = (query.row, query.col) if isinstance(query, Patch) else None
        return PairMap(_select_head(back, head), int(b.token_px), cell)
    # Swin: the query patch lives on the stage-0 grid; later stages merge 2^s × 2^s patches
    if not isinstance(query, Patch):
        return PairMap(None, note="Swin has no prefix tokens: pick a patch")
    ctx = Context(cap, model, pair.x, g, pair.use_pos_embed)
    qh = query_heads(ctx, block, q)
    values, window = qh.head_map(head), qh.window  # (H_b, W_b) in scrambled positions
    if not original_positions:
        return PairMap(values, qh.token_px, qh.query_cell, window)
    if int(b.stage) != 0:
        return PairMap(None, note=f"block {block} is in stage {b.stage}, where each token merges "
                                  f"{2 ** b.stage}×{2 ** b.stage} scrambled patches: it has no original position "
                                  "(choose a stage-0 block or the scrambled positions)")
    inv = inverse_permutation(perm)
    win = _to_original(window, inv) if window is not None else None
    return PairMap(_to_original(values, inv), qh.token_px, (query.row, query.col), win)


def _to_original(values: np.ndarray, inv: torch.Tensor) -> np.ndarray:
    """A map (..., gh, gw) over the scrambled patch positions, redrawn where each patch came from:
    original patch j is shown at scrambled position inv[j], so its value is values[..., inv[j]]."""
    gh, gw = values.shape[-2:]
    flat = values.reshape(values.shape[:-2] + (gh * gw,))  # (..., N) row-major positions
    return flat[..., inv.numpy()].reshape(values.shape)  # (..., gh, gw) in original positions


__all__ = ["KINDS", "KIND_NAMES", "PairMap", "ScrambleState", "ScrambledPair", "default_window", "query_in_scrambled",
           "scramble_capture", "scrambled_map"]
