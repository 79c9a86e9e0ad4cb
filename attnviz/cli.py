"""The ``attnviz`` command: the desktop app by default, and headless sub-commands.

  attnviz [IMAGE] [--model PATH] [--image PATH] [--device D] [--dtype T]   the app (Qt is imported only here)
  attnviz --version
  attnviz dump --model PATH (--image P | --tensor P.npy) --out P.npz [--device D] [--dtype T] [--analysis]
               [--scramble KIND[:SEED]] [--no-pos-embed]
  attnviz make-faces --out DIR [--n N] [--seed S] [--size PX]   sample images of the demo dataset
  attnviz train-demo [--only NAME ...] [--out models]           retrain the shipped demo models
  attnviz export --model M (--image I | --images DIR | --state VIEW.json) --view V --out FILE_OR_DIR   figures,
               animations, arrays and view files (see attnviz export --help)
  attnviz --state VIEW.json                                       the app, reopening a saved view

Errors in sub-commands end with exit status 1 and one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import numpy as np

from .errors import run_reporting


class UserError(Exception):
    """A problem with what the user asked for; its message is shown as is."""


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint file or folder (timm, transformers, original release)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", default="fp32", help="fp32, fp16 or bf16")
    p.add_argument("--img-size", type=int, default=None, help="override the input size the model expects")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="attnviz", description="See how Vision Transformers attend.")
    parser.add_argument("--version", action="version", version=f"attnviz {__version__}")
    parser.add_argument("--model", help="checkpoint to open in the app (default: the faces-vit demo)")
    parser.add_argument("--image", help="image to open in the app (default: a sample face)")
    parser.add_argument("--device", default=None, help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--dtype", default=None, help="fp32, fp16 or bf16")
    sub = parser.add_subparsers(dest="command")

    dump = sub.add_parser("dump", help="write logits and every block's attention to an .npz file")
    _add_model_args(dump)
    src = dump.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="image file, preprocessed as the checkpoint's library does")
    src.add_argument("--tensor", help="a (3, H, W) float32 .npy array, already preprocessed, fed as is")
    dump.add_argument("--out", required=True, help="output .npz path")
    dump.add_argument("--analysis", action="store_true", help="add rollout, flow and head statistics")
    dump.add_argument("--scramble", metavar="KIND[:SEED]",
                      help="move the input's patches first: random:SEED, window:SEED[:SIDE] (random within "
                      "SIDE×SIDE windows; default the Swin window, 4 for a ViT), reverse, or swap:R,C:R,C; "
                      "the applied order is written as 'permutation'")
    dump.add_argument("--no-pos-embed", action="store_true",
                      help="run a ViT without its absolute position embedding (Swin has none to leave out)")

    faces = sub.add_parser("make-faces", help="write sample images of the procedural faces dataset")
    faces.add_argument("--out", required=True, help="output folder")
    faces.add_argument("--n", type=int, default=4, help="images per class (default 4)")
    faces.add_argument("--seed", type=int, default=0, help="sample stream (default 0; the shipped samples)")
    faces.add_argument("--size", type=int, default=64, help="side in pixels, 32..2048 (default 64, the demo "
                       "models' input)")

    train = sub.add_parser("train-demo", help="train the shipped demo models on the CPU")
    train.add_argument("--out", default="models", help="folder for NAME.safetensors, NAME.json, NAME.md")
    train.add_argument("--only", nargs="+", help="train only these (faces-vit, faces-vit-nope, faces-swin, faces-swinv2)")
    train.add_argument("--epochs", type=int, help="override the recipe's epoch count")
    train.add_argument("--seed", type=int, default=0)

    from .export.command import add_parser as add_export_parser

    add_export_parser(sub)
    parser.add_argument("--state", help="a view file (.json, File → Save view) to open: its model, image and view")
    return parser


def load_tensor(path: str):
    """A user's preprocessed (3, H, W) array from .npy, refused unless it is finite numeric data."""
    import torch

    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({(e.strerror or str(e)).lower()})") from None
    if magic.startswith(b"PK"):
        raise UserError(f"{path}: an .npz archive; --tensor takes one array saved with numpy.save (.npy)")
    if magic != b"\x93NUMPY":
        raise UserError(f"{path}: not a .npy file; --tensor takes one array saved with numpy.save")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise UserError(f"{path}: holds Python objects, which attnviz never loads (unpickling can run "
                            "code); save a numeric array") from None
        raise UserError(f"{path}: not a readable .npy array ({e})") from None
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: not a readable .npy array ({e})") from None
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise UserError(f"{path}: expected an array of shape (3, H, W), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise UserError(f"{path}: expected numbers (float32, or any float or integer type), got {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise UserError(f"{path}: the array holds NaN or infinite values")
    return torch.from_numpy(arr)


def run_dump(args: argparse.Namespace) -> None:
    from .export.arrays import capture_arrays, write_npz
    from .export.writing import check_output
    from .model import load_model

    check_output(args.out)
    model = load_model(args.model, device=args.device, dtype=args.dtype, img_size=args.img_size)
    if args.tensor:
        x = load_tensor(args.tensor)
    else:
        from .images import load_image, preprocess

        x = preprocess(load_image(args.image), model.info.preprocess)
    p = model.info.config.patch_size
    if x.shape[1] < p or x.shape[2] < p:
        raise UserError(f"input of {x.shape[1]}x{x.shape[2]} pixels is smaller than one {p}x{p} patch")
    perm = None
    if args.scramble:
        x, perm = scramble_input(x, args.scramble, model)
    if args.no_pos_embed and model.family != "vit":
        raise UserError("--no-pos-embed: Swin has no absolute position embedding to leave out (its position "
                        "information is the relative position bias inside each window)")
    cap = model.capture(x, use_pos_embed=not args.no_pos_embed)
    arrays = capture_arrays(cap, model.info)
    if args.scramble or args.no_pos_embed:
        import json

        meta = json.loads(str(arrays["meta"]))
        meta["use_pos_embed"] = not args.no_pos_embed
        meta["scramble"] = args.scramble
        arrays["meta"] = np.array(json.dumps(meta))
    if perm is not None:
        arrays["permutation"] = perm.numpy().astype(np.int64)  # (gh*gw,) position i shows patch perm[i]
    if args.analysis:
        from .analysis.dump import analysis_arrays

        arrays.update(analysis_arrays(cap, model))
    write_npz(args.out, arrays)
    print(f"wrote {args.out} ({len(arrays)} arrays, {os.path.getsize(args.out) / 1e6:.1f} MB)")


def scramble_input(x, spec: str, model):
    """The (3, H, W) input with its patches moved as ``spec`` says, and the permutation applied."""
    from .analysis.scramble import apply_to_image
    from .session.scramble_state import ScrambleState

    try:
        state = ScrambleState.from_spec(spec)
    except ValueError as e:
        raise UserError(f"--scramble: {e}") from None
    p = int(model.info.config.patch_size)
    grid = (int(x.shape[1]) // p, int(x.shape[2]) // p)
    state.set_grid(grid, default_scramble_window(model, grid))
    try:
        perm = state.permutation()
    except ValueError as e:
        raise UserError(f"--scramble {spec}: {e}") from None
    return apply_to_image(x, perm, p, layout="chw"), perm


def default_scramble_window(model, grid: tuple[int, int]) -> int:
    """The window side 'window:SEED' uses without SIDE, as the app's Scramble panel chooses it
    (attnviz.session.scramble_state.default_window of the capture): a Swin model's first-stage window
    as the network really uses it on this grid (a grid no larger than the window is one window:
    attnviz.nets.windows.effective_window), else the ViT default."""
    from .session.scramble_state import VIT_WINDOW

    if model.family != "swin":
        return VIT_WINDOW
    from .nets.windows import effective_window

    return int(effective_window(grid, int(model.info.config.window_size[0]), 0)[0])


def run_make_faces(args: argparse.Namespace) -> None:
    from .demo.faces import write_samples

    if args.n < 1:
        raise UserError(f"--n must be at least 1, got {args.n}")
    for p in write_samples(args.out, n_per_class=args.n, seed=args.seed, size=args.size):
        print(p)


def run_train_demo(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from .demo.train import Recipe, train_demos

    recipe = Recipe(seed=args.seed)
    if args.epochs:
        recipe = replace(recipe, epochs=args.epochs)
    train_demos(args.out, only=args.only, recipe=recipe, log=lambda m: print(m, flush=True))


def run_gui(args: argparse.Namespace) -> int:
    from .qt.app import run_app

    return run_app(model=args.model, image=args.image, device=args.device, dtype=args.dtype, view_file=args.state)


SUBCOMMANDS = ("dump", "make-faces", "train-demo", "export")


APP_OPTIONS_WITH_VALUES = ("--model", "--image", "--device", "--dtype", "--state")


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse the command line; for the app (no sub-command) one bare path is the image:
    `attnviz IMAGE`, `attnviz --model M IMAGE`."""
    if any(a in SUBCOMMANDS for a in argv):
        return parser.parse_args(argv)
    rest, bare, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a in APP_OPTIONS_WITH_VALUES and i + 1 < len(argv):
            rest += [a, argv[i + 1]]
            i += 2
            continue
        (rest if a.startswith("-") else bare).append(a)
        i += 1
    if len(bare) > 1:
        parser.error(f"unrecognized arguments: {' '.join(bare[1:])} (the app takes one image)")
    args = parser.parse_args(rest)
    if bare:
        if args.image:
            parser.error(f"two images given: {bare[0]} and --image {args.image}")
        args.image = bare[0]
    return args


def _figure_renderer():
    """attnviz export's figure renderer: Qt (offscreen without a display), started in this thread."""
    from .qt.figures.render import RENDERER, ensure_app

    ensure_app()
    return RENDERER


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(build_parser(), argv)
    if args.command is None:
        return run_gui(args)
    if args.command == "export":
        from .export.command import run as run_export

        return run_export(args, renderer_factory=_figure_renderer)  # says its own one-line errors
    handlers = {"dump": run_dump, "make-faces": run_make_faces, "train-demo": run_train_demo}
    return run_reporting(handlers[args.command], args)


if __name__ == "__main__":
    sys.exit(main())
