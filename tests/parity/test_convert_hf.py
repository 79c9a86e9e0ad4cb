"""transformers checkpoints converted by ``convert_hf`` run in timm exactly as in transformers.

Each case builds a tiny transformers model at random init, moves every parameter off its init value
(so layer scales, logit scales, position embeddings and bias tables all matter), saves it with
``save_pretrained``, converts the files and loads the result strictly into the timm class built from
the returned config. Logits (or final normalised features for headless models) must agree to 1e-5,
and so must the attention probabilities transformers returns (every block for ViT-family models,
the last block of each stage for Swin).
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Callable

import pytest
import torch
import transformers as T
from safetensors.torch import load_file
from timm.models.deit import VisionTransformerDistilled
from timm.models.swin_transformer import SwinTransformer
from timm.models.swin_transformer_v2 import SwinTransformerV2
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from attnviz.checkpoints.convert_hf import convert_hf, is_hf_config, preprocess_from_hf
from attnviz.checkpoints.errors import CheckpointError
from attnviz.nets.config import ModelInfo, SwinConfig, ViTConfig

ATOL = 1e-5
VIT_KW = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, image_size=32, patch_size=8,
              attn_implementation="eager")
SWIN_KW = dict(image_size=32, patch_size=2, embed_dim=16, depths=[2, 2, 2], num_heads=[2, 2, 4],
               window_size=4, mlp_ratio=2.0, attn_implementation="eager")
LABELS = {"id2label": {0: "cat", 1: "dog", 2: "owl"}, "label2id": {"cat": 0, "dog": 1, "owl": 2}}


# --------------------------------------------------------------------------------------------
# timm models built straight from our configs


def timm_vit(cfg: ViTConfig) -> nn.Module:
    cls = VisionTransformerDistilled if cfg.distilled else VisionTransformer
    return cls(
        img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans, num_classes=cfg.num_classes,
        global_pool=cfg.global_pool, embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
        mlp_ratio=cfg.mlp_hidden_dim / cfg.embed_dim, qkv_bias=cfg.qkv_bias,
        init_values=1.0 if cfg.layer_scale else None, class_token=cfg.class_token, pos_embed=cfg.pos_embed,
        no_embed_class=cfg.no_embed_class, reg_tokens=cfg.num_reg_tokens, pre_norm=cfg.pre_norm,
        fc_norm=cfg.fc_norm, norm_layer=partial(nn.LayerNorm, eps=cfg.norm_eps),
    ).eval()


def timm_swin(cfg: SwinConfig) -> nn.Module:
    assert len(set(cfg.window_size)) == 1
    kw = dict(
        img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans, num_classes=cfg.num_classes,
        embed_dim=cfg.embed_dim, depths=cfg.depths, num_heads=cfg.num_heads, window_size=cfg.window_size[0],
        mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, drop_path_rate=0.0,
        norm_layer=partial(nn.LayerNorm, eps=cfg.norm_eps),
    )
    if cfg.version == 2:
        return SwinTransformerV2(pretrained_window_sizes=cfg.pretrained_window_size, **kw).eval()
    return SwinTransformer(**kw).eval()


def timm_model(info: ModelInfo) -> nn.Module:
    return timm_swin(info.config) if info.family == "swin" else timm_vit(info.config)


def capture_timm_attention(model: nn.Module, family: str) -> list[torch.Tensor]:
    """Hooks that collect timm's softmax output per block (the non-fused path is forced)."""
    probs: list[torch.Tensor] = []
    if family == "vit":
        for blk in model.blocks:
            blk.attn.fused_attn = False  # attn_drop then receives the softmax probabilities
            blk.attn.attn_drop.register_forward_hook(lambda m, inp, out: probs.append(inp[0]))
    else:
        for stage in model.layers:
            for blk in stage.blocks:
                if hasattr(blk.attn, "fused_attn"):
                    blk.attn.fused_attn = False
                blk.attn.softmax.register_forward_hook(lambda m, inp, out: probs.append(out))
    return probs


# --------------------------------------------------------------------------------------------
# transformers side


def perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    """Move every parameter away from its initial value so that no weight can be silently ignored."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def save_and_read(model: nn.Module, folder: Path, fmt: str = "safetensors") -> tuple[dict, dict]:
    """config.json and the weights as save_pretrained writes them (and as a legacy pytorch_model.bin)."""
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    state = load_file(folder / "model.safetensors")
    if fmt == "bin":  # transformers 5 only writes safetensors; the same tensors as a pickled .bin
        (folder / "model.safetensors").unlink()
        torch.save(state, folder / "pytorch_model.bin")
        state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    return config, state


CASES: dict[str, Callable[[], nn.Module]] = {
    "vit_cls": lambda: T.ViTForImageClassification(T.ViTConfig(intermediate_size=96, **VIT_KW, **LABELS)),
    "vit_base": lambda: T.ViTModel(T.ViTConfig(intermediate_size=64, **VIT_KW)),
    "deit_teacher": lambda: T.DeiTForImageClassificationWithTeacher(
        T.DeiTConfig(intermediate_size=64, num_labels=5, **VIT_KW)),
    "deit_cls": lambda: T.DeiTForImageClassification(
        T.DeiTConfig(intermediate_size=64, num_labels=5, **VIT_KW)),
    "deit_base": lambda: T.DeiTModel(T.DeiTConfig(intermediate_size=64, **VIT_KW)),
    "dinov2": lambda: T.Dinov2Model(T.Dinov2Config(mlp_ratio=2, **VIT_KW)),
    "dinov2_reg": lambda: T.Dinov2WithRegistersModel(
        T.Dinov2WithRegistersConfig(mlp_ratio=2, num_register_tokens=2, **VIT_KW)),
    "swin_cls": lambda: T.SwinForImageClassification(T.SwinConfig(num_labels=7, **SWIN_KW)),
    "swin_base": lambda: T.SwinModel(T.SwinConfig(**SWIN_KW)),
    "swinv2_cls": lambda: T.Swinv2ForImageClassification(
        T.Swinv2Config(num_labels=7, pretrained_window_sizes=[8, 0, 0], **SWIN_KW)),
    "swinv2_base": lambda: T.Swinv2Model(T.Swinv2Config(**SWIN_KW)),
}
HEADLESS = {"vit_base", "deit_base", "dinov2", "dinov2_reg", "swin_base", "swinv2_base"}


def hf_reference(model: nn.Module, x: torch.Tensor, case: str) -> tuple[torch.Tensor, tuple]:
    """(logits or final normalised features, attentions) from the transformers model."""
    with torch.no_grad():
        out = model(pixel_values=x, output_attentions=True)
    if case in HEADLESS:
        return out.last_hidden_state, out.attentions
    return out.logits, out.attentions


def timm_output(model: nn.Module, x: torch.Tensor, case: str, family: str) -> torch.Tensor:
    with torch.no_grad():
        if case not in HEADLESS:
            return model(x)
        feats = model.forward_features(x)
    return feats.flatten(1, 2) if family == "swin" else feats  # Swin: (B, H, W, C) -> (B, L, C)


# --------------------------------------------------------------------------------------------
# parity


@pytest.mark.parametrize("case", list(CASES))
def test_converted_weights_match_transformers(case: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    hf = perturb(CASES[case]())
    folder = tmp_path / f"my-{case}"
    fmt = "bin" if case in ("vit_base", "swin_cls") else "safetensors"
    config, state = save_and_read(hf, folder, fmt=fmt)
    assert is_hf_config(config)

    processor = {"image_processor_type": "ViTImageProcessor", "size": {"height": 40, "width": 40},
                 "resample": 2, "image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6]}
    info, native = convert_hf(config, state, processor, str(folder))

    assert info.source_format == "transformers" and info.name == f"my-{case}"
    assert info.family == ("swin" if case.startswith("swin") else "vit")
    assert info.config.norm_eps == hf.config.layer_norm_eps
    assert info.config.num_classes == (0 if case in HEADLESS else hf.config.num_labels)
    if case == "vit_cls":
        assert info.class_names == ["cat", "dog", "owl"]
        assert info.config.norm_eps == 1e-12 and info.config.mlp_hidden_dim == 96
    else:
        assert info.class_names is None  # LABEL_0.. placeholders are no names
    assert not any("pooler" in k or "mask_token" in k for k in native)
    assert info.preprocess.input_size == (40, 40) and info.preprocess.crop_mode == "resize"
    assert info.preprocess.mean == (0.1, 0.2, 0.3) and info.preprocess.interpolation == "bilinear"

    tm = timm_model(info)
    tm.load_state_dict(native, strict=True)
    timm_probs = capture_timm_attention(tm, info.family)

    x = torch.randn(2, 3, *info.config.img_size, generator=torch.Generator().manual_seed(1))
    ref, hf_attn = hf_reference(hf, x, case)
    got = timm_output(tm, x, case, info.family)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)

    if info.family == "vit":
        assert len(hf_attn) == len(timm_probs) == info.config.depth
        pairs = list(zip(hf_attn, timm_probs))
    else:  # transformers returns the last block of each stage
        last = [sum(info.config.depths[: s + 1]) - 1 for s in range(info.config.num_stages)]
        assert len(hf_attn) == info.config.num_stages and len(timm_probs) == sum(info.config.depths)
        pairs = [(hf_attn[s], timm_probs[i]) for s, i in enumerate(last)]
    for a_hf, a_timm in pairs:
        assert a_hf.shape == a_timm.shape
        torch.testing.assert_close(a_timm, a_hf, atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", ["vit_cls", "deit_teacher", "dinov2_reg", "swin_cls", "swinv2_cls"])
def test_transformers5_module_layout_converts_the_same(case: str, tmp_path: Path) -> None:
    """A raw ``model.state_dict()`` (transformers 5 names: q_proj, layers.N, ...) gives the same tensors."""
    torch.manual_seed(0)
    hf = perturb(CASES[case]())
    config, state = save_and_read(hf, tmp_path / case)
    in_memory = hf.state_dict()
    if int(T.__version__.split(".")[0]) >= 5 and not case.startswith("swinv2"):
        assert any("q_proj" in k for k in in_memory) and not any("q_proj" in k for k in state)
    _, from_file = convert_hf(config, state, None, str(tmp_path))
    _, from_modules = convert_hf(config, in_memory, None, str(tmp_path))
    assert sorted(from_file) == sorted(from_modules)
    for k in from_file:
        assert torch.equal(from_file[k], from_modules[k]), k


def test_swin_patch_merging_moves_to_next_stage(tmp_path: Path) -> None:
    hf = perturb(CASES["swin_cls"]())
    config, state = save_and_read(hf, tmp_path / "swin")
    _, native = convert_hf(config, state, None, str(tmp_path))
    assert "layers.0.downsample.reduction.weight" not in native
    assert torch.equal(native["layers.1.downsample.reduction.weight"],
                       state["swin.encoder.layers.0.downsample.reduction.weight"])
    assert torch.equal(native["head.fc.weight"], state["classifier.weight"])


@pytest.mark.parametrize("case", ["vit", "dinov2", "dinov2_reg"])
def test_position_embedding_resampling_matches_transformers(case: str, tmp_path: Path) -> None:
    """At another input size transformers resamples the position embedding bicubic without antialias
    (DINOv2 with registers: with antialias); the converted config says which, and our network built
    from it agrees with transformers. (timm always uses antialias, so it cannot serve here.)"""
    from attnviz.nets import build_model

    kw = dict(VIT_KW, image_size=48)  # trained grid 6x6, run on 4x4: antialias matters when shrinking
    make = {
        "vit": lambda: T.ViTModel(T.ViTConfig(intermediate_size=64, **kw)),
        "dinov2": lambda: T.Dinov2Model(T.Dinov2Config(mlp_ratio=2, **kw)),
        "dinov2_reg": lambda: T.Dinov2WithRegistersModel(
            T.Dinov2WithRegistersConfig(mlp_ratio=2, num_register_tokens=2, **kw)),
    }[case]
    hf = perturb(make())
    config, state = save_and_read(hf, tmp_path / case)
    info, native = convert_hf(config, state, None, str(tmp_path))
    assert info.config.pos_interp == "bicubic"
    assert info.config.pos_interp_antialias == (case == "dinov2_reg")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    extra = {"interpolate_pos_encoding": True} if case == "vit" else {}
    with torch.no_grad():
        ref = hf(pixel_values=x, **extra).last_hidden_state[:, 0]  # normalised class token
        got = build_model(info, native)(x)  # headless: the normalised class token
    torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------------------------
# what does not fit


def test_swiglu_dinov2_is_refused(tmp_path: Path) -> None:
    model = T.Dinov2Model(T.Dinov2Config(use_swiglu_ffn=True, mlp_ratio=2, **VIT_KW))
    config, state = save_and_read(model, tmp_path)
    with pytest.raises(CheckpointError, match="SwiGLU") as err:
        convert_hf(config, state, None, str(tmp_path))
    assert str(tmp_path) in str(err.value)


def test_dinov2_classifier_head_is_refused(tmp_path: Path) -> None:
    model = T.Dinov2ForImageClassification(T.Dinov2Config(mlp_ratio=2, num_labels=3, **VIT_KW))
    config, state = save_and_read(model, tmp_path)
    with pytest.raises(CheckpointError, match="mean of patch tokens"):
        convert_hf(config, state, None, str(tmp_path))


def test_swin_absolute_position_embeddings_are_refused(tmp_path: Path) -> None:
    config, state = save_and_read(T.SwinModel(T.SwinConfig(use_absolute_embeddings=True, **SWIN_KW)), tmp_path)
    with pytest.raises(CheckpointError, match="absolute position"):
        convert_hf(config, state, None, str(tmp_path))


def test_missing_and_unknown_tensors_are_named(tmp_path: Path) -> None:
    config, state = save_and_read(CASES["vit_cls"](), tmp_path)
    broken = dict(state)
    del broken["vit.encoder.layer.1.attention.output.dense.weight"]
    with pytest.raises(CheckpointError, match="block 1.*attn.proj.weight"):
        convert_hf(config, broken, None, "some/dir")
    extra = dict(state, **{"vit.encoder.layer.0.attention.attention.rope.weight": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="rope"):
        convert_hf(config, extra, None, "some/dir")
    wrong = dict(config, hidden_size=48)
    with pytest.raises(CheckpointError, match="shape"):
        convert_hf(wrong, state, None, "some/dir")
    with pytest.raises(CheckpointError, match="blocks"):
        convert_hf(dict(config, num_hidden_layers=4), state, None, "some/dir")
    with pytest.raises(CheckpointError, match="unreadable"):
        convert_hf(dict(config, hidden_size="big"), state, None, "some/dir")
    with pytest.raises(CheckpointError, match="no transformers vit backbone"):
        convert_hf(config, {"blocks.0.attn.qkv.weight": torch.zeros(3, 1)}, None, "some/dir")


def test_unsupported_model_type(tmp_path: Path) -> None:
    config = {"model_type": "beit", "architectures": ["BeitModel"]}
    assert not is_hf_config(config) and not is_hf_config(None) and not is_hf_config({"depth": 12})
    with pytest.raises(CheckpointError, match="beit") as err:
        convert_hf(config, {}, None, str(tmp_path / "beit"))
    assert "beit" in str(err.value) and str(tmp_path) in str(err.value)


# --------------------------------------------------------------------------------------------
# preprocessing


def _processor_json(processor, folder: Path) -> dict:
    processor.save_pretrained(folder)
    return json.loads((folder / "preprocessor_config.json").read_text())


def test_vit_processor_resizes_without_crop(tmp_path: Path) -> None:
    proc = _processor_json(T.ViTImageProcessor(size={"height": 96, "width": 128}, resample=3), tmp_path)
    pre = preprocess_from_hf(proc, (32, 32))
    assert pre.crop_mode == "resize" and pre.input_size == (96, 128)
    assert pre.interpolation == "bicubic" and pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5, 0.5, 0.5)


def test_bit_processor_is_shortest_edge_then_crop(tmp_path: Path) -> None:
    bit = T.BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                              image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    proc = _processor_json(bit, tmp_path)
    pre = preprocess_from_hf(proc, (518, 518))
    assert pre.crop_mode == "shortest_edge" and pre.shortest_edge == 256 and pre.input_size == (224, 224)
    assert pre.interpolation == "bicubic" and pre.mean == (0.485, 0.456, 0.406)


def test_deit_processor_is_resize_then_crop(tmp_path: Path) -> None:
    proc = _processor_json(T.DeiTImageProcessor(resample=2), tmp_path)
    pre = preprocess_from_hf(proc, (224, 224))
    assert pre.crop_mode == "resize_crop" and pre.resize_size == (256, 256) and pre.input_size == (224, 224)
    assert pre.interpolation == "bilinear"


def test_convnext_processor_uses_crop_pct_below_384(tmp_path: Path) -> None:
    small = _processor_json(T.ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.9),
                            tmp_path / "a")
    pre = preprocess_from_hf(small, (224, 224))
    assert pre.crop_mode == "shortest_edge" and pre.shortest_edge == int(224 / 0.9)
    assert pre.input_size == (224, 224)
    big = _processor_json(T.ConvNextImageProcessor(size={"shortest_edge": 384}), tmp_path / "b")
    pre = preprocess_from_hf(big, (224, 224))
    assert pre.crop_mode == "resize" and pre.input_size == (384, 384)


def test_legacy_missing_and_unusable_processor_configs() -> None:
    legacy = {"feature_extractor_type": "ViTFeatureExtractor", "size": 384, "resample": 0,
              "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_normalize": True}
    pre = preprocess_from_hf(legacy, (224, 224))
    assert pre.input_size == (384, 384) and pre.crop_mode == "resize" and pre.interpolation == "nearest"
    none = preprocess_from_hf(None, (48, 64))
    assert none.input_size == (48, 64) and none.crop_mode == "resize"
    # shortest-edge resize without a crop has no fixed size: fall back to the model's image size
    loose = preprocess_from_hf({"image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 40},
                                "do_center_crop": False}, (32, 32))
    assert loose.input_size == (32, 32) and loose.crop_mode == "resize"
