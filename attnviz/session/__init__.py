"""Typed application state, derived products and the one worker that owns the model; no Qt here."""
from .products import PRODUCTS, Products, Unavailable
from .query import Geometry, Patch, Prefix, Query
from .state import Document, Session
from .view_state import Limits, ViewState
from .worker import Job, Worker

__all__ = ["Document", "Geometry", "Job", "Limits", "PRODUCTS", "Patch", "Prefix", "Products", "Query",
           "Session", "Unavailable", "ViewState", "Worker"]
