"""What a dropped or given path is: a checkpoint (file or folder) or an image. No Qt needed."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from ..checkpoints.discover import WEIGHT_SUFFIXES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")


def route(path: str) -> Optional[Literal["model", "image"]]:
    """'model' for folders and weight files (and config.json), 'image' for image files; otherwise by the
    file's first bytes (an image format's magic number), else None."""
    p = Path(path)
    if p.is_dir():
        return "model"
    name = p.name.lower()
    if name.endswith(WEIGHT_SUFFIXES) or name == "config.json":
        return "model"
    if name.endswith(IMAGE_SUFFIXES):
        return "image"
    try:
        head = p.read_bytes()[:12]
    except OSError:
        return None
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")) or head[8:12] == b"WEBP":
        return "image"
    return None
