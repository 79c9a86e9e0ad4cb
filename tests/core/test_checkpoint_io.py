"""Reading weights files safely and finding a checkpoint's files (attnviz.checkpoints.io / discover)."""
from __future__ import annotations

import argparse
import json
import os
import pickle
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from attnviz.checkpoints.discover import discover
from attnviz.checkpoints.errors import CheckpointError
from attnviz.checkpoints.io import read_state_dict, sniff_format
from attnviz.data import imagenet_class_names


def _sd(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"patch_embed.proj.weight": torch.randn(8, 3, 4, 4, generator=g), "norm.bias": torch.randn(8, generator=g)}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)


# --- reading -------------------------------------------------------------------------------


def test_safetensors_is_read(tmp_path: Path) -> None:
    sd = _sd()
    save_file(sd, tmp_path / "w.safetensors")
    _same(read_state_dict(tmp_path / "w.safetensors"), sd)


def test_safetensors_is_recognised_by_content_not_extension(tmp_path: Path) -> None:
    sd = _sd()
    save_file(sd, tmp_path / "weights.bin")
    assert sniff_format(tmp_path / "weights.bin") == "safetensors"
    _same(read_state_dict(tmp_path / "weights.bin"), sd)


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_files_are_read(tmp_path: Path, legacy: bool) -> None:
    sd = _sd()
    torch.save(sd, tmp_path / "w.pth", _use_new_zipfile_serialization=not legacy)
    assert sniff_format(tmp_path / "w.pth") == ("torch-pickle" if legacy else "torch-zip")
    _same(read_state_dict(tmp_path / "w.pth"), sd)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"model": sd, "epoch": 3},
        lambda sd: {"state_dict": sd, "optimizer": {"state": {}}, "args": argparse.Namespace(lr=0.1, name="x")},
        lambda sd: {"model_ema": sd},
        lambda sd: {"module." + k: v for k, v in sd.items()},
        lambda sd: {"model": {"module." + k: v for k, v in sd.items()}},
        lambda sd: {"state_dict": {"model." + k: v for k, v in sd.items()}, "global_step": 10},  # Lightning
        lambda sd: {"model": {"_orig_mod." + k: v for k, v in sd.items()}},  # torch.compile
    ],
    ids=["model", "state_dict+Namespace", "model_ema", "module.", "model+module.", "lightning", "compiled"],
)
def test_wrappers_are_removed(tmp_path: Path, wrap) -> None:
    sd = _sd()
    torch.save(wrap(sd), tmp_path / "ckpt.pth")
    _same(read_state_dict(tmp_path / "ckpt.pth"), sd)


def test_dino_training_checkpoint_gives_teacher_backbone(tmp_path: Path) -> None:
    teacher, student = _sd(1), _sd(2)
    head = {"head.mlp.0.weight": torch.ones(4, 8), "head.last_layer.weight_g": torch.ones(1, 4)}
    ckpt = {
        "student": {**{"module.backbone." + k: v for k, v in student.items()},
                    **{"module." + k: v for k, v in head.items()}},
        "teacher": {**{"backbone." + k: v for k, v in teacher.items()}, **head},
        "epoch": 100,
        "args": argparse.Namespace(arch="vit_small", patch_size=16),
        "dino_loss": {"center": torch.zeros(1, 4)},
    }
    torch.save(ckpt, tmp_path / "checkpoint.pth")
    _same(read_state_dict(tmp_path / "checkpoint.pth"), teacher)


def test_sharded_index_merges_shards(tmp_path: Path) -> None:
    sd = _sd()
    keys = sorted(sd)
    save_file({keys[0]: sd[keys[0]]}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({keys[1]: sd[keys[1]]}, tmp_path / "model-00002-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {keys[0]: "model-00001-of-00002.safetensors",
                                            keys[1]: "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    _same(read_state_dict(tmp_path / "model.safetensors.index.json"), sd)
    # choosing one shard reads all of them through the index
    _same(read_state_dict(discover(tmp_path / "model-00002-of-00002.safetensors").weights), sd)


# --- never running code from a file ----------------------------------------------------------


class _Payload:
    """Unpickling this calls open(marker, 'w'), creating the marker file: a stand-in for an attack."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("container", ["torch-zip", "plain-pickle-v2", "plain-pickle-v4"])
def test_code_in_a_pickle_is_refused_and_not_run(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "MARKER"
    payload = _Payload(marker)
    obj = {"model": {"w": torch.zeros(2)}, "extra": payload}
    # the payload does what it claims when unpickled without restrictions
    pickle.loads(pickle.dumps(payload)).close()
    assert marker.exists()
    marker.unlink()

    path = tmp_path / "evil.pth"
    if container == "torch-zip":
        torch.save(obj, path)
    else:  # no tensors here: plain pickle stores them through functions torch refuses too
        with open(path, "wb") as f:
            pickle.dump({"extra": payload}, f, protocol=2 if container.endswith("v2") else 4)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(path)
    assert not marker.exists()
    msg = str(err.value)
    assert "evil.pth" in msg
    if container != "plain-pickle-v4":  # protocol 4 is refused at its first opcode, before any name
        assert "open" in msg
        assert "nothing in it was executed" in msg
    else:
        assert "read safely" in msg


def test_pickled_module_is_refused(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(CheckpointError, match=r"module\.pt.*run Python code.*torch\.nn\.modules\.linear\.Linear"):
        read_state_dict(tmp_path / "module.pt")


# --- bad files ---------------------------------------------------------------------------------


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pth.*no such file"):
        read_state_dict(tmp_path / "nope.pth")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pth.*empty"):
        read_state_dict(tmp_path / "empty.pth")


def test_truncated_torch_file(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(10_000)}, tmp_path / "cut.pth")
    _truncate(tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match=r"cut\.pth.*damaged or incomplete"):
        read_state_dict(tmp_path / "cut.pth")


@pytest.mark.parametrize("keep", [0.5, 0.003])
def test_truncated_safetensors(tmp_path: Path, keep: float) -> None:
    save_file({"w": torch.zeros(10_000)}, tmp_path / "cut.safetensors")
    _truncate(tmp_path / "cut.safetensors", keep)
    with pytest.raises(CheckpointError, match=r"cut\.safetensors.*(damaged|not a recognised)"):
        read_state_dict(tmp_path / "cut.safetensors")


def test_random_bytes(tmp_path: Path) -> None:
    (tmp_path / "noise.bin").write_bytes(os.urandom(4096).replace(b"\x80", b"\x81"))
    with pytest.raises(CheckpointError, match=r"noise\.bin.*not a recognised weights file"):
        read_state_dict(tmp_path / "noise.bin")


def test_random_bytes_that_start_like_a_pickle(tmp_path: Path) -> None:
    (tmp_path / "noise.pt").write_bytes(b"\x80\x02" + bytes(range(256)) * 8)
    with pytest.raises(CheckpointError, match=r"noise\.pt"):
        read_state_dict(tmp_path / "noise.pt")


def test_json_file(tmp_path: Path) -> None:
    (tmp_path / "config.pth").write_text('{"architecture": "vit_base_patch16_224"}')
    with pytest.raises(CheckpointError, match=r"config\.pth.*JSON file, not weights"):
        read_state_dict(tmp_path / "config.pth")


def test_folder_given_to_reader(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="folder"):
        read_state_dict(tmp_path)


def test_npz_archive(tmp_path: Path) -> None:
    import numpy as np

    np.savez(tmp_path / "ViT-B_16.npz", a=np.zeros(3))
    with pytest.raises(CheckpointError, match=r"ViT-B_16\.npz.*NumPy"):
        read_state_dict(tmp_path / "ViT-B_16.npz")


def test_checkpoint_without_tensors(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "model": {"lr": 0.1}}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match=r"meta\.pth.*no weights"):
        read_state_dict(tmp_path / "meta.pth")


def test_checkpoint_that_is_a_bare_tensor(tmp_path: Path) -> None:
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match=r"t\.pt.*Tensor, not a dict"):
        read_state_dict(tmp_path / "t.pt")


# --- finding the files -------------------------------------------------------------------------


def test_plain_file(tmp_path: Path) -> None:
    torch.save(_sd(), tmp_path / "deit_small_patch16_224-cd65a155.pth")
    found = discover(tmp_path / "deit_small_patch16_224-cd65a155.pth")
    assert found.weights == tmp_path / "deit_small_patch16_224-cd65a155.pth"
    assert found.config is None and found.preprocessor is None
    assert found.name == "deit_small_patch16_224-cd65a155"


def test_folder_prefers_safetensors_and_reads_configs(tmp_path: Path) -> None:
    save_file(_sd(1), tmp_path / "model.safetensors")
    torch.save(_sd(2), tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 8}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": 224}))
    found = discover(tmp_path)
    assert found.weights == tmp_path / "model.safetensors"
    assert found.config == {"model_type": "vit", "hidden_size": 8}
    assert found.preprocessor == {"size": 224}
    _same(read_state_dict(found.weights), _sd(1))


def test_folder_with_only_pytorch_bin(tmp_path: Path) -> None:
    torch.save(_sd(), tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224", "pretrained_cfg": {}}))
    found = discover(tmp_path)
    assert found.weights == tmp_path / "pytorch_model.bin"
    assert found.config["architecture"] == "vit_tiny_patch16_224"


def test_config_json_path_means_its_folder(tmp_path: Path) -> None:
    save_file(_sd(), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text("{}")
    assert discover(tmp_path / "config.json").weights == tmp_path / "model.safetensors"


def test_hub_named_file_brings_its_config(tmp_path: Path) -> None:
    save_file(_sd(), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "x"}))
    assert discover(tmp_path / "model.safetensors").config == {"architecture": "x"}


def test_other_file_names_ignore_a_nearby_config(tmp_path: Path) -> None:
    save_file(_sd(), tmp_path / "my_vit.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "x"}))
    assert discover(tmp_path / "my_vit.safetensors").config is None


def test_folder_with_one_weights_file(tmp_path: Path) -> None:
    torch.save(_sd(), tmp_path / "dino_deitsmall16_pretrain.pth")
    (tmp_path / "notes.txt").write_text("hello")
    assert discover(tmp_path).weights == tmp_path / "dino_deitsmall16_pretrain.pth"


def _hub_cache(root: Path, commits: list[str], ref: str | None) -> Path:
    """A Hugging Face cache entry: blobs/, refs/main, snapshots/<commit>/ with links into blobs."""
    entry = root / "models--timm--vit_tiny_patch16_224.augreg_in21k"
    (entry / "blobs").mkdir(parents=True)
    (entry / "refs").mkdir()
    for i, commit in enumerate(commits):
        snap = entry / "snapshots" / commit
        snap.mkdir(parents=True)
        save_file(_sd(i), entry / "blobs" / f"weights{i}")
        (entry / "blobs" / f"config{i}").write_text(json.dumps({"architecture": f"snap{i}"}))
        (snap / "model.safetensors").symlink_to(entry / "blobs" / f"weights{i}")
        (snap / "config.json").symlink_to(entry / "blobs" / f"config{i}")
        os.utime(snap, (time.time() + i * 10, time.time() + i * 10))
    if ref:
        (entry / "refs" / "main").write_text(ref)
    return entry


def test_hub_cache_uses_refs_main(tmp_path: Path) -> None:
    entry = _hub_cache(tmp_path, ["aaa111", "bbb222"], ref="aaa111")
    found = discover(entry)
    assert found.weights.parent.name == "aaa111"
    assert found.config == {"architecture": "snap0"}
    assert found.name == "timm/vit_tiny_patch16_224.augreg_in21k"
    _same(read_state_dict(found.weights), _sd(0))


def test_hub_cache_without_ref_takes_newest_snapshot(tmp_path: Path) -> None:
    entry = _hub_cache(tmp_path, ["aaa111", "bbb222"], ref=None)
    assert discover(entry).weights.parent.name == "bbb222"


def test_hub_cache_without_snapshots(tmp_path: Path) -> None:
    entry = tmp_path / "models--org--name"
    (entry / "snapshots").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"models--org--name.*no downloaded snapshot"):
        discover(entry)


def test_config_that_is_not_json(tmp_path: Path) -> None:
    save_file(_sd(), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json.*not valid JSON"):
        discover(tmp_path)


def test_config_that_is_a_json_list(tmp_path: Path) -> None:
    save_file(_sd(), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"config\.json.*JSON object"):
        discover(tmp_path)


def test_folder_without_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=rf"{tmp_path.name}.*no weights file"):
        discover(tmp_path)


def test_folder_with_tensorflow_weights_only(tmp_path: Path) -> None:
    (tmp_path / "tf_model.h5").write_bytes(b"\x89HDF")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(CheckpointError, match=r"only tf_model\.h5.*PyTorch"):
        discover(tmp_path)


def test_trainer_files_are_not_weights(tmp_path: Path) -> None:
    torch.save(_sd(), tmp_path / "vit.pth")
    torch.save({"lr": torch.ones(1)}, tmp_path / "optimizer.pt")
    (tmp_path / "training_args.bin").write_bytes(b"\x80\x02")
    assert discover(tmp_path).weights == tmp_path / "vit.pth"


def test_folder_with_several_weights(tmp_path: Path) -> None:
    torch.save(_sd(), tmp_path / "a.pth")
    torch.save(_sd(), tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match=r"several weights files.*a\.pth, b\.pth"):
        discover(tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"ghost.*no such file or folder"):
        discover(tmp_path / "ghost")


# --- class names -------------------------------------------------------------------------------


def test_imagenet_class_names_equal_timms() -> None:
    timm_data = pytest.importorskip("timm.data")
    names = imagenet_class_names()
    assert names == timm_data.ImageNetInfo().label_descriptions()
    assert len(names) == 1000 and names[0] == "tench, Tinca tinca"
    names.append("x")  # callers get a copy
    assert len(imagenet_class_names()) == 1000
