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

from ..analysis.predictions import top_classes
from .products import Context, Products
from .scramble_state import ScrambledPair, ScrambleState, default_window, scramble_capture
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
    scramble_ready = Signal()  # a new ``scrambled`` pair (or None: it could not be made)
    pos_embed_changed = Signal(bool)  # ``doc.use_pos_embed`` changed (the capture reruns)

    def __init__(self, worker: Optional[Worker] = None, device: Optional[str] = None, dtype: Optional[str] = None):
        self.worker = worker or Worker()
        self.scramble = ScrambleState()  # the Scramble panel's settings (saved with the view state)
        self.scrambled: Optional[ScrambledPair] = None  # the capture of the scrambled input, when asked for
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
        if model.family != "vit" and not self.doc.use_pos_embed:
            self.doc.use_pos_embed = True  # Swin has no absolute embedding to leave out
            self.pos_embed_changed.emit(True)
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
        self.scrambled = None  # made from the previous capture
        self.scramble.set_grid(new.grid_size, default_window(cap))
        view = self.view
        limits = Limits.of(cap)
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

    def use_image(self, path: Optional[str], img: Any) -> None:
        """Take an image another session already decoded (the Compare panel's model B sees the same
        picture) and run the capture on it."""
        self._image_loaded(path, img)

    def set_use_pos_embed(self, on: bool) -> None:
        """Run the whole session with (on) or without the ViT's absolute position embedding: an argument
        of the capture, which reruns on the worker; every panel then shows the model without it. Swin
        (relative position bias only) refuses, with a message."""
        on = bool(on)
        if on == self.doc.use_pos_embed:
            return
        m = self.doc.model
        if not on and m is not None and m.family != "vit":
            self.report(ValueError("Swin has no absolute position embedding to switch off: its position "
                                   "information is the relative position bias inside each window"))
            return
        self.doc.use_pos_embed = on
        self.pos_embed_changed.emit(on)
        if m is not None and self.doc.image is not None:
            self._run()

    def request_scramble(self) -> None:
        """Capture the input scrambled by ``self.scramble`` (on the worker, with the session's position-
        embedding setting); ``scramble_ready`` announces ``self.scrambled``. Bad settings are reported."""
        cap, x, model = self.doc.capture, self.doc.x, self.doc.capture_model
        if cap is None or x is None or model is None:
            return
        try:
            perm = self.scramble.permutation(tuple(cap.grid_size))
        except ValueError as e:
            self.report(e)
            return
        # the setting the capture was made with (a rerun with a new one may be on its way)
        image, use_pe, ident = self.doc.input_image, self.products.context.use_pos_embed, self._ident

        def work():
            return scramble_capture(model, x, image, cap, perm, use_pe, ident)

        def done(pair: ScrambledPair) -> None:
            if pair.ident != self._ident:
                return  # the session captured something newer meanwhile
            self.scrambled = pair
            self.scramble_ready.emit()

        def failed(e: BaseException) -> None:
            if ident != self._ident:
                return  # a failure of a superseded capture: the current pair and errors stay as they are
            self.scrambled = None
            self.report(e, "capture")
            self.scramble_ready.emit()

        self.worker.submit("scramble", work, done, failed)

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
        if cap is None:
            return []
        model = self.doc.capture_model or self.model  # the names of the network that made the capture
        return top_classes(cap.logits, model.class_names if model is not None else None, k)


def _short(path: str) -> str:
    from pathlib import Path

    return Path(path).name or str(path)


def _is_out_of_memory(e: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None)
    return (oom is not None and isinstance(e, oom)) or "out of memory" in str(e).lower()
