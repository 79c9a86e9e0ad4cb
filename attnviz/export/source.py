"""What an export reads: one capture (its products context) and one view state, without Qt.

The app exports from its live session (cached products are reused); the headless command builds a
:class:`Source` per image from a capture it ran itself. Either way every number comes from the
session's product table (:data:`attnviz.session.products.PRODUCTS`, i.e. attnviz.analysis), so the
arrays an export writes equal what the panels draw for the same state.

The network's input image travels in the Source (``input_image``), never on the session's Context.

A Source looks like a Session to :func:`attnviz.session.shown.shown_map` (``view``, ``products.get``,
``geometry``, ``capture``), so the overlay's title and colour range are the Image panel's own.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

from ..nets import Capture
from ..errors import one_line
from ..session.products import PRODUCTS, Context, NotApplicable, Unavailable
from ..session.query import Geometry, default_query
from ..session.view_state import Limits, ViewState


class ProductFailed(RuntimeError):
    """A product that applies to the model could not be computed (a bug or a resource problem, not a
    view that does not exist): the message names the product and the reason, so an export never drops
    it silently."""


class Source:
    """One image's capture + a view state; ``products.get(name)`` computes (or reuses) a product.

    Products are computed here with their own functions, not through the session's cache: a product
    that does not apply comes back as :class:`Unavailable` (its reason), and one that fails raises
    :class:`ProductFailed` naming it. Products the app had already computed for the exported view are
    reused (``known``: a snapshot taken on the GUI thread, since the export computes on the worker).
    """

    def __init__(self, ctx: Context, view: ViewState, model_name: str = "", image_name: str = "",
                 known: Optional[dict] = None, model_path: str = "", image_path: str = "",
                 input_image=None):
        self.ctx = ctx
        self.model_path, self.image_path = model_path, image_path
        self.input_image = input_image  # (H, W, 3) uint8 the network saw (None: not known)
        self.img_size: Optional[int] = None  # the input size asked for (None: the checkpoint's own)
        self.scramble: Optional[dict] = None  # the Scramble panel's settings, saved with the view
        self.scrambled = None  # the scrambled input's capture (session ScrambledPair), once made
        self.view = view
        self.model_name = model_name
        self.image_name = image_name
        self.job = None  # the worker's Job when the export runs there (flow polls it to stop early)
        self._own: dict[tuple, Any] = dict(known or {})
        self.products = self  # shown_map() asks session.products.get(...)

    # -- the Session-like surface -------------------------------------------------------------------
    @property
    def capture(self) -> Capture:
        return self.ctx.capture

    @property
    def geometry(self) -> Geometry:
        return self.ctx.geometry

    @property
    def model(self):
        return self.ctx.model

    def key(self, name: str, **override) -> tuple:
        spec = PRODUCTS[name]
        return (name, tuple((f, override.get(f, getattr(self.view, f))) for f in spec.reads))

    def get(self, name: str, **override) -> Any:
        """Product ``name`` for the view (fields in ``override`` replaced), computed now in the caller's
        thread (an export waits for flow or relevance). Unavailable when it does not apply; a failure
        raises ProductFailed."""
        spec = PRODUCTS[name]
        key = self.key(name, **override)
        if key in self._own:
            return self._own[key]
        args = dict(key[1])
        try:
            value = spec.fn(self.ctx, **args, job=self.job) if spec.takes_job else spec.fn(self.ctx, **args)
        except NotApplicable as e:
            value = Unavailable(str(e))
        except Exception as e:  # noqa: BLE001 - said with the product's name, never swallowed
            raise ProductFailed(f"{PRODUCT_NAMES.get(name, name)} could not be computed: {one_line(e)}") from e
        self._own[key] = value
        return value

    def with_view(self, **changes) -> "Source":
        """The same capture under another view (e.g. each block of an animation); products are shared."""
        view = copy_view(self.view)
        view.update(**changes)
        other = Source(self.ctx, view, self.model_name, self.image_name, None, self.model_path,
                       self.image_path, self.input_image)
        other.img_size, other.scramble, other.job = self.img_size, self.scramble, self.job
        other.scrambled = self.scrambled
        other._own = self._own
        return other

    @classmethod
    def of_session(cls, session) -> "Source":
        """The app's current state (the view is copied: exporting never changes what is shown). Call it
        on the GUI thread: it reads the session's cache of products already computed for this view."""
        ctx = session.products.context
        if ctx is None or session.capture is None:
            raise ValueError("nothing to export yet: open a model and an image first")
        info = getattr(session.model, "info", None)
        name = (getattr(info, "name", "") or Path(session.doc.model_path or "").stem)
        view = copy_view(session.view)
        src = cls(ctx, view, name, Path(session.doc.image_path or "").name, None,
                  str(session.doc.model_path or ""), str(session.doc.image_path or ""), session.doc.input_image)
        for pname in PRODUCTS:  # what the panels already computed for this very view (a dict look-up each)
            value = session.products.cached(pname)
            if value is not None and not isinstance(value, Unavailable):  # a failure there is retried here
                src._own[src.key(pname)] = value
        src.img_size = session.doc.img_size
        scramble = getattr(session, "scramble", None)
        src.scramble = scramble.to_dict() if scramble is not None and hasattr(scramble, "to_dict") else None
        pair = getattr(session, "scrambled", None)
        if pair is not None and pair.ident == ctx.ident:  # the Scramble panel's pair of this very capture
            src.scrambled = pair
        return src


# what a failed product is called in the message
PRODUCT_NAMES = {"query_heads": "the attention of the query", "rollout": "attention rollout",
                 "flow": "attention flow", "chefer": "class relevance (Chefer et al.)",
                 "grad_rollout": "gradient rollout", "stats": "head statistics",
                 "pos_similarity": "position-embedding similarity", "swin_windows": "the Swin windows",
                 "swin_bias": "the Swin position bias"}


def copy_view(view: ViewState) -> ViewState:
    """An independent ViewState with the same limits and fields."""
    other = ViewState()
    other.set_limits(view.limits)
    with other.batch():
        for f in dataclasses.fields(ViewState):
            setattr(other, f.name, getattr(view, f.name))
    return other


def view_for(cap: Capture, **fields) -> ViewState:
    """A view state validated against ``cap``, with the model's default query unless one is given."""
    view = ViewState()
    view.set_limits(Limits.of(cap))
    view.query = default_query(Geometry.of(cap))
    view.update(**fields)
    return view
