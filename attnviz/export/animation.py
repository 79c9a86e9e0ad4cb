"""Animations: frames (RGB arrays, one per block or head) written as GIF (Pillow) or MP4 (OpenCV's
VideoWriter, 'mp4v'), atomically. No Qt: the frames are drawn by the caller."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .writing import format_of, write_atomic


def _even(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """MP4 codecs want even sides: crop one row/column where needed."""
    out = []
    for f in frames:
        h, w = f.shape[:2]
        out.append(np.ascontiguousarray(f[: h - h % 2, : w - w % 2]))
    return out


def write_gif(tmp: str, frames: Sequence[np.ndarray], fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0,
                   optimize=False, disposal=1)


def write_mp4(tmp: str, frames: Sequence[np.ndarray], fps: float) -> None:
    import cv2

    frames = _even(frames)
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not out.isOpened():
        raise OSError(f"{tmp}: OpenCV could not open an MP4 writer")
    try:
        for f in frames:
            out.write(np.ascontiguousarray(f[..., ::-1]))  # RGB -> BGR
    finally:
        out.release()


def save_animation(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float = 2.0,
                   force: bool = False) -> None:
    """Write (h, w, 3) uint8 frames of one size as .gif or .mp4 (from the suffix)."""
    fmt = format_of(path)
    if fmt not in (".gif", ".mp4"):
        raise ValueError(f"{path}: an animation is written as .gif or .mp4, not {fmt}")
    if not frames:
        raise ValueError(f"{path}: no frames to write")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"{path}: frames differ in size ({sorted(shapes)})")
    writer = write_gif if fmt == ".gif" else write_mp4
    write_atomic(path, lambda tmp: writer(tmp, frames, fps), force)
