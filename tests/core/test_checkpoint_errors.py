"""load_checkpoint on bad input: every failure is one CheckpointError naming the file and the problem.

State dicts are synthesised from ``native_shapes`` (no timm needed); the first tests check that
such a synthetic checkpoint loads back to the config it was made from, so the mutations below
start from something valid and each error is caused by the one thing the test breaks.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from attnviz.checkpoints import CheckpointError, load_checkpoint, native_shapes
from attnviz.nets.config import ArchConfig, SwinConfig, ViTConfig

VIT = ViTConfig(img_size=(32, 32), patch_size=8, embed_dim=64, depth=2, num_heads=1, mlp_hidden_dim=128,
                num_classes=5)
SWIN = SwinConfig(version=1, img_size=(224, 224), embed_dim=16, depths=(2, 2), num_heads=(1, 2),
                  window_size=(7, 7), pretrained_window_size=(0, 0), num_classes=5)


def _fake(config: ArchConfig) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(shape, generator=g) for k, shape in native_shapes(config).items()}


def _save(sd: dict[str, torch.Tensor], path: Path) -> Path:
    save_file(sd, path)
    return path


# --- the valid baselines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        VIT,
        ViTConfig(img_size=(48, 48), patch_size=16, embed_dim=128, depth=1, num_heads=2, mlp_hidden_dim=256,
                  qkv_bias=False, num_reg_tokens=2, no_embed_class=True, layer_scale=True, num_classes=0),
        ViTConfig(img_size=(32, 32), patch_size=8, embed_dim=64, depth=1, num_heads=1, mlp_hidden_dim=64,
                  class_token=False, global_pool="avg", fc_norm=True, num_classes=3),
        ViTConfig(img_size=(32, 32), patch_size=8, embed_dim=64, depth=1, num_heads=1, mlp_hidden_dim=64,
                  distilled=True, num_classes=3),
        SWIN,
        SwinConfig(version=2, img_size=(256, 256), embed_dim=16, depths=(1, 1, 2), num_heads=(1, 1, 2),
                   window_size=(8, 8, 8), pretrained_window_size=(0, 0, 0), num_classes=0),
    ],
    ids=["vit", "vit-reg-ls", "vit-gap", "deit", "swin-v1", "swin-v2"],
)
def test_synthetic_checkpoint_round_trips(config: ArchConfig, tmp_path: Path) -> None:
    info, sd = load_checkpoint(_save(_fake(config), tmp_path / "m.safetensors"))
    assert info.config == config
    assert info.family == ("vit" if isinstance(config, ViTConfig) else "swin")
    assert sorted(sd) == sorted(native_shapes(config))


# --- files that are not checkpoints -----------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"'.*nothing\.pth': no such file"):
        load_checkpoint(tmp_path / "nothing.pth")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"model\.safetensors': the file is empty"):
        load_checkpoint(tmp_path / "model.safetensors")


def test_truncated_file(tmp_path: Path) -> None:
    path = _save(_fake(VIT), tmp_path / "vit.safetensors")
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match=r"vit\.safetensors.*damaged or incomplete"):
        load_checkpoint(path)


def test_truncated_torch_file(tmp_path: Path) -> None:
    torch.save(_fake(VIT), tmp_path / "vit.pth")
    data = (tmp_path / "vit.pth").read_bytes()
    (tmp_path / "vit.pth").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=r"vit\.pth.*damaged or incomplete"):
        load_checkpoint(tmp_path / "vit.pth")


def test_random_bytes(tmp_path: Path) -> None:
    (tmp_path / "random.pth").write_bytes(os.urandom(2048).replace(b"\x80", b"\x00").replace(b"PK", b"QK"))
    with pytest.raises(CheckpointError, match=r"random\.pth.*not a recognised weights file"):
        load_checkpoint(tmp_path / "random.pth")


def test_json_file(tmp_path: Path) -> None:
    (tmp_path / "labels.json").write_text(json.dumps({"0": "cat"}))
    with pytest.raises(CheckpointError, match=r"labels\.json.*JSON file, not weights"):
        load_checkpoint(tmp_path / "labels.json")


def test_folder_without_weights(tmp_path: Path) -> None:
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(CheckpointError, match=r"empty_model.*no weights file"):
        load_checkpoint(tmp_path / "empty_model")


def test_config_that_is_not_json(tmp_path: Path) -> None:
    _save(_fake(VIT), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text("architecture: vit")
    with pytest.raises(CheckpointError, match=r"config\.json.*not valid JSON"):
        load_checkpoint(tmp_path)


def test_hub_config_with_malformed_fields(tmp_path: Path) -> None:
    _save(_fake(VIT), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "vit_x", "model_args": [1, 2]}))
    with pytest.raises(CheckpointError, match=r"model_args"):
        load_checkpoint(tmp_path)


# --- weights of something else ---------------------------------------------------------------------


def test_cnn_fits_no_architecture(tmp_path: Path) -> None:
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    torch.save(cnn.state_dict(), tmp_path / "tiny_cnn.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "tiny_cnn.pth")
    msg = str(err.value)
    assert "tiny_cnn.pth" in msg and "fit none of the architectures" in msg
    assert "0.weight (8, 3, 3, 3)" in msg  # says what it found


def test_cnn_hub_folder_names_its_architecture(tmp_path: Path) -> None:
    save_file({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet50", "pretrained_cfg": {}}))
    with pytest.raises(CheckpointError, match=r"config\.json names 'resnet50'"):
        load_checkpoint(tmp_path)


def test_transformers_weights_without_their_config(tmp_path: Path) -> None:
    sd = {"vit.embeddings.cls_token": torch.zeros(1, 1, 8), "classifier.weight": torch.zeros(2, 8)}
    _save(sd, tmp_path / "hf_vit.safetensors")
    with pytest.raises(CheckpointError, match=r"hf_vit\.safetensors.*transformers.*config\.json"):
        load_checkpoint(tmp_path / "hf_vit.safetensors")


def test_transformers_folder_of_an_unsupported_model_type(tmp_path: Path) -> None:
    _save({"resnet.embedder.convolution.weight": torch.zeros(8, 3, 7, 7)}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "resnet", "num_channels": 3}))
    with pytest.raises(CheckpointError, match=rf"{tmp_path.name}.*'resnet'"):
        load_checkpoint(tmp_path)


def test_vit_with_an_inconsistent_block(tmp_path: Path) -> None:
    sd = _fake(VIT)
    sd["blocks.1.mlp.fc1.weight"] = torch.zeros(96, 64)
    with pytest.raises(CheckpointError, match=r"odd\.safetensors.*consistent ViT.*blocks\.1\.mlp\.fc1\.weight"):
        load_checkpoint(_save(sd, tmp_path / "odd.safetensors"))


def test_vit_missing_a_tensor(tmp_path: Path) -> None:
    sd = _fake(VIT)
    del sd["blocks.1.norm2.weight"]
    with pytest.raises(CheckpointError, match=r"gap\.safetensors.*1 missing.*blocks\.1\.norm2\.weight"):
        load_checkpoint(_save(sd, tmp_path / "gap.safetensors"))


def test_vit_missing_the_mlp(tmp_path: Path) -> None:
    sd = {k: v for k, v in _fake(VIT).items() if ".mlp." not in k}
    with pytest.raises(CheckpointError, match=r"nomlp\.safetensors.*lack the tensor.*blocks\.0\.mlp\.fc1\.weight"):
        load_checkpoint(_save(sd, tmp_path / "nomlp.safetensors"))


def test_vit_with_unsupported_qk_norm(tmp_path: Path) -> None:
    sd = _fake(VIT)
    sd["blocks.0.attn.q_norm.weight"] = torch.ones(64)
    with pytest.raises(CheckpointError, match=r"qknorm\.safetensors.*QK-normalised attention"):
        load_checkpoint(_save(sd, tmp_path / "qknorm.safetensors"))


def test_position_embedding_that_fits_no_grid(tmp_path: Path) -> None:
    sd = _fake(VIT)
    sd["pos_embed"] = torch.zeros(1, 1 + 12, 64)
    with pytest.raises(CheckpointError, match=r"pos\.safetensors.*13 tokens.*fits no square patch grid"):
        load_checkpoint(_save(sd, tmp_path / "pos.safetensors"))


def test_swin_stage_that_does_not_double(tmp_path: Path) -> None:
    sd = _fake(SWIN)
    for k in [k for k in sd if k.startswith("layers.1.blocks.0.")]:
        sd[k] = torch.zeros([s // 2 if s == 32 else s for s in sd[k].shape])
    with pytest.raises(CheckpointError, match=r"swin\.safetensors.*stage 1.*expected 32"):
        load_checkpoint(_save(sd, tmp_path / "swin.safetensors"))


def test_swin_bias_table_of_no_square_window(tmp_path: Path) -> None:
    sd = _fake(SWIN)
    sd["layers.0.blocks.0.attn.relative_position_bias_table"] = torch.zeros(170, 1)
    with pytest.raises(CheckpointError, match=r"swin\.safetensors.*170 rows fits no square window"):
        load_checkpoint(_save(sd, tmp_path / "swin.safetensors"))


def test_dinov2_giant_swiglu(tmp_path: Path) -> None:
    sd = {k.replace("mlp.fc1", "mlp.w12").replace("mlp.fc2", "mlp.w3"): v for k, v in _fake(VIT).items()}
    sd["mask_token"] = torch.zeros(1, 64)
    with pytest.raises(CheckpointError, match=r"dinov2_vitg14\.pth.*SwiGLU"):
        torch.save(sd, tmp_path / "dinov2_vitg14.pth")
        load_checkpoint(tmp_path / "dinov2_vitg14.pth")


def test_swin_with_absolute_position_embedding(tmp_path: Path) -> None:
    sd = _fake(SWIN)
    sd["absolute_pos_embed"] = torch.zeros(1, 3136, 16)
    with pytest.raises(CheckpointError, match=r"ape\.safetensors.*absolute position embedding"):
        load_checkpoint(_save(sd, tmp_path / "ape.safetensors"))


# --- bad requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [30, (32, 36)])
def test_image_size_not_a_multiple_of_the_patch(size, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"vit\.safetensors.*not a multiple of the patch size 8"):
        load_checkpoint(_save(_fake(VIT), tmp_path / "vit.safetensors"), img_size=size)


def test_image_size_not_positive(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"vit\.safetensors.*must be positive"):
        load_checkpoint(_save(_fake(VIT), tmp_path / "vit.safetensors"), img_size=0)
