"""attnviz benchmarks: prints one line per figure, and as its last line a JSON object of named figures.

Ratios are measured side by side in one run (interleaved, medians), so the noise of this shared machine
hits both sides alike. Goals are stated next to each figure; benchmarks never assert.

  python bench/run.py                 # every figure
  python bench/run.py capture         # one group of figures: capture | analysis | ui | export
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOALS = {
    "capture_overhead_vit_b16": "<= 1.10 and below hf_eager_overhead_vit_b16",
    "capture_overhead_swin_t": "<= 1.10",
    "hf_eager_overhead_vit_b16": "peer figure (transformers eager + output_attentions)",
}


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int = 15, warmup: int = 2) -> dict[str, float]:
    """Median seconds of each function, the functions run in turn each round."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _ours_from_timm(model):
    """The same weights through attnviz's real loader (saved as a timm safetensors file)."""
    import tempfile

    from safetensors.torch import save_file

    from attnviz.model import load_model

    sd = model.state_dict()  # timm 1.0's layout is attnviz's native one
    with tempfile.TemporaryDirectory() as d:
        save_file(sd, f"{d}/model.safetensors")
        return load_model(f"{d}/model.safetensors", device="cpu").net


def capture_figures() -> dict[str, float]:
    import timm
    import transformers

    torch.manual_seed(0)
    out = {}
    vit = timm.create_model("vit_base_patch16_224").eval()
    ours_vit = _ours_from_timm(vit)
    hf = transformers.ViTForImageClassification(
        transformers.ViTConfig(num_labels=1000, attn_implementation="eager")).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        t = interleaved_medians({
            "timm": lambda: vit(x),
            "ours": lambda: ours_vit.capture(x),
            "hf": lambda: hf(pixel_values=x, output_attentions=True),
        })
    out["capture_overhead_vit_b16"] = t["ours"] / t["timm"]
    out["hf_eager_overhead_vit_b16"] = t["hf"] / t["timm"]

    swin = timm.create_model("swin_tiny_patch4_window7_224").eval()
    ours_swin = _ours_from_timm(swin)
    with torch.inference_mode():
        t = interleaved_medians({"timm": lambda: swin(x), "ours": lambda: ours_swin.capture(x)})
    out["capture_overhead_swin_t"] = t["ours"] / t["timm"]
    return out


def main(argv: list[str]) -> None:
    groups: dict[str, Callable[[], dict[str, float]]] = {"capture": capture_figures}
    try:
        from analysis_figures import GOALS as ANALYSIS_GOALS, figures as analysis_figures  # noqa: E402

        groups["analysis"] = analysis_figures
        GOALS.update(ANALYSIS_GOALS)
    except ImportError:
        pass
    from ui_figures import GOALS as UI_GOALS, figures as ui_figures  # noqa: E402  (the app: Qt offscreen)

    groups["ui"] = ui_figures
    GOALS.update(UI_GOALS)
    from export_figures import GOALS as EXPORT_GOALS, figures as export_figures  # noqa: E402  (Qt offscreen)

    groups["export"] = export_figures
    GOALS.update(EXPORT_GOALS)
    wanted = argv[0] if argv else ""
    figures: dict[str, float] = {}
    for group, fn in groups.items():
        if wanted and wanted != group:
            continue
        for name, value in fn().items():
            figures[name] = round(float(value), 4)
            print(f"{name:32s} {value:10.4f}   goal: {GOALS.get(name, '')}", flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv[1:])
