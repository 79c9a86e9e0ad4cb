"""Original-release layouts (Swin v1/v2, DINOv2, DINO, DeiT, DeiT III), proven against timm.

Each case perturbs a timm model, rewrites its state dict into the release's own layout (the
inverse of what timm's checkpoint_filter_fn undoes), saves it the way the release does, loads it
with ``load_checkpoint`` and checks a timm model rebuilt from the inferred config computes the
same outputs as the original (atol 1e-5).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm")
from timm.models.deit import VisionTransformerDistilled  # noqa: E402
from timm.models.swin_transformer import SwinTransformer  # noqa: E402
from timm.models.swin_transformer_v2 import SwinTransformerV2  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

from attnviz.checkpoints import load_checkpoint  # noqa: E402

from tests.timm_ref import assert_matches_reference, perturb_


# --- Swin --------------------------------------------------------------------------------------


def _to_original_swin(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """timm Swin state dict -> the original release's: downsample at the end of the previous stage,
    ``head.*`` classifier, and the buffers the original code saved."""
    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        k = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", k)
        k = k.replace("head.fc.", "head.")
        out[k] = v
    for i, layer in enumerate(model.layers):
        for j, block in enumerate(layer.blocks):
            M = block.window_size[0]
            b = f"layers.{i}.blocks.{j}."
            out[b + "attn.relative_position_index"] = torch.randint(0, (2 * M - 1) ** 2, (M * M, M * M))
            if hasattr(block.attn, "logit_scale"):
                out[b + "attn.relative_coords_table"] = torch.randn(1, 2 * M - 1, 2 * M - 1, 2)
            if j % 2 == 1:
                out[b + "attn_mask"] = torch.zeros(4, M * M, M * M)
    assert "layers.0.downsample.reduction.weight" in out or len(model.layers) == 1
    return out


SWIN_CASES = {
    "swin_v1_w7_224": (
        lambda: SwinTransformer(img_size=224, embed_dim=24, depths=(2, 2, 2, 1), num_heads=(1, 2, 2, 4),
                                window_size=7, num_classes=10),
        "swin_tiny_patch4_window7_224.pth", dict(version=1, window_size=(7, 7, 7, 7), img_size=(224, 224))),
    "swin_v1_w12_384_no_head": (
        lambda: SwinTransformer(img_size=384, embed_dim=16, depths=(2, 2, 1, 1), num_heads=(1, 1, 2, 2),
                                window_size=12, num_classes=0),
        "swin_base_patch4_window12_384_22k.pth", dict(version=1, window_size=(12,) * 4, img_size=(384, 384),
                                                      num_classes=0)),
    "swin_v2_w16_256": (
        lambda: SwinTransformerV2(img_size=256, embed_dim=16, depths=(2, 2, 1, 1), num_heads=(1, 1, 2, 2),
                                  window_size=16, num_classes=10),
        "swinv2_small_patch4_window16_256.pth", dict(version=2, window_size=(16,) * 4, img_size=(256, 256))),
    "swin_v2_w12to16_192to256": (
        lambda: SwinTransformerV2(img_size=256, embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2),
                                  window_size=16, pretrained_window_sizes=(12, 12, 12, 6), num_classes=10),
        "swinv2_base_patch4_window12to16_192to256_22kto1k_ft.pth",
        dict(version=2, window_size=(16,) * 4, pretrained_window_size=(12, 12, 12, 6))),
}


@pytest.mark.parametrize("case", list(SWIN_CASES))
def test_original_swin_release(case: str, tmp_path: Path) -> None:
    factory, filename, expected = SWIN_CASES[case]
    torch.manual_seed(0)
    reference = perturb_(factory())
    torch.save({"model": _to_original_swin(reference)}, tmp_path / filename)
    info, sd = load_checkpoint(tmp_path / filename)
    assert info.source_format == "official" and info.family == "swin"
    for field, value in expected.items():
        assert getattr(info.config, field) == value, field
    assert_matches_reference(reference, info, sd)


# --- DINOv2 ------------------------------------------------------------------------------------


def _dinov2(reg_tokens: int) -> VisionTransformer:
    """A small DINOv2 as timm builds it (registers make the position embedding patch-only)."""
    return VisionTransformer(img_size=56, patch_size=14, embed_dim=128, depth=3, num_heads=2, init_values=1e-5,
                             reg_tokens=reg_tokens, no_embed_class=reg_tokens > 0, num_classes=0)


def _to_dinov2_release(model: VisionTransformer, chunks: int = 0) -> dict[str, torch.Tensor]:
    """timm -> facebookresearch/dinov2 names: registers as ``register_tokens``, the class token's
    position back inside ``pos_embed`` (any split of cls + pos gives the same network), an unused
    ``mask_token``, and optionally FSDP chunked blocks ``blocks.{chunk}.{i}``."""
    sd = dict(model.state_dict())
    D = model.embed_dim
    if "reg_token" in sd:
        cls_pos = torch.randn(1, 1, D) * 0.02
        sd["register_tokens"] = sd.pop("reg_token")
        sd["cls_token"] = sd["cls_token"] - cls_pos
        sd["pos_embed"] = torch.cat([cls_pos, sd["pos_embed"]], dim=1)  # (1, 1 + gh*gw, D)
    sd["mask_token"] = torch.zeros(1, D)
    if chunks:
        per = -(-len(model.blocks) // chunks)
        sd = {re.sub(r"^blocks\.(\d+)\.", lambda m: f"blocks.{int(m.group(1)) // per}.{m.group(1)}.", k): v
              for k, v in sd.items()}
    return sd


@pytest.mark.parametrize("reg_tokens,chunks", [(0, 0), (4, 0), (4, 2)], ids=["plain", "registers", "chunked"])
def test_dinov2_release(reg_tokens: int, chunks: int, tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = perturb_(_dinov2(reg_tokens))
    path = tmp_path / f"dinov2_vits14{'_reg4' if reg_tokens else ''}_pretrain.pth"
    torch.save(_to_dinov2_release(reference, chunks), path)
    info, sd = load_checkpoint(path)
    assert info.source_format == "official"
    c = info.config
    assert (c.num_reg_tokens, c.no_embed_class, c.layer_scale, c.patch_size, c.img_size, c.num_classes) == (
        reg_tokens, reg_tokens > 0, True, 14, (56, 56), 0)
    assert "mask_token" not in sd
    assert_matches_reference(reference, info, sd)


# --- DINO, DeiT, DeiT III ---------------------------------------------------------------------------


def test_dino_training_checkpoint(tmp_path: Path) -> None:
    """DINO's checkpoint.pth: the teacher's backbone is the model, its projection head is dropped."""
    torch.manual_seed(0)
    reference = perturb_(VisionTransformer(img_size=64, patch_size=8, embed_dim=64, depth=2, num_heads=1,
                                           num_classes=0))
    backbone = reference.state_dict()
    head = {"head.mlp.0.weight": torch.randn(32, 64), "head.last_layer.weight_g": torch.ones(1, 16)}
    ckpt = {
        "teacher": {**{"backbone." + k: v for k, v in backbone.items()}, **head},
        "student": {"module.backbone." + k: v + 1 for k, v in backbone.items()},
        "optimizer": {"state": {}, "param_groups": []},
        "epoch": 100,
        "args": argparse.Namespace(arch="vit_small", patch_size=8, out_dim=65536),
    }
    torch.save(ckpt, tmp_path / "checkpoint.pth")
    info, sd = load_checkpoint(tmp_path / "checkpoint.pth")
    assert info.config.patch_size == 8 and info.config.num_classes == 0
    assert_matches_reference(reference, info, sd)


def test_deit_distilled_release(tmp_path: Path) -> None:
    """DeiT releases are timm's layout under 'model'."""
    torch.manual_seed(0)
    reference = perturb_(VisionTransformerDistilled(img_size=64, patch_size=16, embed_dim=64, depth=2,
                                                    num_heads=1, num_classes=1000))
    torch.save({"model": reference.state_dict()}, tmp_path / "deit_base_distilled_patch16_224-df68dfff.pth")
    info, sd = load_checkpoint(tmp_path / "deit_base_distilled_patch16_224-df68dfff.pth")
    assert info.config.distilled and info.source_format == "timm"
    assert info.class_names is not None and len(info.class_names) == 1000
    assert_matches_reference(reference, info, sd)


def test_deit3_release_layer_scale_names(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = perturb_(VisionTransformer(img_size=64, patch_size=16, embed_dim=64, depth=2, num_heads=1,
                                           no_embed_class=True, init_values=1e-6, num_classes=10))
    sd = {re.sub(r"\.ls([12])\.gamma$", r".gamma_\1", k): v for k, v in reference.state_dict().items()}
    assert "blocks.0.gamma_1" in sd
    torch.save({"model": sd}, tmp_path / "deit_3_small_224_1k.pth")
    info, native = load_checkpoint(tmp_path / "deit_3_small_224_1k.pth")
    assert info.source_format == "official" and info.config.layer_scale and info.config.no_embed_class
    assert_matches_reference(reference, info, native)
