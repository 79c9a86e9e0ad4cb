"""Device and precision choice: automatic order, overrides, and clear refusals."""
from __future__ import annotations

import pytest
import torch

from attnviz.nets import device as dev


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.pick_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_mps_available", lambda: True)
    assert dev.pick_device(None).type == "mps"
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    assert dev.pick_device().type == "cpu"


def test_overrides_and_refusals(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    assert dev.pick_device("cpu") == torch.device("cpu")
    for bad, words in (("cuda", "CUDA is not available"), ("mps", "MPS is not available"),
                       ("tpu", "unknown device"), ("cuda:x", "unknown device")):
        with pytest.raises(ValueError, match=words):
            dev.pick_device(bad)


def test_dtypes():
    assert dev.pick_dtype(None) is torch.float32
    assert dev.pick_dtype("bf16") is torch.bfloat16 and dev.pick_dtype("FP16") is torch.float16
    with pytest.raises(ValueError, match="fp32, fp16 or bf16"):
        dev.pick_dtype("int8")
