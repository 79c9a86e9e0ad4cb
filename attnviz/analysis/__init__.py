"""Derived maps and statistics: pure functions over captured attention (no Qt, no model state).

Attention toolkit (this package's token-to-token part; conventions in :mod:`.query`):
- :mod:`.options`: :class:`MixOptions`, the one options value rollout, flow and relevance share.
- :mod:`.query`: one query token's attention on the patch grid, token index <-> grid position.
- :mod:`.rollout`: attention rollout (Abnar & Zuidema 2020).
- :mod:`.flow`: attention flow, exact maximum flow per input token (Abnar & Zuidema 2020).
- :mod:`.relevance`: class-specific maps: gradient-weighted rollout, Chefer et al. ICCV 2021.
- :mod:`.stats`: mean attention distance, entropy, prefix share per block and head.

The other modules (position embeddings, Swin windows and maps, patch scrambling) are imported from
their own files.
"""
from .flow import Cancelled, attention_flow, flow_map, layered_max_flow
from .options import DEFAULT_OPTIONS, MixOptions
from .query import (image_attentions, patch_map, prefix_attention, query_attention, query_map, token_index,
                    token_position)
from .relevance import Relevance, attention_gradients, chefer_relevance, class_relevance, grad_rollout, relevance_row
from .rollout import augment, augmented_attention, augmented_attentions, rollout, rollout_map, rollout_row
from .stats import HeadStats, dataset_head_stats, head_stats

__all__ = [
    "DEFAULT_OPTIONS", "Cancelled", "HeadStats", "MixOptions", "Relevance", "attention_flow",
    "attention_gradients", "augment",
    "augmented_attention", "augmented_attentions", "chefer_relevance", "class_relevance",
    "dataset_head_stats", "flow_map", "grad_rollout", "head_stats", "image_attentions",
    "layered_max_flow", "patch_map", "prefix_attention", "query_attention", "query_map",
    "relevance_row", "rollout", "rollout_map", "rollout_row", "token_index", "token_position",
]
