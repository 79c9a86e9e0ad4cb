"""Configs from state dicts in timm's layout, which is also attnviz's native layout.

timm 1.0's ``VisionTransformer`` (+ DeiT's distilled variant), ``SwinTransformer`` and
``SwinTransformerV2`` name their tensors the way ``attnviz.nets`` does, so a timm state dict needs
no renaming: what this module does is read the architecture back from the tensor shapes,
completed by timm's hub ``config.json`` (``architecture``, ``model_args``, ``pretrained_cfg``,
``label_names``) when one came with the weights.

What the shapes cannot say, and where it comes from instead:

* ViT heads: ``model_args['num_heads']``; else the head count of timm's named ViT widths
  (``_VIT_HEADS_BY_WIDTH``: ViT-H/g/G use 16 heads, not width/64); else width / 64 (min 1).
* ViT ``global_pool``: the config; else 'avg' when there is an ``fc_norm`` or no class token.
* ViT LayerNorm eps: 1e-6, but 1e-5 with a pre-norm (timm's CLIP towers, the only pre-norm ViTs).
  The activation cannot be read either: GELU is assumed (OpenAI's quick-GELU CLIPs differ).
* Swin v1 window per stage: from the bias table, ``(2M-1)^2`` rows.
* Swin v2 window (it has no table: its bias comes from an MLP over coordinates):
  ``model_args['window_size']``; else the ``window{M}`` / ``window{A}to{M}`` token of the
  architecture or file name (``swinv2_tiny_window8_256``); else 8. Its pretrained window per
  stage: ``model_args['pretrained_window_sizes']``; else from ``window{A}to{M}_{S}to{T}`` names
  (A, clipped to each stage's grid at the pretraining size S, as timm's registry does); else 0.
* Swin image size: the argument; ``model_args['img_size']``; ``pretrained_cfg['input_size']``;
  the name (``..._window7_224``); for v1, a last-stage window smaller than the others (clipped
  to that stage's grid when built: the grid was that window); else 384 for 12-windows (v1's
  12-window releases are all 384) and 224 (v1) / 256 (v2) otherwise.
* Preprocessing: ``pretrained_cfg`` when present, else timm's defaults (ImageNet mean/std,
  bicubic, crop_pct 0.875) at the model's image size.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import torch

from attnviz.checkpoints.errors import CheckpointError
from attnviz.data import imagenet_class_names
from attnviz.images import preprocess_config_from_timm
from attnviz.nets.config import ArchConfig, ModelInfo, PreprocessConfig, SwinConfig, ViTConfig

PathLike = str | os.PathLike[str]
StateDict = dict[str, torch.Tensor]

# Head counts of timm's ViT widths; width/64 holds for all but the huge/giant ones.
_VIT_HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16, 1536: 24, 1664: 16}
# Buffers that timm rebuilds at construction (non-persistent today; persistent in old files).
NON_PERSISTENT = ("relative_position_index", "relative_coords_table", "attn_mask", "k_bias")
_CPB_HIDDEN = 512  # width of Swin v2's continuous-position-bias MLP (fixed in timm and the paper)


# --------------------------------------------------------------------------------------------
# timm's hub config.json


@dataclass(frozen=True)
class TimmHubConfig:
    """The parts of timm's hub ``config.json`` that describe the weights."""

    architecture: str
    model_args: dict[str, Any] = field(default_factory=dict)
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    global_pool: Optional[str] = None
    label_names: Optional[list[str]] = None


def is_timm_hub_config(config: Optional[Mapping[str, Any]]) -> bool:
    """True for timm's hub format: ``architecture`` (and usually ``pretrained_cfg``) at the top."""
    return isinstance(config, Mapping) and isinstance(config.get("architecture"), str)


def parse_hub_config(config: Optional[Mapping[str, Any]], path: PathLike) -> Optional[TimmHubConfig]:
    """A :class:`TimmHubConfig` from a config.json dict, None if it is not timm's format."""
    if not is_timm_hub_config(config):
        return None
    assert config is not None
    model_args = config.get("model_args") or {}
    pretrained_cfg = config.get("pretrained_cfg") or {}
    if not isinstance(model_args, Mapping) or not isinstance(pretrained_cfg, Mapping):
        raise CheckpointError(path, "config.json: 'model_args' and 'pretrained_cfg' must be JSON objects")
    global_pool = config.get("global_pool", model_args.get("global_pool"))
    return TimmHubConfig(
        architecture=str(config["architecture"]),
        model_args=dict(model_args),
        pretrained_cfg=dict(pretrained_cfg),
        global_pool=global_pool if isinstance(global_pool, str) else None,
        label_names=_label_list(config, path),
    )


def _label_list(config: Mapping[str, Any], path: PathLike) -> Optional[list[str]]:
    """``label_names`` as a list by class index, described by ``label_descriptions`` when given."""
    names = config.get("label_names")
    if names is None:
        return None
    if isinstance(names, Mapping):  # {index: name}, possibly with gaps
        try:
            by_index = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise CheckpointError(path, "config.json: 'label_names' keys must be class indices") from None
        count = max(by_index, default=-1) + 1
        if count > 1_000_000 or min(by_index, default=0) < 0:
            raise CheckpointError(path, "config.json: 'label_names' has implausible class indices")
        names = [by_index.get(i, str(i)) for i in range(count)]
    elif not isinstance(names, (list, tuple)):
        raise CheckpointError(path, "config.json: 'label_names' must be a list or an object")
    names = [str(n) for n in names]
    descriptions = config.get("label_descriptions")
    if isinstance(descriptions, Mapping):
        names = [str(descriptions.get(n, n)) for n in names]
    return names


# --------------------------------------------------------------------------------------------
# small helpers


def _shape(sd: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    return tuple(sd[key].shape)


def _indices(sd: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (one group) over the keys."""
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.match(k))})


def _count(sd: Mapping[str, torch.Tensor], pattern: str, path: PathLike, what: str) -> int:
    idx = _indices(sd, pattern)
    if not idx or idx != list(range(len(idx))):
        raise CheckpointError(path, f"the {what} are not numbered 0..n-1 (found {idx[:8]})")
    return len(idx)


def _pair(value: Any, path: PathLike, what: str) -> tuple[int, int]:
    """An int or [h, w] from a config as (h, w)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (int(value), int(value))
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return (int(value[0]), int(value[1]))
    raise CheckpointError(path, f"config.json: '{what}' should be a number or [height, width], found {value!r}")


def normalize_img_size(img_size: tuple[int, int] | int | None, path: PathLike) -> Optional[tuple[int, int]]:
    """``img_size`` as (H, W) of positive ints, or None."""
    if img_size is None:
        return None
    size = _pair(img_size, path, "img_size") if not isinstance(img_size, int) else (img_size, img_size)
    if min(size) <= 0:
        raise CheckpointError(path, f"image size must be positive, got {size}")
    return size


def _name_tokens(name: str) -> tuple[Optional[int], Optional[int], Optional[int], Optional[int]]:
    """(pretrained window, window, pretrained image size, image size) from a Swin model name.

    ``swinv2_base_window12to16_192to256`` -> (12, 16, 192, 256); ``swin_tiny_patch4_window7_224``
    -> (7, 7, 224, 224); missing parts are None.
    """
    m = re.search(r"window(\d+)(?:to(\d+))?(?:_(\d+)(?:to(\d+))?)?", name)
    if not m:
        return (None, None, None, None)
    w0, w1, s0, s1 = (int(g) if g else None for g in m.groups())
    return (w0, w1 or w0, s0, s1 or s0)


def preprocess_from_timm(
    hub: Optional[TimmHubConfig], input_size: tuple[int, int], path: PathLike = ""
) -> PreprocessConfig:
    """Eval preprocessing from timm's ``pretrained_cfg`` at ``input_size``; timm's defaults
    (ImageNet mean/std, bicubic, crop_pct 0.875, centre crop) where it says nothing."""
    cfg = dict(hub.pretrained_cfg) if hub else {}
    cfg["input_size"] = (3, *input_size)
    try:
        return preprocess_config_from_timm(cfg)
    except (ValueError, TypeError) as e:
        raise CheckpointError(path, f"config.json: unusable pretrained_cfg ({e})") from None


def class_names_for(num_classes: int, hub: Optional[TimmHubConfig]) -> Optional[list[str]]:
    """The config's label names when they fit the head, else ImageNet-1k's for a 1000-way head."""
    if num_classes <= 0:
        return None
    if hub and hub.label_names and len(hub.label_names) == num_classes:
        return list(hub.label_names)
    if num_classes == 1000:
        return imagenet_class_names()
    return None


def _config_input_size(hub: Optional[TimmHubConfig], path: PathLike) -> Optional[tuple[int, int]]:
    if hub is None:
        return None
    if "img_size" in hub.model_args:
        return _pair(hub.model_args["img_size"], path, "model_args.img_size")
    size = hub.pretrained_cfg.get("input_size")
    if isinstance(size, (list, tuple)) and len(size) == 3:
        return (int(size[1]), int(size[2]))
    return None


def strip_buffers(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Drop the buffers timm rebuilds itself (old files stored them)."""
    return {k: v for k, v in sd.items() if k.rsplit(".", 1)[-1] not in NON_PERSISTENT}


# --------------------------------------------------------------------------------------------
# ViT


def vit_config_from_state_dict(
    sd: Mapping[str, torch.Tensor],
    hub: Optional[TimmHubConfig] = None,
    img_size: Optional[tuple[int, int]] = None,
    path: PathLike = "",
) -> ViTConfig:
    """A :class:`ViTConfig` that rebuilds ``sd`` (timm VisionTransformer layout)."""
    args = hub.model_args if hub else {}
    for key, feature in (
        ("attn_pool.latent", "attention-pool (MAP) heads"),
        ("blocks.0.attn.q_norm.weight", "QK-normalised attention"),
        ("blocks.0.mlp.fc1_g.weight", "SwiGLU MLPs"),
        ("blocks.0.mlp.w12.weight", "SwiGLU MLPs"),
        ("blocks.0.attn.qkv.weight", None),
    ):
        if feature is None:
            if key not in sd:
                raise CheckpointError(path, "ViT weights without 'blocks.0.attn.qkv.weight' (fused q/k/v)")
        elif key in sd:
            raise CheckpointError(path, f"this ViT uses {feature}, which attnviz does not support")

    w = sd["patch_embed.proj.weight"]
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise CheckpointError(path, f"patch embedding of shape {tuple(w.shape)}: expected a square conv kernel")
    embed_dim, in_chans, patch = int(w.shape[0]), int(w.shape[1]), int(w.shape[2])
    depth = _count(sd, r"blocks\.(\d+)\.", path, "transformer blocks")
    qkv = _shape(sd, "blocks.0.attn.qkv.weight")
    if qkv != (3 * embed_dim, embed_dim):
        raise CheckpointError(
            path, f"q/k/v projection of shape {qkv} for width {embed_dim}: attention width differs from the "
            "embedding width, which attnviz does not support"
        )
    mlp_hidden = _shape(sd, "blocks.0.mlp.fc1.weight")[0]
    class_token = "cls_token" in sd
    distilled = "dist_token" in sd
    num_reg = _shape(sd, "reg_token")[1] if "reg_token" in sd else 0
    prefix = int(class_token) + int(distilled) + num_reg
    fc_norm = "fc_norm.weight" in sd
    num_classes = _shape(sd, "head.weight")[0] if "head.weight" in sd else 0

    pool = hub.global_pool if hub and hub.global_pool is not None else None
    if pool in (None, ""):
        pool = "avg" if (fc_norm or not class_token) else "token"
    if pool not in ("token", "avg"):
        raise CheckpointError(path, f"global pooling '{pool}' is not supported (attnviz has 'token' and 'avg')")

    heads = args.get("num_heads")
    if not isinstance(heads, int) or heads <= 0:
        heads = _VIT_HEADS_BY_WIDTH.get(embed_dim, max(1, embed_dim // 64))
    if embed_dim % heads:
        raise CheckpointError(path, f"{heads} heads do not divide the width {embed_dim}")

    stored = _config_input_size(hub, path) or img_size
    if "pos_embed" in sd:
        n_pos = _shape(sd, "pos_embed")[1]
        size, no_embed_class = _vit_grid(n_pos, prefix, patch, stored, args.get("no_embed_class"), path)
        pos = "learn"
    else:
        size, no_embed_class, pos = stored or (224, 224), False, "none"

    return ViTConfig(
        img_size=size,
        patch_size=patch,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=heads,
        mlp_hidden_dim=mlp_hidden,
        qkv_bias="blocks.0.attn.qkv.bias" in sd,
        class_token=class_token,
        num_reg_tokens=num_reg,
        distilled=distilled,
        pos_embed=pos,  # type: ignore[arg-type]
        no_embed_class=no_embed_class,
        layer_scale="blocks.0.ls1.gamma" in sd,
        pre_norm="norm_pre.weight" in sd,
        patch_bias="patch_embed.proj.bias" in sd,
        global_pool=pool,  # type: ignore[arg-type]
        fc_norm=fc_norm,
        num_classes=num_classes,
        # timm's pre-norm ViTs are the CLIP image towers, whose LayerNorms use eps 1e-5.
        norm_eps=1e-5 if "norm_pre.weight" in sd else 1e-6,
    )


def _vit_grid(
    n_pos: int,
    prefix: int,
    patch: int,
    hint: Optional[tuple[int, int]],
    no_embed_class_hint: Any,
    path: PathLike,
) -> tuple[tuple[int, int], bool]:
    """(image size, no_embed_class) from the position-embedding length.

    The embedding covers the patch grid, plus the prefix tokens unless ``no_embed_class``. A size
    hint (config or caller) decides non-square grids and the rare lengths that fit both ways.
    """
    options: list[bool] = [False, True] if prefix else [False]
    if isinstance(no_embed_class_hint, bool) and prefix:
        options = [no_embed_class_hint]
    if hint is not None and hint[0] % patch == 0 and hint[1] % patch == 0:
        cells = (hint[0] // patch) * (hint[1] // patch)
        for nec in options:
            if n_pos - (0 if nec else prefix) == cells:
                return hint, nec
    for nec in options:
        cells = n_pos - (0 if nec else prefix)
        side = math.isqrt(cells) if cells > 0 else 0
        if side > 0 and side * side == cells:
            return (side * patch, side * patch), nec
    raise CheckpointError(
        path, f"a position embedding of {n_pos} tokens with {prefix} prefix tokens fits no square patch grid; "
        "give the image size it was trained at"
    )


# --------------------------------------------------------------------------------------------
# Swin


def swin_config_from_state_dict(
    sd: Mapping[str, torch.Tensor],
    hub: Optional[TimmHubConfig] = None,
    img_size: Optional[tuple[int, int]] = None,
    path: PathLike = "",
    name: str = "",
) -> SwinConfig:
    """A :class:`SwinConfig` that rebuilds ``sd`` (timm SwinTransformer / SwinTransformerV2 layout)."""
    args = hub.model_args if hub else {}
    if "absolute_pos_embed" in sd:
        raise CheckpointError(path, "Swin with an absolute position embedding (ape) is not supported")
    version = 2 if "layers.0.blocks.0.attn.logit_scale" in sd else 1
    w = sd["patch_embed.proj.weight"]
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise CheckpointError(path, f"patch embedding of shape {tuple(w.shape)}: expected a square conv kernel")
    embed_dim, in_chans, patch = int(w.shape[0]), int(w.shape[1]), int(w.shape[2])
    num_stages = _count(sd, r"layers\.(\d+)\.blocks\.", path, "Swin stages")
    depths = tuple(
        _count(sd, rf"layers\.{i}\.blocks\.(\d+)\.", path, f"blocks of stage {i}") for i in range(num_stages)
    )

    heads: list[int] = []
    windows: list[int] = []
    for i in range(num_stages):
        dim = embed_dim * 2**i
        attn = f"layers.{i}.blocks.0.attn."
        if _shape(sd, f"layers.{i}.blocks.0.norm1.weight") != (dim,):
            raise CheckpointError(path, f"stage {i} has width {_shape(sd, f'layers.{i}.blocks.0.norm1.weight')}, "
                                        f"expected {dim} (Swin doubles the width per stage)")
        if _shape(sd, attn + "qkv.weight") != (3 * dim, dim):
            raise CheckpointError(path, f"stage {i}: q/k/v projection {_shape(sd, attn + 'qkv.weight')} does not "
                                        f"match width {dim}")
        if version == 1:
            rows, cols = _shape(sd, attn + "relative_position_bias_table")
            side = math.isqrt(rows)
            if side * side != rows or side % 2 == 0:
                raise CheckpointError(path, f"stage {i}: a relative position bias table of {rows} rows fits no "
                                            "square window ((2M-1)^2 rows)")
            windows.append((side + 1) // 2)
            heads.append(cols)
        else:
            heads.append(_shape(sd, attn + "logit_scale")[0])

    w0, w1, s0, _ = _swin_name_tokens(hub, name)
    pretrained = [0] * num_stages
    if version == 2:
        if "window_size" in args:
            windows = _stage_values(args["window_size"], num_stages, path, "window_size")
        else:
            windows = [w1 or 8] * num_stages
        if "pretrained_window_sizes" in args:
            pretrained = _stage_values(args["pretrained_window_sizes"], num_stages, path, "pretrained_window_sizes")
        elif w0 is not None and w1 is not None and w0 != w1 and s0:
            # timm registers e.g. window12to16_192to256 with (12, 12, 12, 6): the pretraining window,
            # clipped to each stage's grid at the pretraining image size.
            pretrained = [min(w0, max(1, s0 // patch // 2**i)) for i in range(num_stages)]

    size = img_size or _config_input_size(hub, path) or _name_size(name, hub)
    if size is None:
        if version == 1 and num_stages > 1 and windows[-1] < windows[0]:
            # A last-stage table smaller than the others was built for a window clipped to that
            # stage's grid: the grid was that window, so the image was window * patch * 2**(n-1).
            side = windows[-1] * patch * 2 ** (num_stages - 1)
            size = (side, side)
        elif version == 1:
            size = (384, 384) if windows[0] == 12 else (224, 224)
        else:
            size = (256, 256)

    return SwinConfig(
        version=version,  # type: ignore[arg-type]
        img_size=size,
        patch_size=patch,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=tuple(heads),
        window_size=tuple(windows),
        mlp_ratio=_shape(sd, "layers.0.blocks.0.mlp.fc1.weight")[0] / embed_dim,
        qkv_bias=("layers.0.blocks.0.attn.qkv.bias" if version == 1 else "layers.0.blocks.0.attn.q_bias") in sd,
        pretrained_window_size=tuple(pretrained),
        num_classes=_shape(sd, "head.fc.weight")[0] if "head.fc.weight" in sd else 0,
    )


def _swin_name_tokens(
    hub: Optional[TimmHubConfig], name: str
) -> tuple[Optional[int], Optional[int], Optional[int], Optional[int]]:
    """:func:`_name_tokens` of the config's architecture, else of the file or folder name."""
    for candidate in ((hub.architecture if hub else ""), name):
        tokens = _name_tokens(candidate)
        if tokens[1] is not None:
            return tokens
    return (None, None, None, None)


def _name_size(name: str, hub: Optional[TimmHubConfig]) -> Optional[tuple[int, int]]:
    size = _swin_name_tokens(hub, name)[3]
    return (size, size) if size else None


def _stage_values(value: Any, num_stages: int, path: PathLike, what: str) -> list[int]:
    """A per-stage int list from an int, an (h, w) pair or a per-stage list (square windows only).

    As in timm, a ``window_size`` of two ints is one (h, w) for every stage, even with two stages;
    ``pretrained_window_sizes`` is always per stage.
    """
    per_stage = isinstance(value, (list, tuple)) and len(value) == num_stages
    if per_stage and what == "window_size" and len(value) == 2 and all(isinstance(v, int) for v in value):
        per_stage = False
    if per_stage:
        pairs = [_pair(v, path, f"model_args.{what}") for v in value]
    else:
        pairs = [_pair(value, path, f"model_args.{what}")] * num_stages
    if any(h != w for h, w in pairs):
        raise CheckpointError(path, f"config.json: non-square {what} {value!r} is not supported")
    return [h for h, _ in pairs]


# --------------------------------------------------------------------------------------------
# expected shapes (the contract between converters and attnviz.nets)


def native_shapes(config: ArchConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a network built from ``config`` holds in its state dict, with its shape.

    This is timm 1.0's state dict for the same architecture (tests check it against timm).
    """
    if isinstance(config, ViTConfig):
        return _vit_shapes(config)
    return _swin_shapes(config)


def _vit_shapes(c: ViTConfig) -> dict[str, tuple[int, ...]]:
    D, H = c.embed_dim, c.mlp_hidden_dim
    s: dict[str, tuple[int, ...]] = {}
    if c.class_token:
        s["cls_token"] = (1, 1, D)
    if c.num_reg_tokens:
        s["reg_token"] = (1, c.num_reg_tokens, D)
    if c.distilled:
        s["dist_token"] = (1, 1, D)
    if c.pos_embed == "learn":
        gh, gw = c.grid_size
        s["pos_embed"] = (1, gh * gw + (0 if c.no_embed_class else c.num_prefix_tokens), D)
    s["patch_embed.proj.weight"] = (D, c.in_chans, c.patch_size, c.patch_size)
    if c.patch_bias:  # timm drops the patch-embedding bias when a pre-norm follows (CLIP)
        s["patch_embed.proj.bias"] = (D,)
    if c.pre_norm:
        s["norm_pre.weight"] = (D,)
        s["norm_pre.bias"] = (D,)
    for i in range(c.depth):
        b = f"blocks.{i}."
        s[b + "norm1.weight"] = s[b + "norm1.bias"] = (D,)
        s[b + "attn.qkv.weight"] = (3 * D, D)
        if c.qkv_bias:
            s[b + "attn.qkv.bias"] = (3 * D,)
        s[b + "attn.proj.weight"] = (D, D)
        s[b + "attn.proj.bias"] = (D,)
        if c.layer_scale:
            s[b + "ls1.gamma"] = (D,)
        s[b + "norm2.weight"] = s[b + "norm2.bias"] = (D,)
        s[b + "mlp.fc1.weight"] = (H, D)
        s[b + "mlp.fc1.bias"] = (H,)
        s[b + "mlp.fc2.weight"] = (D, H)
        s[b + "mlp.fc2.bias"] = (D,)
        if c.layer_scale:
            s[b + "ls2.gamma"] = (D,)
    norm = "fc_norm" if c.fc_norm else "norm"
    s[norm + ".weight"] = s[norm + ".bias"] = (D,)
    if c.num_classes:
        for head in ("head", "head_dist") if c.distilled else ("head",):
            s[head + ".weight"] = (c.num_classes, D)
            s[head + ".bias"] = (c.num_classes,)
    return s


def _swin_shapes(c: SwinConfig) -> dict[str, tuple[int, ...]]:
    E = c.embed_dim
    s: dict[str, tuple[int, ...]] = {
        "patch_embed.proj.weight": (E, c.in_chans, c.patch_size, c.patch_size),
        "patch_embed.proj.bias": (E,),
        "patch_embed.norm.weight": (E,),
        "patch_embed.norm.bias": (E,),
    }
    for i, depth in enumerate(c.depths):
        dim = E * 2**i
        heads = c.num_heads[i]
        if i > 0:
            d = f"layers.{i}.downsample."
            prev = dim // 2
            s[d + "reduction.weight"] = (2 * prev, 4 * prev)
            norm_dim = 4 * prev if c.version == 1 else 2 * prev  # v1 norms before reducing, v2 after
            s[d + "norm.weight"] = s[d + "norm.bias"] = (norm_dim,)
        hidden = int(dim * c.mlp_ratio)
        for j in range(depth):
            b = f"layers.{i}.blocks.{j}."
            s[b + "norm1.weight"] = s[b + "norm1.bias"] = (dim,)
            if c.version == 1:
                M = c.window_size[i]
                s[b + "attn.relative_position_bias_table"] = ((2 * M - 1) ** 2, heads)
                if c.qkv_bias:
                    s[b + "attn.qkv.bias"] = (3 * dim,)
            else:
                s[b + "attn.logit_scale"] = (heads, 1, 1)
                if c.qkv_bias:
                    s[b + "attn.q_bias"] = s[b + "attn.v_bias"] = (dim,)
                s[b + "attn.cpb_mlp.0.weight"] = (_CPB_HIDDEN, 2)
                s[b + "attn.cpb_mlp.0.bias"] = (_CPB_HIDDEN,)
                s[b + "attn.cpb_mlp.2.weight"] = (heads, _CPB_HIDDEN)
            s[b + "attn.qkv.weight"] = (3 * dim, dim)
            s[b + "attn.proj.weight"] = (dim, dim)
            s[b + "attn.proj.bias"] = (dim,)
            s[b + "norm2.weight"] = s[b + "norm2.bias"] = (dim,)
            s[b + "mlp.fc1.weight"] = (hidden, dim)
            s[b + "mlp.fc1.bias"] = (hidden,)
            s[b + "mlp.fc2.weight"] = (dim, hidden)
            s[b + "mlp.fc2.bias"] = (dim,)
    final = E * 2 ** (len(c.depths) - 1)
    s["norm.weight"] = s["norm.bias"] = (final,)
    if c.num_classes:
        s["head.fc.weight"] = (c.num_classes, final)
        s["head.fc.bias"] = (c.num_classes,)
    return s


def check_shapes(config: ArchConfig, sd: Mapping[str, torch.Tensor], path: PathLike) -> None:
    """Raise :class:`CheckpointError` unless ``sd`` holds exactly the tensors ``config`` implies."""
    expected = native_shapes(config)

    def some(keys: list[str]) -> str:
        return "; ".join(keys[:3]) + ("; ..." if len(keys) > 3 else "")

    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} is {tuple(sd[k].shape)}, expected {expected[k]}"
             for k in expected if k in sd and tuple(sd[k].shape) != expected[k]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s) ({some(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) ({some(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} tensor(s) of the wrong shape ({some(wrong)})")
    if problems:
        kind = "ViT" if isinstance(config, ViTConfig) else f"Swin v{config.version}"
        raise CheckpointError(path, f"the weights do not form a consistent {kind}: " + ", ".join(problems))


# --------------------------------------------------------------------------------------------
# entry point


def convert_timm(
    sd: Mapping[str, torch.Tensor],
    config: Optional[Mapping[str, Any]] = None,
    path: PathLike = "",
    img_size: Optional[tuple[int, int]] = None,
    name: str = "",
    source_format: str = "timm",
    family: Optional[Literal["vit", "swin"]] = None,
) -> tuple[ModelInfo, StateDict]:
    """(ModelInfo, native state dict) from a timm-layout state dict and its optional hub config.

    ``img_size`` overrides the input size. A Swin network is built for it; a ViT keeps the size its
    position embedding was stored at in ``config.img_size`` (the network resamples the embedding)
    and runs at ``img_size`` through ``preprocess.input_size``.
    """
    hub = parse_hub_config(config, path)
    native = strip_buffers(sd)
    # Old ViT checkpoints carry a pre-logits layer timm drops too (unused by their classifiers).
    native = {k: v for k, v in native.items() if not k.startswith("pre_logits.")}
    model_name = hub.architecture if hub else name
    if family is None:
        family = "swin" if "layers.0.blocks.0.attn.qkv.weight" in native else "vit"
    if family == "swin":
        arch: ArchConfig = swin_config_from_state_dict(native, hub, img_size, path, name)
        input_size = arch.img_size
    else:
        arch = vit_config_from_state_dict(native, hub, img_size, path)
        input_size = img_size or _vit_input_size(hub, arch)
    info = ModelInfo(
        family=family,
        config=arch,
        preprocess=preprocess_from_timm(hub, input_size, path),
        class_names=class_names_for(arch.num_classes, hub),
        source_format=source_format,
        path=os.fspath(path),
        name=model_name,
    )
    return info, native


def _vit_input_size(hub: Optional[TimmHubConfig], arch: ViTConfig) -> tuple[int, int]:
    size = hub.pretrained_cfg.get("input_size") if hub else None
    if isinstance(size, (list, tuple)) and len(size) == 3:
        return (int(size[1]), int(size[2]))
    return arch.img_size


__all__ = [
    "TimmHubConfig",
    "is_timm_hub_config",
    "parse_hub_config",
    "vit_config_from_state_dict",
    "swin_config_from_state_dict",
    "preprocess_from_timm",
    "class_names_for",
    "native_shapes",
    "check_shapes",
    "convert_timm",
    "strip_buffers",
    "normalize_img_size",
]
