"""``attnviz export`` without Qt (.npz and .json outputs), the view file, and how writing fails safely."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest

from attnviz.export import command
from attnviz.export.arrays import capture_meta
from attnviz.export.view_file import ViewFile
from attnviz.export.writing import write_atomic
from attnviz.session.query import Patch

ROOT = Path(__file__).resolve().parents[2]
VIT = str(ROOT / "models/faces-vit.safetensors")
SWIN = str(ROOT / "models/faces-swin.safetensors")
IMAGE = str(ROOT / "assets/images/face-03.png")


def export(*argv: str) -> int:
    return command.main(list(argv))


def test_npz_of_a_view_with_its_meta(tmp_path):
    out = tmp_path / "o.npz"
    assert export("--model", VIT, "--image", IMAGE, "--view", "overlay", "--block", "2", "--head", "1",
                  "--query", "4,2", "--out", str(out)) == 0
    a = np.load(out)
    assert set(a.files) == {"map", "meta"}
    meta = json.loads(str(a["meta"]))
    assert meta["state"]["block"] == 2 and meta["state"]["head"] == 1 and meta["state"]["query"] == "4,2"
    assert meta["geometry"]["family"] == "vit"
    # the same arrays as the analysis of that state (the app's product, independently run)
    from attnviz.analysis.query import query_attention, token_index
    from attnviz.export.command import _prepare
    from attnviz.model import load_model

    m = load_model(VIT, device="cpu")
    x, _ = _prepare(IMAGE, m)
    cap = m.capture(x)
    tok = token_index(4, 2, tuple(cap.grid_size), cap.num_prefix_tokens)
    np.testing.assert_allclose(a["map"], query_attention(cap.blocks[2].attn[0], tok, cap.num_prefix_tokens,
                                                          tuple(cap.grid_size))[1], rtol=1e-6)
    assert meta["geometry"] == json.loads(json.dumps(capture_meta(cap, m.info)))


def test_json_state_drives_the_cli_to_the_same_arrays(tmp_path):
    state = tmp_path / "view.json"
    assert export("--model", SWIN, "--image", IMAGE, "--block", "3", "--head", "max", "--query", "7,9",
                  "--out", str(state)) == 0
    d = json.loads(state.read_text())
    assert d["block"] == 3 and d["head"] == "max" and d["query"] == "7,9" and d["attnviz_view"] == 1
    direct, via = tmp_path / "direct.npz", tmp_path / "via.npz"
    assert export("--model", SWIN, "--image", IMAGE, "--view", "figure", "--block", "3", "--head", "max",
                  "--query", "7,9", "--out", str(direct)) == 0
    assert export("--state", str(state), "--view", "figure", "--out", str(via)) == 0
    a, b = np.load(direct), np.load(via)
    assert set(a.files) == set(b.files) and "windows.window_index" in a.files
    for k in a.files:
        if k != "meta":
            np.testing.assert_array_equal(a[k], b[k])
    # the view file moves with its folder: paths are stored relative where they can be
    vf = ViewFile.load(state)
    assert Path(vf.model).resolve() == Path(SWIN).resolve()


def test_existing_file_needs_force_and_failures_leave_nothing(tmp_path, capsys):
    out = tmp_path / "o.npz"
    out.write_bytes(b"old")
    assert export("--model", VIT, "--image", IMAGE, "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and "--force" in err and "Traceback" not in err
    assert out.read_bytes() == b"old"
    assert export("--model", VIT, "--image", IMAGE, "--out", str(out), "--force") == 0
    assert np.load(out)["map"].ndim == 2
    # a view that does not apply: one line naming the file, nothing written
    bad = tmp_path / "w.npz"
    assert export("--model", VIT, "--image", IMAGE, "--view", "windows", "--out", str(bad)) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "Swin" in err and err.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["o.npz"]


@pytest.mark.parametrize("extra, out, words", [
    (["--block", "99"], "o.npz", "block 99 does not exist"),
    (["--head", "17"], "o.npz", "head 17 does not exist"),
    (["--query", "40,1"], "o.npz", "outside the"),
    (["--query", "x"], "o.npz", "neither"),
    (["--class", "99"], "o.npz", "class 99"),
    ([], "no/such/dir/o.npz", "does not exist"),
    ([], "o.txt", "unknown format"),
])
def test_bad_requests_are_one_line(tmp_path, capsys, extra, out, words):
    assert export("--model", VIT, "--image", IMAGE, "--out", str(tmp_path / out), *extra) == 1
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_folder_of_images_lists_the_unreadable(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("face-01.png", "none-02.png", "scrambled-01.png"):
        (src / name).write_bytes((ROOT / "assets/images" / name).read_bytes())
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    rc = export("--model", VIT, "--images", str(src), "--view", "heads", "--format", "npz", "--batch-size", "2",
                "--out", str(out))
    assert rc == 1
    err = capsys.readouterr().err
    assert "1 of 4 images" in err and "notes.txt" in err
    assert sorted(p.name for p in out.iterdir()) == ["face-01.npz", "none-02.npz", "scrambled-01.npz"]
    # each output equals that image exported alone (batching changes nothing)
    one = tmp_path / "one.npz"
    assert export("--model", VIT, "--image", str(src / "none-02.png"), "--view", "heads", "--out", str(one)) == 0
    np.testing.assert_allclose(np.load(out / "none-02.npz")["maps"], np.load(one)["maps"], atol=1e-5)


def test_write_atomic_removes_the_temporary_file(tmp_path):
    target = tmp_path / "f.png"

    def broken(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_atomic(target, broken)
    assert list(tmp_path.iterdir()) == []


def test_view_file_validates(tmp_path):
    p = tmp_path / "v.json"
    p.write_text(json.dumps({"attnviz_view": 1, "model": "m", "image": "i", "colormap": "rainbow"}))
    with pytest.raises(ValueError, match="colormap"):
        ViewFile.load(p)
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ViewFile.load(p)
    p.write_text(json.dumps({"model": "m"}))
    with pytest.raises(ValueError, match="not an attnviz view"):
        ViewFile.load(p)
    vf = ViewFile(model=VIT, image=IMAGE, block=1, head=2, query="1,2", method="flow", class_idx=3)
    vf.save(p, force=True)
    back = ViewFile.load(p)
    assert back.view_fields() == vf.view_fields()
    assert back.view_fields()["query"] == Patch(1, 2)


def test_parser_plugs_into_a_cli():
    parser = argparse.ArgumentParser(prog="attnviz")
    sub = parser.add_subparsers(dest="command")
    command.add_parser(sub)
    args = parser.parse_args(["export", "--model", "m", "--image", "i", "--view", "flow", "--out", "o.png"])
    assert args.func is command.run and args.view == "flow"


def test_open_view_switches_model_and_image_then_sets_the_view():
    from attnviz.export.view_file import open_view
    from attnviz.session import Session, Worker

    s = Session(Worker(synchronous=True), device="cpu")
    s.open_model(VIT)
    s.open_image(IMAGE)
    other = str(ROOT / "assets/images/none-01.png")
    vf = ViewFile(model=SWIN, image=other, block=5, head=1, query="3,3", method="rollout", colormap="magma")
    open_view(s, vf)
    assert s.last_error is None
    assert Path(s.doc.model_path) == Path(SWIN) and Path(s.doc.image_path) == Path(other)
    v = s.view
    assert (v.block, v.head, v.query, v.method, v.colormap) == (5, 1, Patch(3, 3), "rollout", "magma")
    # a view the model cannot show is reported, not clamped
    open_view(s, ViewFile(model=SWIN, image=other, block=50))
    assert "block 50 does not exist" in s.last_error and v.block == 5


def test_folder_with_a_view_the_model_lacks_stops_at_once(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("face-01.png", "face-02.png"):
        (src / name).write_bytes((ROOT / "assets/images" / name).read_bytes())
    assert export("--model", VIT, "--images", str(src), "--view", "windows", "--format", "npz",
                  "--out", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not apply" in err and "Swin" in err
    assert not (tmp_path / "out").exists()


def test_cli_keeps_the_scramble_settings_of_a_view(tmp_path):
    first = tmp_path / "a.json"
    ViewFile(model=VIT, image=IMAGE, block=1, scramble={"kind": "random", "seed": 3, "window": None, "swaps": [],
                                                       "show_original": False}).save(first)
    again = tmp_path / "b.json"
    assert export("--state", str(first), "--out", str(again)) == 0
    a, b = json.loads(first.read_text()), json.loads(again.read_text())
    assert b["scramble"]["kind"] == "random" and b["scramble"]["seed"] == 3
    assert {k: v for k, v in a.items()} == {k: v for k, v in b.items()}


def test_folder_batches_stay_within_the_capture_memory_budget(tmp_path, monkeypatch):
    """A batch holds every block's attention in CPU memory: a model whose capture is large runs fewer images
    per forward than --batch-size asks (here a budget of 2.5 images' captures: batches of 2)."""
    from attnviz import model as model_module
    from attnviz.nets import capture_bytes_per_image
    from attnviz.session import folder_stats

    src = tmp_path / "in"
    src.mkdir()
    for name in ("face-01.png", "face-02.png", "none-01.png", "none-02.png", "scrambled-01.png"):
        (src / name).write_bytes((ROOT / "assets/images" / name).read_bytes())
    per_image = capture_bytes_per_image(model_module.load_model(VIT, device="cpu").net, (64, 64))
    monkeypatch.setattr(folder_stats, "CAPTURE_BUDGET", int(2.5 * per_image))
    sizes = []
    real = model_module.LoadedModel.capture

    def counting(self, x, *a, **k):
        sizes.append(int(x.shape[0]) if x.ndim == 4 else 1)
        return real(self, x, *a, **k)

    monkeypatch.setattr(model_module.LoadedModel, "capture", counting)
    assert export("--model", VIT, "--images", str(src), "--view", "heads", "--format", "npz", "--batch-size", "8",
                  "--out", str(tmp_path / "out")) == 0
    assert sizes == [2, 2, 1]
    assert len(list((tmp_path / "out").iterdir())) == 5
