"""attnviz: see how Vision Transformers attend."""

__version__ = "0.1.0"
