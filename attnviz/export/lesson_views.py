"""The exportable views of the lesson panels that are not part of the composed figure: the attention
anatomy (its stages side by side) and the scramble lesson (the input and its scrambled copy, each with
the query's attention and the prediction). Registered into :data:`attnviz.export.views.VIEWS` when
:mod:`attnviz.export.views` is imported. No Qt.
"""
from __future__ import annotations

import numpy as np

from ..session.display import levels
from ..session.products import NotApplicable
from ..session.query import Patch
from .figure import ColorBar, Part, Tile
from .source import Source
from .views import Arrays, ViewSpec, _f32, _ok, _query_text, register_view


# -- attention anatomy --------------------------------------------------------------------------


def _anatomy(src: Source):
    from ..session import anatomy_products  # noqa: F401 - registers the product (one extra pass of one block)

    return _ok(src.products.get("attention_anatomy"), "attention anatomy")


def anatomy_arrays(src: Source) -> Arrays:
    """Each stage as a map over the grid keys (ViT (gh, gw); Swin the query's window (M, M)), and the prefix
    keys' values of each (ViT): 'scores', ['bias' (Swin: + mask)], 'probs', 'contrib', 'prefix_<stage>'."""
    from ..session.anatomy_products import stage_keys, stage_map

    a = _anatomy(src).anatomy
    out: Arrays = {}
    for key in stage_keys(a.family):
        m = stage_map(a, key)
        out[key] = _f32(m.values)  # (h, w)
        if a.num_prefix:
            out[f"prefix_{key}"] = _f32(m.prefix)  # (P,)
    out["captured"] = _f32(a.key_map(a.captured))  # (h, w): the network's attention, which 'probs' equals
    return out


def anatomy_parts(src: Source, arrays: Arrays) -> list[Part]:
    from ..analysis.anatomy import formula
    from ..session.anatomy_products import stage_keys, stage_map

    res = _anatomy(src)
    a = res.anatomy
    cmap = src.view.colormap
    cell = None if a.query_key < a.num_prefix else divmod(a.query_key - a.num_prefix, a.map_shape[1])
    parts = []
    for key in stage_keys(a.family):
        m = stage_map(a, key)
        shown = np.where(np.isnan(m.shown), np.nan, arrays[key].astype(np.float64))  # masked keys stay dark
        prefix = m.prefix_text(res.prefix_names)
        caption = m.title[1] + (f" · {prefix}" if prefix else "")
        tile = Tile(caption, shown, m.levels, cmap, marker=None if cell is None else (*cell, 1),
                    xlabel="key column", ylabel="key row")
        parts.append(Part(f"anatomy-{key}", m.title[0], [tile], ColorBar(cmap, m.levels, m.title[1].lstrip("→ "))))
    parts[0].title = f"{parts[0].title} — {formula(a)}"
    return parts


# -- scramble ---------------------------------------------------------------------------------------


def scrambled_pair(src: Source):
    """The capture of the scrambled input for the source's scramble settings: the app's own when it belongs
    to this capture (``src.scrambled``), else captured now (one more forward pass)."""
    from ..session.scramble_state import ScrambleState, scramble_capture

    pair = getattr(src, "scrambled", None)
    if pair is not None:
        return pair
    if src.ctx.model is None or src.ctx.x is None or src.input_image is None:
        raise NotApplicable("the scramble needs the model and the input that made the capture")
    state = ScrambleState.from_dict(src.scramble) if src.scramble else ScrambleState()
    if state.is_identity:
        raise NotApplicable("no scramble is set (choose one in the Scramble panel, or a view file's 'scramble')")
    perm = state.permutation(tuple(src.capture.grid_size))
    pair = scramble_capture(src.ctx.model, src.ctx.x, src.input_image, src.capture, perm, src.ctx.use_pos_embed)
    src.scrambled = pair
    return pair


def _original_positions(src: Source) -> bool:
    return bool((src.scramble or {}).get("show_original", False))


def scramble_arrays(src: Source) -> Arrays:
    """'permutation' (N,) int32 (position i of the scrambled input shows original patch permutation[i]);
    'map' and 'scrambled_map': the query's attention in the block and head for the original and the
    scrambled input (the scrambled one in scrambled positions, or put back when the view says so);
    'probs' and 'scrambled_probs' (classes,); ViT: 'attention_difference' (per block, max |Pᵀ A(Px) P − A(x)|)
    and 'logit_difference' (max |logits(Px) − logits(x)|)."""
    from ..session.scramble_state import scrambled_map

    pair = scrambled_pair(src)
    v = src.view
    qh = _ok(src.products.get("query_heads"), "attention")
    right = scrambled_map(pair, src.model, v.block, v.head, v.query, _original_positions(src))
    if right.values is None:
        raise NotApplicable(right.note)
    out: Arrays = {"permutation": np.asarray(pair.permutation, dtype=np.int32),
                   "map": _f32(qh.head_map(v.head)), "scrambled_map": _f32(right.values)}
    if src.capture.logits is not None and pair.capture.logits is not None:
        out["probs"] = _f32(src.capture.logits[0].softmax(-1))
        out["scrambled_probs"] = _f32(pair.capture.logits[0].softmax(-1))
    if pair.report is not None:
        out["attention_difference"] = _f32(pair.report.attn_max_abs_diff)
        if pair.report.logits_max_abs_diff is not None:
            out["logit_difference"] = _f32([pair.report.logits_max_abs_diff])
    return out


def _prediction(src: Source, logits) -> str:
    """'face 93.5 %': the most probable class (attnviz.analysis.predictions.top_classes)."""
    from ..analysis.predictions import top_classes

    top = top_classes(logits, getattr(src.model, "class_names", None), 1)
    return f"{top[0][1]} {100 * top[0][2]:.1f} %" if top else "no classifier"


def scramble_parts(src: Source, arrays: Arrays) -> list[Part]:
    from ..session.scramble_state import scrambled_map
    from ..session.shown import shown_map

    pair = scrambled_pair(src)
    v = src.view
    left = shown_map(src, "attention")
    right = scrambled_map(pair, src.model, v.block, v.head, v.query, _original_positions(src))
    a, b = arrays["map"].astype(np.float64), arrays["scrambled_map"].astype(np.float64)
    lv = levels(a, "linear", (a, b))  # one scale for both sides, as the panel
    cell = (v.query.row, v.query.col, 1) if isinstance(v.query, Patch) else None
    where = "in original positions" if _original_positions(src) else "where the patches went"
    pe = " (position embeddings off)" if not src.ctx.use_pos_embed else ""
    original = Tile(f"attention of the {_query_text(src)}{pe}", a, lv, v.colormap, rgb=src.input_image,
                    opacity=v.opacity, mask=left.window, token_px=left.token_px,
                    marker=cell if left.token_px == src.geometry.patch_size else None)
    scrambled = Tile(f"the same query, {where}", b, lv, v.colormap,
                     rgb=src.input_image if _original_positions(src) else pair.input_image, opacity=v.opacity,
                     mask=right.window, token_px=right.token_px,
                     marker=None if right.query_cell is None or right.token_px != src.geometry.patch_size
                     else (*right.query_cell, 1))
    return [Part("scramble-original", f"Original · {_prediction(src, src.capture.logits)}", [original]),
            Part("scramble-scrambled", f"Scrambled · {_prediction(src, pair.capture.logits)}", [scrambled],
                 ColorBar(v.colormap, lv, "attention weight"))]


def scramble_facts(src: Source) -> str:
    """What the scramble measured: the largest probability change and (ViT) the distances from equivariance."""
    pair = scrambled_pair(src)
    facts = []
    if pair.prob_change is not None:
        facts.append(f"largest probability change {pair.prob_change:.3g}")
    if pair.report is not None:
        facts.append(f"max |Pᵀ·A(Px)·P − A(x)| {pair.report.max_attn_diff:.2g}")
        if pair.report.logits_max_abs_diff is not None:
            facts.append(f"max |logit change| {pair.report.logits_max_abs_diff:.2g}")
    return ", ".join(facts)


register_view(ViewSpec("anatomy", anatomy_arrays, anatomy_parts, "Attention anatomy", one_row=True), in_figure=False)
register_view(ViewSpec("scramble", scramble_arrays, scramble_parts, "Scramble", one_row=True, facts=scramble_facts),
              in_figure=False)

__all__ = ["anatomy_arrays", "anatomy_parts", "scramble_arrays", "scramble_parts", "scrambled_pair"]
