"""Demo material: the procedural faces dataset the shipped demo models are trained on."""
from attnviz.demo.faces import (
    CLASS_NAMES,
    PartPlacement,
    make_split,
    render,
    render_annotated,
    write_samples,
)

__all__ = [
    "CLASS_NAMES",
    "PartPlacement",
    "make_split",
    "render",
    "render_annotated",
    "write_samples",
]
