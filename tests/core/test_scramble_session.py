"""Scramble mode without Qt: the settings (ScrambleState), the session's scrambled capture, the measured
equivariance on the demo models, and the arrays the panel draws against attnviz.analysis."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attnviz.analysis.query import fuse_heads, query_attention
from attnviz.analysis.scramble import (apply_to_image, compose, equivariance_check, inverse_permutation,
                                       random_permutation, reverse_permutation, swap_permutation,
                                       unpermute_attention, window_permutation)
from attnviz.session import Patch, Prefix, Session, Worker
from attnviz.session.scramble_state import ScrambleState, query_in_scrambled, scrambled_map

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
FACES = sorted(str(p) for p in (ROOT / "assets" / "images").glob("face-0*.png"))


def _session(model: str, image: str = FACES[0]) -> Session:
    s = Session(Worker(synchronous=True), device="cpu")
    s.open_model(str(MODELS / f"{model}.safetensors"))
    s.open_image(image)
    assert s.capture is not None, s.errors
    return s


# -- the settings ----------------------------------------------------------------------------------

def test_each_kind_is_the_analysis_permutation():
    st = ScrambleState()
    st.set_grid((6, 5), auto_window=3)
    assert st.kind == "random" and torch.equal(st.permutation(), random_permutation((6, 5), 0))
    st.set_kind("none")
    assert torch.equal(st.permutation(), torch.arange(30)) and st.is_identity
    st.set_kind("random")
    st.set_seed(7)
    assert torch.equal(st.permutation(), random_permutation((6, 5), 7))
    st.set_kind("window")
    assert torch.equal(st.permutation(), window_permutation((6, 5), 3, 7))
    st.set_window(2)
    assert torch.equal(st.permutation(), window_permutation((6, 5), 2, 7))
    st.set_kind("reverse")
    assert torch.equal(st.permutation(), reverse_permutation((6, 5)))


def test_swaps_compose_on_the_scramble_and_undo_restores_it():
    st = ScrambleState()
    st.set_grid((4, 4))
    st.set_kind("random")
    st.set_seed(3)
    base = st.permutation().clone()
    seen = []
    st.changed.connect(seen.append)
    st.swap((0, 0), (3, 2))
    p1 = st.permutation()
    # what the scrambled image showed at (0,0) and (3,2) traded places
    assert p1[0] == base[14] and p1[14] == base[0] and torch.equal(p1, compose(base, swap_permutation((4, 4), (0, 0), (3, 2))))
    st.swap((1, 1), (0, 0))
    assert st.undo() and torch.equal(st.permutation(), p1)
    assert st.undo() and torch.equal(st.permutation(), base)
    assert not st.undo()
    assert seen == ["swaps"] * 4
    with pytest.raises(ValueError, match="outside the 4×4"):
        st.swap((0, 0), (4, 0))


def test_settings_round_trip_through_a_dict_and_a_new_scramble_drops_the_swaps():
    st = ScrambleState()
    st.set_grid((8, 8))
    st.set_kind("window")
    st.set_seed(5)
    st.set_window(2)
    st.swap((0, 1), (7, 7))
    st.set_show_original(True)
    d = st.to_dict()
    assert d["permutation"] == st.permutation().tolist()
    back = ScrambleState.from_dict(d)
    back.set_grid((8, 8))
    assert torch.equal(back.permutation(), st.permutation()) and back.show_original
    st.set_seed(6)
    assert st.swaps == []
    for bad in ({"kind": "shuffle"}, {"seed": -1}, {"swaps": [[1, 2]]}, []):
        with pytest.raises(ValueError):
            ScrambleState.from_dict(bad)


@pytest.mark.parametrize("spec, expect", [
    ("random:3", lambda g: random_permutation(g, 3)),
    ("window:2", lambda g: window_permutation(g, 4, 2)),
    ("window:2:3", lambda g: window_permutation(g, 3, 2)),
    ("reverse", lambda g: reverse_permutation(g)),
    ("swap:0,1:2,3", lambda g: swap_permutation(g, (0, 1), (2, 3))),
])
def test_command_line_specs(spec, expect):
    st = ScrambleState.from_spec(spec)
    st.set_grid((5, 6), auto_window=4)
    assert torch.equal(st.permutation(), expect((5, 6)))


@pytest.mark.parametrize("spec", ["", "shuffle", "random", "random:x", "random:-2", "window:1:0", "swap:1,2",
                                  "swap:1:2,3", "reverse:1"])
def test_bad_specs_say_how_to_write_one(spec):
    with pytest.raises(ValueError, match="use random:SEED"):
        ScrambleState.from_spec(spec)


# -- the session -----------------------------------------------------------------------------------

def test_without_position_embeddings_faces_vit_nope_is_equivariant_to_float_precision():
    s = _session("faces-vit-nope")
    s.set_use_pos_embed(False)
    s.scramble.set_kind("random")
    s.scramble.set_seed(11)
    s.request_scramble()
    pair = s.scrambled
    assert pair is not None and not pair.use_pos_embed and not pair.report.pos_embed_used
    assert pair.report.max_attn_diff < 1e-5 and pair.report.logits_max_abs_diff < 1e-5
    assert pair.prob_change < 1e-5
    # the same numbers as the library's own check, which reruns both captures
    ref = equivariance_check(s.model.net, s.doc.x, random_permutation(s.geometry.grid_size, 11), use_pos_embed=False)
    assert ref.max_attn_diff < 1e-5 and ref.logits_max_abs_diff < 1e-5
    assert len(pair.report.attn_max_abs_diff) == len(s.capture.blocks)


def test_faces_vit_stops_seeing_faces_when_scrambled_and_faces_vit_nope_cannot_tell():
    changed = {}
    for name in ("faces-vit", "faces-vit-nope"):
        s = _session(name)
        s.scramble.set_kind("random")
        flips, changes = 0, []
        for img in FACES:
            s.open_image(img)
            before = int(s.capture.logits[0].argmax())
            for seed in range(4):
                s.scramble.set_seed(seed)
                s.request_scramble()
                flips += int(s.scrambled.capture.logits[0].argmax()) != before
                changes.append(s.scrambled.prob_change)
        changed[name] = (flips / (4 * len(FACES)), max(changes))
    assert changed["faces-vit"][0] > 0.5 and changed["faces-vit"][1] > 0.5, changed
    assert changed["faces-vit-nope"][0] == 0 and changed["faces-vit-nope"][1] < 1e-4, changed


def test_the_position_embedding_switch_reruns_the_whole_session_and_swin_refuses():
    s = _session("faces-vit")
    x = s.doc.x
    s.set_use_pos_embed(False)
    assert not s.doc.use_pos_embed and not s.products.context.use_pos_embed
    expect = s.model.capture(x, use_pos_embed=False).logits
    torch.testing.assert_close(s.capture.logits, expect)
    assert not torch.allclose(expect, s.model.capture(x).logits)
    assert s.model.net.pos_embed is not None  # the shared network was never changed
    s.open_model(str(MODELS / "faces-swin.safetensors"))
    assert s.doc.use_pos_embed and s.capture.family == "swin"  # back on: Swin has none to leave out
    s.set_use_pos_embed(False)
    assert s.doc.use_pos_embed and "relative position bias" in s.last_error


def test_the_scrambled_input_is_the_analysis_permutation_of_the_input():
    s = _session("faces-vit")
    s.scramble.set_kind("reverse")
    s.request_scramble()
    pair = s.scrambled
    perm = reverse_permutation(s.geometry.grid_size)
    assert torch.equal(pair.permutation, perm)
    torch.testing.assert_close(pair.x, apply_to_image(s.doc.x, perm, 8, layout="chw"))
    np.testing.assert_array_equal(pair.input_image, apply_to_image(s.doc.input_image, perm, 8, layout="hwc"))
    torch.testing.assert_close(pair.capture.logits, s.model.capture(pair.x).logits)
    s.open_image(FACES[1])
    assert s.scrambled is None  # made from the previous capture


@pytest.mark.parametrize("query", [Patch(2, 5), Prefix(0)])
@pytest.mark.parametrize("original", [False, True])
def test_scrambled_map_is_the_query_row_of_the_scrambled_capture(query, original):
    s = _session("faces-vit")
    s.scramble.set_kind("random")
    s.scramble.set_seed(4)
    s.request_scramble()
    pair = s.scrambled
    perm, block, head = pair.permutation, 2, 1
    attn = pair.capture.blocks[block].attn[0]  # (heads, T, T) over scrambled tokens
    m = scrambled_map(pair, s.model, block, head, query, original)
    if original:
        token = 0 if isinstance(query, Prefix) else 1 + query.row * 8 + query.col
        expect = query_attention(unpermute_attention(attn, perm, 1), token, 1, (8, 8))[head]
    else:
        inv = inverse_permutation(perm)
        token = 0 if isinstance(query, Prefix) else 1 + int(inv[query.row * 8 + query.col])
        expect = query_attention(attn, token, 1, (8, 8))[head]
    np.testing.assert_allclose(m.values, expect, atol=1e-12)
    if isinstance(query, Patch):
        k = query.row * 8 + query.col
        q = query_in_scrambled(query, perm, (8, 8))
        assert int(perm[q.row * 8 + q.col]) == k  # the scrambled image shows the query's patch there
        assert m.query_cell == ((query.row, query.col) if original else (q.row, q.col))


def test_swin_scrambled_map_puts_stage_zero_back_and_says_why_not_later():
    s = _session("faces-swin")
    s.scramble.set_kind("window")
    s.request_scramble()
    pair, q = s.scrambled, Patch(5, 4)
    assert pair.report is None and pair.prob_change is not None
    scr = scrambled_map(pair, s.model, 0, 0, q, False)
    back = scrambled_map(pair, s.model, 0, 0, q, True)
    perm = pair.permutation.numpy()
    gh, gw = scr.values.shape
    np.testing.assert_allclose(back.values.reshape(-1)[perm], scr.values.reshape(-1))
    last = len(pair.capture.blocks) - 1
    later = scrambled_map(pair, s.model, last, 0, q, True)
    assert later.values is None and "no original position" in later.note


@pytest.mark.parametrize("query", [Patch(0, 7), Patch(6, 3), Prefix(0)])
def test_original_positions_take_one_row_and_equal_the_full_unpermute(query, monkeypatch):
    """'In original positions' is the query row of Pᵀ·A(Px)·P, computed from that row alone: equal to the
    full unpermute_attention for every block and head, without permuting the (heads, T, T) matrix."""
    import attnviz.analysis.scramble as scramble

    s = _session("faces-vit")
    s.scramble.set_kind("random")
    s.scramble.set_seed(8)
    s.request_scramble()
    pair = s.scrambled
    token = 0 if isinstance(query, Prefix) else 1 + query.row * 8 + query.col
    expect = {}
    for block in range(len(pair.capture.blocks)):
        full = unpermute_attention(pair.capture.blocks[block].attn[0], pair.permutation, 1)  # (heads, T, T)
        per_head = query_attention(full, token, 1, (8, 8))  # (heads, 8, 8)
        for head in (0, 3, "mean", "max", "min"):
            expect[block, head] = (per_head[head] if isinstance(head, int)
                                   else fuse_heads(torch.from_numpy(per_head), head).numpy())

    def refuse(*_a, **_k):
        raise AssertionError("the full attention matrix was unpermuted")

    monkeypatch.setattr(scramble, "unpermute_attention", refuse)
    for (block, head), want in expect.items():
        m = scrambled_map(pair, s.model, block, head, query, True)
        np.testing.assert_allclose(m.values, want, rtol=0, atol=1e-12)
        assert m.query_cell == (None if isinstance(query, Prefix) else (query.row, query.col))


def test_default_window_is_the_same_for_a_capture_a_model_and_its_config():
    from attnviz.nets.windows import effective_window
    from attnviz.session.scramble_state import VIT_WINDOW, default_window

    s = _session("faces-swin")
    cap, model = s.capture, s.model
    grid = tuple(cap.grid_size)
    M = int(model.info.config.window_size[0])
    assert default_window(cap) == int(cap.blocks[0].window_size) == M == 4
    assert default_window(model, grid) == default_window(model.info.config, grid) == M
    assert default_window(model) == M  # no grid given: the configured window as is
    # a stage-0 map smaller than the window is one window, as the Swin block runs it
    assert default_window(model, (3, 5)) == effective_window((3, 5), M, 0)[0] == 3
    assert s.scramble.window_side == default_window(cap)
    v = _session("faces-vit")
    assert default_window(v.capture) == default_window(v.model, tuple(v.capture.grid_size)) == VIT_WINDOW
    assert default_window(v.model, (2, 6)) == VIT_WINDOW and default_window(None) == VIT_WINDOW  # no windows
    # the command line's own helper agrees (attnviz dump --scramble window:S)
    from attnviz.cli import default_scramble_window
    for m, g in ((model, grid), (model, (3, 5)), (model, (2, 2)), (v.model, (8, 8)), (v.model, (2, 6))):
        assert default_scramble_window(m, g) == default_window(m, g)


class HoldingWorker(Worker):
    """A synchronous worker that keeps 'scramble' requests back while ``hold`` is set."""

    def __init__(self):
        super().__init__(synchronous=True)
        self.hold, self.held = False, []

    def submit(self, kind, fn, on_done, on_error, *a, **k):
        if kind == "scramble" and self.hold:
            self.held.append((fn, on_done, on_error))
            return None
        return super().submit(kind, fn, on_done, on_error, *a, **k)


def test_a_failure_of_a_superseded_capture_keeps_the_current_pair_and_reports_nothing():
    w = HoldingWorker()
    s = Session(w, device="cpu")
    s.open_model(str(MODELS / "faces-vit.safetensors"))
    s.open_image(FACES[0])
    w.hold = True
    s.request_scramble()  # for the capture of FACES[0]; still running when ...
    w.hold = False
    s.open_image(FACES[1])  # ... a new capture arrives, and its own pair is made
    s.request_scramble()
    current = s.scrambled
    assert current is not None and current.ident == s.products.context.ident
    ready = []
    s.scramble_ready.connect(lambda: ready.append(1))
    (_fn, _done, failed), = w.held
    failed(RuntimeError("the old request broke"))
    assert s.scrambled is current and s.errors == [] and ready == []
    # a failure of the current capture's request still clears the pair and says why
    w.hold, w.held = True, []
    s.request_scramble()
    (_fn, _done, failed), = w.held
    failed(RuntimeError("this one broke"))
    assert s.scrambled is None and s.last_error == "this one broke" and ready == [1]
