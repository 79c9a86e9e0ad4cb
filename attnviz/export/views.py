"""The exportable views: for each, the arrays it draws (the .npz, before any colormap) and the figure
parts that draw them. No Qt.

Every view is a :class:`ViewSpec` in :data:`VIEWS`; the composed figure is the list
:data:`FIGURE_PARTS` of view names, drawn in that order, each one that applies to the model. A new
panel becomes exportable by registering one more ViewSpec (and appending its name to FIGURE_PARTS).
A view that does not apply raises :class:`~attnviz.session.products.NotApplicable` with the reason.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..errors import one_line
from ..session.display import display_values, levels
from ..session.products import NotApplicable, QueryHeads, TokenMap, Unavailable
from ..session import pos_products, swin_products  # noqa: F401 - registers the panels' products
from ..session.query import Patch, stage_token
from ..session.shown import head_name, shown_map
from ..session.view_state import METHOD_NAMES
from .figure import ColorBar, Figure, Part, Tile
from .names import EXPORT_VIEWS
from .source import ProductFailed, Source

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class ViewSpec:
    name: str
    arrays: Callable[[Source], Arrays]  # what the view draws, float32 / int32, before any colormap
    parts: Callable[[Source, Arrays], list[Part]]  # how it is drawn (from those very arrays)
    title: str = ""
    one_row: bool = False  # exported alone, its parts side by side (stages read left to right)
    facts: Optional[Callable[[Source], str]] = None  # a line of measured numbers added to the subtitle


def _ok(result, what: str):
    """A product, or NotApplicable with the product's own reason."""
    if result is None:
        raise NotApplicable(f"{what} could not be computed")
    if isinstance(result, Unavailable):
        raise NotApplicable(f"{what}: {result.reason}")
    return result


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _query_text(src: Source) -> str:
    return src.view.query.label(list(src.geometry.prefix_names))


def _query_marker(src: Source) -> Optional[tuple[int, int, int]]:
    q = src.view.query
    return (q.row, q.col, 1) if isinstance(q, Patch) else None


def _input_tile(src: Source, caption: str = "") -> Tile:
    img = src.input_image
    if img is None:
        raise NotApplicable("the network input image is not available")
    return Tile(caption, rgb=img)


# -- input -------------------------------------------------------------------------------------


def input_arrays(src: Source) -> Arrays:
    return {}


def input_parts(src: Source, arrays: Arrays) -> list[Part]:
    g = src.geometry
    H, W = g.img_size
    return [Part("input", "Input", [_input_tile(src, f"{H}×{W} px, patches of {g.patch_size} px")])]


# -- overlay: the query's attention for the block and head -------------------------------------


def overlay_arrays(src: Source) -> Arrays:
    qh: QueryHeads = _ok(src.products.get("query_heads"), "attention")
    return {"map": _f32(qh.head_map(src.view.head))}  # (h, w) on the block's token grid


def overlay_parts(src: Source, arrays: Arrays) -> list[Part]:
    v = src.view
    shown = shown_map(src, "attention")
    if shown.values is None:
        raise NotApplicable(shown.note)
    lo, hi = shown.levels
    top = 10 ** hi if v.scale == "log" else None
    values = display_values(arrays["map"].astype(np.float64), v.scale, top)  # what is coloured
    g = src.geometry
    marker = _query_marker(src)
    if marker is not None and shown.token_px != g.patch_size:  # Swin later stages: the merged token
        marker = (*stage_token(v.query, src.capture.blocks[v.block]), 1)
    tile = Tile(shown.title.replace("Attention of the ", "").replace(" · ", ", "), values, (lo, hi), v.colormap,
                rgb=src.input_image, opacity=v.opacity, alpha_ramp=v.overlay == "alpha", mask=shown.window,
                token_px=shown.token_px, marker=marker)
    label = "attention weight" + (" (log scale)" if v.scale == "log" else "")
    return [Part("overlay", f"Attention of the {_query_text(src)}", [tile],
                 ColorBar(v.colormap, (lo, hi), label, v.scale))]


# -- heads ----------------------------------------------------------------------------------


def heads_arrays(src: Source) -> Arrays:
    qh: QueryHeads = _ok(src.products.get("query_heads"), "attention")
    return {"maps": _f32(qh.maps)}  # (heads, h, w)


def heads_parts(src: Source, arrays: Arrays) -> list[Part]:
    """Every head's map, each tile coloured from 0 to its own maximum (as the Heads panel draws them,
    whatever the normalisation: the panel is for comparing where heads look, not how much)."""
    v = src.view
    qh: QueryHeads = _ok(src.products.get("query_heads"), "attention")
    maps = arrays["maps"].astype(np.float64)  # (heads, h, w)
    tiles = []
    for h, m in enumerate(maps):
        tiles.append(Tile(f"head {h}" + (" ◀" if v.head == h else ""), m, levels(m, "linear"), v.colormap,
                          mask=qh.window, marker=_cell_marker(qh)))
    bar = ColorBar(v.colormap, (0.0, 1.0), "fraction of each head's maximum")
    return [Part("heads", f"Heads of block {v.block}: attention of the {qh.label} "
                 "(each tile from 0 to its own maximum)", tiles, bar)]


def _cell_marker(qh: QueryHeads) -> Optional[tuple[int, int, int]]:
    return None if qh.query_cell is None else (int(qh.query_cell[0]), int(qh.query_cell[1]), 1)


# -- rollout, flow, relevance ----------------------------------------------------------------


def _map_view(method: str) -> tuple[Callable, Callable]:
    def arrays(src: Source) -> Arrays:
        r: TokenMap = _ok(src.products.get(method), METHOD_NAMES[method])
        return {"map": _f32(r.map)}  # (gh, gw) on the input patch grid

    def parts(src: Source, arrs: Arrays) -> list[Part]:
        v = src.view
        r: TokenMap = _ok(src.products.get(method), METHOD_NAMES[method])
        m = arrs["map"].astype(np.float64)
        lv = levels(m, v.scale)
        top = 10 ** lv[1] if v.scale == "log" else None
        values = display_values(m, v.scale, top)
        o = v.options
        opts = f"α {o.alpha:g}, {o.fusion} fusion, discard {o.discard_ratio:g}"
        tile = Tile(opts, values, lv, v.colormap, rgb=src.input_image, opacity=v.opacity,
                    alpha_ramp=v.overlay == "alpha", token_px=src.geometry.patch_size, marker=_query_marker(src))
        label = "share of the output (max 1)" + (" (log scale)" if v.scale == "log" else "")
        return [Part(method, f"{METHOD_NAMES[method]} {r.note}".strip(), [tile],
                     ColorBar(v.colormap, lv, label, v.scale))]

    return arrays, parts


def relevance_method(src: Source) -> str:
    """'chefer' (Chefer et al.'s generic method) unless the view asks for gradient rollout."""
    return "grad_rollout" if src.view.method == "grad_rollout" else "chefer"


def relevance_arrays(src: Source) -> Arrays:
    return _map_view(relevance_method(src))[0](src)


def relevance_parts(src: Source, arrays: Arrays) -> list[Part]:
    return _map_view(relevance_method(src))[1](src, arrays)


# -- position embeddings -------------------------------------------------------------------------


def pos_embed_arrays(src: Source) -> Arrays:
    ps = _ok(src.products.get("pos_similarity"), "position-embedding similarity")  # the panel's product
    return {"similarity": _f32(ps.sim)}  # (gh, gw, gh, gw)


def pos_embed_parts(src: Source, arrays: Arrays) -> list[Part]:
    sim = arrays["similarity"].astype(np.float64)  # (gh, gw, gh, gw)
    gh, gw = sim.shape[:2]
    q = src.view.query
    r, c = (q.row, q.col) if isinstance(q, Patch) else (gh // 2, gw // 2)
    cmap = src.view.colormap
    tile = Tile(f"similarity of patch ({r}, {c}) to every patch", sim[r, c], (-1.0, 1.0), cmap, marker=(r, c, 1))
    return [Part("pos-embed", "Position embedding: cosine similarity", [tile],
                 ColorBar(cmap, (-1.0, 1.0), "cosine similarity"))]


# -- Swin windows ----------------------------------------------------------------------------------


def windows_arrays(src: Source) -> Arrays:
    """The Swin panel's products: which window each input pixel is in, the shift mask of the query's
    window, and the relative position bias (per offset, and the query's row of it)."""
    w = _ok(src.products.get("swin_windows"), "Swin windows")
    bias = _ok(src.products.get("swin_bias"), "Swin position bias")
    from ..analysis.pos_embed import captured_bias

    M2 = w.geometry.window_size ** 2
    mask = np.zeros((M2, M2), np.float32) if w.mask is None else _f32(w.mask)  # (M², M²)
    block = src.ctx.capture.blocks[w.block]
    return {"window_index": np.asarray(w.pixel_window, dtype=np.int32),  # (img_H, img_W)
            "mask": mask,
            "bias": _f32(captured_bias(block)),  # (heads, M², M²) as the block added it to every window's logits
            "bias_table": _f32(bias.table),  # (2M−1, 2M−1) bias per offset query − key
            "query_bias": _f32(bias.query_bias)}  # (M, M) what the query adds to each key slot


# A categorical palette (Okabe & Ito's colour-blind-safe set, less its sky blue, close to the cyan that
# marks the query's window). Window (row r, column c) takes colour (c + 3r) mod 7: side-by-side windows
# differ by 1, stacked ones by 3 and diagonal ones by 2 or 4, never 0 mod 7, so neighbours never share one.
WINDOW_PALETTE = np.array([(230, 159, 0), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
                           (204, 121, 167), (120, 120, 120)], dtype=np.uint8)
QUERY_WINDOW = (80, 220, 255)


def window_colours(index: np.ndarray, query_window: int, windows_per_row: int) -> np.ndarray:
    """(H, W) window index -> (H, W, 3) uint8: each window its palette colour, chosen so that windows
    next to each other (left/right and above/below) differ; the query's window cyan, -1 black."""
    n = len(WINDOW_PALETTE)
    row, col = np.divmod(np.maximum(index, 0), max(int(windows_per_row), 1))
    # left/right neighbours differ by 1 and up/down ones by 3 (mod 7): never 0 mod 7
    rgb = WINDOW_PALETTE[(col + 3 * row) % n]  # (H, W, 3)
    rgb[index < 0] = 0
    rgb[index == query_window] = QUERY_WINDOW
    return rgb


def windows_parts(src: Source, arrays: Arrays) -> list[Part]:
    v = src.view
    w = _ok(src.products.get("swin_windows"), "Swin windows")
    bias = _ok(src.products.get("swin_bias"), "Swin position bias")
    g = w.geometry
    img = src.input_image
    index = arrays["window_index"]
    shown = window_colours(index, w.query_window, g.windows_per_row)
    if img is not None and img.shape[:2] == index.shape:
        shown = np.rint(0.55 * shown + 0.45 * img).astype(np.uint8)
    shift = f"shifted by {g.shift_size}" if g.shift_size else "not shifted"
    tiles = [Tile(f"block {v.block}: {g.num_windows} windows of {g.window_size}×{g.window_size}, {shift}",
                  rgb=shown)]
    mask = arrays["mask"].astype(np.float64)
    slot = w.query_slot
    tiles.append(Tile("rows: query slot, columns: key slot", mask, (-100.0, 0.0), v.colormap, marker=(slot, slot, 1),
                      xlabel="key slot", ylabel="query slot"))
    parts = [Part("windows", f"Swin windows at block {v.block} (stage {w.stage})", tiles[:1]),
             Part("windows-mask", f"Shift mask (0 / −100) of the query's window {w.query_window}", tiles[1:],
                  ColorBar(v.colormap, (-100.0, 0.0), "added to the logits"))]
    table, row = arrays["bias_table"].astype(np.float64), arrays["query_bias"].astype(np.float64)
    lo, hi = float(min(table.min(), row.min())), float(max(table.max(), row.max()))
    lv = (lo, hi if hi > lo else lo + 1.0)  # one scale for both, as the Swin panel
    qy, qx = bias.query_pos
    M = bias.window_size
    parts.append(Part("windows-bias", f"Relative position bias (Swin v{bias.version}), {bias.head_label}",
                      [Tile("per offset query − key", table, lv, v.colormap, marker=(M - 1, M - 1, 1),
                            xlabel="Δx (tokens)", ylabel="Δy (tokens)"),
                       Tile("the query's row, per key", row, lv, v.colormap, marker=(qy, qx, 1),
                            xlabel="key column", ylabel="key row")],
                      ColorBar(v.colormap, lv, "bias added to the logits")))
    return parts


# -- statistics ------------------------------------------------------------------------------------


def stats_arrays(src: Source) -> Arrays:
    s = _ok(src.products.get("stats"), "head statistics")
    return {"mean_attention_distance": _f32(s.mean_distance), "attention_entropy": _f32(s.entropy),
            "prefix_share": _f32(s.prefix_share)}  # (L, H) each, NaN where a block has fewer heads


def stats_parts(src: Source, arrays: Arrays) -> list[Part]:
    cmap = src.view.colormap
    parts = []
    for key, title, unit in (("mean_attention_distance", "Mean attention distance", "input pixels"),
                             ("attention_entropy", "Attention entropy", "nats"),
                             ("prefix_share", "Share given to prefix tokens", "fraction")):
        a = arrays[key].astype(np.float64)
        if not np.isfinite(a).any():
            continue
        lv = levels(np.where(np.isfinite(a), a, 0.0), "linear")
        parts.append(Part(f"stats-{key}", f"{title} (block × head)",
                          [Tile("rows: blocks, columns: heads", a, lv, cmap, xlabel="head", ylabel="block")],
                          ColorBar(cmap, lv, unit)))
    return parts


_rollout, _flow = _map_view("rollout"), _map_view("flow")

VIEWS: dict[str, ViewSpec] = {v.name: v for v in (
    ViewSpec("input", input_arrays, input_parts, "Input"),
    ViewSpec("overlay", overlay_arrays, overlay_parts, "Attention"),
    ViewSpec("heads", heads_arrays, heads_parts, "Heads"),
    ViewSpec("rollout", _rollout[0], _rollout[1], "Rollout"),
    ViewSpec("flow", _flow[0], _flow[1], "Attention flow"),
    ViewSpec("relevance", relevance_arrays, relevance_parts, "Relevance"),
    ViewSpec("pos-embed", pos_embed_arrays, pos_embed_parts, "Position embedding"),
    ViewSpec("windows", windows_arrays, windows_parts, "Swin windows"),
    ViewSpec("stats", stats_arrays, stats_parts, "Head statistics"),
)}
# What the composed figure holds, in order (each view that applies to the model).
FIGURE_PARTS: list[str] = ["input", "overlay", "heads", "rollout", "flow", "relevance", "pos-embed", "windows", "stats"]


def register_view(spec: ViewSpec, in_figure: bool = True) -> None:
    """Make another panel exportable (and, by default, part of the composed figure)."""
    VIEWS[spec.name] = spec
    if in_figure and spec.name not in FIGURE_PARTS:
        FIGURE_PARTS.append(spec.name)


def _check_view(name: str) -> None:
    if name != "figure" and name not in VIEWS:
        raise ValueError(f"unknown view '{name}' (use one of {', '.join(EXPORT_VIEWS)})")


def view_arrays(src: Source, view: str, parts: Optional[list[str]] = None) -> Arrays:
    """The arrays of ``view`` plus ``meta``; for 'figure', the arrays of every view of ``parts`` (default
    FIGURE_PARTS) that applies, as 'VIEW.KEY'."""
    _check_view(view)
    if view == "figure":
        out: Arrays = {}
        for name in (parts or FIGURE_PARTS):
            _check_view(name)
            try:
                out.update({f"{name}.{k}": a for k, a in VIEWS[name].arrays(src).items()})
            except NotApplicable:  # does not apply to this model; a failure (ProductFailed) propagates
                continue
    else:
        out = dict(VIEWS[view].arrays(src))
    out["meta"] = np.array(json.dumps(export_meta(src, view)))
    return out


def figure_of(src: Source, view: str, arrays: Optional[Arrays] = None,
              parts: Optional[list[str]] = None) -> Figure:
    """The figure of ``view`` ('figure': every part of ``parts``, default FIGURE_PARTS, that applies),
    built from the arrays the view exports."""
    _check_view(view)
    for name in parts or ():
        _check_view(name)
    names = (list(parts) if parts else FIGURE_PARTS) if view == "figure" else [view]
    drawn: list[Part] = []
    for name in names:
        try:
            arrs = VIEWS[name].arrays(src) if arrays is None or view == "figure" else arrays
            drawn.extend(VIEWS[name].parts(src, arrs))
        except NotApplicable:  # the view does not exist for this model: the figure goes without it
            if view != "figure":
                raise
        except ProductFailed:
            raise
        except Exception as e:  # noqa: BLE001 - a failure is an error naming the view, never a smaller figure
            raise ProductFailed(f"the {VIEWS[name].title} view could not be drawn: {one_line(e)}") from e
    if not drawn:
        raise NotApplicable("none of the chosen views applies to this model")
    columns = len(drawn) if view != "figure" and VIEWS[view].one_row else 0
    subtitle = figure_subtitle(src, view)
    if view != "figure" and VIEWS[view].facts is not None:
        subtitle += " · " + VIEWS[view].facts(src)
    return Figure(figure_title(src), subtitle, drawn, columns=columns)


def figure_title(src: Source) -> str:
    """'model · image · block b · head h · query · method'."""
    v = src.view
    bits = [src.model_name or "model", src.image_name or "image", f"block {v.block}", head_name(v.head),
            _query_text(src), METHOD_NAMES.get(v.method, v.method)]
    return " · ".join(b for b in bits if b)


def figure_subtitle(src: Source, view: str) -> str:
    v, o = src.view, src.view.options
    cls = "" if v.class_idx is None else f" · class {v.class_idx}"
    return (f"{VIEWS[view].title if view in VIEWS else 'Composed figure'} · colormap {v.colormap} · "
            f"{v.normalisation} normalisation · {v.scale} scale · α {o.alpha:g}, {o.fusion} fusion, "
            f"discard {o.discard_ratio:g}{cls}")


def export_meta(src: Source, view: str) -> dict:
    """The JSON ``meta`` of an export: the view state, the view, and the model's geometry."""
    from .arrays import capture_meta
    from .view_file import ViewFile

    info = getattr(src.model, "info", None)
    return {"view": view, "state": ViewFile.of_source(src).to_dict(),
            "relevance_method": relevance_method(src), "geometry": capture_meta(src.capture, info)}


from . import lesson_views  # noqa: E402,F401 - registers the lesson panels' views (anatomy, scramble)

__all__ = ["VIEWS", "FIGURE_PARTS", "EXPORT_VIEWS", "ViewSpec", "register_view", "view_arrays", "figure_of",
           "NotApplicable"]
