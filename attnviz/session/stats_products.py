"""Products of the Statistics panel, registered beside it: the selected block's token norms.

The per-head statistics of the current image are the shared ``stats`` product (:mod:`.products`);
folder statistics are not a product of one capture and run through :mod:`.folder_stats`.
"""
from __future__ import annotations

from ..analysis.stats import TokenNorms, token_norms as _token_norms
from .products import Context, NotApplicable, ProductSpec, register


def token_norms(ctx: Context, block: int) -> TokenNorms:
    """The block's output token norms of the current image, outliers flagged (analysis.stats)."""
    blk = ctx.capture.blocks[block]
    if getattr(blk, "token_norms", None) is None:
        raise NotApplicable("this capture holds no token norms (the network did not record its block outputs)")
    return _token_norms(ctx.capture, block, index=0)


register(ProductSpec("token_norms", token_norms, ("block",)))
