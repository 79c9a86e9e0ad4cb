"""The view as a JSON file that reopens it exactly: which model and image, and every view-state field.

  {"attnviz_view": 1, "model": "models/faces-vit.safetensors", "image": "assets/images/face-01.png",
   "img_size": null, "block": 3, "head": "mean", "query": "prefix:0", "class": null, "method": "rollout",
   "options": {"alpha": 0.5, "fusion": "mean", "discard_ratio": 0.0, "first_block": 0, "last_block": null},
   "colormap": "inferno", "normalisation": "map", "scale": "linear", "opacity": 0.6, "overlay": "colour",
   "smooth": false, "show_grid": false, "use_pos_embed": true, "scramble": {...}}

Relative paths are read relative to the JSON file's folder (so a folder of views and images can be
moved together); :meth:`ViewFile.save` writes paths relative to that folder when they lie under it.
The app opens one with :func:`open_view` (model and image first, then the view once the capture is
there); the headless command reads the same file. No Qt.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Optional

from ..analysis.options import MixOptions
from ..session.query import query_from_text, query_to_text
from ..session.view_state import ViewState
from .writing import write_bytes

VERSION = 1
# ViewState fields a view file leaves out: where the mouse is, not what is shown
TRANSIENT = ("hover",)
# JSON key of a field when it is not the field's own name
JSON_KEYS = {"class_idx": "class"}
# fields whose JSON is not the value itself: (to JSON, from JSON)
CODECS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "query": (query_to_text, lambda t: query_from_text(str(t))),
    "options": (lambda o: o.to_dict(), lambda d: MixOptions.from_dict(d or {})),
}
# what the file says besides the view: which model and image, and how the capture was made
DOC_FIELDS = ("model", "image", "img_size", "use_pos_embed", "scramble")


def view_field_names() -> tuple[str, ...]:
    """Every ViewState field a view file holds, in the view state's own order (a new field is saved and
    reopened without touching this module; give it a codec above when its value is not plain JSON)."""
    return tuple(f.name for f in dataclasses.fields(ViewState) if f.name not in TRANSIENT)


def encode_field(name: str, value: Any) -> Any:
    """A view-state value as JSON."""
    return CODECS[name][0](value) if name in CODECS else value


def decode_field(name: str, value: Any) -> Any:
    """JSON -> the view-state value (ValueError/TypeError when bad)."""
    return CODECS[name][1](value) if name in CODECS else value


def _defaults() -> dict[str, Any]:
    v = ViewState()
    return {n: encode_field(n, getattr(v, n)) for n in view_field_names()}


class ViewFile:
    """A saved view: the document (``model``, ``image``, ``img_size``, ``use_pos_embed``, ``scramble``) and
    every view-state field as JSON (``view``; also readable and settable as attributes: ``vf.block``)."""

    def __init__(self, model: str = "", image: str = "", img_size: Optional[int] = None,
                 use_pos_embed: bool = True, scramble: Optional[dict] = None, **view: Any):
        d = self.__dict__
        d["model"], d["image"], d["img_size"] = model, image, img_size
        d["use_pos_embed"], d["scramble"] = use_pos_embed, scramble
        d["view"] = _defaults()
        for k, v in view.items():
            setattr(self, k, v)

    def __getattr__(self, name: str) -> Any:
        view = self.__dict__.get("view", {})
        if name in view:
            return view[name]
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in DOC_FIELDS or name == "view":
            self.__dict__[name] = value
        elif name in self.__dict__["view"]:
            self.__dict__["view"][name] = value
        else:
            raise AttributeError(f"a view file has no field '{name}'")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ViewFile) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"ViewFile({self.to_dict()!r})"

    def replace(self, **changes: Any) -> "ViewFile":
        """A copy with some fields changed."""
        other = ViewFile(**{k: getattr(self, k) for k in DOC_FIELDS})
        other.view = dict(self.view)
        for k, v in changes.items():
            setattr(other, k, v)
        return other

    # -- from the app / a source ----------------------------------------------------------------
    @classmethod
    def of_view(cls, view: ViewState, **doc) -> "ViewFile":
        vf = cls(**doc)
        vf.view = {n: encode_field(n, getattr(view, n)) for n in view_field_names()}
        return vf

    @classmethod
    def of_session(cls, session) -> "ViewFile":
        d = session.doc
        if not d.model_path or not d.image_path:
            raise ValueError("nothing to save yet: open a model and an image first")
        scramble = getattr(session, "scramble", None)
        return cls.of_view(session.view, model=str(d.model_path), image=str(d.image_path), img_size=d.img_size,
                           use_pos_embed=bool(d.use_pos_embed),
                           scramble=scramble.to_dict() if scramble is not None and hasattr(scramble, "to_dict")
                           else None)

    @classmethod
    def of_source(cls, src) -> "ViewFile":
        ctx = src.ctx
        return cls.of_view(src.view, model=getattr(src, "model_path", "") or "",
                           image=getattr(src, "image_path", "") or "", img_size=getattr(src, "img_size", None),
                           use_pos_embed=bool(ctx.use_pos_embed), scramble=getattr(src, "scramble", None))

    # -- JSON -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d: dict[str, Any] = {"attnviz_view": VERSION, "model": self.model, "image": self.image,
                             "img_size": self.img_size}
        for k, v in self.view.items():
            d[JSON_KEYS.get(k, k)] = v
        d["use_pos_embed"] = self.use_pos_embed
        if self.scramble is not None:
            d["scramble"] = self.scramble
        return d

    @classmethod
    def from_dict(cls, d: Any, base: Optional[Path] = None) -> "ViewFile":
        """Read and validate (ValueError naming the bad field); relative paths resolved against ``base``.
        A field the file lacks keeps the view state's default."""
        if not isinstance(d, dict) or "attnviz_view" not in d:
            raise ValueError("not an attnviz view file (no 'attnviz_view' key)")
        if d["attnviz_view"] != VERSION:
            raise ValueError(f"view file version {d['attnviz_view']!r}; this attnviz reads version {VERSION}")
        names = {JSON_KEYS.get(n, n): n for n in view_field_names()}
        vf = cls()
        for k, v in d.items():
            if k == "attnviz_view":
                continue
            if k not in DOC_FIELDS and k not in names:
                raise ValueError(f"unknown field '{k}'")
            setattr(vf, names.get(k, k), v)
        for k in ("model", "image"):
            p = getattr(vf, k)
            if not isinstance(p, str):
                raise ValueError(f"'{k}' must be a path")
            if p and base is not None and not os.path.isabs(p):
                setattr(vf, k, str(base / p))
        if not isinstance(vf.use_pos_embed, bool):
            raise ValueError(f"'use_pos_embed' must be true or false, got {vf.use_pos_embed!r}")
        vf.view_fields()  # validates every field now
        if vf.img_size is not None and (isinstance(vf.img_size, bool) or not isinstance(vf.img_size, int)
                                        or vf.img_size < 1):
            raise ValueError(f"'img_size' must be a positive integer or null, got {vf.img_size!r}")
        return vf

    def save(self, path: str | os.PathLike, force: bool = False) -> None:
        d = self.to_dict()
        base = Path(path).resolve().parent
        for k in ("model", "image"):
            p = d[k]
            if p:
                try:
                    d[k] = str(Path(p).resolve().relative_to(base))
                except ValueError:
                    d[k] = str(Path(p).resolve())
        write_bytes(path, (_dumps(d) + "\n").encode(), force)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ViewFile":
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: cannot read it ({e})") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        try:
            return cls.from_dict(d, Path(path).resolve().parent)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from None

    # -- onto a view state --------------------------------------------------------------------------
    def view_fields(self) -> dict:
        """The ViewState fields (typed, through the codecs); ValueError when one is bad. Block, head and
        query are checked against the model once it is loaded (:meth:`apply_view`)."""
        out = {}
        for k, v in self.view.items():
            try:
                out[k] = decode_field(k, v)
            except (TypeError, ValueError) as e:
                raise ValueError(f"bad view: {e}") from None
        head = out.get("head")
        if isinstance(head, str) and head.isdigit():
            out["head"] = int(head)
        probe = ViewState()
        for k, v in out.items():
            if k == "class_idx":
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                    raise ValueError(f"bad view: class must be a class index or null, got {v!r}")
                continue
            if k == "block" and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError(f"bad view: block must be a block index, got {v!r}")
            if k in ("block", "head", "query"):
                continue  # checked against the model's limits once it is loaded
            try:
                probe._validate(k, v)
            except (TypeError, ValueError) as e:
                raise ValueError(f"bad view: {e}") from None
        return out

    def apply_view(self, view: ViewState) -> None:
        """Set every field on ``view`` as one batched update (checked against the loaded model's limits:
        a block or class it lacks is an error, not silently clamped)."""
        fields = self.view_fields()
        lim = view.limits
        if fields["block"] >= lim.num_blocks:
            raise ValueError(f"block {fields['block']} does not exist (the model has {lim.num_blocks} blocks)")
        h = fields["head"]
        if isinstance(h, int) and not 0 <= h < lim.heads[fields["block"]]:
            raise ValueError(f"head {h} does not exist (block {fields['block']} has {lim.heads[fields['block']]} heads)")
        view.update(**fields)


def open_view(session, vf: ViewFile) -> None:
    """Open the view's model and image in ``session`` and set the view once their capture is there.

    Once the model and image are open, the position-embedding switch goes through
    ``session.set_use_pos_embed`` (it reruns the capture; for Swin it refuses, with a message), and the
    view is applied to the capture made with the file's setting. A failure is reported by the session
    (a load, a refused switch: then the view is not applied and nothing stays connected) or by
    ``session.report`` (a view the model cannot show).
    """
    want_model = _resolved(vf.model)
    want_image = _resolved(vf.image)
    want_pe = bool(vf.use_pos_embed)
    d = session.doc
    asked_pe = []

    def same_model() -> bool:
        return want_model is None or (_resolved(d.model_path) == want_model and d.img_size == vf.img_size)

    def same_image() -> bool:
        return want_image is None or _resolved(d.image_path) == want_image

    def apply() -> None:
        try:
            if vf.scramble is not None and hasattr(session, "scramble") and hasattr(session.scramble, "load"):
                session.scramble.load(vf.scramble)
            vf.apply_view(session.view)
        except ValueError as e:
            session.report(e)

    def disconnect() -> None:
        for signal, slot in ((session.captured, on_captured), (session.error, on_error)):
            try:
                signal.disconnect(slot)
            except (TypeError, ValueError, RuntimeError):
                pass

    def on_captured() -> None:
        if session.capture is None or not (same_model() and same_image()):
            return  # an earlier capture, or one of the loads is still on its way
        if bool(d.use_pos_embed) != want_pe:
            if not asked_pe:
                asked_pe.append(True)
                session.set_use_pos_embed(want_pe)  # reruns the capture (captured again), or reports
            return
        disconnect()
        apply()

    def on_error(_msg: str) -> None:
        disconnect()  # a load failed or the switch was refused: the view is not applied to something else

    session.captured.connect(on_captured)
    session.error.connect(on_error)
    if same_model() and same_image():
        if session.capture is not None:
            on_captured()
        return
    if not same_model():
        session.open_model(vf.model, vf.img_size)
    if not same_image():
        session.open_image(vf.image)


def _resolved(path) -> Optional[str]:
    return str(Path(path).resolve()) if path else None


def _dumps(d: dict) -> str:
    """JSON with one field per line, but a list of numbers (a permutation) on one line, not one per line."""
    text = json.dumps(d, indent=2, ensure_ascii=False)
    return re.sub(r"\[\s*(-?\d+(?:\s*,\s*-?\d+)*)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
