"""Checks several panel tests share (imported as tests.qt.panel_checks)."""
from __future__ import annotations


def assert_readable_bar(bar, lo: float, hi: float) -> None:
    """A colour bar shows at least two distinct, non-empty numbers inside (lo, hi), reaching both ends."""
    labels = bar.shown_labels()
    assert len(labels) >= 2 and all(labels) and len(set(labels)) == len(labels), labels
    values = [float(t.replace("−", "-")) for t in labels]
    span = hi - lo
    assert all(lo - 0.05 * span <= v <= hi + 0.05 * span for v in values), (labels, lo, hi)
    assert max(values) - min(values) >= 0.5 * span, labels
