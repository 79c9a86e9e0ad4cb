"""Speed figures of the app itself: a view change, a hover, opening an image, starting the app.

``figures()`` returns named figures; ``bench/run.py ui`` prints them with their goals. Everything runs on
the CPU under Qt's offscreen platform with the app's real event loop and worker thread: a view change
is timed from setting the field (``session.view.block = b``) through the panels' own zero-interval
timers firing in ``processEvents()`` until no visible panel is dirty, to the end of a
synchronous paint (``repaint()`` of the panel and of each of its plots' viewports) of every visible
panel that the change redraws (found by an untimed first change of each kind: the panels it makes dirty
or whose plots it changes). The toolbar and status line the window updates itself are not in the paint.
The models are random-init timm networks saved as timm safetensors files and opened through attnviz's
loader, in a window of the MainWindow's default size (1480×900, device pixel ratio 1) with its default
layout. ViT-L/14 at 518 needs about 7 GB of memory and 1.2 GB of temporary disk; the whole group takes
about two minutes on two cores.

Each group of figures runs in a process of its own (the random-init checkpoints are made in yet another,
so that timm is never imported where the app runs). Start-up is timed in fresh processes (``python -m
attnviz`` with the demo model), which write their own timestamps since the process started
(ATTNVIZ_TIMING, see attnviz/qt/startup.py).

  python bench/ui_figures.py              # every figure
  python bench/ui_figures.py --breakdown  # also: per panel, what one block change costs (refresh, paint)
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

IMAGE = ROOT / "assets" / "images" / "astronaut.jpg"
SWITCHES = 40  # block and head changes, alternating
HOVERS = 40
OPENS = 11
STARTS = 5

GOALS = {
    "ui_switch_p95_ms": "<= 16 (ViT-B/16 at 224: block or head change until every visible panel has repainted)",
    "ui_switch_median_ms": "info: the same, median",
    "ui_hover_p95_ms": "<= 16 (ViT-B/16: hover onto a new patch until the linked panels show it)",
    "open_image_overhead_ms": "<= 100 (open an image until every panel has drawn it, minus the capture alone)",
    "open_image_all_maps_overhead_ms": "info: until rollout, flow, relevance and head statistics are drawn too",
    "ui_switch_p95_ms_vit_l14_518": "<= 50 (ViT-L/14 at 518, 1,370 tokens, 16 heads; flow not computed)",
    "ui_switch_median_ms_vit_l14_518": "info: the same, median",
    "block_change_median_ms_vit_l14_518": "info: block changes alone (a block shown for the first time)",
    "head_change_median_ms_vit_l14_518": "info: head changes alone (the block's maps are cached)",
    "switch_memory_mb_per_block_vit_l14_518": "<= 1 (memory kept per newly shown block; its maps are 16×37×37 "
                                              "float64, 0.2 MB)",
    "none_refs_lost_per_switch": "0 (references to None the process loses per block/head change; PySide6 "
                                 "6.12.0 on Python 3.11 loses one per void call, and the app aborts when they "
                                 "run out, after ~260 changes of the demo model)",
    "first_window_s": "<= 1 (process start until the window is on screen, demo model)",
    "startup_s": "<= 3 (process start until the first attention map is painted, demo model)",
}


def p95(xs: list[float]) -> float:
    """The 95th percentile (linear between order statistics)."""
    return statistics.quantiles(xs, n=20, method="inclusive")[-1]


_SAVE_TIMM = """
import json, sys
import timm, torch
from safetensors.torch import save_file
name, path, kwargs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
torch.manual_seed(0)
model = timm.create_model(name, pretrained=False, **kwargs)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
"""


def save_timm(name: str, path: Path, **kwargs) -> str:
    """A random-init timm model saved in timm's safetensors layout (what attnviz.model.load_model reads).
    Made in a child process: the app never imports timm, and a process that did (and built a model) has
    switches a few milliseconds slower (more objects for Python's garbage collector)."""
    subprocess.run([sys.executable, "-c", _SAVE_TIMM, name, str(path), json.dumps(kwargs)], check=True)
    return str(path)


def paint(panel) -> None:
    """Paint a panel now, its plots included: a parent's repaint() does not reach the viewports of the
    QGraphicsViews (pyqtgraph's plots and images) inside it, so each visible one is repainted too."""
    import pyqtgraph as pg

    panel.repaint()
    for view in panel.findChildren(pg.GraphicsView):
        if view.isVisible():
            view.viewport().repaint()


class Workspace:
    """The app's MainWindow over an asynchronous session (real worker thread, results delivered to the
    GUI thread through the Qt bridge), with its own settings file so the user's layout is not read."""

    def __init__(self, settings_dir: Path, skip_products: Iterable[str] = ()):
        import pyqtgraph as pg
        from PySide6.QtCore import QEventLoop, QSettings, QTimer
        from PySide6.QtWidgets import QApplication

        from attnviz.qt.bridge import GuiDeliver
        from attnviz.qt.main_window import MainWindow
        from attnviz.session import Session, Unavailable, Worker

        self.app = QApplication.instance() or QApplication(["attnviz-bench"])
        # QEventLoop's processEvents, not QApplication's: PySide6 6.12's static functions that return None
        # (QCoreApplication.processEvents, sendPostedEvents, ...) each drop one reference to None too many,
        # and on Python 3.11 thousands of calls end the process ("Fatal Python error: none_dealloc").
        self.loop = QEventLoop()
        pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)  # as attnviz.qt.app does
        settings = QSettings(str(settings_dir / "settings.ini"), QSettings.Format.IniFormat)
        self.session = Session(Worker(deliver=GuiDeliver()), device="cpu")
        self.win = MainWindow(self.session, settings)
        self.captures = 0
        self.session.captured.connect(self._captured)
        skip = set(skip_products)
        if skip:  # products too slow for this benchmark's budget: drawn as 'not available' instead
            products, request = self.session.products, self.session.products.request

            def maybe_request(name: str, **override) -> None:
                if name in skip:
                    products._store(products.key(name, **override), Unavailable("not computed in this benchmark"))
                else:
                    request(name, **override)

            products.request = maybe_request
        self._tick = QTimer()  # wakes the waiting loop now and then, so a deadline is noticed
        self._tick.start(20)
        self.win.show()
        self.spin(0.3)

    def _captured(self) -> None:
        self.captures += 1

    # -- the event loop -----------------------------------------------------------------------------
    def wait(self, done: Callable[[], bool], timeout: float = 900.0) -> None:
        """Run the event loop until ``done()``."""
        from PySide6.QtCore import QEventLoop

        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError("the app did not get there in time")
            self.loop.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        self.wait(lambda: time.monotonic() >= end)

    def visible_panels(self) -> list:
        """The panels on screen (a dock tabbed behind another is visible to Qt, but moved off the window)."""
        from PySide6.QtCore import QPoint
        from PySide6.QtWidgets import QWidget

        win = self.win
        return [p for p in win.panels.values()  # QWidget's own methods: a panel may name a child 'size'
                if QWidget.isVisible(p)
                and QWidget.rect(p).translated(QWidget.mapTo(p, win, QPoint(0, 0))).intersects(win.rect())]

    def touched_by(self, change: Callable[[], None]) -> list:
        """Make ``change`` (untimed) and say which visible panels it redraws: the ones it makes dirty (they
        repaint on their timer), the ones whose plots it changes directly (e.g. a hover outline), and the
        ones with any widget Qt then paints (a panel may paint its tiles itself, without a scene)."""
        import pyqtgraph as pg
        from PySide6.QtCore import QEvent, QObject
        from PySide6.QtWidgets import QWidget

        panels = self.visible_panels()
        hit: set = set()
        links = []
        for p in panels:
            for view in p.findChildren(pg.GraphicsView):
                fn = (lambda _rects, p=p: hit.add(p))
                view.scene().changed.connect(fn)
                links.append((view.scene(), fn))

        class Painted(QObject):
            def eventFilter(self, obj, ev):
                if ev.type() == QEvent.Type.Paint and isinstance(obj, QWidget):
                    hit.update(p for p in panels if obj is p or p.isAncestorOf(obj))
                return False

        watcher = Painted()
        self.app.installEventFilter(watcher)
        change()
        hit.update(p for p in panels if p._dirty)
        self.draw([])
        self.drain()
        self.app.removeEventFilter(watcher)
        for scene, fn in links:
            scene.changed.disconnect(fn)
        return [p for p in panels if p in hit]

    def dirty(self) -> bool:
        return any(p._dirty for p in self.visible_panels())

    def draw(self, panels: list) -> None:
        """Let the panels' timers fire until none is dirty, then paint ``panels`` now."""
        while self.dirty():
            self.loop.processEvents()
        for p in panels:
            paint(p)

    def idle(self) -> bool:
        s = self.session
        return s.pending is None and not s.worker.busy() and not self.dirty()

    def settle(self, timeout: float = 900.0) -> None:
        """Until the worker has nothing left (slow products included) and every panel has drawn it."""
        self.wait(self.idle, timeout)
        self.spin(0.05)  # the paints those last results asked for

    def drain(self) -> None:
        """Untimed: the repaints Qt queued itself after the last measured change."""
        for _ in range(3):
            self.loop.processEvents()

    # -- actions --------------------------------------------------------------------------------------
    def open(self, model: str, image: str) -> None:
        self.session.open_model(model)
        self.session.open_image(image)
        self.wait(lambda: self.captures > 0 and self.session.model is not None)
        self.settle()

    def time_changes(self, changes: list[tuple[str, Callable[[], None]]], warmup: int = 2,
                     after: Optional[Callable[[str], None]] = None) -> list[float]:
        """Seconds from each change to the end of the paint of the visible panels it redraws. The first
        change of each kind (block, head, hover) is untimed: it finds those panels (:meth:`touched_by`).
        ``after(kind)`` runs untimed after each timed change."""
        times, redraws = [], {}
        self.by_kind: dict[str, list[float]] = {}
        for i, (kind, change) in enumerate(changes):
            self.drain()
            if kind not in redraws:
                redraws[kind] = self.touched_by(change)
                continue
            t0 = time.perf_counter()
            change()
            self.draw(redraws[kind])
            if i >= warmup:
                times.append(time.perf_counter() - t0)
                self.by_kind.setdefault(kind, []).append(times[-1])
            if after is not None:
                after(kind)
        self.redraws = {k: [type(p).__name__ for p in v] for k, v in redraws.items()}
        return times

    def block_head_changes(self, n: int) -> list[tuple[str, Callable[[], None]]]:
        """n changes: the next block, then the next head, and so on."""
        v = self.session.view
        nb = v.limits.num_blocks

        def next_block() -> None:
            v.block = (v.block + 1) % nb

        def next_head() -> None:
            v.head = (v.head + 1) % v.heads_of_block() if isinstance(v.head, int) else 0

        return [("block", next_block) if i % 2 == 0 else ("head", next_head) for i in range(n)]

    def hover_changes(self, n: int) -> list[tuple[str, Callable[[], None]]]:
        """n hovers, each onto a new patch (a walk across the grid)."""
        from attnviz.session import Patch

        gh, gw = self.session.geometry.grid_size
        cells = [(r, c) for r in range(gh) for c in range(gw)]
        return [("hover", lambda rc=cells[(7 * i + 3) % len(cells)]: setattr(self.session.view, "hover", Patch(*rc)))
                for i in range(n)]

    def time_open(self, image: str) -> float:
        """Seconds from opening an image until every visible panel has drawn its capture."""
        self.settle()
        self.drain()
        panels = self.visible_panels()
        before = self.captures
        t0 = time.perf_counter()
        self.session.open_image(image)
        self.wait(lambda: self.captures > before)
        self.draw(panels)
        return time.perf_counter() - t0

    def time_open_all_maps(self, image: str) -> float:
        """Seconds from opening an image until every product is computed and drawn."""
        self.settle()
        self.drain()
        before = self.captures
        t0 = time.perf_counter()
        self.session.open_image(image)
        self.wait(lambda: self.captures > before)
        self.wait(self.idle)
        self.draw(self.visible_panels())
        return time.perf_counter() - t0


def breakdown(ws: Workspace, n: int = 12, after: Optional[Callable[[str], None]] = None) -> dict[str, float]:
    """Median milliseconds per visible panel of a block change: its refresh (``flush``) and its paint,
    each called directly (no event loop), so the sum shows where a switch goes."""
    v = ws.session.view
    out: dict[str, list[float]] = {}
    for _ in range(n):
        ws.drain()
        t0 = time.perf_counter()
        v.block = (v.block + 1) % v.limits.num_blocks  # the window's own controls follow at once
        out.setdefault("setting the field", []).append(time.perf_counter() - t0)
        for name, p in ws.win.panels.items():
            if p not in ws.visible_panels():
                continue
            t0 = time.perf_counter()
            p.flush()
            t1 = time.perf_counter()
            paint(p)
            t2 = time.perf_counter()
            out.setdefault(f"{name}.refresh", []).append(t1 - t0)
            out.setdefault(f"{name}.paint", []).append(t2 - t1)
        t0 = time.perf_counter()
        ws.win.repaint()  # toolbar, status bar, docks and every panel's widgets (not the plots' viewports)
        out.setdefault("whole window repaint", []).append(time.perf_counter() - t0)
        if after is not None:
            after("block")
    return {k: 1e3 * statistics.median(x) for k, x in out.items()}


def refs_lost(obj: object) -> Callable[[], int]:
    """A counter of references to ``obj`` (None) lost since now; 0 on Pythons where it is immortal (3.12+)."""
    before = sys.getrefcount(obj)
    return lambda: before - sys.getrefcount(obj)


def vit_b_view_figures(ckpt: str, tmp: Path, show_breakdown: bool = False) -> dict[str, float]:
    ws = Workspace(tmp)
    ws.open(ckpt, str(IMAGE))
    out = {}
    lost = refs_lost(None)
    t = ws.time_changes(ws.block_head_changes(SWITCHES + 2))
    out["none_refs_lost_per_switch"] = lost() / (SWITCHES + 2)
    out["ui_switch_p95_ms"] = 1e3 * p95(t)
    out["ui_switch_median_ms"] = 1e3 * statistics.median(t)
    t = ws.time_changes(ws.hover_changes(HOVERS + 2))
    out["ui_hover_p95_ms"] = 1e3 * p95(t)
    if show_breakdown:
        _print_breakdown("ViT-B/16 224", breakdown(ws))
    return out


def vit_b_open_figures(ckpt: str, tmp: Path, show_breakdown: bool = False) -> dict[str, float]:
    from attnviz.images import load_image, preprocess

    ws = Workspace(tmp)
    ws.open(ckpt, str(IMAGE))
    out = {}
    model = ws.session.model
    x = preprocess(load_image(str(IMAGE)), model.info.preprocess)  # (3, H, W), as the session does
    opened, captured = [], []
    for _ in range(OPENS):  # side by side: the app's open, then the capture alone
        opened.append(ws.time_open(str(IMAGE)))
        ws.settle()
        t0 = time.perf_counter()
        model.capture(x)
        captured.append(time.perf_counter() - t0)
    out["open_image_overhead_ms"] = 1e3 * (statistics.median(opened) - statistics.median(captured))
    everything = [ws.time_open_all_maps(str(IMAGE)) for _ in range(3)]
    out["open_image_all_maps_overhead_ms"] = 1e3 * (statistics.median(everything) - statistics.median(captured))
    return out


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def vit_l_figures(ckpt: str, tmp: Path, show_breakdown: bool = False) -> dict[str, float]:
    # DINOv2's ViT-L/14 at its own 518 px: 37×37 patches + the class token, 24 blocks of 16 heads, no classifier
    # head (so no class relevance). Attention flow over 1,370 tokens × 24 blocks is left out (minutes here).
    ws = Workspace(tmp, skip_products=("flow",))
    ws.open(ckpt, str(IMAGE))
    out = {}
    products, growth, last = ws.session.products, [], [rss_mb()]

    def forget_other_blocks(kind: str) -> None:
        # Untimed. A block's cached query maps may hold on to far more memory than the maps themselves (when
        # this was written: its maps and prefix shares are numpy views into two float64 copies of the block's
        # whole (16, 1370, 1370) attention, 2 × 240 MB); measured as switch_memory_mb_per_block, then dropped,
        # so that visiting 20 blocks fits in memory. Every block change below still shows a block for the
        # first time.
        now = rss_mb()
        if kind == "block":
            growth.append(now - last[0])
        keep = products.key("query_heads")
        for k in [k for k in products._cache if k[0] == "query_heads" and k != keep]:
            del products._cache[k]
        last[0] = rss_mb()

    t = ws.time_changes(ws.block_head_changes(SWITCHES + 2), after=forget_other_blocks)
    out["ui_switch_p95_ms_vit_l14_518"] = 1e3 * p95(t)
    out["ui_switch_median_ms_vit_l14_518"] = 1e3 * statistics.median(t)
    out["block_change_median_ms_vit_l14_518"] = 1e3 * statistics.median(ws.by_kind["block"])
    out["head_change_median_ms_vit_l14_518"] = 1e3 * statistics.median(ws.by_kind["head"])
    out["switch_memory_mb_per_block_vit_l14_518"] = statistics.median(growth)
    if show_breakdown:
        _print_breakdown("ViT-L/14 518", breakdown(ws, after=forget_other_blocks))
    return out


def start_once(tmp: Path, args: tuple[str, ...] = (), timeout: float = 120.0) -> dict:
    """One ``python -m attnviz`` in a fresh process (its own settings folder); its ATTNVIZ_TIMING marks, in
    seconds since it started, or {} when it did not get there."""
    out = tmp / "timing.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ, ATTNVIZ_TIMING=str(out), QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp / "config"))
    try:
        subprocess.run([sys.executable, "-m", "attnviz", *args], cwd=ROOT, env=env, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {}
    return json.loads(out.read_text()) if out.exists() else {}


def startup_figures(tmp: Path) -> dict[str, float]:
    if not (ROOT / "models" / "faces-vit.safetensors").exists():
        return {}  # the demo model is what the app opens with no arguments
    start_once(tmp)  # warm the file cache: every figure is a warm start
    runs = [r for r in (start_once(tmp) for _ in range(STARTS)) if "first_map_s" in r]
    if not runs:
        return {}
    return {"first_window_s": statistics.median(r["window_s"] for r in runs),
            "startup_s": statistics.median(r["first_map_s"] for r in runs)}


def _print_breakdown(what: str, parts: dict[str, float]) -> None:
    print(f"  {what}, one block change (median ms, direct calls):", flush=True)
    for k, ms in parts.items():
        print(f"    {k:28s} {ms:8.2f}", flush=True)


PARTS = {"vit_b_view": vit_b_view_figures, "vit_b_open": vit_b_open_figures, "vit_l": vit_l_figures}
MARK = "UI-FIGURES "


def run_part(part: str, ckpt: str, tmp: Path, show_breakdown: bool) -> dict[str, float]:
    """One group of figures in a fresh process (its own memory, and see :func:`_part_main`)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--part", part, ckpt, str(tmp)]
    cmd += ["--breakdown"] if show_breakdown else []
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    out: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            out = json.loads(line[len(MARK):])
        else:
            print(line, flush=True)
    if proc.returncode != 0:
        print(f"  ui part {part} ended with status {proc.returncode}; its figures are missing", flush=True)
    return out


def _part_main(part: str, ckpt: str, tmp: str, show_breakdown: bool) -> None:
    # PySide6 6.12.0 on Python 3.11 drops a reference to None with every call of a void method and to True with
    # every Signal.emit() (6.11.2 does not; from 3.12 on, None and True are immortal): the app aborts after a few
    # hundred view changes ("Fatal Python error: none_dealloc"), and this benchmark makes thousands. Holding a
    # million extra references to each keeps the measuring process alive; it changes no timing. The loss itself
    # is reported as none_refs_lost_per_switch. os._exit, not a normal exit: freeing them could still abort.
    _refs = (None, True, False) * 1_000_000  # noqa: F841 (a tuple of untracked objects: the GC skips it)
    figs = PARTS[part](ckpt, Path(tmp), show_breakdown)
    print(MARK + json.dumps(figs), flush=True)
    os._exit(0)  # _refs is still alive here: nothing ever frees it


def figures(show_breakdown: bool = False) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        vit_b = save_timm("vit_base_patch16_224", tmp / "vit_b16.safetensors")
        out.update(run_part("vit_b_view", vit_b, tmp, show_breakdown))
        out.update(run_part("vit_b_open", vit_b, tmp, show_breakdown))
        Path(vit_b).unlink()
        vit_l = save_timm("vit_large_patch14_dinov2", tmp / "vit_l14_518.safetensors", img_size=518)
        out.update(run_part("vit_l", vit_l, tmp, show_breakdown))
        Path(vit_l).unlink()
        out.update(startup_figures(tmp))
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--part"]:
        _part_main(sys.argv[2], sys.argv[3], sys.argv[4], "--breakdown" in sys.argv[5:])
    for name, value in figures("--breakdown" in sys.argv[1:]).items():
        print(f"{name:32s} {value:10.4f}   goal: {GOALS.get(name, '')}")
