"""Figures of the export: an attnviz.export.figure.Figure drawn with QPainter as PNG, SVG or PDF."""
from .render import RENDERER, draw_figure, natural_size, pixel_size, render_frames, save_figure, to_qimage, to_rgb

__all__ = ["RENDERER", "draw_figure", "natural_size", "pixel_size", "render_frames", "save_figure", "to_qimage",
           "to_rgb"]
