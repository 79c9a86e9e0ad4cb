"""Head statistics over a folder of images: running means and spreads per (block, head), no Qt.

The ViT paper's Fig. 7 (right) averages the mean attention distance over many images; one image says
little. This module walks a folder, decodes and preprocesses each file as the session does for one
image (:func:`attnviz.images.load_image`, :func:`attnviz.images.preprocess`), runs the network on
batches (on its device, so a GPU takes many images per forward) and accumulates, per block and head,
the mean and the spread over images of the three statistics of :mod:`attnviz.analysis.stats`.
Files that cannot be decoded are skipped and listed with the reason, so one bad file never stops a
run. Progress, cancellation and the partial results after every batch go through plain callbacks;
:class:`FolderRunner` wires them to the session's worker.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..analysis.stats import HeadStats, image_head_tables
from ..images import IMAGE_EXTENSIONS, ImageError, load_image, preprocess

STATS = ("mean_distance", "entropy", "prefix_share")
CPU_BATCH = 8  # images per forward on the CPU (larger batches gain little there)
GPU_BATCH = 32  # on a GPU; halved on an out-of-memory error until the batch fits
# Captured attention of one batch, in bytes, that a run aims to stay under: a capture keeps every block's
# probabilities in CPU memory (ViT-L/14 at 518 px: 2.9 GB per image), so large models run fewer images at once.
CAPTURE_BUDGET = 1 << 30


@dataclass(frozen=True)
class Unreadable:
    """A file of the folder that was skipped, and why (for the user)."""

    name: str  # file name inside the folder
    reason: str


class RunningMoments:
    """Mean and variance over images of a (L, H) table, updated one batch at a time.

    Chan et al.'s parallel form of Welford's update: a batch's own mean and squared deviations are
    merged into the running ones, which stays accurate where the textbook Σx² − n·mean² would cancel.
    NaN cells (heads a block does not have, prefix share of Swin) stay NaN."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: Optional[np.ndarray] = None  # (L, H)
        self.m2: Optional[np.ndarray] = None  # (L, H) sum of squared deviations from the mean

    def add(self, batch: np.ndarray) -> None:
        """``batch``: (B, L, H) float64, one table per image."""
        nb = int(batch.shape[0])
        if nb == 0:
            return
        mb = batch.mean(0)  # (L, H)
        m2b = ((batch - mb) ** 2).sum(0)  # (L, H)
        if self.n == 0:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        if mb.shape != self.mean.shape:
            raise ValueError(f"a table of shape {mb.shape} cannot join running tables of shape {self.mean.shape}")
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta**2 * (self.n * nb / n)
        self.n = n

    def std(self) -> np.ndarray:
        """(L, H) standard deviation over the images seen (population form, ddof 0; 0 for one image)."""
        return np.sqrt(self.m2 / self.n)


@dataclass
class FolderStats:
    """Statistics over the images of a folder read so far (a partial result while a run goes on)."""

    folder: str
    files: int  # files in the folder (non-hidden, regular), readable or not
    done: int  # files looked at so far
    images: int  # images that went into the means
    mean: Optional[HeadStats]  # (L, H) means per block and head; None before the first batch
    std: Optional[HeadStats]  # (L, H) standard deviations over images, same layout; None before the first
    unreadable: list[Unreadable] = field(default_factory=list)
    batch_size: int = 0
    device: str = "cpu"
    finished: bool = False  # every file was looked at
    cancelled: bool = False

    def message(self) -> str:
        """One line for the panel: how far, and which files were skipped."""
        state = "cancelled" if self.cancelled else ("done" if self.finished else "running")
        s = f"{self.images} image{'s' if self.images != 1 else ''} of {self.files} files ({state})"
        if self.unreadable:
            s += f"; skipped {len(self.unreadable)}: " + ", ".join(f"{u.name} ({u.reason})" for u in self.unreadable)
        return s


def image_files(folder: str) -> list[Path]:
    """The folder's non-hidden regular files, sorted by name (not recursive)."""
    p = Path(folder)
    if not p.is_dir():
        raise ValueError(f"'{folder}' is not a folder")
    try:
        entries = list(p.iterdir())
    except OSError as e:
        raise ValueError(f"cannot list the folder '{folder}': {e.strerror or e}") from None
    return sorted((f for f in entries if not f.name.startswith(".") and f.is_file()), key=lambda f: f.name)


def default_batch_size(model) -> int:
    return GPU_BATCH if torch.device(model.device).type == "cuda" else CPU_BATCH


def _capture_tables(model, xb: torch.Tensor, use_pos_embed: bool) -> tuple[list[np.ndarray], list[int], int, int]:
    """(B, 3, H, W) -> the three (B, L, H) tables; a batch the GPU cannot hold is run in halves.

    Returns the tables, the head counts, the batch size that fitted and the captured bytes per image."""
    try:
        cap = model.capture(xb, use_pos_embed=use_pos_embed)
    except torch.OutOfMemoryError:
        if xb.shape[0] == 1:
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = xb.shape[0] // 2
        a, heads, fit_a, size = _capture_tables(model, xb[:half], use_pos_embed)
        b, _, fit_b, _ = _capture_tables(model, xb[half:], use_pos_embed)
        return [np.concatenate([u, v]) for u, v in zip(a, b)], heads, min(fit_a, fit_b), size
    md, ent, share, heads = image_head_tables(cap)
    per_image = sum(blk.attn.numel() * blk.attn.element_size() for blk in cap.blocks) // max(int(xb.shape[0]), 1)
    return [md, ent, share], heads, int(xb.shape[0]), int(per_image)


def folder_head_stats(
    model,
    folder: str,
    *,
    batch_size: Optional[int] = None,
    use_pos_embed: bool = True,
    progress: Optional[Callable[[int, int], None]] = None,
    cancel: Optional[Callable[[], bool]] = None,
    on_partial: Optional[Callable[[FolderStats], None]] = None,
) -> FolderStats:
    """Run ``model`` (an :class:`attnviz.model.LoadedModel`) over every image of ``folder`` in batches and
    return the mean and spread per (block, head) of the head statistics.

    ``progress(files_done, files)`` and ``on_partial(snapshot)`` follow every batch; ``cancel()`` is polled
    before every file and a True answer ends the run early with a result marked ``cancelled``. Files with a
    name that is not an image's, or that fail to decode, are skipped and listed in ``unreadable``.

    ``batch_size`` (default: :func:`default_batch_size`) is the most images per forward. The first image runs
    alone and its capture's size lowers the batch size so that a batch's captured attention stays under
    :data:`CAPTURE_BUDGET`."""
    files = image_files(folder)
    bs = max(1, int(batch_size or default_batch_size(model)))
    sized = False  # whether the batch size has been checked against the memory budget
    moments = [RunningMoments() for _ in STATS]
    heads: list[int] = []
    unreadable: list[Unreadable] = []
    pending: list[torch.Tensor] = []
    done = 0
    device = str(model.device)

    def snapshot(finished: bool = False, cancelled: bool = False) -> FolderStats:
        mean = std = None
        if moments[0].n:
            mean = HeadStats(*(m.mean.copy() for m in moments), num_heads=list(heads), images=moments[0].n)
            std = HeadStats(*(m.std() for m in moments), num_heads=list(heads), images=moments[0].n)
        return FolderStats(os.fspath(folder), len(files), done, moments[0].n, mean, std, list(unreadable),
                           bs, device, finished, cancelled)

    def flush() -> None:
        nonlocal heads, bs, sized
        if not pending:
            return
        xb = torch.stack(pending)  # B × (3, H, W) -> (B, 3, H, W)
        pending.clear()
        tables, got_heads, fitted, per_image = _capture_tables(model, xb, use_pos_embed)
        if not sized:
            bs = max(1, min(bs, CAPTURE_BUDGET // max(per_image, 1)))
            sized = True
        if fitted < xb.shape[0]:
            bs = fitted  # after an out-of-memory split, later batches start at the size that fitted
        if heads and got_heads != heads:
            raise ValueError("the network changed during the run (blocks or heads differ)")
        heads = got_heads
        for m, t in zip(moments, tables):
            m.add(t)
        if on_partial is not None:
            on_partial(snapshot())  # before the progress: a consumer reads the snapshot when the progress arrives
        if progress is not None:
            progress(done, len(files))

    for path in files:
        if cancel is not None and cancel():
            return snapshot(cancelled=True)
        done += 1
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            unreadable.append(Unreadable(path.name, f"not an image file: {path.suffix or 'no extension'}"))
            continue
        try:
            x = preprocess(load_image(path), model.info.preprocess)  # (3, H, W)
        except ImageError as e:
            unreadable.append(Unreadable(path.name, e.problem))
            continue
        except (ValueError, OSError) as e:  # an image the preprocessing cannot take
            unreadable.append(Unreadable(path.name, " ".join(str(e).split()) or type(e).__name__))
            continue
        pending.append(x)
        if len(pending) >= (bs if sized else 1):  # the first image runs alone: its capture sizes the batches
            flush()
    if cancel is not None and cancel():
        return snapshot(cancelled=True)
    flush()
    return snapshot(finished=True)


class FolderRunner:
    """Runs :func:`folder_head_stats` on the session's worker (the thread that owns the model) and hands
    every partial result to ``on_update`` on the consumer's thread, so plots fill in as batches finish.

    The worker's progress channel carries (done, total); the snapshot itself is left in ``latest``
    (one reference, swapped atomically) for the consumer to pick up when the progress arrives."""

    KIND = "folder-stats"

    def __init__(self, session):
        self.session = session
        self.latest: Optional[FolderStats] = None
        self.model = None  # the model the latest result belongs to
        self.use_pos_embed = True  # and whether it ran with its position embedding
        self._lock = threading.Lock()

    def start(self, folder: str, on_update: Callable[[FolderStats], None], on_done: Callable[[FolderStats], None],
              on_error: Callable[[Exception], None], batch_size: Optional[int] = None) -> None:
        model = self.session.model
        if model is None:
            raise ValueError("open a model first: folder statistics run the current model")
        use_pe = self.session.doc.use_pos_embed
        self.latest, self.model, self.use_pos_embed = None, model, use_pe

        def keep(snap: FolderStats) -> None:
            with self._lock:
                self.latest = snap

        def work(job):
            return folder_head_stats(model, folder, batch_size=batch_size, use_pos_embed=use_pe,
                                     progress=job.progress, cancel=job.cancelled, on_partial=keep)

        def progressed(_done: int, _total: int) -> None:
            with self._lock:
                snap = self.latest
            if snap is not None:
                on_update(snap)

        def finished(result: FolderStats) -> None:
            keep(result)
            on_done(result)

        self.session.worker.submit(self.KIND, work, finished, on_error, on_progress=progressed, pass_job=True)

    def cancel(self) -> Optional[FolderStats]:
        """Stop the run; returns the last partial result, marked cancelled (None if nothing came yet)."""
        self.session.worker.cancel(self.KIND)
        with self._lock:
            snap = self.latest
            if snap is not None and not snap.finished:
                snap = self.latest = FolderStats(**{**snap.__dict__, "cancelled": True})
        return snap

    def running(self) -> bool:
        return self.session.worker.busy(self.KIND)
