"""Reference timm models for attnviz configs (test utility).

``timm_model_for(info)`` builds the timm class whose state dict is attnviz's native layout for that
config, directly from the config's fields (no registry names, no pretrained weights). Loading a
converted state dict into it with ``strict=True`` and comparing its output with the model the
checkpoint was saved from proves the config was inferred right.
"""
from __future__ import annotations

from functools import partial

import torch
from timm.models.deit import VisionTransformerDistilled
from timm.models.swin_transformer import SwinTransformer
from timm.models.swin_transformer_v2 import SwinTransformerV2
from timm.models.vision_transformer import VisionTransformer

from attnviz.nets.config import ModelInfo, SwinConfig, ViTConfig


def _mlp_ratio(dim: int, hidden: int) -> float:
    """A ratio timm turns back into exactly ``hidden`` (it computes int(dim * ratio))."""
    ratio = hidden / dim
    if int(dim * ratio) != hidden:
        ratio = (hidden + 0.5) / dim
    assert int(dim * ratio) == hidden, (dim, hidden)
    return ratio


def timm_vit_for(c: ViTConfig) -> torch.nn.Module:
    """timm ``VisionTransformer`` (or DeiT's distilled subclass) with ``c``'s architecture."""
    cls = VisionTransformerDistilled if c.distilled else VisionTransformer
    return cls(
        img_size=c.img_size,
        patch_size=c.patch_size,
        in_chans=c.in_chans,
        num_classes=c.num_classes,
        global_pool=c.global_pool,
        embed_dim=c.embed_dim,
        depth=c.depth,
        num_heads=c.num_heads,
        mlp_ratio=_mlp_ratio(c.embed_dim, c.mlp_hidden_dim),
        qkv_bias=c.qkv_bias,
        init_values=1e-5 if c.layer_scale else None,
        class_token=c.class_token,
        pos_embed=c.pos_embed,
        no_embed_class=c.no_embed_class,
        reg_tokens=c.num_reg_tokens,
        pre_norm=c.pre_norm,
        fc_norm=c.fc_norm,
        dynamic_img_size=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=c.norm_eps),
    )


def timm_swin_for(c: SwinConfig) -> torch.nn.Module:
    """timm ``SwinTransformer`` / ``SwinTransformerV2`` with ``c``'s architecture."""
    kwargs = dict(
        img_size=c.img_size,
        patch_size=c.patch_size,
        in_chans=c.in_chans,
        num_classes=c.num_classes,
        embed_dim=c.embed_dim,
        depths=tuple(c.depths),
        num_heads=tuple(c.num_heads),
        # one (h, w) per stage: a bare pair would mean "this window for every stage"
        window_size=tuple((w, w) for w in c.window_size),
        mlp_ratio=c.mlp_ratio,
        qkv_bias=c.qkv_bias,
        drop_path_rate=0.0,
        norm_layer=partial(torch.nn.LayerNorm, eps=c.norm_eps),
    )
    if c.version == 2:
        return SwinTransformerV2(pretrained_window_sizes=tuple(c.pretrained_window_size), **kwargs)
    return SwinTransformer(**kwargs)


def timm_model_for(info: ModelInfo) -> torch.nn.Module:
    """The timm model (eval mode) matching ``info.config``, at random init."""
    c = info.config
    model = timm_vit_for(c) if isinstance(c, ViTConfig) else timm_swin_for(c)
    return model.eval()


def perturb_(model: torch.nn.Module, seed: int = 0, scale: float = 0.02) -> torch.nn.Module:
    """Add noise to every parameter so each one matters (e.g. layer-scale gammas are not ~1e-5,
    zero-initialised biases are not zero); returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return model.eval()


def assert_matches_reference(
    reference: torch.nn.Module,
    info: ModelInfo,
    state_dict: dict[str, torch.Tensor],
    input_size: tuple[int, int] | None = None,
    atol: float = 1e-5,
) -> None:
    """A timm model built from ``info`` loads ``state_dict`` strictly and computes what
    ``reference`` (the model the checkpoint was saved from) computes on a random input."""
    rebuilt = timm_model_for(info)
    rebuilt.load_state_dict(state_dict, strict=True)
    size = input_size or info.preprocess.input_size
    x = torch.randn(1, info.config.in_chans, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference.eval()(x)
        got = rebuilt(x)
    torch.testing.assert_close(got, expected, atol=atol, rtol=0)
