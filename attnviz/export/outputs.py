"""One export: a view of a Source written to a file whose suffix says the format. Used by the app's
export dialog and the headless command alike.

  .npz            the arrays the view draws + ``meta`` (attnviz.export.views)
  .json           the view state (attnviz.export.view_file), which reopens the view
  .png .svg .pdf  the view's figure, drawn by the :class:`FigureRenderer` the caller passes in
  .gif .mp4       the view's figure stepped through every block (or every head of the block)

No Qt here: the app's dialog and the command line pass attnviz.qt.figures' renderer
(:data:`attnviz.qt.figures.RENDERER`); what is drawn (the :class:`~attnviz.export.figure.Figure`) is
decided here, from the very arrays the .npz holds.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence

import numpy as np

from .animation import save_animation
from .figure import Figure
from .source import Source
from .view_file import ViewFile
from ..session.products import NotApplicable
from .views import figure_of, view_arrays
from .writing import check_target, format_of, write_npz

STEPS = ("block", "head")
Size = Optional[tuple[int, int]]


@dataclass(frozen=True)
class FigureRenderer:
    """How figures become files and pixels (injected: the export package does not draw).

    ``save(fig, path, size, dpi, force)`` writes a .png/.svg/.pdf atomically; ``frames(figs, size, dpi)``
    gives (h, w, 3) uint8 RGB of each figure, all at the first one's pixel size."""

    save: Callable[[Figure, "str | os.PathLike", Size, Optional[float], bool], None]
    frames: Callable[[Sequence[Figure], Size, Optional[float]], list[np.ndarray]]


class ViewNotApplicable(ValueError):
    """The view does not exist for this model (e.g. windows of a ViT); the message names file and reason."""


def write_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray], force: bool = False) -> None:
    write_npz(path, arrays, force)


def frames_of(src: Source, view: str, step: str = "block"):
    """(label, Source) per frame: every block in forward order, or every head of the view's block."""
    if step not in STEPS:
        raise ValueError(f"step must be one of {', '.join(STEPS)}, got {step!r}")
    if step == "block":
        n = src.view.limits.num_blocks
        return [(f"block {b} of {n}", src.with_view(block=b)) for b in range(n)]
    n = src.view.heads_of_block()
    return [(f"head {h} of {n}", src.with_view(head=h)) for h in range(n)]


def frame_figures(src: Source, view: str, step: str = "block", parts: Optional[list[str]] = None):
    """The figure of every frame, each labelled with its block (or head) in the subtitle."""
    figs = []
    for label, s in frames_of(src, view, step):
        fig = figure_of(s, view, parts=parts)
        figs.append(replace(fig, subtitle=f"{label} · {fig.subtitle}"))
    return figs


def plan_view(src: Source, view: str, path: str | os.PathLike, size: Optional[tuple[int, int]] = None,
              dpi: Optional[float] = None, force: bool = False, step: str = "block", fps: float = 2.0,
              parts: Optional[list[str]] = None, renderer: Optional[FigureRenderer] = None) -> Callable[[], None]:
    """Compute everything ``view`` needs now (every model run happens here, in the caller's thread: the
    app calls this on its worker) and return the function that draws and writes the file (the app calls
    it on the GUI thread). Figures and animations need ``renderer``."""
    fmt = format_of(path)
    check_target(path, force)  # before any work
    if fmt not in (".npz", ".json") and renderer is None:
        raise ValueError(f"{path}: drawing a {fmt} figure needs a figure renderer (attnviz.qt.figures.RENDERER)")
    try:
        if fmt == ".npz":
            arrays = view_arrays(src, view, parts)
            return lambda: write_arrays(path, arrays, force)
        if fmt == ".json":
            vf = ViewFile.of_source(src)
            return lambda: vf.save(path, force)
        if fmt in (".png", ".svg", ".pdf"):
            fig = figure_of(src, view, parts=parts)
            return lambda: renderer.save(fig, path, size, dpi, force)
        figs = frame_figures(src, view, step, parts)
        return lambda: save_animation(path, renderer.frames(figs, size, dpi), fps, force)
    except NotApplicable as e:
        raise ViewNotApplicable(f"{path}: the {view} view does not apply to this model ({e})") from None


def write_view(src: Source, view: str, path: str | os.PathLike, size: Optional[tuple[int, int]] = None,
               dpi: Optional[float] = None, force: bool = False, step: str = "block", fps: float = 2.0,
               parts: Optional[list[str]] = None, renderer: Optional[FigureRenderer] = None) -> None:
    """Write ``view`` of ``src`` to ``path`` in the format its suffix names (``parts``: the views a
    composed 'figure' holds, default all that apply), in the caller's thread."""
    plan_view(src, view, path, size, dpi, force, step, fps, parts, renderer)()
