"""The app's state as plain Python (no Qt): the document (model, image, capture and what the capture
depends on), the evented view state every panel follows, and the cache of derived products.

The document changes only through requests run on the worker (load a model, decode an image, run the
capture); each change is announced by a psygnal signal. The view (block, head, query, method, colours,
...) lives in :class:`~attnviz.session.view_state.ViewState`; changing it never reruns the model, it
only changes which cached product a panel reads.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from psygnal import Signal

from .products import Context, Products
from .query import Geometry, Patch, clamp_query, default_query, pixel_to_patch, remap_query
from .view_state import Limits, ViewState
from .worker import Worker


@dataclass
class Document:
    """What is loaded, and everything the capture depends on."""

    model: Any = None  # attnviz.model.LoadedModel
    model_path: Optional[str] = None
    load_seconds: float = 0.0  # how long the last model load took
    image: Any = None  # the decoded RGB image (PIL), kept so a new model needs no re-decode
    image_path: Optional[str] = None
    input_image: Optional[np.ndarray] = None  # (h, w, 3) uint8: the network's exact input
    x: Any = None  # (1, 3, H, W) float32 preprocessed input on the CPU (relevance reruns it)
    capture: Any = None  # attnviz.nets.Capture of (model, image, img_size, use_pos_embed)
    img_size: Optional[int] = None  # input size asked for (None: the checkpoint's own)
    use_pos_embed: bool = True  # an argument of the capture (the scramble lesson switches it off)
    device: Optional[str] = None  # 'auto' / None, 'cpu', 'cuda:N', 'mps'
    dtype: Optional[str] = None  # 'fp32' / None, 'fp16', 'bf16'
    geometry: Optional[Geometry] = None
    capture_model: Any = None  # the LoadedModel that made ``capture`` (the model may be newer while it reruns)


@dataclass
class ErrorNote:
    message: str
    kind: str = "other"  # 'model', 'image', 'capture' or 'other': a success of the same kind clears it
    when: float = field(default_factory=time.time)


class Session:
    """Signals: ``busy(str)`` what is being done (panels show they are out of date), ``model_loaded``,
    ``image_loaded``, ``captured`` (a new capture: every product is new), ``cancelled`` (the user stopped the work), ``error(str)`` (also kept in
    ``errors`` until dismissed or the next load succeeds)."""

    busy = Signal(str)
    model_loaded = Signal()
    image_loaded = Signal()
    captured = Signal()
    error = Signal(str)
    errors_changed = Signal()
    cancelled = Signal()

    def __init__(self, worker: Optional[Worker] = None, device: Optional[str] = None, dtype: Optional[str] = None):
        self.worker = worker or Worker()
        self.view = ViewState()
        self.products = Products(self.worker, self.view)
        self.doc = Document(device=device, dtype=dtype)
        self.errors: list[ErrorNote] = []
        self.pending: Optional[str] = None  # what is coming while the panels are out of date
        self._ident = 0

    # -- convenient read-only views of the document -------------------------------------------------
    @property
    def model(self):
        return self.doc.model

    @property
    def capture(self):
        return self.doc.capture

    @property
    def geometry(self) -> Optional[Geometry]:
        return self.doc.geometry

    # -- errors -------------------------------------------------------------------------------------
    @property
    def last_error(self) -> Optional[str]:
        return self.errors[-1].message if self.errors else None

    def _failer(self, kind: str):
        return lambda e: self.report(e, kind)

    def report(self, e: BaseException, kind: str = "other") -> None:
        """Say a failure in the window (kept in ``errors``); ``kind`` says which success clears it."""
        msg = " ".join(str(e).split()) or type(e).__name__
        if _is_out_of_memory(e):
            msg += " — the GPU ran out of memory; choose the CPU in the Model panel to retry there"
        self.pending = None
        self.errors.append(ErrorNote(msg, kind))
        self.error.emit(msg)
        self.errors_changed.emit()

    def dismiss_errors(self) -> None:
        if self.errors:
            self.errors.clear()
            self.errors_changed.emit()

    def _succeeded(self, kind: str) -> None:
        """A load of ``kind`` worked: its earlier failures are over (others stay until dismissed)."""
        kept = [e for e in self.errors if e.kind not in (kind, "capture")]
        if len(kept) != len(self.errors):
            self.errors[:] = kept
            self.errors_changed.emit()

    def _start(self, what: str) -> None:
        self.pending = what
        self.busy.emit(what)

    # -- requests (run on the worker) ---------------------------------------------------------------
    def open_model(self, path: str, img_size: Optional[int] = None) -> None:
        """Load a checkpoint on the worker; the previous model stays until the new one has loaded."""
        from ..model import load_model

        doc = self.doc
        device, dtype = doc.device, doc.dtype
        self._start(f"loading {_short(path)}")

        def work():
            t0 = time.perf_counter()
            m = load_model(path, device=device, dtype=dtype, img_size=img_size)
            return m, time.perf_counter() - t0

        self.worker.submit("model", work, lambda r: self._model_loaded(path, img_size, *r),
                           self._failer("model"))

    def _model_loaded(self, path: str, img_size: Optional[int], model, seconds: float) -> None:
        self.doc.model, self.doc.model_path, self.doc.load_seconds = model, path, seconds
        self.doc.img_size = img_size
        self._succeeded("model")
        if self.doc.image is None:
            self.pending = None
        self.model_loaded.emit()
        if self.doc.image is not None:
            self._run()

    def reload(self, device: Optional[str] = None, dtype: Optional[str] = None, img_size: Any = "keep") -> None:
        """Load the current checkpoint again on another device / dtype / input size."""
        if device is not None:
            self.doc.device = device
        if dtype is not None:
            self.doc.dtype = dtype
        if self.doc.model_path:
            self.open_model(self.doc.model_path, self.doc.img_size if img_size == "keep" else img_size)

    def open_image(self, path: str) -> None:
        from ..images import load_image

        self._start(f"opening {_short(path)}")
        self.worker.submit("image", lambda: load_image(path), lambda img: self._image_loaded(path, img),
                           self._failer("image"))

    def _image_loaded(self, path: str, img: Any) -> None:
        self.doc.image, self.doc.image_path = img, path
        self._succeeded("image")
        if self.doc.model is None:
            self.pending = None  # nothing to run until a model is there
        self.image_loaded.emit()
        if self.doc.model is not None:
            self._run()

    def _run(self) -> None:
        from ..images import denormalize, preprocess

        model, img, use_pe = self.doc.model, self.doc.image, self.doc.use_pos_embed
        self._start(f"running {model.info.name or _short(self.doc.model_path or '')}")

        def work():
            x = preprocess(img, model.info.preprocess)  # (3, H, W)
            cap = model.capture(x, use_pos_embed=use_pe)
            return denormalize(x, model.info.preprocess), x.unsqueeze(0), cap

        self.worker.submit("capture", work, self._captured, self._failer("capture"))

    def _captured(self, result) -> None:
        input_image, x, cap = result
        old = self.doc.geometry
        new = Geometry.of(cap)
        doc = self.doc
        doc.input_image, doc.x, doc.capture, doc.geometry = input_image, x, cap, new
        doc.capture_model = doc.model
        self._ident += 1
        self.products.set_context(Context(cap, doc.model, x, new, doc.use_pos_embed, self._ident))
        view = self.view
        num_classes = 0 if cap.logits is None else int(cap.logits.shape[-1])
        limits = Limits(len(cap.blocks), tuple(int(b.num_heads) for b in cap.blocks), new, num_classes)
        q = view.query
        if old is None or q == default_query(old):
            q = default_query(new)
        elif old != new:
            q = remap_query(q, old, new)
        with view.batch():
            view.set_limits(limits)
            view.query = q
            if view.hover is not None:
                view.hover = None
        self.pending = None
        self.captured.emit()

    def cancel(self) -> None:
        """Stop every running request (a load's result is dropped; the app keeps what it had)."""
        self.worker.cancel()
        self.products.set_context(self.products.context)
        self.pending = None
        self.cancelled.emit()

    # -- what is looked at (no model run) ----------------------------------------------------------
    def pick_pixel(self, y: float, x: float) -> None:
        """Make the patch under input pixel (y, x) the query; clicks outside the patch grid are ignored."""
        g = self.geometry
        if g is None:
            return
        p = pixel_to_patch(y, x, g)
        if p is not None:
            self.view.query = p

    def reset_query(self) -> None:
        """Back to the model's default query (class token, or the centre patch)."""
        if self.geometry is not None:
            self.view.query = default_query(self.geometry)

    def move_query(self, drow: int, dcol: int) -> None:
        """Shift+arrows: move the query patch (a prefix query starts from the centre patch)."""
        g = self.geometry
        if g is None:
            return
        q = self.view.query
        if not isinstance(q, Patch):
            q = Patch(g.grid_size[0] // 2, g.grid_size[1] // 2)
            drow = dcol = 0
        self.view.query = clamp_query(Patch(q.row + drow, q.col + dcol), g)

    def predictions(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The k most probable classes of the current capture as (index, name, probability)."""
        cap = self.capture
        if cap is None or cap.logits is None:
            return []
        probs = cap.logits[0].double().softmax(-1)
        top = probs.topk(min(k, probs.numel()))
        names = self.model.class_names if self.model is not None else None
        return [(int(i), (names[i] if names and i < len(names) else f"class {i}"), float(p))
                for p, i in zip(top.values.tolist(), top.indices.tolist())]


def _short(path: str) -> str:
    from pathlib import Path

    return Path(path).name or str(path)


def _is_out_of_memory(e: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None)
    return (oom is not None and isinstance(e, oom)) or "out of memory" in str(e).lower()
