"""Speed figures of the export: a composed figure of ViT-B/16 at 224 as PNG and PDF, and a folder of
images exported headlessly compared with running the network alone on them.

The model is a random-init timm ``vit_base_patch16_224`` saved in timm's safetensors layout (made in a
child process, see ui_figures.save_timm) and opened through attnviz's loader on the CPU.

  export_png_s  / export_pdf_s   the composed figure (every part that applies to ViT-B/16: input, overlay,
                                 12 heads, rollout, flow, relevance, position embedding, statistics) from
                                 the app's state to a file: building the figure from the (already
                                 computed, as in the app) products, drawing it, writing it atomically.
                                 PNG at 150 dpi (2375×1706 px), PDF at 300 dpi. Medians of 5.
  export_products_s              info: computing those products the first time (flow, relevance, stats)
  batch_export_ratio             images/s of `attnviz export --images DIR --view overlay` (PNG, batches
                                 of 8) ÷ forward passes/s of the network alone on the same images, already
                                 decoded and preprocessed, in batches of 8 (decode, capture, figure and
                                 write against forward only)

  python bench/export_figures.py
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

IMAGES = ROOT / "assets" / "images"
BATCH_IMAGES = 16

GOALS = {
    "export_png_s": "<= 1 (composed figure of ViT-B/16 at 224, PNG at 150 dpi)",
    "export_pdf_s": "<= 2 (the same figure as PDF at 300 dpi)",
    "export_products_s": "info: computing the figure's products the first time (flow, relevance, statistics)",
    "batch_export_ratio": ">= 0.8 (export --images, overlay PNG, images/s ÷ forward passes/s on the same images)",
}


def _median_time(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def figures() -> dict[str, float]:
    import torch

    from attnviz.export import command
    from attnviz.export.outputs import write_view
    from attnviz.export.source import Source
    from attnviz.images import load_image, preprocess
    from attnviz.model import load_model
    from attnviz.qt.figures.render import RENDERER, ensure_app
    from attnviz.session import Session, Worker
    from ui_figures import save_timm

    ensure_app()
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        ckpt = save_timm("vit_base_patch16_224", d / "vit_b16.safetensors")
        s = Session(Worker(synchronous=True), device="cpu")
        s.open_model(ckpt)
        s.open_image(str(IMAGES / "astronaut.jpg"))
        if s.capture is None:
            raise RuntimeError(s.last_error)
        src = Source.of_session(s)
        t0 = time.perf_counter()
        write_view(src, "figure", d / "first.png", dpi=150, renderer=RENDERER)
        out["export_products_s"] = time.perf_counter() - t0
        out["export_png_s"] = _median_time(lambda: write_view(src, "figure", d / "f.png", dpi=150, force=True, renderer=RENDERER))
        out["export_pdf_s"] = _median_time(lambda: write_view(src, "figure", d / "f.pdf", dpi=300, force=True, renderer=RENDERER))

        # a folder: the sample photographs and faces, repeated to BATCH_IMAGES files
        folder = d / "images"
        folder.mkdir()
        names = sorted(p for p in IMAGES.iterdir() if p.suffix in (".jpg", ".png"))
        for i in range(BATCH_IMAGES):
            p = names[i % len(names)]
            shutil.copy(p, folder / f"{i:03d}-{p.name}")
        model = load_model(ckpt, device="cpu")
        xs = [preprocess(load_image(p), model.info.preprocess) for p in sorted(folder.iterdir())]

        def forward_only():
            with torch.inference_mode():
                for i in range(0, len(xs), 8):
                    model.net(torch.stack(xs[i: i + 8]))  # (8, 3, 224, 224)

        def export_folder():
            rc = command.main(["--model", ckpt, "--device", "cpu", "--images", str(folder), "--view", "overlay",
                               "--batch-size", "8", "--force", "--out", str(d / "batch")])
            if rc != 0:
                raise RuntimeError("export --images failed")

        forward_only()  # warm up both
        export_folder()
        t_fwd, t_exp = [], []
        for _ in range(3):  # interleaved: the machine's load hits both alike
            t0 = time.perf_counter()
            forward_only()
            t_fwd.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            export_folder()
            t_exp.append(time.perf_counter() - t0)
        # images/s of the export ÷ forward passes/s = forward time ÷ export time (same images)
        out["batch_export_ratio"] = statistics.median(t_fwd) / statistics.median(t_exp)
        out["batch_export_images_per_s"] = BATCH_IMAGES / statistics.median(t_exp)
        out["forward_images_per_s"] = BATCH_IMAGES / statistics.median(t_fwd)
    return out


GOALS["batch_export_images_per_s"] = "info: images per second of the export"
GOALS["forward_images_per_s"] = "info: forward passes per second, batches of 8"


if __name__ == "__main__":
    for name, value in figures().items():
        print(f"{name:32s} {value:10.4f}   goal: {GOALS.get(name, '')}", flush=True)
