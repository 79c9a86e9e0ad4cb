"""The app's state as plain Python: which model and image are loaded, the cached capture, and what
the user is looking at (block, head, query token). Views subscribe to named changes.

Switching block, head or query never re-runs the model: it only changes what is read from the
cached capture.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Optional

import numpy as np

from ..model import LoadedModel
from ..nets import Capture
from .worker import Worker

HEAD_FUSIONS = ("mean", "max", "min")


class Session:
    """Observable state. Events: 'busy' (a request started), 'model', 'image', 'capture', 'view', 'error'."""

    def __init__(self, worker: Optional[Worker] = None, device: Optional[str] = None):
        self.worker = worker or Worker()
        self.device = device
        self.model: Optional[LoadedModel] = None
        self.model_path: Optional[str] = None
        self.image: Any = None  # the decoded RGB image (PIL), kept so a new model needs no re-decode
        self.image_path: Optional[str] = None
        self.input_image: Optional[np.ndarray] = None  # (h, w, 3) uint8: the network's exact input
        self.capture: Optional[Capture] = None
        self.block: int = 0  # index into capture.blocks
        self.head: int | str = "mean"  # a head index or one of HEAD_FUSIONS
        # Query patch (row, col) on the input patch grid; None = the first prefix token (ViT) or the
        # centre patch (Swin, and ViTs without prefix tokens).
        self.query: Optional[tuple[int, int]] = None
        self.last_error: Optional[str] = None
        self._listeners: dict[str, list[Callable[[], None]]] = defaultdict(list)

    # -- events -------------------------------------------------------------------------------
    def subscribe(self, event: str, fn: Callable[[], None]) -> None:
        self._listeners[event].append(fn)

    def _emit(self, event: str) -> None:
        for fn in list(self._listeners[event]):
            fn()

    def _fail(self, e: Exception) -> None:
        self.last_error = " ".join(str(e).split()) or type(e).__name__
        self._emit("error")

    # -- requests (run on the worker) --------------------------------------------------------------
    def open_model(self, path: str) -> None:
        from ..model import load_model

        self._emit("busy")
        self.worker.submit("model", lambda: load_model(path, device=self.device),
                           lambda m: self._model_loaded(path, m), self._fail)

    def _model_loaded(self, path: str, model: LoadedModel) -> None:
        self.model, self.model_path, self.last_error = model, path, None
        self._emit("model")
        if self.image is not None:
            self._run()

    def open_image(self, path: str) -> None:
        from ..images import load_image

        self._emit("busy")
        self.worker.submit("image", lambda: load_image(path), lambda img: self._image_loaded(path, img), self._fail)

    def _image_loaded(self, path: str, img: Any) -> None:
        self.image, self.image_path, self.last_error = img, path, None
        self._emit("image")
        if self.model is not None:
            self._run()

    def _run(self) -> None:
        from ..images import denormalize, preprocess

        model, img = self.model, self.image

        def work():
            x = preprocess(img, model.info.preprocess)
            return denormalize(x, model.info.preprocess), model.capture(x)

        self.worker.submit("capture", work, self._captured, self._fail)

    def _captured(self, result: tuple[np.ndarray, Capture]) -> None:
        self.input_image, self.capture = result
        self.block = min(self.block, len(self.capture.blocks) - 1)
        if isinstance(self.head, int) and self.head >= self.capture.blocks[self.block].num_heads:
            self.head = "mean"
        self._emit("capture")
        self._emit("view")

    # -- what is looked at (no model run) -----------------------------------------------------------
    _KEEP = object()

    def set_view(self, block: Optional[int] = None, head: Optional[int | str] = None, query=_KEEP) -> None:
        """Change the block, head or query patch; ``query=None`` goes back to the default query."""
        if block is not None:
            self.block = block
        if head is not None:
            self.head = head
        if query is not Session._KEEP:
            self.query = query
        self._emit("view")

    def pick_pixel(self, y: float, x: float) -> None:
        """Make the patch under input pixel (y, x) the query; clicks outside the patch grid are ignored."""
        cap = self.capture
        if cap is None:
            return
        p = cap.patch_size
        row, col = int(y // p), int(x // p)
        if 0 <= row < cap.grid_size[0] and 0 <= col < cap.grid_size[1] and y >= 0 and x >= 0:
            self.set_view(query=(row, col))

    def current_map(self) -> tuple[Optional[np.ndarray], Optional[tuple[float, float]], str]:
        """(heat map over the input pixels, query marker (x, y) in pixels, a label for the query)."""
        from ..analysis.query import query_map, token_index
        from ..analysis.swin_maps import query_attention_map, stage_map_to_image

        cap = self.capture
        if cap is None:
            return None, None, "–"
        b = cap.blocks[self.block]
        p = cap.patch_size
        gh, gw = cap.grid_size
        q = self.query
        if cap.family == "vit":
            if q is None and cap.num_prefix_tokens:
                token, label, marker = 0, f"{cap.prefix_names[0]} token", None
            else:
                q = q or (gh // 2, gw // 2)
                token, label = token_index(q[0], q[1], (gh, gw), cap.num_prefix_tokens), f"patch {q}"
                marker = ((q[1] + 0.5) * p, (q[0] + 0.5) * p)
            grid_map = query_map(b.attn[0], token, cap.num_prefix_tokens, (gh, gw), self.head)  # (gh, gw)
            heat = np.kron(grid_map, np.ones((p, p)))  # (gh*p, gw*p)
            return heat, marker, label
        q = q or (gh // 2, gw // 2)
        f = 2 ** b.stage
        stage_q = (min(q[0] // f, b.grid_size[0] - 1), min(q[1] // f, b.grid_size[1] - 1))
        m = query_attention_map(b, stage_q, head_fusion=self.head)  # (H_s, W_s)
        heat = stage_map_to_image(m, b.token_px, cap.img_size).numpy()  # (img_H, img_W)
        marker = ((stage_q[1] + 0.5) * b.token_px, (stage_q[0] + 0.5) * b.token_px)
        return heat, marker, f"patch {q} → stage-{b.stage} token {stage_q}"

    def top_predictions(self, k: int = 5) -> list[tuple[str, float]]:
        """The k most probable classes of the current capture as (name, probability)."""
        if self.capture is None or self.capture.logits is None:
            return []
        logits = self.capture.logits[0].double()
        probs = logits.softmax(-1)
        top = probs.topk(min(k, probs.numel()))
        names = self.model.class_names if self.model is not None else None
        return [((names[i] if names and i < len(names) else f"class {i}"), float(p))
                for p, i in zip(top.values.tolist(), top.indices.tolist())]
