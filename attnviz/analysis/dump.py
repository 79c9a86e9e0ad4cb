"""The analysis arrays ``attnviz dump --analysis`` adds (documented in README "Raw arrays")."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..nets import Capture
from .flow import attention_flow, flow_map
from .options import DEFAULT_OPTIONS
from .pos_embed import vit_position_similarity
from .query import image_attentions
from .rollout import rollout_row
from .stats import head_stats


def analysis_arrays(cap: Capture, model: Any) -> dict[str, np.ndarray]:
    """rollout, flow (ViT family with a prefix token), mean_attention_distance, attention_entropy (all),
    pos_embed_similarity (models with learned absolute position embeddings), as float32 arrays."""
    out: dict[str, np.ndarray] = {}
    stats = head_stats(cap, index=0)
    out["mean_attention_distance"] = stats.mean_distance.astype(np.float32)  # (L, H), NaN-padded for Swin
    out["attention_entropy"] = stats.entropy.astype(np.float32)  # (L, H)
    if cap.family != "vit":
        return out
    P, grid = cap.num_prefix_tokens, cap.grid_size
    if P > 0:
        attns = image_attentions(cap, 0)  # L × (heads, N, N)
        # From the first prefix token with the default options (README "Raw arrays": mean fusion,
        # alpha 0.5, no discard, every block); rollout unnormalised, patch columns.
        row = rollout_row(attns, 0, options=DEFAULT_OPTIONS, num_prefix_tokens=P)  # (N,)
        out["rollout"] = row[P:].reshape(grid).astype(np.float32)  # (N - P,) -> (gh, gw)
        flow = attention_flow(attns, 0, options=DEFAULT_OPTIONS, num_prefix_tokens=P)  # (N,)
        out["flow"] = flow_map(flow, P, grid).astype(np.float32)  # (gh, gw)
    net = model.net
    if getattr(net, "pos_embed", None) is not None:
        sim = vit_position_similarity(net, grid)  # (gh, gw, gh, gw)
        out["pos_embed_similarity"] = sim.detach().cpu().numpy().astype(np.float32)
    return out
