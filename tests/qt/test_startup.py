"""Start-up: the light window first, the timing hook (ATTNVIZ_TIMING) the benchmark reads, bad command-line
paths said on stderr and in the window, results of the early model load held until the window exists."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

ROOT = Path(__file__).resolve().parents[2]


def _start(tmp_path, *args: str, timeout: float = 180) -> tuple[subprocess.CompletedProcess, dict]:
    """``python -m attnviz ARGS`` offscreen with its own settings folder; its ATTNVIZ_TIMING marks."""
    out = tmp_path / "timing.json"
    env = dict(os.environ, ATTNVIZ_TIMING=str(out), QT_QPA_PLATFORM="offscreen",
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    proc = subprocess.run([sys.executable, "-m", "attnviz", *args], cwd=ROOT, env=env, timeout=timeout,
                          capture_output=True, text=True)
    return proc, json.loads(out.read_text()) if out.exists() else {}


@pytest.mark.skipif(not (ROOT / "models" / "faces-vit.safetensors").exists(), reason="demo model not shipped")
def test_timing_hook_writes_window_and_first_map_then_quits(tmp_path):
    proc, marks = _start(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "error" not in marks
    # every mark is seconds since the process started, in the order things happen
    assert 0 < marks["window_s"] < marks["imports_s"] < marks["main_window_s"] <= marks["first_map_s"] < 120


def test_bad_path_on_the_command_line_is_said_on_stderr_and_in_the_window(tmp_path):
    missing = tmp_path / "nope.png"
    proc, marks = _start(tmp_path, "--image", str(missing))
    line = f"attnviz: image {missing}: no such file or folder"
    assert line in proc.stderr.splitlines()
    assert proc.returncode == 1  # the hook quits with status 1 on the first error the window reports
    assert marks["error"] == f"image {missing}: no such file or folder"
    assert marks["window_s"] > 0


def test_process_age_counts_from_the_process_start():
    from attnviz.qt.startup import process_age

    age = process_age()
    assert 0 < age < 3600  # this pytest process started a while ago, not at boot


def test_splash_lists_problems_and_failure(qtbot):
    from attnviz.qt.startup import Splash

    s = Splash(["model m.pt: no such file or folder"])
    qtbot.addWidget(s)
    s.show()
    assert s.problems.isVisible() and "m.pt" in s.problems.text()
    ran = []
    s.first_paint.append(lambda: ran.append(1))
    s.repaint()
    qtbot.waitUntil(lambda: ran == [1])
    s.failed("could not start: ImportError: no torch")
    assert not s.bar.isVisible() and "no torch" in s.status.text()


def test_held_deliver_keeps_order_and_waits_for_release(qtbot):
    from attnviz.qt.startup import HeldDeliver

    got: list[int] = []
    held = HeldDeliver()
    held(lambda: got.append(1))
    held(lambda: got.append(2))
    qtbot.wait(20)
    assert got == []  # nothing reaches the GUI before the window exists
    held.release()
    held(lambda: got.append(3))
    qtbot.waitUntil(lambda: got == [1, 2, 3])
