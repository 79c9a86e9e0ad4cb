"""The classes a network predicts: the softmax of its logits and the k most probable classes.

One function for every place that names a prediction (the Predictions panel's session, the two sides
of the Scramble and Compare panels), so that they all round the same probabilities the same way.
Computation runs in torch float64 on the CPU.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch

Logits = Union[torch.Tensor, np.ndarray, Sequence[float]]


def class_name(index: int, names: Optional[Sequence[str]]) -> str:
    """The checkpoint's name of class ``index``, or 'class i' when it has none for it."""
    return str(names[index]) if names is not None and 0 <= index < len(names) else f"class {index}"


def top_classes(logits: Optional[Logits], names: Optional[Sequence[str]] = None,
                k: int = 5) -> list[tuple[int, str, float]]:
    """The ``k`` most probable classes as (index, name, probability), most probable first.

    ``logits`` is one image's (C,) scores or a batch of one (1, C); None (a network without a
    classifier head) or ``k`` < 1 gives an empty list. Probabilities are softmax(logits) in float64.
    """
    if logits is None or k < 1:
        return []
    t = torch.as_tensor(np.asarray(logits) if not isinstance(logits, torch.Tensor) else logits)
    t = t.detach().to("cpu", torch.float64)
    if t.dim() == 2 and t.shape[0] == 1:
        t = t[0]  # (C,)
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"logits must be (C,) or (1, C) for one image, got shape {tuple(t.shape)}")
    probs = t.softmax(-1)  # (C,)
    top = probs.topk(min(int(k), probs.numel()))
    return [(int(i), class_name(int(i), names), float(p)) for p, i in zip(top.values.tolist(), top.indices.tolist())]


__all__ = ["class_name", "top_classes"]
