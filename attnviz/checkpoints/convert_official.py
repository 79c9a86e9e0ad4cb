"""Original-release layouts rewritten into timm's layout (attnviz's native one).

Each converter is a rename table plus the few real transforms; shapes are taken from the file, so
the result goes on to :mod:`attnviz.checkpoints.convert_timm` like any timm checkpoint. Facts
from timm's own ``checkpoint_filter_fn`` (vision_transformer.py, swin_transformer.py,
swin_transformer_v2.py):

* DeiT and DINO (v1) releases already use timm's names (both were built on timm), under
  ``'model'`` / ``'teacher'`` wrappers that :mod:`attnviz.checkpoints.io` removes.
* DeiT III releases name layer scale ``gamma_1`` / ``gamma_2``: timm's ``ls1.gamma`` / ``ls2.gamma``.
* DINOv2 releases (facebookresearch/dinov2) carry an unused ``mask_token``; with registers they
  call them ``register_tokens`` and give the class token a position (``pos_embed[:, 0]``) while
  registers get none. timm folds that position into ``cls_token`` and keeps the embedding for
  patches only (``no_embed_class``): registers and class token then both go without one, exactly
  as before, at any input size. FSDP-chunked releases number blocks ``blocks.{chunk}.{i}``.
* Swin v1/v2 releases (and timm before 0.9) downsample at the END of stage i
  (``layers.{i}.downsample``, none in the last stage); timm downsamples at the START of stage i+1,
  so the module moves to ``layers.{i+1}.downsample`` with the same tensors. The classifier
  ``head.*`` becomes ``head.fc.*``; stored buffers (``relative_position_index``, ``attn_mask``,
  ``relative_coords_table``) are dropped, timm rebuilds them.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch

from attnviz.checkpoints.convert_timm import strip_buffers
from attnviz.checkpoints.errors import CheckpointError

StateDict = dict[str, torch.Tensor]
PathLike = str | os.PathLike[str]


# --- DINOv2 ---------------------------------------------------------------------------------


def is_dinov2_release(sd: Mapping[str, torch.Tensor]) -> bool:
    """DINOv2's own naming: ``mask_token`` (always saved) or ``register_tokens``."""
    return ("mask_token" in sd or "register_tokens" in sd) and "patch_embed.proj.weight" in sd


def dinov2_to_timm(sd: Mapping[str, torch.Tensor], path: PathLike = "") -> StateDict:
    """DINOv2 release -> timm ``VisionTransformer`` names (see the module docstring)."""
    if any(".mlp.w12." in k for k in sd):
        raise CheckpointError(path, "this DINOv2 uses SwiGLU MLPs (ViT-g/14), which attnviz does not support")
    out: StateDict = {}
    for k, v in sd.items():
        if k == "mask_token":
            continue  # used only by DINOv2's masked-image training objective
        chunked = re.match(r"blocks\.\d+\.(\d+)\.(.*)", k)
        if chunked:  # 'blocks.{chunk}.{i}.x' -> 'blocks.{i}.x' (block indices are global)
            k = f"blocks.{chunked.group(1)}.{chunked.group(2)}"
        out[k] = v
    if "register_tokens" in out:
        pos = out["pos_embed"]  # (1, 1 + gh*gw, D): class position first
        out["reg_token"] = out.pop("register_tokens")  # (1, R, D)
        out["cls_token"] = out["cls_token"] + pos[:, :1]  # (1, 1, D)
        out["pos_embed"] = pos[:, 1:].contiguous()  # (1, gh*gw, D)
    return out


# --- DeiT III -------------------------------------------------------------------------------


def is_deit3_release(sd: Mapping[str, torch.Tensor]) -> bool:
    """DeiT III's layer-scale names ``blocks.{i}.gamma_1``."""
    return "blocks.0.gamma_1" in sd


def deit3_to_timm(sd: Mapping[str, torch.Tensor], path: PathLike = "") -> StateDict:
    """``blocks.{i}.gamma_{1,2}`` -> ``blocks.{i}.ls{1,2}.gamma``."""
    return {re.sub(r"^(blocks\.\d+\.)gamma_([12])$", r"\1ls\2.gamma", k): v for k, v in sd.items()}


# --- Swin v1 / v2 ---------------------------------------------------------------------------


def is_original_swin(sd: Mapping[str, torch.Tensor]) -> bool:
    """Swin in the original (end-of-stage downsample, ``head.*``) layout, or with stored buffers."""
    if "layers.0.blocks.0.attn.qkv.weight" not in sd:
        return False
    return (
        "layers.0.downsample.reduction.weight" in sd
        or "head.weight" in sd
        or any(k.rsplit(".", 1)[-1] in ("relative_position_index", "attn_mask", "relative_coords_table") for k in sd)
    )


def swin_to_timm(sd: Mapping[str, torch.Tensor], path: PathLike = "") -> StateDict:
    """Original Swin v1/v2 (or timm < 0.9) names -> timm 1.0 names (see the module docstring)."""
    end_of_stage = "layers.0.downsample.reduction.weight" in sd
    out: StateDict = {}
    for k, v in strip_buffers(sd).items():
        if end_of_stage:
            k = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", k)
        if k.startswith("head.") and not k.startswith("head.fc."):
            k = "head.fc." + k[len("head."):]
        out[k] = v
    return out
