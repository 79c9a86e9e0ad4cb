"""Typed application state and the one worker that owns the model; no Qt here."""
from .state import Session
from .worker import Worker

__all__ = ["Session", "Worker"]
