"""Plot text that follows the application font (Ctrl+= / Ctrl+- set it while presenting).

Qt widgets follow QApplication's font by themselves; pyqtgraph's axes, titles and labels keep the
font they were given. Panels call :func:`style_plot` when built and again when the application font
changes (``Panel.on_font_change``).
"""
from __future__ import annotations

from PySide6.QtGui import QFont
from PySide6.QtWidgets import QApplication


def plot_font(scale: float = 0.9) -> QFont:
    """The application font at ``scale`` of its size: what every plot's text uses."""
    f = QFont(QApplication.font())
    size = f.pointSizeF() if f.pointSizeF() > 0 else 10.0
    f.setPointSizeF(max(6.0, size * scale))
    return f


def style_plot(plot, title: str = None) -> None:
    """A PlotItem's tick numbers, axis labels (and ``title``, if given) in the current plot font."""
    f = plot_font()
    pt = f"{f.pointSizeF():.1f}pt"
    for side in ("left", "bottom"):
        ax = plot.getAxis(side)
        ax.setStyle(tickFont=f)
        if ax.labelText:
            ax.setLabel(ax.labelText, units=ax.labelUnits or None, **{"font-size": pt, "color": "#c8c8cc"})
    if title is not None:
        plot.setTitle(title, color="#dddddd", size=pt)
