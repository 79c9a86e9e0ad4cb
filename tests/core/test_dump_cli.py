"""`attnviz dump`: the arrays users get for their own analysis, and one-line errors."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from attnviz.cli import main
from attnviz.nets import SwinConfig, ViTConfig, create_net


def _save(tmp_path, cfg, name="m"):
    torch.manual_seed(0)
    net = create_net(cfg).eval()
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return net, str(path)


VIT = ViTConfig(img_size=(48, 48), patch_size=16, embed_dim=128, depth=2, num_heads=2, mlp_hidden_dim=128,
                num_reg_tokens=2, num_classes=1000)
SWIN = SwinConfig(img_size=(224, 224), embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=(7, 7),
                  num_classes=0)


def test_vit_dump_from_tensor_equals_the_network(tmp_path):
    net, model = _save(tmp_path, VIT)
    x = np.random.default_rng(0).standard_normal((3, 64, 80)).astype(np.float32)  # not the trained size
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    assert main(["dump", "--model", model, "--tensor", str(tmp_path / "x.npy"), "--out", str(out),
                 "--device", "cpu"]) == 0
    d = np.load(out)
    meta = json.loads(str(d["meta"]))
    cap = net.capture(torch.from_numpy(x)[None])
    assert meta["family"] == "vit" and meta["img_size"] == [64, 80] and meta["grid_size"] == [4, 5]
    assert meta["num_prefix_tokens"] == 3 and meta["prefix_tokens"] == ["cls", "reg0", "reg1"]
    assert meta["num_heads"] == [2, 2] and meta["patch_size"] == 16
    assert len(meta["class_names"]) == 1000 and meta["class_names"][1].startswith("goldfish")
    assert d["logits"].shape == (1000,) and d["logits"].dtype == np.float32
    np.testing.assert_allclose(d["logits"], cap.logits[0].numpy(), atol=1e-6)
    for i in range(2):
        assert d[f"attn.{i}"].shape == (2, 23, 23)
        np.testing.assert_allclose(d[f"attn.{i}"], cap.blocks[i].attn[0].numpy(), atol=1e-7)
    assert not any(k.startswith("attn_mask") for k in d.files)


def test_swin_dump_from_image_has_masks_and_no_logits(tmp_path):
    _, model = _save(tmp_path, SWIN)
    img = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "out.npz"
    assert main(["dump", "--model", model, "--image", str(img), "--out", str(out), "--device", "cpu"]) == 0
    d = np.load(out)
    meta = json.loads(str(d["meta"]))
    assert "logits" not in d.files and meta["class_names"] is None
    assert meta["window_size"] == [7, 7, 7, 7] and meta["shift_size"] == [0, 3, 0, 3]
    assert meta["stage"] == [0, 0, 1, 1] and meta["num_heads"] == [1, 1, 2, 2]
    assert d["attn.0"].shape == (64, 1, 49, 49) and d["attn.2"].shape == (16, 2, 49, 49)
    assert sorted(k for k in d.files if k.startswith("attn_mask")) == ["attn_mask.1", "attn_mask.3"]
    assert d["attn_mask.1"].shape == (64, 49, 49) and set(np.unique(d["attn_mask.1"])) == {0.0, -100.0}
    np.testing.assert_allclose(d["attn.1"].sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("case", ["missing_model", "bad_model", "bad_tensor_shape", "pickled_tensor",
                                  "missing_image", "bad_device", "bad_dtype", "no_out_folder", "tiny_tensor",
                                  "out_is_a_folder", "out_folder_is_a_file", "npz_as_tensor", "png_as_tensor"])
def test_errors_are_one_line_exit_1_and_write_nothing(tmp_path, case):
    _, model = _save(tmp_path, VIT)
    good = tmp_path / "x.npy"
    np.save(good, np.zeros((3, 48, 48), np.float32))
    out = tmp_path / "out.npz"
    args = {"model": model, "tensor": str(good), "out": str(out)}
    extra = []
    if case == "missing_model":
        args["model"] = str(tmp_path / "nope.safetensors")
    elif case == "bad_model":
        (tmp_path / "bad.pth").write_bytes(b"\x80\x04garbage")
        args["model"] = str(tmp_path / "bad.pth")
    elif case == "bad_tensor_shape":
        np.save(good, np.zeros((48, 48, 3), np.float32))
    elif case == "pickled_tensor":
        np.save(good, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif case == "missing_image":
        del args["tensor"]
        args["image"] = str(tmp_path / "none.png")
    elif case == "bad_device":
        extra = ["--device", "tpu"]
    elif case == "bad_dtype":
        extra = ["--dtype", "fp8"]
    elif case == "no_out_folder":
        args["out"] = str(tmp_path / "no" / "such" / "out.npz")
    elif case == "tiny_tensor":
        np.save(good, np.zeros((3, 8, 8), np.float32))
    elif case == "npz_as_tensor":
        np.savez(tmp_path / "x.npz", x=np.zeros((3, 48, 48), np.float32))
        args["tensor"] = str(tmp_path / "x.npz")
    elif case == "png_as_tensor":
        Image.new("RGB", (48, 48)).save(tmp_path / "x.png")
        args["tensor"] = str(tmp_path / "x.png")
    elif case == "out_is_a_folder":
        (tmp_path / "results").mkdir()
        args["out"] = str(tmp_path / "results")
    elif case == "out_folder_is_a_file":
        (tmp_path / "notes.txt").write_text("x")
        args["out"] = str(tmp_path / "notes.txt" / "out.npz")
    argv = ["dump"] + [f"--{k}={v}" for k, v in args.items()] + extra
    proc = subprocess.run([sys.executable, "-m", "attnviz", *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnviz: error:"), proc.stderr
    assert "Traceback" not in proc.stderr and "Errno" not in proc.stderr
    assert not out.exists() and not list(tmp_path.rglob(".attnviz-*"))
    said = {"out_is_a_folder": "results is a folder; give a file name",
            "out_folder_is_a_file": "notes.txt is a file, not a folder",
            "no_out_folder": "does not exist",
            "npz_as_tensor": "an .npz archive", "png_as_tensor": "not a .npy file",
            "pickled_tensor": "never loads"}
    assert said.get(case, "") in lines[0]


def test_written_arrays_follow_the_umask_and_unwritable_folders_say_so(tmp_path, monkeypatch):
    from attnviz.export import arrays

    old = os.umask(0o027)
    try:
        arrays.write_npz(tmp_path / "a.npz", {"x": np.zeros(3)})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.npz").stat().st_mode) == 0o640
    monkeypatch.setattr(arrays.os, "access", lambda *a, **k: False)  # (root may write anywhere)
    with pytest.raises(OSError, match="no permission to write in folder"):
        arrays.write_npz(tmp_path / "b.npz", {"x": np.zeros(3)})
    assert not (tmp_path / "b.npz").exists()


def test_analysis_arrays_equal_the_library_on_the_same_capture(tmp_path):
    from attnviz.analysis import attention_flow, flow_map, head_stats, image_attentions, rollout_row
    from attnviz.analysis.pos_embed import vit_position_similarity

    net, model = _save(tmp_path, VIT)
    x = np.random.default_rng(3).standard_normal((3, 48, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "a.npz"
    assert main(["dump", "--model", model, "--tensor", str(tmp_path / "x.npy"), "--out", str(out),
                 "--device", "cpu", "--analysis"]) == 0
    d = np.load(out)
    cap = net.capture(torch.from_numpy(x)[None])
    attns = image_attentions(cap, 0)
    assert d["rollout"].shape == d["flow"].shape == (3, 4)
    np.testing.assert_allclose(d["rollout"], rollout_row(attns, 0, num_prefix_tokens=3)[3:].reshape(3, 4),
                               atol=1e-6)
    np.testing.assert_allclose(d["flow"], flow_map(attention_flow(attns, 0, num_prefix_tokens=3), 3, (3, 4)),
                               atol=1e-6)
    assert 0 < d["flow"].sum() <= 1 + 1e-6
    st = head_stats(cap, 0)
    np.testing.assert_allclose(d["mean_attention_distance"], st.mean_distance, atol=1e-5)
    np.testing.assert_allclose(d["attention_entropy"], st.entropy, atol=1e-5)
    assert d["mean_attention_distance"].shape == (2, 2)
    sim = d["pos_embed_similarity"]
    assert sim.shape == (3, 4, 3, 4)
    np.testing.assert_allclose(sim, vit_position_similarity(net, (3, 4)).numpy(), atol=1e-6)
    np.testing.assert_allclose(np.einsum("ijij->ij", sim), 1.0, atol=1e-5)  # every embedding is itself


def test_swin_analysis_pads_heads_with_nan(tmp_path):
    _, model = _save(tmp_path, SWIN)
    np.save(tmp_path / "x.npy", np.random.default_rng(4).standard_normal((3, 224, 224)).astype(np.float32))
    out = tmp_path / "s.npz"
    assert main(["dump", "--model", model, "--tensor", str(tmp_path / "x.npy"), "--out", str(out),
                 "--device", "cpu", "--analysis"]) == 0
    d = np.load(out)
    mad = d["mean_attention_distance"]
    assert mad.shape == (4, 2) and np.isnan(mad[:2, 1]).all() and np.isfinite(mad[2:]).all()
    assert "rollout" not in d.files and "pos_embed_similarity" not in d.files


def test_dump_scramble_no_pos_embed_writes_the_permutation_it_applied(tmp_path):
    from attnviz.analysis.scramble import apply_to_image, random_permutation

    net, model = _save(tmp_path, VIT)
    x = np.random.default_rng(5).standard_normal((3, 48, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "s.npz"
    proc = subprocess.run([sys.executable, "-m", "attnviz", "dump", "--model", model, "--tensor",
                           str(tmp_path / "x.npy"), "--out", str(out), "--device", "cpu", "--scramble", "random:3",
                           "--no-pos-embed"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    d = np.load(out)
    perm = random_permutation((3, 4), 3)
    assert d["permutation"].dtype == np.int64
    np.testing.assert_array_equal(d["permutation"], perm.numpy())
    meta = json.loads(str(d["meta"]))
    assert meta["use_pos_embed"] is False and meta["scramble"] == "random:3"
    cap = net.capture(apply_to_image(torch.from_numpy(x)[None], perm, 16, layout="chw"), use_pos_embed=False)
    np.testing.assert_allclose(d["logits"], cap.logits[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(d["attn.1"], cap.blocks[1].attn[0].numpy(), atol=1e-6)
    with_pe = net.capture(apply_to_image(torch.from_numpy(x)[None], perm, 16, layout="chw"))
    assert np.abs(with_pe.logits[0].numpy() - d["logits"]).max() > 1e-4  # the embedding really was left out


@pytest.mark.parametrize("spec, model_cfg, said", [
    ("shuffle:1", VIT, "use random:SEED"),
    ("random:x", VIT, "is not a whole number"),
    ("swap:0,0:9,9", VIT, "outside the 3x4 grid"),
    ("reverse", SWIN, "Swin has no absolute position embedding"),
])
def test_bad_scramble_or_no_pos_embed_on_swin_is_one_line_exit_1(tmp_path, spec, model_cfg, said):
    _, model = _save(tmp_path, model_cfg)
    size = (48, 64) if model_cfg is VIT else (224, 224)
    np.save(tmp_path / "x.npy", np.zeros((3, *size), np.float32))
    out = tmp_path / "out.npz"
    extra = ["--no-pos-embed"] if model_cfg is SWIN else []
    proc = subprocess.run([sys.executable, "-m", "attnviz", "dump", "--model", model, "--tensor",
                           str(tmp_path / "x.npy"), "--out", str(out), "--device", "cpu", "--scramble", spec, *extra],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnviz: error:") and said in lines[0], proc.stderr
    assert not out.exists()


def test_dump_scramble_on_swin_moves_stage_zero_patches(tmp_path):
    from attnviz.analysis.scramble import apply_to_image, window_permutation

    net, model = _save(tmp_path, SWIN)
    x = np.random.default_rng(6).standard_normal((3, 224, 224)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "w.npz"
    assert main(["dump", "--model", model, "--tensor", str(tmp_path / "x.npy"), "--out", str(out),
                 "--device", "cpu", "--scramble", "window:1"]) == 0
    d = np.load(out)
    perm = window_permutation((56, 56), 7, 1)  # the model's own 7×7 window on the 4-pixel patch grid
    np.testing.assert_array_equal(d["permutation"], perm.numpy())
    cap = net.capture(apply_to_image(torch.from_numpy(x)[None], perm, 4, layout="chw"))
    np.testing.assert_allclose(d["attn.0"], cap.blocks[0].attn[0].numpy(), atol=1e-6)


def test_dump_says_what_it_wrote(tmp_path):
    """On success dump names the file it wrote on stdout (and only there: stderr stays empty)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "d.npz"
    r = subprocess.run([sys.executable, "-m", "attnviz", "dump", "--model", str(root / "models" / "faces-vit.safetensors"),
                        "--image", str(root / "assets" / "images" / "face-01.png"), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.exists() and r.stdout.startswith(f"wrote {out} (") and r.stderr == ""
