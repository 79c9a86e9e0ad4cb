"""One options value for the maps that mix attention across blocks: rollout, flow, relevance.

Rollout (Abnar & Zuidema 2020), attention flow and gradient-weighted rollout all build the same
residual-augmented block matrix Ã = (1 − α)·F + α·I from the head-fused attention F of a range of
blocks. Their knobs are one frozen, validated value, passed whole, so that a view state, a cache key
and an exported JSON say the same thing in one place.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

FUSIONS: tuple[str, ...] = ("mean", "max", "min")


@dataclass(frozen=True)
class MixOptions:
    """How blocks are mixed. Defaults are the papers' (and ``dump --analysis``'s)."""

    # Weight of the residual (identity) in Ã; 0.5 treats the skip connection like the attention.
    alpha: float = 0.5
    # How a block's heads become one matrix: 'mean' (rollout's default), 'max' or 'min'.
    fusion: str = "mean"
    # Fraction of each row's lowest patch entries zeroed before renormalising (vit-explain's knob);
    # prefix-token columns are never discarded.
    discard_ratio: float = 0.0
    # Blocks first_block..last_block inclusive, forward order; negative indices count from the end,
    # last_block None means the last block.
    first_block: int = 0
    last_block: Optional[int] = None

    def __post_init__(self) -> None:
        if not isinstance(self.alpha, (int, float)) or not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"residual weight alpha must lie in [0, 1], got {self.alpha}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown head fusion '{self.fusion}' (use one of {', '.join(FUSIONS)})")
        if not isinstance(self.discard_ratio, (int, float)) or not 0.0 <= float(self.discard_ratio) < 1.0:
            raise ValueError(f"discard ratio must lie in [0, 1), got {self.discard_ratio}")
        if not isinstance(self.first_block, int) or isinstance(self.first_block, bool):
            raise ValueError(f"first_block must be an integer, got {self.first_block!r}")
        if self.last_block is not None and (not isinstance(self.last_block, int) or isinstance(self.last_block, bool)):
            raise ValueError(f"last_block must be an integer or None, got {self.last_block!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MixOptions":
        known = {k: d[k] for k in ("alpha", "fusion", "discard_ratio", "first_block", "last_block") if k in d}
        return cls(**known)


DEFAULT_OPTIONS = MixOptions()
