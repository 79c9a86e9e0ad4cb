"""Convert transformers (Hugging Face) checkpoints of ViT, DeiT, DINOv2 and Swin v1/v2 to our layout.

Our native layout is timm 1.0's key layout for ``VisionTransformer`` (+ ``VisionTransformerDistilled``),
``SwinTransformer`` and ``SwinTransformerV2`` without non-persistent buffers. The transformers models
compute the same functions under other names; the few real transforms are:

- q, k, v projections are fused into one ``qkv`` linear (rows stacked q, k, v); Swin v2 keeps its
  q and v biases separate (``q_bias``, ``v_bias``; the key has no bias in either library).
- Swin's patch merging sits at the end of a stage in transformers and at the start of the next
  stage in timm: ``encoder.layers.{i}.downsample`` becomes ``layers.{i+1}.downsample``. Both
  concatenate the 2x2 neighbours in the same order (rows 0,1 of column 0, then of column 1), so the
  reduction and norm weights are used as they are.
- DINOv2 with registers adds the first position embedding to the class token and inserts the
  registers after it; timm's ``no_embed_class`` layout gets the same sum by folding that embedding
  into ``cls_token``.

Both serialised layouts are read: the one ``save_pretrained`` writes (and the hub holds,
``encoder.layer.{i}.attention.attention.query``) and transformers 5's module names
(``layers.{i}.attention.q_proj``), which appear when a model's ``state_dict()`` is saved directly.
Dropped on purpose: ViT's pooler (a tanh projection of the class token that no classifier reads),
mask tokens and masked-image-modelling decoders (pre-training only), and index buffers.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any, Optional

import torch

from attnviz.checkpoints.errors import CheckpointError
from attnviz.nets.config import ModelInfo, PreprocessConfig, SwinConfig, ViTConfig

log = logging.getLogger(__name__)

Tensor = torch.Tensor
StateDict = dict[str, Tensor]

VIT_MODEL_TYPES = ("vit", "deit", "dinov2", "dinov2_with_registers")
SWIN_MODEL_TYPES = ("swin", "swinv2")
SUPPORTED_MODEL_TYPES = VIT_MODEL_TYPES + SWIN_MODEL_TYPES

# base_model_prefix of each transformers model class: heads live outside it.
_BODY_PREFIX = {
    "vit": "vit.",
    "deit": "deit.",
    "dinov2": "dinov2.",
    "dinov2_with_registers": "dinov2_with_registers.",
    "swin": "swin.",
    "swinv2": "swinv2.",
}
_BODY_ROOTS = ("embeddings.", "encoder.", "layers.", "layernorm.", "pooler.")

_DROP = "-"  # rename target meaning "not part of our layout"

# Block sub-modules: transformers name (saved layout or transformers-5 layout) -> timm name.
# 'q', 'k', 'v' are collected and fused into attn.qkv.
_VIT_BLOCK = {
    "attention.attention.query": "q", "attention.q_proj": "q",
    "attention.attention.key": "k", "attention.k_proj": "k",
    "attention.attention.value": "v", "attention.v_proj": "v",
    "attention.output.dense": "attn.proj", "attention.o_proj": "attn.proj",
    "layernorm_before": "norm1", "norm1": "norm1",
    "layernorm_after": "norm2", "norm2": "norm2",
    "intermediate.dense": "mlp.fc1", "mlp.fc1": "mlp.fc1",
    "output.dense": "mlp.fc2", "mlp.fc2": "mlp.fc2",
    "layer_scale1": "ls1", "layer_scale2": "ls2",
}
_SWIN_BLOCK = {
    "attention.self.query": "q", "attention.q_proj": "q",
    "attention.self.key": "k", "attention.k_proj": "k",
    "attention.self.value": "v", "attention.v_proj": "v",
    "attention.output.dense": "attn.proj", "attention.o_proj": "attn.proj",
    "attention.self": "attn",  # relative_position_bias_table, logit_scale (v2)
    "attention.relative_position_bias": "attn",
    "attention.self.continuous_position_bias_mlp.0": "attn.cpb_mlp.0",
    "attention.self.continuous_position_bias_mlp.2": "attn.cpb_mlp.2",
    "layernorm_before": "norm1", "layernorm_after": "norm2",
    "intermediate.dense": "mlp.fc1", "mlp.fc1": "mlp.fc1",
    "output.dense": "mlp.fc2", "mlp.fc2": "mlp.fc2",
}
_PARAM_RENAME = {"lambda1": "gamma"}
_BUFFERS = ("relative_position_index", "relative_coords_table")


def is_hf_config(config: Any) -> bool:
    """True for a transformers ``config.json`` of a model type this module converts."""
    return isinstance(config, dict) and config.get("model_type") in SUPPORTED_MODEL_TYPES


def convert_hf(
    config: dict,
    state_dict: StateDict,
    preprocessor: Optional[dict],
    path: str,
) -> tuple[ModelInfo, StateDict]:
    """A transformers checkpoint (config.json + weights [+ preprocessor_config.json]) in our layout.

    Raises CheckpointError naming ``path`` for anything that does not map exactly: another model
    type, a SwiGLU MLP, absolute position embeddings in Swin, an unknown or missing tensor, a
    shape that contradicts the config.
    """
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise CheckpointError(
            path, f"transformers model_type {model_type!r} is not supported "
                  f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
    body, heads = _split_body(state_dict, model_type)
    if not body:
        raise CheckpointError(path, f"the weights hold no transformers {model_type} backbone tensors "
                                    f"(first keys: {_few(list(state_dict))})")
    family = "swin" if model_type in SWIN_MODEL_TYPES else "vit"
    convert = _convert_swin if family == "swin" else _convert_vit
    try:
        arch, native = convert(config, body, heads, model_type, path)
    except (TypeError, ValueError, KeyError, AttributeError) as err:  # e.g. "hidden_size": "big"
        raise CheckpointError(path, f"config.json has an unreadable entry ({err})") from err
    info = ModelInfo(
        family=family,
        config=arch,
        preprocess=preprocess_from_hf(preprocessor, arch.img_size, path),
        class_names=_class_names(config, arch.num_classes),
        source_format="transformers",
        path=str(path),
        name=_model_name(config, path),
    )
    return info, native


# ---------------------------------------------------------------------------------------------
# shared helpers


def _split_body(state_dict: StateDict, model_type: str) -> tuple[StateDict, StateDict]:
    """(backbone tensors with the model prefix removed, head tensors) of a checkpoint."""
    prefix = _BODY_PREFIX[model_type]
    if any(k.startswith(prefix) for k in state_dict):
        body = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        heads = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
    else:  # a base model (ViTModel, SwinModel, Dinov2Model ...) saved without prefix
        body = {k: v for k, v in state_dict.items() if k.startswith(_BODY_ROOTS)}
        heads = {k: v for k, v in state_dict.items() if not k.startswith(_BODY_ROOTS)}
    return body, heads


def _pair(value: Any, name: str, path: str) -> tuple[int, int]:
    """An int or [h, w] config entry as (h, w)."""
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    raise CheckpointError(path, f"config.json has an unreadable {name}: {value!r}")


def _square_patch(config: dict, path: str) -> int:
    ph, pw = _pair(config.get("patch_size", 16), "patch_size", path)
    if ph != pw:
        raise CheckpointError(path, f"non-square patches ({ph}x{pw}) are not supported")
    return ph


def _check_activation(config: dict, path: str) -> None:
    act = config.get("hidden_act", "gelu")
    if act != "gelu":  # transformers' 'gelu' is the exact (erf) GELU, as nn.GELU in timm
        raise CheckpointError(path, f"hidden_act {act!r} is not supported (only the exact 'gelu')")


def _need(state: StateDict, key: str, path: str) -> Tensor:
    if key not in state:
        raise CheckpointError(path, f"tensor '{key}' is missing from the weights")
    return state[key]


def _few(keys: list[str], n: int = 4) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(f"'{k}'" for k in keys[:n]) + more


def _unknown(keys: list[str], what: str, path: str) -> None:
    if keys:
        raise CheckpointError(path, f"{what} has tensors this converter does not know: {_few(sorted(keys))}")


def _check_shape(t: Tensor, shape: tuple[int, ...], key: str, path: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise CheckpointError(
            path, f"tensor '{key}' has shape {tuple(t.shape)}, the config implies {tuple(shape)}")


def _rename_block_part(rest: str, table: dict[str, str]) -> Optional[tuple[str, str]]:
    """'attention.output.dense.weight' -> ('attn.proj', 'weight') by the module table; None if unknown."""
    if "." not in rest:
        return None
    module, param = rest.rsplit(".", 1)
    target = table.get(module)
    if target is None:
        return None
    if param in _BUFFERS:
        return (_DROP, param)
    return (target, _PARAM_RENAME.get(param, param))


def _collect_blocks(
    body: StateDict,
    pattern: str,
    table: dict[str, str],
    path: str,
) -> tuple[dict[tuple[int, ...], dict[str, Tensor]], StateDict]:
    """Group the block tensors by block index: {index: {'attn.proj.weight': t, 'q.weight': t, ...}}.

    Returns the groups and the tensors that are not block tensors.
    """
    block_re = re.compile(pattern)
    blocks: dict[tuple[int, ...], dict[str, Tensor]] = {}
    rest_of: StateDict = {}
    unknown: list[str] = []
    for key, t in body.items():
        m = block_re.match(key)
        if m is None:
            rest_of[key] = t
            continue
        index = tuple(int(g) for g in m.groups()[:-1])
        renamed = _rename_block_part(m.groups()[-1], table)
        if renamed is None:
            unknown.append(key)
            continue
        target, param = renamed
        if target != _DROP:
            blocks.setdefault(index, {})[f"{target}.{param}"] = t
    _unknown(unknown, "a transformer block", path)
    return blocks, rest_of


def _fuse_qkv(parts: dict[str, Tensor], dst: str, path: str, src: str, separate_qv_bias: bool) -> StateDict:
    """q, k, v linears of one block -> timm's fused qkv (rows q | k | v), or q_bias/v_bias for Swin v2."""
    out: StateDict = {}
    weights = [parts.get(f"{n}.weight") for n in "qkv"]
    if any(w is None for w in weights):
        missing = [n for n, w in zip("qkv", weights) if w is None]
        raise CheckpointError(path, f"{src}: the {'/'.join(missing)} projection weight is missing")
    out[f"{dst}.qkv.weight"] = torch.cat(weights, dim=0)  # (3*C, C)
    biases = {n: parts.get(f"{n}.bias") for n in "qkv"}
    if separate_qv_bias:
        if biases["k"] is not None and bool(torch.any(biases["k"] != 0)):
            raise CheckpointError(path, f"{src}: a Swin v2 key projection with a non-zero bias "
                                        "is not supported")
        if (biases["q"] is None) != (biases["v"] is None):
            raise CheckpointError(path, f"{src}: Swin v2 needs both query and value biases or neither")
        if biases["q"] is not None:
            out[f"{dst}.q_bias"] = biases["q"]
            out[f"{dst}.v_bias"] = biases["v"]
    elif any(b is not None for b in biases.values()):
        # A missing bias is a zero bias (transformers creates all three or none; be lenient).
        zeros = {n: torch.zeros(w.shape[0], dtype=w.dtype) for n, w in zip("qkv", weights)}
        out[f"{dst}.qkv.bias"] = torch.cat(
            [biases[n] if biases[n] is not None else zeros[n] for n in "qkv"])  # (3*C,)
    return out


def _class_names(config: dict, num_classes: int) -> Optional[list[str]]:
    """Names from id2label, unless they are transformers' placeholders LABEL_0, LABEL_1, ..."""
    id2label = config.get("id2label")
    if not num_classes or not isinstance(id2label, dict):
        return None
    try:
        labels = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError):
        return None
    if sorted(labels) != list(range(num_classes)):
        return None
    names = [labels[i] for i in range(num_classes)]
    if all(re.fullmatch(r"LABEL_\d+", n) for n in names):
        return None
    return names


def _model_name(config: dict, path: str) -> str:
    name = config.get("_name_or_path")
    if isinstance(name, str) and name:
        return name
    p = os.path.normpath(os.fspath(path))
    folder = p if os.path.isdir(p) or not os.path.splitext(p)[1] else os.path.dirname(p)
    return os.path.basename(folder) or os.path.basename(p)


# ---------------------------------------------------------------------------------------------
# ViT, DeiT, DINOv2 (+ registers)


def _convert_vit(
    config: dict, body: StateDict, heads: StateDict, model_type: str, path: str
) -> tuple[ViTConfig, StateDict]:
    _check_activation(config, path)
    if config.get("use_swiglu_ffn"):
        raise CheckpointError(path, "DINOv2 with a SwiGLU MLP (use_swiglu_ffn) is not supported")

    C = int(config.get("hidden_size", 768))
    depth = int(config.get("num_hidden_layers", 12))
    heads_n = int(config.get("num_attention_heads", 12))
    if heads_n <= 0 or C % heads_n:
        raise CheckpointError(path, f"hidden_size {C} is not divisible by num_attention_heads {heads_n}")
    img = _pair(config.get("image_size", 224), "image_size", path)
    patch = _square_patch(config, path)
    in_chans = int(config.get("num_channels", 3))
    grid = (img[0] // patch, img[1] // patch)

    blocks, other = _collect_blocks(body, r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)$", _VIT_BLOCK, path)
    if sorted(i for (i,) in blocks) != list(range(depth)):
        raise CheckpointError(
            path, f"the weights hold blocks {sorted(i for (i,) in blocks)}, config.json says {depth}")

    out: StateDict = {}
    proj_w = _need(other, "embeddings.patch_embeddings.projection.weight", path)
    _check_shape(proj_w, (C, in_chans, patch, patch), "embeddings.patch_embeddings.projection.weight", path)
    out["patch_embed.proj.weight"] = proj_w
    out["patch_embed.proj.bias"] = _need(other, "embeddings.patch_embeddings.projection.bias", path)
    cls = _need(other, "embeddings.cls_token", path)
    pos = _need(other, "embeddings.position_embeddings", path)
    dist = other.get("embeddings.distillation_token")
    regs = other.get("embeddings.register_tokens")
    out["norm.weight"] = _need(other, "layernorm.weight", path)
    out["norm.bias"] = _need(other, "layernorm.bias", path)
    known = {
        "embeddings.patch_embeddings.projection.weight", "embeddings.patch_embeddings.projection.bias",
        "embeddings.cls_token", "embeddings.position_embeddings", "embeddings.distillation_token",
        "embeddings.register_tokens", "layernorm.weight", "layernorm.bias",
        "embeddings.mask_token",  # masked-image-modelling input only
        "pooler.dense.weight", "pooler.dense.bias",  # ViTModel's pooler: no classifier reads it
    }
    _unknown([k for k in other if k not in known], "the backbone", path)
    if "pooler.dense.weight" in other:
        log.info("%s: dropped ViT's pooler (tanh projection of the class token; not used for logits)", path)

    n_dist = 1 if dist is not None else 0
    n_reg = int(regs.shape[1]) if regs is not None else 0
    if model_type == "dinov2_with_registers" and n_reg != int(config.get("num_register_tokens", n_reg)):
        raise CheckpointError(path, f"register_tokens holds {n_reg} tokens, config.json says "
                                    f"{config.get('num_register_tokens')}")
    _check_shape(pos, (1, 1 + n_dist + grid[0] * grid[1], C), "embeddings.position_embeddings", path)

    ls = model_type in ("dinov2", "dinov2_with_registers")
    qkv_bias = bool(config.get("qkv_bias", True))
    mlp_hidden = _vit_blocks(blocks, C, qkv_bias, ls, out, path)
    if model_type in ("vit", "deit"):
        expected_hidden = int(config.get("intermediate_size", 4 * C))
    else:  # DINOv2: int(hidden_size * mlp_ratio)
        expected_hidden = int(C * config.get("mlp_ratio", 4))
    if mlp_hidden != expected_hidden:
        raise CheckpointError(path, f"MLP width {mlp_hidden} in the weights, config.json implies "
                                    f"{expected_hidden}")

    # Class token, distillation token, registers and position embedding.
    no_embed_class = False
    out["cls_token"] = cls
    if regs is not None:
        if model_type == "dinov2_with_registers":
            # transformers: [cls + pos0, registers, patches + pos1:]; timm no_embed_class adds pos to
            # patches only, so the class token takes its position embedding with it.
            out["cls_token"] = cls + pos[:, :1]  # (1, 1, C)
            pos = pos[:, 1:].contiguous()  # (1, gh*gw, C)
            no_embed_class = True
        out["reg_token"] = regs
    out["pos_embed"] = pos

    head_state, num_classes, distilled, dist_as_reg = _vit_heads(heads, dist, C, model_type, path)
    out.update(head_state)
    if dist is not None and dist_as_reg:
        out["reg_token"] = dist  # (1, 1, C)
        n_reg = 1
    elif dist is not None:
        out["dist_token"] = dist

    arch = ViTConfig(
        img_size=img,
        patch_size=patch,
        in_chans=in_chans,
        embed_dim=C,
        depth=depth,
        num_heads=heads_n,
        mlp_hidden_dim=int(mlp_hidden),
        qkv_bias=qkv_bias,
        class_token=True,
        num_reg_tokens=n_reg,
        distilled=distilled,
        pos_embed="learn",
        no_embed_class=no_embed_class,
        layer_scale=ls,
        pre_norm=False,
        global_pool="token",
        fc_norm=False,
        num_classes=num_classes,
        norm_eps=float(config.get("layer_norm_eps", 1e-12 if model_type in ("vit", "deit") else 1e-6)),
        # transformers resamples position embeddings bicubic without antialias, except DINOv2-reg.
        pos_interp="bicubic",
        pos_interp_antialias=model_type == "dinov2_with_registers",
    )
    return arch, out


def _vit_blocks(
    blocks: dict[tuple[int, ...], dict[str, Tensor]], C: int, qkv_bias: bool, layer_scale: bool,
    out: StateDict, path: str,
) -> int:
    """Write blocks.{i}.* into ``out``; returns the MLP width (the same in every block)."""
    mlp_hidden = -1
    names = ["attn.proj.weight", "attn.proj.bias", "norm1.weight", "norm1.bias", "norm2.weight",
             "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
    names += ["ls1.gamma", "ls2.gamma"] if layer_scale else []
    qkv_names = {f"{q}.{p}" for q in "qkv" for p in ("weight", "bias")}
    for (i,), parts in sorted(blocks.items()):
        src, dst = f"block {i}", f"blocks.{i}"
        fused = _fuse_qkv(parts, f"{dst}.attn", path, src, separate_qv_bias=False)
        _check_shape(fused[f"{dst}.attn.qkv.weight"], (3 * C, C), f"{src} q/k/v weight", path)
        if (f"{dst}.attn.qkv.bias" in fused) != qkv_bias:
            raise CheckpointError(path, f"{src}: q/k/v biases {'missing' if qkv_bias else 'present'} "
                                        f"although config.json has qkv_bias={qkv_bias}")
        out.update(fused)
        for n in names:
            if n not in parts:
                raise CheckpointError(path, f"{src}: tensor '{n}' (timm name) is missing from the weights")
            out[f"{dst}.{n}"] = parts[n]
        extra = sorted(set(parts) - set(names) - qkv_names)
        _unknown([f"{src}.{n}" for n in extra], "a transformer block", path)
        hidden = int(parts["mlp.fc1.weight"].shape[0])
        if mlp_hidden >= 0 and hidden != mlp_hidden:
            raise CheckpointError(path, f"{src}: MLP width {hidden} differs from block 0's {mlp_hidden}")
        mlp_hidden = hidden
    return mlp_hidden


def _vit_heads(
    heads: StateDict, dist: Optional[Tensor], C: int, model_type: str, path: str
) -> tuple[StateDict, int, bool, bool]:
    """(head tensors, num_classes, distilled, distillation token becomes a register) of a ViT-family model."""
    out: StateDict = {}
    keys = set(heads)
    num_classes, distilled, dist_as_reg = 0, dist is not None, False
    if "cls_classifier.weight" in heads or "distillation_classifier.weight" in heads:
        # DeiTForImageClassificationWithTeacher: logits = mean of both heads, as timm's distilled model.
        if dist is None:
            raise CheckpointError(path, "a distillation head without a distillation token")
        for src, dst in (("cls_classifier", "head"), ("distillation_classifier", "head_dist")):
            out[f"{dst}.weight"] = _need(heads, f"{src}.weight", path)
            out[f"{dst}.bias"] = _need(heads, f"{src}.bias", path)
            keys -= {f"{src}.weight", f"{src}.bias"}
        num_classes = int(out["head.weight"].shape[0])
        _check_shape(out["head.weight"], (num_classes, C), "cls_classifier.weight", path)
        _check_shape(out["head_dist.weight"], (num_classes, C), "distillation_classifier.weight", path)
    elif "classifier.weight" in heads:
        w = heads["classifier.weight"]
        if model_type in ("dinov2", "dinov2_with_registers"):
            raise CheckpointError(
                path, f"the {model_type} classifier reads [class token, mean of patch tokens] "
                      "(2 x hidden_size inputs), a head our ViT does not have; load the backbone "
                      "(Dinov2Model) instead")
        num_classes = int(w.shape[0])
        _check_shape(w, (num_classes, C), "classifier.weight", path)
        out["head.weight"] = w
        out["head.bias"] = _need(heads, "classifier.bias", path)
        keys -= {"classifier.weight", "classifier.bias"}
        if dist is not None:
            # DeiTForImageClassification: the distillation token takes part in attention but no head
            # reads it; in timm's layout that is one register token that has a position embedding.
            distilled, dist_as_reg = False, True
    # (DeiTModel without heads stays distilled: its features are the mean of class and distillation tokens.)
    keys -= {k for k in keys if k.startswith("decoder.")}  # masked-image-modelling decoder
    _unknown(sorted(keys), "the checkpoint outside the backbone", path)
    return out, num_classes, distilled, dist_as_reg


# ---------------------------------------------------------------------------------------------
# Swin v1 / v2


def _convert_swin(
    config: dict, body: StateDict, heads: StateDict, model_type: str, path: str
) -> tuple[SwinConfig, StateDict]:
    _check_activation(config, path)
    v2 = model_type == "swinv2"
    if config.get("use_absolute_embeddings") or "embeddings.position_embeddings" in body:
        raise CheckpointError(path, "Swin with absolute position embeddings (use_absolute_embeddings) "
                                    "is not supported")
    C = int(config.get("embed_dim", 96))
    depths = tuple(int(d) for d in config.get("depths", (2, 2, 6, 2)))
    num_heads = tuple(int(h) for h in config.get("num_heads", (3, 6, 12, 24)))
    if len(num_heads) != len(depths):
        raise CheckpointError(path, f"depths {depths} and num_heads {num_heads} differ in length")
    window = config.get("window_size", 7)
    if not isinstance(window, int):
        raise CheckpointError(path, f"window_size {window!r} is not supported (one square window expected)")
    img = _pair(config.get("image_size", 224), "image_size", path)
    patch = _square_patch(config, path)
    in_chans = int(config.get("num_channels", 3))
    mlp_ratio = float(config.get("mlp_ratio", 4.0))
    qkv_bias = bool(config.get("qkv_bias", True))
    S = len(depths)
    pretrained = (0,) * S
    if v2:
        pretrained = tuple(int(w) for w in (config.get("pretrained_window_sizes") or pretrained))
    if len(pretrained) < S:
        raise CheckpointError(path, f"pretrained_window_sizes {pretrained} does not have {S} stages")
    pretrained = pretrained[:S]  # transformers reads one entry per stage and ignores the rest
    eps = float(config.get("layer_norm_eps", 1e-5))
    if eps != 1e-5:
        # transformers' patch-embedding and patch-merging norms always use 1e-5; timm uses one eps.
        log.warning("%s: layer_norm_eps=%g applied to all norms (transformers keeps 1e-5 in the "
                    "patch embedding and patch merging norms)", path, eps)

    blocks, other = _collect_blocks(
        body, r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)$", _SWIN_BLOCK, path)
    for s, depth in enumerate(depths):
        found = sorted(b for (st, b) in blocks if st == s)
        if found != list(range(depth)):
            raise CheckpointError(path, f"stage {s} holds blocks {found}, config.json says {depth}")
    stray = sorted({st for (st, _) in blocks if st >= S})
    if stray:
        raise CheckpointError(path, f"the weights hold stages {stray} beyond config.json's {S}")

    out: StateDict = {}
    proj_w = _need(other, "embeddings.patch_embeddings.projection.weight", path)
    _check_shape(proj_w, (C, in_chans, patch, patch), "embeddings.patch_embeddings.projection.weight", path)
    out["patch_embed.proj.weight"] = proj_w
    out["patch_embed.proj.bias"] = _need(other, "embeddings.patch_embeddings.projection.bias", path)
    out["patch_embed.norm.weight"] = _need(other, "embeddings.norm.weight", path)
    out["patch_embed.norm.bias"] = _need(other, "embeddings.norm.bias", path)
    out["norm.weight"] = _need(other, "layernorm.weight", path)
    out["norm.bias"] = _need(other, "layernorm.bias", path)
    known = {"embeddings.patch_embeddings.projection.weight", "embeddings.patch_embeddings.projection.bias",
             "embeddings.norm.weight", "embeddings.norm.bias", "layernorm.weight", "layernorm.bias",
             "embeddings.mask_token"}
    ds_re = re.compile(r"^encoder\.layers\.(\d+)\.downsample\.(reduction\.weight|norm\.weight|norm\.bias)$")
    unknown = []
    for key, t in other.items():
        m = ds_re.match(key)
        if m is not None:
            # transformers merges patches at the end of stage i, timm at the start of stage i + 1.
            out[f"layers.{int(m.group(1)) + 1}.downsample.{m.group(2)}"] = t
        elif key not in known:
            unknown.append(key)
    _unknown(unknown, "the backbone", path)
    for s in range(1, S):
        dim = C * 2 ** (s - 1)
        red = _need(out, f"layers.{s}.downsample.reduction.weight", path)
        _check_shape(red, (2 * dim, 4 * dim), f"encoder.layers.{s - 1}.downsample.reduction.weight", path)
        _need(out, f"layers.{s}.downsample.norm.weight", path)
    if f"layers.{S}.downsample.reduction.weight" in out:
        raise CheckpointError(path, "the last stage has a patch merging layer, config.json has none")

    _swin_blocks(blocks, C, num_heads, window, mlp_ratio, qkv_bias, v2, out, path)

    num_classes = 0
    head_keys = set(heads)
    if "classifier.weight" in heads:
        w = heads["classifier.weight"]
        num_classes = int(w.shape[0])
        _check_shape(w, (num_classes, C * 2 ** (S - 1)), "classifier.weight", path)
        out["head.fc.weight"] = w
        out["head.fc.bias"] = _need(heads, "classifier.bias", path)
        head_keys -= {"classifier.weight", "classifier.bias"}
    head_keys -= {k for k in head_keys if k.startswith("decoder.")}  # masked-image-modelling decoder
    _unknown(sorted(head_keys), "the checkpoint outside the backbone", path)

    arch = SwinConfig(
        version=2 if v2 else 1,
        img_size=img,
        patch_size=patch,
        in_chans=in_chans,
        embed_dim=C,
        depths=depths,
        num_heads=num_heads,
        window_size=(window,) * S,
        mlp_ratio=mlp_ratio,
        qkv_bias=qkv_bias,
        pretrained_window_size=pretrained,
        num_classes=num_classes,
        norm_eps=eps,
    )
    return arch, out


def _swin_blocks(
    blocks: dict[tuple[int, ...], dict[str, Tensor]], C: int, num_heads: tuple[int, ...], window: int,
    mlp_ratio: float, qkv_bias: bool, v2: bool, out: StateDict, path: str,
) -> None:
    """Write layers.{s}.blocks.{b}.* into ``out``, checking shapes against the config."""
    names = ["attn.proj.weight", "attn.proj.bias", "norm1.weight", "norm1.bias", "norm2.weight",
             "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
    if v2:
        names += ["attn.logit_scale", "attn.cpb_mlp.0.weight", "attn.cpb_mlp.0.bias", "attn.cpb_mlp.2.weight"]
    else:
        names += ["attn.relative_position_bias_table"]
    qkv_names = {f"{q}.{p}" for q in "qkv" for p in ("weight", "bias")}
    for (s, b), parts in sorted(blocks.items()):
        src, dst = f"stage {s} block {b}", f"layers.{s}.blocks.{b}"
        dim, heads = C * 2 ** s, num_heads[s]
        fused = _fuse_qkv(parts, f"{dst}.attn", path, src, separate_qv_bias=v2)
        _check_shape(fused[f"{dst}.attn.qkv.weight"], (3 * dim, dim), f"{src} q/k/v weight", path)
        if (f"{dst}.attn.q_bias" in fused or f"{dst}.attn.qkv.bias" in fused) != qkv_bias:
            raise CheckpointError(path, f"{src}: q/k/v biases {'missing' if qkv_bias else 'present'} "
                                        f"although config.json has qkv_bias={qkv_bias}")
        out.update(fused)
        for n in names:
            if n not in parts:
                raise CheckpointError(path, f"{src}: tensor '{n}' (timm name) is missing from the weights")
            out[f"{dst}.{n}"] = parts[n]
        _unknown([f"{src}.{n}" for n in sorted(set(parts) - set(names) - qkv_names)], "a Swin block", path)
        _check_shape(parts["mlp.fc1.weight"], (int(dim * mlp_ratio), dim), f"{src} mlp fc1 weight", path)
        if v2:
            scale = parts["attn.logit_scale"]
            if scale.numel() != heads:
                raise CheckpointError(path, f"{src}: logit_scale has {scale.numel()} values "
                                            f"for {heads} heads")
            out[f"{dst}.attn.logit_scale"] = scale.reshape(heads, 1, 1)  # (heads, 1, 1) as timm
        else:
            _check_shape(parts["attn.relative_position_bias_table"], ((2 * window - 1) ** 2, heads),
                         f"{src} relative_position_bias_table", path)


# ---------------------------------------------------------------------------------------------
# preprocessing


def preprocess_from_hf(
    preprocessor: Optional[dict], img_size: tuple[int, int], path: str = ""
) -> PreprocessConfig:
    """The evaluation transform of a transformers ``preprocessor_config.json`` (parsed by
    ``attnviz.images.preprocess_config_from_hf``).

    Without a file, or with one whose layout gives no fixed input size, the image is resized
    straight to the model's image size (bicubic, ImageNet mean/std) and a warning is logged: a
    preprocessing quirk should not keep the weights from loading.
    """
    from attnviz.images import preprocess_config_from_hf  # PIL / numpy only when needed

    fallback = PreprocessConfig(input_size=tuple(img_size), crop_mode="resize", crop_pct=1.0)
    if preprocessor is None:
        return fallback
    if not isinstance(preprocessor, dict):
        log.warning("%s: preprocessor config is not a JSON object; resizing to %s", path, img_size)
        return fallback
    try:
        return preprocess_config_from_hf(preprocessor)
    except (ValueError, TypeError, KeyError) as err:
        log.warning("%s: preprocessor config not usable (%s); resizing to %s", path, err, img_size)
        return fallback


__all__: list[str] = ["SUPPORTED_MODEL_TYPES", "convert_hf", "is_hf_config", "preprocess_from_hf"]