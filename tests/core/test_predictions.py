"""attnviz.analysis.predictions.top_classes against torch.softmax/topk, and the session's predictions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attnviz.analysis.predictions import class_name, top_classes
from attnviz.session import Session, Worker

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("shape", [(7,), (1, 7)])
@pytest.mark.parametrize("as_numpy", [False, True])
def test_top_classes_is_torch_softmax_and_topk(shape, as_numpy):
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float32) * 4
    names = ["cat", "dog", "car"]  # fewer names than classes: the rest are called by number
    rows = top_classes(logits.numpy() if as_numpy else logits, names, 3)
    probs = torch.softmax(logits.reshape(-1).double(), dim=-1)
    top = torch.topk(probs, 3)
    assert [i for i, _n, _p in rows] == top.indices.tolist()
    np.testing.assert_allclose([p for _i, _n, p in rows], top.values.numpy(), rtol=0, atol=1e-15)
    assert [n for _i, n, _p in rows] == [names[i] if i < 3 else f"class {i}" for i in top.indices.tolist()]
    # every class, most probable first, sums to one
    full = top_classes(logits, None, 100)
    assert len(full) == 7 and abs(sum(p for _i, _n, p in full) - 1) < 1e-12
    assert all(a[2] >= b[2] for a, b in zip(full, full[1:]))


def test_no_classifier_no_rows_and_bad_shapes_say_so():
    assert top_classes(None, ["a"], 3) == [] and top_classes(torch.zeros(4), None, 0) == []
    assert class_name(5, ["a"]) == "class 5" and class_name(0, ["a"]) == "a"
    for bad in (torch.zeros(2, 3), torch.zeros(0), torch.zeros(1, 2, 3)):
        with pytest.raises(ValueError, match="logits must be"):
            top_classes(bad, None, 2)


def test_session_predictions_are_top_classes_of_its_capture():
    s = Session(Worker(synchronous=True), device="cpu")
    s.open_model(str(ROOT / "models" / "faces-vit.safetensors"))
    assert s.predictions(3) == []  # no capture yet
    s.open_image(str(ROOT / "assets" / "images" / "face-01.png"))
    rows = s.predictions(2)
    probs = torch.softmax(s.capture.logits[0].double(), -1)
    top = torch.topk(probs, 2)
    assert [i for i, _n, _p in rows] == top.indices.tolist()
    assert [n for _i, n, _p in rows] == [s.model.class_names[i] for i in top.indices.tolist()]
    np.testing.assert_allclose([p for _i, _n, p in rows], top.values.numpy(), atol=1e-15)
