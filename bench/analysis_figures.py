"""Benchmark figures of attnviz.analysis (rollout, flow, class relevance) at ViT-B/16 size.

``figures()`` returns named figures; ``bench/run.py analysis`` prints them with their goals. Inputs
are random: softmax-normalised attention of ViT-B/16 shape (12 blocks × 12 heads × 197²) and a
randomly initialised timm ``vit_base_patch16_224``. torch runs on one thread; for numpy's BLAS to do
the same, start the run with OPENBLAS_NUM_THREADS=1 (the flow uses numpy).

  python bench/analysis_figures.py
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnviz.analysis.flow import attention_flow  # noqa: E402
from attnviz.analysis.relevance import class_relevance  # noqa: E402
from attnviz.analysis.rollout import rollout, rollout_row  # noqa: E402

GOALS = {
    "rollout_ms_vit_b16": "<= 5 ms (one start token's map: R[start] by vector products)",
    "rollout_full_ms_vit_b16": "info: the whole 197x197 R (11 matrix products)",
    "flow_s_vit_b16": "<= 2 s (every input token as a sink, random softmax attention)",
    "flow_s_vit_b16_structured": "info: same with local + attention-sink heads (push-relabel fallback)",
    "relevance_ratio_vit_b16": "<= 3 (a class map: capture + backward + math, / a plain forward)",
}


def _median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def vit_b16_attention(seed: int = 0, structured: bool = False) -> list[torch.Tensor]:
    """12 blocks of (12, 197, 197) float32 softmax attention (one class token + 14x14 patches).

    structured=True mixes heads that attend locally on the patch grid, heads dominated by a few
    "attention sink" tokens, and random heads, the kinds of pattern trained ViTs show.
    """
    g = torch.Generator().manual_seed(seed)
    N, side = 197, 14
    if not structured:
        return [(torch.randn(12, N, N, generator=g) * 3).softmax(-1) for _ in range(12)]
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    pos = torch.cat([torch.tensor([[side / 2, side / 2]]), torch.stack([rows, cols], -1).reshape(-1, 2)]).float()
    d2 = (pos[:, None] - pos[None]).pow(2).sum(-1)  # (N, N) squared grid distances
    blocks = []
    for _ in range(12):
        heads = []
        for _ in range(12):
            kind = torch.rand((), generator=g).item()
            logits = torch.randn(N, N, generator=g)
            if kind < 0.3:  # local
                sigma = 0.5 + 2.5 * torch.rand((), generator=g).item()
                logits = logits - d2 / sigma**2
            elif kind < 0.6:  # a few tokens take most of the attention
                sinks = torch.randperm(N, generator=g)[:2]
                logits = logits * 2
                logits[:, sinks] += 8
            else:
                logits = logits * (1 + 9 * torch.rand((), generator=g).item())
            heads.append(logits.softmax(-1))
        blocks.append(torch.stack(heads))
    return blocks


def rollout_figures() -> dict[str, float]:
    attns = vit_b16_attention()
    return {
        "rollout_ms_vit_b16": 1e3 * _median_seconds(lambda: rollout_row(attns, 0), repeats=30),
        "rollout_full_ms_vit_b16": 1e3 * _median_seconds(lambda: rollout(attns), repeats=15),
    }


def flow_figures() -> dict[str, float]:
    attns = vit_b16_attention()
    out = {"flow_s_vit_b16": _median_seconds(lambda: attention_flow(attns, 0), repeats=3)}
    structured = vit_b16_attention(structured=True)
    t0 = time.perf_counter()
    attention_flow(structured, 0)
    out["flow_s_vit_b16_structured"] = time.perf_counter() - t0
    return out


def relevance_figures() -> dict[str, float]:
    import timm

    from attnviz.nets import ModelInfo, ViTConfig, build_model

    torch.manual_seed(0)
    ref = timm.create_model("vit_base_patch16_224", pretrained=False).eval()
    net = build_model(ModelInfo(family="vit", config=ViTConfig()), ref.state_dict())
    x = torch.randn(1, 3, 224, 224)

    def forward() -> None:
        with torch.inference_mode():
            net(x)

    def relevance() -> None:
        class_relevance(net, x, 7, "chefer")

    for _ in range(2):
        forward()
        relevance()
    times: dict[str, list[float]] = {"forward": [], "relevance": []}
    for _ in range(7):  # interleaved, so the machine's noise hits both alike
        for name, fn in (("forward", forward), ("relevance", relevance)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {"relevance_ratio_vit_b16": statistics.median(times["relevance"]) / statistics.median(times["forward"])}


def figures() -> dict[str, float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = rollout_figures()
        out.update(flow_figures())
        out.update(relevance_figures())
        return out
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    for name, value in figures().items():
        print(f"{name:30s} {value:10.4f}   goal: {GOALS.get(name, '')}", flush=True)
