"""The query token as an explicit value: a prefix token, or a patch on the input patch grid.

A map "of the query" is always one row of an attention matrix. Which row depends on the family and
the block: for a ViT a patch (row, col) is token ``num_prefix_tokens + row * gw + col``; for Swin the
query patch lives on the stage-0 grid (4×4-pixel patches) and a stage-s block reads the merged token
that covers it, (row // 2^s, col // 2^s). Keeping the query as a value (never ``None`` meaning
something different per family) lets every panel ask the same question.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from ..analysis.query import token_index
from ..nets import BlockCapture, Capture


@dataclass(frozen=True)
class Prefix:
    """A prefix token (class, distillation, register) by its index among the prefix tokens."""

    index: int = 0

    def label(self, names: Optional[list[str]] = None) -> str:
        name = names[self.index] if names and self.index < len(names) else f"prefix {self.index}"
        return f"{name} token"


@dataclass(frozen=True)
class Patch:
    """A patch (row, col) on the input patch grid (ViT: the patch grid; Swin: the stage-0 grid)."""

    row: int
    col: int

    def label(self, names: Optional[list[str]] = None) -> str:
        return f"patch ({self.row}, {self.col})"


Query = Union[Prefix, Patch]


@dataclass(frozen=True)
class Geometry:
    """What a query needs to know about the input: size, patch size, grid and prefix tokens."""

    img_size: tuple[int, int]  # (H, W) of the network input in pixels
    patch_size: int
    grid_size: tuple[int, int]  # (gh, gw) input patch grid
    num_prefix_tokens: int = 0
    prefix_names: tuple[str, ...] = ()
    family: str = "vit"

    @classmethod
    def of(cls, cap: Capture) -> "Geometry":
        return cls(tuple(cap.img_size), int(cap.patch_size), tuple(cap.grid_size), int(cap.num_prefix_tokens),
                   tuple(cap.prefix_names), cap.family)


def default_query(geom: Geometry) -> Query:
    """The model's own summary token: the first prefix token (class token) when there is one, else the
    centre patch (Swin, and ViTs without prefix tokens)."""
    if geom.num_prefix_tokens > 0:
        return Prefix(0)
    gh, gw = geom.grid_size
    return Patch(gh // 2, gw // 2)


def clamp_query(q: Query, geom: Geometry) -> Query:
    """The nearest query that exists in this geometry (a prefix the model lacks becomes the default)."""
    if isinstance(q, Prefix):
        if 0 <= q.index < geom.num_prefix_tokens:
            return q
        return default_query(geom)
    gh, gw = geom.grid_size
    return Patch(min(max(int(q.row), 0), gh - 1), min(max(int(q.col), 0), gw - 1))


def remap_query(q: Query, old: Geometry, new: Geometry) -> Query:
    """The same query on another model: a patch keeps its place in the image (the patch of the new grid
    under the centre of the old patch, measured as a fraction of the input), not its (row, col)."""
    if isinstance(q, Prefix):
        return clamp_query(q, new)
    fy = (q.row + 0.5) * old.patch_size / max(old.img_size[0], 1)  # centre as a fraction of the input height
    fx = (q.col + 0.5) * old.patch_size / max(old.img_size[1], 1)
    row = int(fy * new.img_size[0] // new.patch_size)
    col = int(fx * new.img_size[1] // new.patch_size)
    return clamp_query(Patch(row, col), new)


def pixel_to_patch(y: float, x: float, geom: Geometry) -> Optional[Patch]:
    """The input patch under input pixel (y, x), or None outside the patch grid."""
    if y < 0 or x < 0:
        return None
    row, col = int(y // geom.patch_size), int(x // geom.patch_size)
    gh, gw = geom.grid_size
    if row < gh and col < gw:
        return Patch(row, col)
    return None


def vit_token(q: Query, geom: Geometry) -> int:
    """Token index of the query in a ViT's sequence [prefix..., patches row-major]."""
    if isinstance(q, Prefix):
        if not 0 <= q.index < geom.num_prefix_tokens:
            raise ValueError(f"the model has {geom.num_prefix_tokens} prefix tokens, not a token {q.index}")
        return q.index
    return token_index(q.row, q.col, geom.grid_size, geom.num_prefix_tokens)


def stage_token(q: Patch, block: BlockCapture) -> tuple[int, int]:
    """(y, x) on a Swin block's stage grid of the merged token that covers input patch ``q``."""
    f = 2 ** int(block.stage)
    H, W = block.grid_size
    return (min(q.row // f, H - 1), min(q.col // f, W - 1))


def query_to_text(q: Query) -> str:
    """'cls' style text for JSON and the command line: 'prefix:I' or 'ROW,COL'."""
    return f"prefix:{q.index}" if isinstance(q, Prefix) else f"{q.row},{q.col}"


def query_from_text(text: str) -> Query:
    """Inverse of :func:`query_to_text`; 'cls' means the first prefix token."""
    t = text.strip().lower()
    if t in ("cls", "class"):
        return Prefix(0)
    if t.startswith("prefix:"):
        return Prefix(int(t.split(":", 1)[1]))
    try:
        r, c = (int(v) for v in t.split(","))
    except ValueError:
        raise ValueError(f"query '{text}' is neither 'cls', 'prefix:I' nor 'ROW,COL'") from None
    return Patch(r, c)
