"""The evented view state: validation in one place, one event per real change, batching, limits."""
from __future__ import annotations

import pytest

from attnviz.analysis.options import MixOptions
from attnviz.session import Geometry, Limits, Patch, Prefix, ViewState
from attnviz.session.query import default_query, pixel_to_patch, query_from_text, query_to_text, remap_query

VIT = Geometry((64, 64), 16, (4, 4), 1, ("cls",), "vit")
SWIN = Geometry((224, 224), 4, (56, 56), 0, (), "swin")


def _state(heads=(2, 2, 4)):
    s = ViewState()
    s.set_limits(Limits(len(heads), tuple(heads), VIT, 5))
    return s


def _record(state, name):
    seen = []
    state.signal(name).connect(lambda new, old: seen.append((new, old)))
    return seen


def test_a_field_emits_only_when_its_value_changes():
    s = _state()
    blocks = _record(s, "block")
    s.block = 1
    s.block = 1
    s.colormap = "viridis"
    assert blocks == [(1, 0)]


def test_values_are_validated_in_one_place():
    s = _state()
    s.block = 99
    assert s.block == 2  # clamped to the last block
    s.head = 7
    assert s.head == 3  # block 2 has 4 heads
    s.block = 0
    assert s.head == 1  # re-clamped to block 0's 2 heads
    for name, bad in (("head", "median"), ("method", "saliency"), ("colormap", "jet"), ("class_idx", 5),
                      ("query", (1, 2)), ("options", {"alpha": 0.5}), ("normalisation", "none")):
        with pytest.raises(ValueError, match=name.split("_")[0]):
            setattr(s, name, bad)
    s.query = Patch(10, -3)
    assert s.query == Patch(3, 0)  # the nearest patch of the 4x4 grid
    s.query = Prefix(3)
    assert s.query == Prefix(0)  # the model has one prefix token
    s.opacity = 1.7
    assert s.opacity == 1.0


def test_block_change_reclamps_head_before_anyone_hears():
    s = _state()
    s.block, s.head = 2, 3
    seen = []
    s.signal("block").connect(lambda new, old: seen.append(("block", new, s.head)))
    s.block = 0
    assert seen == [("block", 0, 1)]  # the listener already sees a head block 0 has


def test_batch_emits_each_changed_field_once_with_its_final_value():
    s = _state()
    got = []
    s.events.connect(lambda info: got.append((info.signal.name, info.args)))
    with s.batch():
        s.block = 1
        s.block = 2
        s.head = 1
        s.colormap = "magma"
        s.colormap = "inferno"  # back to where it was: no event
    assert sorted(got) == [("block", (2, 0)), ("head", (1, "mean"))]
    got.clear()
    s.update(options=MixOptions(alpha=0.9), method="rollout")
    assert sorted(n for n, _ in got) == ["method", "options"]


def test_listeners_can_disconnect():
    s = _state()
    seen = []

    def cb(new, old):
        seen.append(new)

    s.signal("block").connect(cb)
    s.block = 1
    s.signal("block").disconnect(cb)
    s.block = 2
    assert seen == [1]


def test_head_steps_wrap_through_the_fusions():
    s = _state()
    s.head = 0
    order = []
    for _ in range(6):
        s.step_head(+1)
        order.append(s.head)
    assert order == [1, "mean", "max", "min", 0, 1]
    s.head = 0
    s.step_head(-1)
    assert s.head == "min"


def test_query_values_and_remapping_keep_the_place_in_the_image():
    assert default_query(VIT) == Prefix(0) and default_query(SWIN) == Patch(28, 28)
    assert pixel_to_patch(40.0, 20.0, VIT) == Patch(2, 1) and pixel_to_patch(70, 1, VIT) is None
    # patch (3, 0) of a 4x4 grid on 64 px covers y 48..64, x 0..16: centre (56, 8) = (0.875, 0.125) of the input
    assert remap_query(Patch(3, 0), VIT, SWIN) == Patch(49, 7)  # 0.875*224/4 = 49, 0.125*224/4 = 7
    assert remap_query(Prefix(0), VIT, SWIN) == Patch(28, 28)  # Swin has no class token: its default
    for q in (Prefix(0), Patch(3, 4)):
        assert query_from_text(query_to_text(q)) == q
    assert query_from_text("cls") == Prefix(0)
    with pytest.raises(ValueError, match="ROW,COL"):
        query_from_text("middle")


def test_the_block_range_follows_the_model_depth():
    s = _state()
    s.options = MixOptions(first_block=1, last_block=1)
    assert (s.options.first_block, s.options.last_block) == (1, 1)
    s.options = MixOptions(first_block=0, last_block=2)
    assert s.options.last_block is None  # the last of 3 blocks reads as 'the last block'
    s.options = MixOptions(first_block=1, last_block=1)
    s.set_limits(Limits(1, (2,), VIT, 5))  # a model with one block: the range no longer exists
    assert (s.options.first_block, s.options.last_block) == (0, None)
