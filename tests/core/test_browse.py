"""The model browser's listing and descriptions (attnviz.checkpoints.browse), without Qt.

Planted on disk in tmp_path: a Hugging Face cache in huggingface_hub's own layout (blobs, snapshot
symlinks, refs/main) holding a transformers ViT saved by save_pretrained, a torch hub download, and
a user folder with a timm safetensors file, a Swin one level down, a model folder, a broken file and
a Trainer's optimizer.pt. Every check reads what load_checkpoint would detect, from shapes only.
"""
from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from attnviz.checkpoints import browse, load_checkpoint
from attnviz.checkpoints.browse import Entry, Problem, cache_roots, describe, find_checkpoints, human_size
from attnviz.nets import SwinConfig, ViTConfig, create_net

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO / "models"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

_ENV = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "TORCH_HOME")


@pytest.fixture(autouse=True)
def _no_real_caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Never list the machine's own caches: every root points into tmp_path unless a test sets it."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _save(net: torch.nn.Module, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def _tiny_vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_net(ViTConfig(img_size=(32, 32), patch_size=16, embed_dim=192, depth=2, num_heads=3,
                                mlp_hidden_dim=384, num_classes=5))


def _tiny_swin() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_net(SwinConfig(version=1, img_size=(64, 64), embed_dim=24, depths=(2, 2), num_heads=(2, 4),
                                 window_size=(4, 4), num_classes=3))


def plant_hf_repo(cache: Path, repo_id: str, files: Path) -> Path:
    """Lay ``files`` (a saved model folder) out as huggingface_hub does: content-addressed blobs,
    a snapshot of relative symlinks to them, refs/main naming the snapshot (no newline)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for f in sorted(files.iterdir()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    return repo


def _hf_vit(folder: Path) -> Path:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                 image_size=32, patch_size=8, num_labels=3)
    transformers.ViTForImageClassification(cfg).save_pretrained(folder)
    return folder


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    hf_cache = tmp_path / "hf" / "hub"
    repo = plant_hf_repo(hf_cache, "someone/tiny-vit", _hf_vit(tmp_path / "saved_vit"))
    # A dataset repo sits in the same cache; it holds no checkpoint and is not listed.
    (hf_cache / "datasets--someone--images" / "snapshots" / COMMIT).mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))

    torch_home = tmp_path / "torch"
    hub_file = torch_home / "hub" / "checkpoints" / "vit_tiny-1234abcd.pth"
    hub_file.parent.mkdir(parents=True)
    torch.save({"model": _tiny_vit().state_dict(), "epoch": 3}, hub_file)  # a training-style wrapper
    monkeypatch.setenv("TORCH_HOME", str(torch_home))

    user = tmp_path / "user"
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    timm_file = _save(timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, img_size=64),
                      user / "vit_tiny_timm.safetensors")
    swin_file = _save(_tiny_swin(), user / "runs" / "swin.safetensors")
    _save(_tiny_swin(), user / "a" / "b" / "c" / "too_deep.safetensors")  # three levels down: not searched
    broken = user / "broken.pth"
    broken.write_bytes(b"this is not a checkpoint" * 4)
    torch.save({"state": {}}, user / "optimizer.pt")
    (user / "notes.txt").write_text("not weights")
    model_folder = _hf_vit(user / "checkpoint-500")
    torch.save({"state": {}}, model_folder / "optimizer.pt")  # a Trainer folder's optimizer state
    return {"repo": repo, "hf_cache": hf_cache, "hub_file": hub_file, "user": user, "timm_file": timm_file,
            "swin_file": swin_file, "broken": broken, "model_folder": model_folder}


# --- where the caches are ------------------------------------------------------------------


def test_cache_roots_follow_the_environment_like_huggingface_hub_and_torch(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    assert cache_roots() == [("Hugging Face cache", home / ".cache" / "huggingface" / "hub"),
                             ("Torch hub cache", home / ".cache" / "torch" / "hub" / "checkpoints")]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert [p for _, p in cache_roots()] == [tmp_path / "xdg" / "huggingface" / "hub",
                                             tmp_path / "xdg" / "torch" / "hub" / "checkpoints"]
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert [p for _, p in cache_roots()] == [tmp_path / "hfhome" / "hub", tmp_path / "th" / "hub" / "checkpoints"]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hubcache"))
    assert cache_roots()[0][1] == tmp_path / "hubcache"


def test_nothing_there_lists_nothing_and_raises_nothing(tmp_path) -> None:
    assert find_checkpoints(tmp_path / "no-demo", []) == []


# --- listing -------------------------------------------------------------------------------


def test_every_origin_is_listed_with_its_size(planted) -> None:
    problems: list[Problem] = []
    entries = find_checkpoints(DEMO_DIR, [planted["user"]], problems)
    assert problems == []
    by_path = {e.path: e for e in entries}

    demo = [e for e in entries if e.origin == "demo"]
    assert sorted(e.name for e in demo) == ["faces-swin.safetensors", "faces-swinv2.safetensors",
                                            "faces-vit-nope.safetensors", "faces-vit.safetensors"]
    assert all(e.size_bytes == e.path.stat().st_size for e in demo)

    hf = [e for e in entries if e.origin == "hf-cache"]
    assert [(e.name, e.path) for e in hf] == [("someone/tiny-vit", planted["repo"])]  # the dataset repo is not
    blobs = sum(p.stat().st_size for p in (planted["repo"] / "blobs").iterdir())
    assert hf[0].size_bytes == blobs > 0

    hub = [e for e in entries if e.origin == "torch-hub"]
    assert [e.path for e in hub] == [planted["hub_file"]]
    assert hub[0].size_bytes == planted["hub_file"].stat().st_size

    user = {e.name: e for e in entries if e.origin == "folder"}
    assert sorted(user) == ["broken.pth", "checkpoint-500", "runs/swin.safetensors", "vit_tiny_timm.safetensors"]
    assert all(e.root == planted["user"] for e in user.values())
    folder = planted["model_folder"]
    assert user["checkpoint-500"].path == folder
    # The model folder's size is its weights and configs, not the optimizer state beside them.
    assert user["checkpoint-500"].size_bytes == sum(
        (folder / n).stat().st_size for n in ("model.safetensors", "config.json"))
    assert by_path[planted["timm_file"]].size_bytes == planted["timm_file"].stat().st_size
    # Order: demo, Hugging Face cache, torch hub, user folders.
    origins = [e.origin for e in entries]
    assert origins == sorted(origins, key=["demo", "hf-cache", "torch-hub", "folder"].index)


def test_a_user_folder_may_be_a_hugging_face_cache(tmp_path) -> None:
    repo = plant_hf_repo(tmp_path / "mine", "org/vit", _hf_vit(tmp_path / "saved"))
    (entry,) = find_checkpoints(None, [tmp_path / "mine"])
    assert (entry.path, entry.name, entry.origin) == (repo, "org/vit", "folder")
    assert describe(entry).family == "vit"


def test_a_vanished_user_folder_is_a_problem_not_an_error(tmp_path) -> None:
    problems: list[Problem] = []
    (tmp_path / "afile").write_text("x")
    assert find_checkpoints(None, [tmp_path / "gone", tmp_path / "afile"], problems) == []
    assert problems == [Problem(tmp_path / "gone", "folder not found"), Problem(tmp_path / "afile", "not a folder")]


# --- describing ----------------------------------------------------------------------------


def test_descriptions_match_what_the_loader_builds(planted) -> None:
    entries = {e.path: e for e in find_checkpoints(DEMO_DIR, [planted["user"]])}
    expected = {
        planted["repo"]: ("vit", "ViT/8 · 64 dim · 2 blocks · 4 heads · 32 px", "transformers"),
        planted["hub_file"]: ("vit", "ViT-Ti/16 · 2 blocks · 3 heads · 32 px", "timm"),
        planted["timm_file"]: ("vit", "ViT-Ti/16 · 2 blocks · 3 heads · 64 px", "timm"),
        # A bare Swin file: the bias tables fix the window, nothing fixes the input size; the loader takes 224.
        planted["swin_file"]: ("swin", "Swin v1 · 24 dim · depths 2-2 · window 4 · 224 px", "timm"),
        planted["model_folder"]: ("vit", "ViT/8 · 64 dim · 2 blocks · 4 heads · 32 px", "transformers"),
        DEMO_DIR / "faces-swin.safetensors": ("swin", "Swin v1 · 24 dim · depths 2-2-2 · window 4 · 64 px", "timm"),
    }
    for path, (family, arch, fmt) in expected.items():
        d = describe(entries[path])
        assert (d.family, d.architecture, d.source_format, d.error) == (family, arch, fmt, None), path
        info, _ = load_checkpoint(path)  # the same detection, with the weights
        assert (info.family, info.source_format) == (family, fmt)
        assert browse.architecture_text(info) == arch


def test_a_broken_file_gives_an_error_line(planted) -> None:
    d = describe(Entry(planted["broken"], "folder", "broken.pth", 0))
    assert d.family is None and d.architecture == ""
    assert d.error and "\n" not in d.error and "not a recognised weights file" in d.error


def test_describe_never_raises(tmp_path) -> None:
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "truncated.safetensors").write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    save_file({"x": torch.zeros(3)}, str(tmp_path / "unknown.safetensors"))
    for name, words in (("missing.pth", "no such file"), ("empty.safetensors", "empty"),
                        ("truncated.safetensors", "damaged"), ("unknown.safetensors", "fit none")):
        d = describe(tmp_path / name)
        assert d.error and words in d.error, (name, d)


def test_an_unsupported_transformers_model_is_named_without_reading_its_weights(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    save_file({"x": torch.zeros(3)}, str(folder / "model.safetensors"))
    monkeypatch.setattr(browse, "_shape_state_dict", lambda p: pytest.fail("read the weights"))
    d = describe(folder)
    assert d.family is None and "'bert' is not supported" in d.error


def test_weights_are_not_read_to_describe(planted, monkeypatch) -> None:
    """safetensors headers and memory-mapped zip .pth files are enough: the full reader is never called."""
    monkeypatch.setattr(browse, "read_state_dict", lambda p: pytest.fail(f"read {p} whole"))
    for path in (planted["timm_file"], planted["hub_file"], planted["repo"]):
        assert describe(path).error is None


def test_an_old_format_pth_is_read_whole_only_when_small(tmp_path, monkeypatch) -> None:
    path = tmp_path / "legacy.pth"
    torch.save(_tiny_vit().state_dict(), path, _use_new_zipfile_serialization=False)
    assert describe(path).architecture == "ViT-Ti/16 · 2 blocks · 3 heads · 32 px"
    monkeypatch.setattr(browse, "MAX_FULL_READ", 1000)
    d = describe(path)
    assert d.family is None and "cannot be inspected without reading it whole" in d.error


def test_a_training_checkpoint_with_its_arguments_is_described(tmp_path) -> None:
    path = tmp_path / "deit_run.pth"
    torch.save({"model": _tiny_vit().state_dict(), "args": argparse.Namespace(lr=1e-3)}, path)
    d = describe(path)
    assert (d.family, d.architecture, d.error) == ("vit", "ViT-Ti/16 · 2 blocks · 3 heads · 32 px", None)


def test_code_in_a_pickle_is_never_run(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": _tiny_vit().state_dict(), "args": Path("/x")}, path)  # PosixPath needs a global
    d = describe(path)
    assert d.family is None and "refused" in d.error


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 86_567_000, 1_234_567_890)] == [
        "0 B", "999 B", "1.0 kB", "86.6 MB", "1.2 GB"]
