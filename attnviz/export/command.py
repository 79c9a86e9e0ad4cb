"""``attnviz export``: figures, animations, arrays and view files without the app (no display needed).

  attnviz export --model M (--image I | --images DIR | --state VIEW.json)
                 --view {overlay,heads,rollout,flow,relevance,pos-embed,windows,stats,figure}
                 [--block B] [--head H|mean|max|min] [--query ROW,COL|cls] [--class C]
                 [--method chefer|grad-rollout] [--size WxH | --dpi N] [--step block|head] [--force]
                 --out FILE_OR_DIR

The format is the output's suffix (.png .svg .pdf .gif .mp4 .npz .json). With ``--images DIR`` the
output is a folder (made if missing) that gets one file per image, ``NAME.FORMAT`` (``--format``,
default png); images are decoded on a thread pool and run through the network in batches (on the GPU
when there is one), a progress bar on stderr, unreadable files listed at the end (exit status 1 if
there were any). Errors: one line on stderr naming the file and the reason, exit status 1.

Run as ``attnviz export ...`` (attnviz/cli.py adds this parser) or ``python -m attnviz.export.command``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import one_line, run_reporting
from .names import EXPORT_VIEWS
from .writing import FORMATS, check_target, format_of

METHODS = {"chefer": "chefer", "grad-rollout": "grad_rollout", "grad_rollout": "grad_rollout"}


class ExportError(Exception):
    """What the user asked for cannot be done; the message is shown as is."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``export`` sub-command to an argparse ``subparsers`` object."""
    p = subparsers.add_parser("export", help="write figures (PNG, SVG, PDF), animations (GIF, MP4), arrays (.npz) "
                              "or the view state (.json), without the app",
                              description="Export a view headlessly; the format is the output's suffix.")
    p.add_argument("--model", help="checkpoint file or folder (may come from --state)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="one image")
    src.add_argument("--images", metavar="DIR", help="every image in a folder (one output each, in --out DIR)")
    src.add_argument("--state", metavar="VIEW.json", help="a view file saved by the app (model, image and view)")
    p.add_argument("--view", default="overlay", choices=EXPORT_VIEWS, help="what to export (default overlay)")
    p.add_argument("--block", type=int, help="block index, 0-based, forward order")
    p.add_argument("--head", help="head index, or mean / max / min over heads")
    p.add_argument("--query", help="ROW,COL of the query patch, or cls (the first prefix token)")
    p.add_argument("--class", dest="class_idx", type=int, help="class the relevance explains (default: predicted)")
    p.add_argument("--method", choices=sorted(METHODS), help="relevance method (default chefer)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--size", help="figure size in pixels, WxH (PNG, SVG, GIF, MP4; PDF: the page at 96 dpi)")
    size.add_argument("--dpi", type=float, help="figure resolution (PNG: the natural size at this DPI; PDF: default 300)")
    p.add_argument("--step", default="block", choices=("block", "head"), help="animation frames: every block "
                   "(default) or every head of the block")
    p.add_argument("--fps", type=float, default=2.0, help="animation frames per second (default 2)")
    p.add_argument("--format", choices=[f[1:] for f in FORMATS], default="png",
                   help="with --images: the format of each output (default png)")
    p.add_argument("--batch-size", type=int, default=0, help="with --images: images per forward pass "
                   "(default 8 on the CPU, 32 on a GPU)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument("--out", required=True, help="output file (its suffix is the format), or folder with --images")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", default="fp32", help="fp32, fp16 or bf16")
    p.add_argument("--img-size", type=int, default=None, help="override the input size the model expects")
    p.set_defaults(func=run)
    return p


# -- the view asked for ------------------------------------------------------------------------------


def parse_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ExportError(f"--size '{text}' is not WIDTHxHEIGHT in pixels, e.g. 1600x1000") from None
    if not (16 <= w <= 20000 and 16 <= h <= 20000):
        raise ExportError(f"--size {w}x{h} is outside 16..20000 pixels")
    return w, h


def _view_file(args):
    from .view_file import ViewFile

    vf = ViewFile.load(args.state) if args.state else ViewFile()
    if args.model:
        vf.model = args.model
    if args.img_size is not None:
        vf.img_size = args.img_size
    if not vf.model:
        raise ExportError("give --model (or a --state file that names one)")
    if args.block is not None:
        vf.block = args.block
    if args.head is not None:
        h = args.head.strip().lower()
        vf.head = int(h) if h.lstrip("-").isdigit() else h
    if args.query is not None:
        vf.query = args.query
    if args.class_idx is not None:
        vf.class_idx = args.class_idx
    if args.method is not None:
        vf.method = METHODS[args.method]
    elif args.view == "relevance" and vf.method not in ("chefer", "grad_rollout"):
        vf.method = "chefer"
    return vf


def _view_of(cap, vf, explicit_query: bool):
    """The view state for ``cap``: the file's fields, checked against the model (no silent clamping)."""
    from ..session.query import Patch, Prefix, default_query
    from .source import view_for

    view = view_for(cap)
    fields = vf.view_fields()
    q = fields["query"]
    g = view.limits.geometry
    if not explicit_query and vf.query == "prefix:0":
        fields["query"] = default_query(g)  # the model's own summary token (Swin: the centre patch)
    elif isinstance(q, Prefix) and not 0 <= q.index < g.num_prefix_tokens:
        raise ExportError(f"query {vf.query}: the model has {g.num_prefix_tokens} prefix tokens"
                          + (" (Swin has none: give ROW,COL)" if g.family == "swin" else ""))
    elif isinstance(q, Patch) and not (0 <= q.row < g.grid_size[0] and 0 <= q.col < g.grid_size[1]):
        raise ExportError(f"query {vf.query}: outside the {g.grid_size[0]}x{g.grid_size[1]} patch grid")
    if fields["class_idx"] is not None and not 0 <= fields["class_idx"] < view.limits.num_classes:
        raise ExportError(f"class {fields['class_idx']} does not exist (the model has {view.limits.num_classes} classes)")
    vf2 = vf.replace(query=_query_text(fields["query"]))
    try:
        vf2.apply_view(view)
    except ValueError as e:
        raise ExportError(str(e)) from None
    return view


def _query_text(q) -> str:
    from ..session.query import query_to_text

    return query_to_text(q)


# -- one image ----------------------------------------------------------------------------------------


def _load_model(vf, args):
    from ..model import load_model

    return load_model(vf.model, device=args.device, dtype=args.dtype, img_size=vf.img_size)


def _source(model, cap, x, input_image, vf, view, image_path: str):
    from ..session.products import Context
    from ..session.query import Geometry
    from .source import Source

    ctx = Context(cap, model, x, Geometry.of(cap), vf.use_pos_embed, 1)
    name = getattr(model.info, "name", "") or Path(vf.model).stem
    src = Source(ctx, view, name, Path(image_path).name, None, str(vf.model), str(image_path), input_image)
    src.img_size, src.scramble = vf.img_size, vf.scramble
    return src


def _prepare(path: str, model):
    """Decode and preprocess one image: (x (3, H, W), input image (H, W, 3) uint8)."""
    from ..images import denormalize, load_image, preprocess

    x = preprocess(load_image(path), model.info.preprocess)  # (3, H, W)
    return x, denormalize(x, model.info.preprocess)


def run_one(args, vf, renderer=None) -> None:
    from .outputs import write_view

    image = vf.image if not args.image else args.image
    if not image:
        raise ExportError("give --image (or a --state file that names one)")
    vf.image = image
    size = parse_size(args.size)
    out = args.out
    format_of(out)
    check_target(out, args.force)  # a wrong output fails before the model loads
    model = _load_model(vf, args)
    x, input_image = _prepare(image, model)
    cap = model.capture(x, use_pos_embed=vf.use_pos_embed)
    view = _view_of(cap, vf, args.query is not None or bool(args.state))
    src = _source(model, cap, x.unsqueeze(0).cpu(), input_image, vf, view, image)
    write_view(src, args.view, out, size, args.dpi, args.force, args.step, args.fps, renderer=renderer)


# -- a folder -----------------------------------------------------------------------------------------


def slice_capture(cap, i: int):
    """Image ``i`` of a batched capture as a capture of one image (the products read index 0)."""
    blocks = []
    for b in cap.blocks:
        changes = {"attn": b.attn[i: i + 1]}
        if getattr(b, "token_norms", None) is not None:
            changes["token_norms"] = b.token_norms[i: i + 1]
        if getattr(b, "qkv", None) is not None:
            changes["qkv"] = None
        blocks.append(replace(b, **changes))
    return replace(cap, logits=None if cap.logits is None else cap.logits[i: i + 1], blocks=blocks)


def list_images(folder: str) -> list[Path]:
    """The folder's images to export: its non-hidden files, by name (the Statistics panel's rule)."""
    from ..session.folder_stats import image_files

    try:
        return image_files(folder)
    except ValueError as e:
        raise ExportError(str(e) if Path(folder).exists() else f"{folder}: no such folder") from None


class _Progress:
    """tqdm when installed, else one plain line on stderr rewritten in place."""

    def __init__(self, total: int):
        self.total, self.done, self.t0 = total, 0, time.perf_counter()
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="image", file=sys.stderr, disable=None, dynamic_ncols=True)
        except ImportError:
            self.bar = None

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif sys.stderr.isatty():
            rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
            print(f"\rexport: {self.done}/{self.total} images ({rate:.1f}/s)", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif sys.stderr.isatty():
            print(file=sys.stderr)


def run_folder(args, vf, renderer=None) -> tuple[int, list[tuple[str, str]]]:
    """Export every image of ``args.images``; returns (written, [(file, reason) of the unreadable])."""
    files = list_images(args.images)
    size = parse_size(args.size)
    out = Path(args.out)
    if out.suffix.lower() in FORMATS:
        raise ExportError(f"{out}: with --images, --out is a folder (the format is --format, default png)")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: a file, not a folder")
    if not out.parent.is_dir():
        raise ExportError(f"{out}: folder {out.parent} does not exist")
    ext = "." + args.format
    targets = {p: out / f"{p.stem}{ext}" for p in files}
    seen: dict[Path, Path] = {}
    for p, t in targets.items():
        if t in seen:
            raise ExportError(f"{p.name} and {seen[t].name} would both be written to {t}")
        seen[t] = p
        if out.is_dir():
            check_target(t, args.force)
    if not out.is_dir() and not os.access(out.parent, os.W_OK | os.X_OK):
        raise ExportError(f"{out}: no permission to make a folder in {out.parent}")
    model = _load_model(vf, args)
    from ..session.folder_stats import default_batch_size

    bs = args.batch_size or default_batch_size(model)
    if bs < 1:
        raise ExportError(f"--batch-size must be at least 1, got {bs}")
    created = not out.exists()
    out.mkdir(exist_ok=True)
    try:
        return _export_folder(args, vf, model, files, targets, size, bs, renderer)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # a run that failed at once leaves no empty folder behind
        raise


def _prefetch(pool, fn, items, ahead: int):
    """(item, fn(item)) in order, with at most ``ahead`` items being worked on by ``pool`` at a time (a
    folder of many large images never sits decoded in memory all at once)."""
    queue = deque()
    it = iter(items)
    for item in islice(it, ahead):
        queue.append((item, pool.submit(fn, item)))
    while queue:
        item, fut = queue.popleft()
        for nxt in islice(it, 1):
            queue.append((nxt, pool.submit(fn, nxt)))
        yield item, fut.result()


def _export_folder(args, vf, model, files, targets, size, bs, renderer=None) -> tuple[int, list[tuple[str, str]]]:
    import torch

    from .outputs import ViewNotApplicable, plan_view

    from ..nets import capture_bytes_per_image
    from ..session.folder_stats import CAPTURE_BUDGET

    failed: list[tuple[str, str]] = []
    written = 0
    progress = _Progress(len(files))
    # Images per forward: ``bs``, fewer when a batch's captured attention (every block's probabilities, held
    # in CPU memory) would pass CAPTURE_BUDGET (ViT-L/14 at 518 px: 2.9 GB an image, so one at a time).
    per_image = capture_bytes_per_image(model.net, tuple(model.info.config.img_size))
    limit = max(1, min(bs, CAPTURE_BUDGET // max(per_image, 1)))
    view_cache = None

    def prepare(p: Path):
        try:
            return _prepare(str(p), model)
        except Exception as e:  # an unreadable file is listed at the end, the others go on
            return e

    try:
        with ThreadPoolExecutor(max_workers=2) as pool, ThreadPoolExecutor(max_workers=1) as writer:
            prepared = _prefetch(pool, prepare, files, 2 * bs)  # decoded ahead of the network, bounded
            pending = []
            batch: list[tuple[Path, object, object]] = []

            def flush():
                nonlocal view_cache
                if not batch:
                    return
                xb = torch.stack([x for _p, x, _img in batch])  # (B, 3, H, W)
                cap = model.capture(xb, use_pos_embed=vf.use_pos_embed)
                for i, (p, x, img) in enumerate(batch):
                    one = slice_capture(cap, i)
                    if view_cache is None:
                        view_cache = _view_of(one, vf, args.query is not None or bool(args.state))
                    from .source import copy_view

                    src = _source(model, one, x.unsqueeze(0).cpu(), img, vf, copy_view(view_cache), str(p))
                    try:  # the products (model runs included) here; drawing and writing on the writer thread
                        draw = plan_view(src, args.view, targets[p], size, args.dpi, args.force, args.step,
                                         args.fps, renderer=renderer)
                    except ViewNotApplicable as e:  # the same for every image: stop at once
                        raise ExportError(str(e)) from None
                    except Exception as e:  # noqa: BLE001 - listed at the end
                        failed.append((p.name, one_line(e)))
                        progress.update()
                        continue
                    pending.append((p, writer.submit(draw)))
                batch.clear()
                while pending and (pending[0][1].done() or len(pending) > 2 * bs):
                    _collect(pending.pop(0))

            def _collect(item):
                nonlocal written
                p, fut = item
                try:
                    fut.result()
                    written += 1
                except ExportError:
                    raise
                except Exception as e:
                    failed.append((p.name, one_line(e)))
                progress.update()

            for p, prep in prepared:
                if isinstance(prep, Exception):
                    failed.append((p.name, one_line(prep)))
                    progress.update()
                    continue
                x, img = prep
                if batch and tuple(x.shape) != tuple(batch[0][1].shape):
                    flush()
                batch.append((p, x, img))
                if len(batch) >= limit:
                    flush()
            flush()
            while pending:
                _collect(pending.pop(0))
    finally:
        progress.close()
    return written, failed


# -- entry points ---------------------------------------------------------------------------------


def run(args: argparse.Namespace, renderer_factory: Optional[Callable[[], object]] = None) -> int:
    """Run the command; errors end as one line on stderr and exit status 1. ``renderer_factory`` gives
    the figure renderer (attnviz.qt.figures.RENDERER: attnviz/cli.py passes it), called only when a
    figure or animation is asked for, in this thread, before any work."""
    return run_reporting(lambda a: _run(a, renderer_factory), args)


def _run(args: argparse.Namespace, renderer_factory) -> int:
    vf = _view_file(args)
    fmt = ("." + args.format) if args.images else Path(args.out).suffix.lower()
    renderer = None
    if fmt in (".png", ".svg", ".pdf", ".gif", ".mp4"):
        if renderer_factory is None:
            raise ExportError(f"{fmt} figures need the Qt renderer: run 'attnviz export' (attnviz/cli.py)")
        renderer = renderer_factory()
    if args.images:
        written, failed = run_folder(args, vf, renderer)
        if failed:
            print(f"attnviz: {len(failed)} of {written + len(failed)} images could not be exported:",
                  file=sys.stderr)
            for name, why in failed:
                print(f"  {name}: {why}", file=sys.stderr)
            return 1
        print(f"wrote {written} files to {args.out}")
        return 0
    run_one(args, vf, renderer)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e3:.0f} kB)")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m attnviz.export.command ARGS`` is ``attnviz export ARGS``."""
    from ..cli import main as cli_main

    return cli_main(["export", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
