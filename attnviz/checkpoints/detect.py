"""Which converter reads a checkpoint: two small tables instead of a chain of key sniffing.

0. A transformers ``config.json`` (it names a ``model_type``) hands everything to
   ``convert_hf``: its config, not the tensors, says what the model is.
1. ``SOURCES``: where the weights come from. The first entry whose predicate holds rewrites the
   state dict into timm's layout (or refuses it with the reason). A state dict that matches none
   is taken to be in timm's layout already.
2. ``FAMILIES``: which architecture a timm-layout state dict is; ``convert_timm`` then infers
   its config from the shapes (and timm's hub config.json when there is one).

Adding a source or family is one row and one function; the order of the rows is the only
precedence there is.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional

import torch

from attnviz.checkpoints import convert_official
from attnviz.checkpoints.convert_timm import convert_timm, is_timm_hub_config
from attnviz.checkpoints.errors import CheckpointError
from attnviz.nets.config import ModelInfo

StateDict = dict[str, torch.Tensor]
PathLike = str | os.PathLike[str]
Config = Optional[Mapping[str, Any]]


@dataclass(frozen=True)
class Source:
    """A checkpoint origin: how to recognise it and how to bring it into timm's layout."""

    name: str
    source_format: str  # ModelInfo.source_format it yields
    matches: Callable[[Mapping[str, torch.Tensor], Config], bool]
    to_timm: Callable[[Mapping[str, torch.Tensor], PathLike], StateDict]


@dataclass(frozen=True)
class Family:
    """An architecture in timm's layout and the key that proves it."""

    name: str
    family: Literal["vit", "swin"]  # ModelInfo.family
    matches: Callable[[Mapping[str, torch.Tensor]], bool]


# Key prefixes of transformers' ViT / DeiT / DINOv2 / Swin models (bare or with a task head).
_HF_PREFIXES = ("vit.", "deit.", "dinov2.", "swin.", "swinv2.", "embeddings.patch_embeddings.")


def is_transformers_config(config: Config) -> bool:
    """config.json written by transformers: it names a ``model_type`` (timm's names an
    ``architecture``). Unsupported model types go to ``convert_hf`` too, which says which it reads."""
    if not isinstance(config, Mapping) or is_timm_hub_config(config):
        return False
    return isinstance(config.get("model_type"), str)


def _looks_like_transformers(sd: Mapping[str, torch.Tensor], config: Config) -> bool:
    return any(k.startswith(_HF_PREFIXES) for k in sd)


def _refuse_transformers_without_config(sd: Mapping[str, torch.Tensor], path: PathLike) -> StateDict:
    raise CheckpointError(
        path, "these are Hugging Face transformers weights, which need the config.json they came with; "
        "open the model folder instead of the weights file"
    )


SOURCES: tuple[Source, ...] = (
    Source("transformers weights without config.json", "transformers", _looks_like_transformers,
           _refuse_transformers_without_config),
    Source("DINOv2 release", "official", lambda sd, cfg: convert_official.is_dinov2_release(sd),
           convert_official.dinov2_to_timm),
    Source("DeiT III release", "official", lambda sd, cfg: convert_official.is_deit3_release(sd),
           convert_official.deit3_to_timm),
    Source("Swin release (or timm < 0.9)", "official", lambda sd, cfg: convert_official.is_original_swin(sd),
           convert_official.swin_to_timm),
)

FAMILIES: tuple[Family, ...] = (
    Family("Swin v2", "swin", lambda sd: "layers.0.blocks.0.attn.logit_scale" in sd),
    Family("Swin v1", "swin", lambda sd: "layers.0.blocks.0.attn.relative_position_bias_table" in sd),
    Family("ViT", "vit", lambda sd: "patch_embed.proj.weight" in sd and "blocks.0.attn.qkv.weight" in sd),
)


def find_source(sd: Mapping[str, torch.Tensor], config: Config) -> Optional[Source]:
    """The first :data:`SOURCES` row that matches, None for timm's own layout."""
    return next((s for s in SOURCES if s.matches(sd, config)), None)


def find_family(sd: Mapping[str, torch.Tensor]) -> Optional[Family]:
    """The first :data:`FAMILIES` row that matches a timm-layout state dict."""
    return next((f for f in FAMILIES if f.matches(sd)), None)


def describe(sd: Mapping[str, torch.Tensor], config: Config, limit: int = 4) -> str:
    """A short account of what a state dict holds, for error messages."""
    items = list(sd.items())
    shown = "; ".join(f"{k} {tuple(v.shape)}" for k, v in items[:limit])
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    arch = ""
    if isinstance(config, Mapping):
        named = config.get("architecture") or config.get("model_type")
        if named:
            arch = f"config.json names '{named}'; "
    return f"{arch}{len(items)} tensors: {shown}{more}"


def convert(
    sd: Mapping[str, torch.Tensor],
    config: Config,
    preprocessor: Config,
    path: PathLike,
    img_size: Optional[tuple[int, int]] = None,
    name: str = "",
) -> tuple[ModelInfo, StateDict]:
    """(ModelInfo, native state dict) for a state dict and the configs that came with it."""
    if is_transformers_config(config):
        from attnviz.checkpoints.convert_hf import convert_hf

        assert config is not None
        return convert_hf(dict(config), dict(sd), dict(preprocessor) if preprocessor else None, os.fspath(path))

    source = find_source(sd, config)
    timm_sd = source.to_timm(sd, path) if source else dict(sd)
    family = find_family(timm_sd)
    if family is None:
        raise CheckpointError(
            path, "these weights fit none of the architectures attnviz reads (ViT, DeiT, DINO, DINOv2, "
            f"Swin v1/v2) — found {describe(sd, config)}"
        )
    hub_config = config if is_timm_hub_config(config) else None
    return convert_timm(
        timm_sd, hub_config, path, img_size, name, source.source_format if source else "timm", family.family
    )
