"""Benchmark figures of attnviz.analysis (rollout, flow, class relevance) at ViT-B/16 size.

``figures()`` returns named figures; ``bench/run.py analysis`` prints them with their goals. Inputs
are random: softmax-normalised attention of ViT-B/16 shape (12 blocks × 12 heads × 197²) and a
randomly initialised timm ``vit_base_patch16_224``. torch runs on one thread; for numpy's BLAS to do
the same, start the run with OPENBLAS_NUM_THREADS=1. The flow's compiled solver runs one sink per
core, as it does in the app.

  python bench/analysis_figures.py
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attnviz.analysis.flow import attention_flow  # noqa: E402
from attnviz.analysis.relevance import class_relevance  # noqa: E402
from attnviz.analysis.rollout import rollout, rollout_row  # noqa: E402

GOALS = {
    "rollout_ms_vit_b16": "<= 5 ms (one start token's map: R[start] by vector products)",
    "rollout_full_ms_vit_b16": "info: the whole 197x197 R (11 matrix products)",
    "flow_s_vit_b16": "<= 2 s (every input token as a sink; local + attention-sink + sharp heads)",
    "flow_s_vit_b16_random": "info: same on random softmax attention (the certificate settles most sinks)",
    "flow_compile_s": "info: first flow after install, compiling the solver (cached on disk after)",
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
    structured, diffuse = vit_b16_attention(structured=True), vit_b16_attention()
    attention_flow(structured, 0, sinks=[1])  # load the compiled solver
    return {
        "flow_s_vit_b16": _median_seconds(lambda: attention_flow(structured, 0), repeats=3),
        "flow_s_vit_b16_random": _median_seconds(lambda: attention_flow(diffuse, 0), repeats=3),
        "flow_compile_s": _cold_compile_seconds(),
    }


def _cold_compile_seconds() -> float:
    """Seconds of the first flow in a fresh process with an empty numba cache, minus a warm one."""
    code = ("import time, numpy as np\n"
            "from attnviz.analysis.flow import layered_max_flow\n"
            "c = [np.full((4, 4), 0.25)] * 4\n"
            "t0 = time.perf_counter(); layered_max_flow(c, 0, method='push_relabel'); t1 = time.perf_counter()\n"
            "layered_max_flow(c, 0, method='push_relabel'); t2 = time.perf_counter()\n"
            "print((t1 - t0) - (t2 - t1))")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                             check=True)
    return float(out.stdout.strip().splitlines()[-1])


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
