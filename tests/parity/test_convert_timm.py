"""Config inference from timm-layout checkpoints, proven against timm.

Each case builds a timm model at random init, perturbs every weight, saves it (safetensors, .pth,
nested dicts, timm's hub folder, a Hugging Face cache entry), loads it with ``load_checkpoint``,
rebuilds a timm model from the inferred config alone and checks it loads the returned state dict
strictly and computes the same logits (atol 1e-5). A second group reads the state dicts of
timm's registered full-size architectures on the meta device (no memory, no weights) and checks
every inferred config field against the model timm builds.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import save_file

timm = pytest.importorskip("timm")
from timm.models._hub import save_for_hf  # noqa: E402
from timm.models.deit import VisionTransformerDistilled  # noqa: E402
from timm.models.swin_transformer import SwinTransformer  # noqa: E402
from timm.models.swin_transformer_v2 import SwinTransformerV2  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

from attnviz.checkpoints import load_checkpoint, native_shapes  # noqa: E402
from attnviz.checkpoints.detect import convert  # noqa: E402
from attnviz.data import imagenet_class_names  # noqa: E402
from attnviz.nets.config import SwinConfig, ViTConfig  # noqa: E402

from tests.timm_ref import assert_matches_reference, perturb_, timm_model_for


def _vit(**kw) -> VisionTransformer:
    # width 128 with 2 heads: a bare file cannot store the head count, the loader assumes width/64
    base = dict(img_size=64, patch_size=16, embed_dim=128, depth=2, num_heads=2, num_classes=10)
    base.update(kw)
    return VisionTransformer(**base)


def _swin(**kw) -> SwinTransformer:
    base = dict(img_size=224, embed_dim=24, depths=(2, 2, 1, 1), num_heads=(1, 2, 2, 4), window_size=7,
                num_classes=10, drop_path_rate=0.0)
    base.update(kw)
    return SwinTransformer(**base)


def _swinv2(**kw) -> SwinTransformerV2:
    base = dict(img_size=256, embed_dim=24, depths=(2, 2, 1, 1), num_heads=(1, 2, 2, 4), window_size=8,
                num_classes=10, drop_path_rate=0.0)
    base.update(kw)
    return SwinTransformerV2(**base)


def _save(model: torch.nn.Module, folder: Path, fmt: str, stem: str = "weights") -> Path:
    sd = model.state_dict()
    if fmt == "safetensors":
        path = folder / f"{stem}.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
    elif fmt == "pth":
        path = folder / f"{stem}.pth"
        torch.save(sd, path)
    elif fmt == "nested":
        path = folder / f"{stem}.pth"
        torch.save({"model": sd, "epoch": 300}, path)
    elif fmt == "ddp":
        path = folder / f"{stem}.ckpt"
        torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, path)
    else:
        raise ValueError(fmt)
    return path


# name -> (model factory, file format, expected config fields)
TIMM_FILES: dict[str, tuple[Callable[[], torch.nn.Module], str, dict]] = {
    "vit_cls_qkv_bias": (lambda: _vit(), "safetensors",
                         dict(class_token=True, qkv_bias=True, num_heads=2, img_size=(64, 64), num_classes=10)),
    "vit_no_qkv_bias": (lambda: _vit(qkv_bias=False), "pth", dict(qkv_bias=False)),
    "deit_distilled": (lambda: VisionTransformerDistilled(img_size=64, patch_size=16, embed_dim=128, depth=2,
                                                          num_heads=2, num_classes=10),
                       "nested", dict(distilled=True, class_token=True, num_classes=10)),
    "vit_reg4": (lambda: _vit(reg_tokens=4), "safetensors", dict(num_reg_tokens=4, no_embed_class=False)),
    "dinov2_reg_like_no_embed_class": (
        lambda: _vit(patch_size=14, img_size=56, reg_tokens=4, no_embed_class=True, init_values=1e-5, num_classes=0),
        "safetensors", dict(num_reg_tokens=4, no_embed_class=True, layer_scale=True, num_classes=0, patch_size=14)),
    "dinov2_like_ls_p14_no_head": (
        lambda: _vit(patch_size=14, img_size=70, init_values=1e-5, num_classes=0, mlp_ratio=3.0),
        "ddp", dict(layer_scale=True, num_classes=0, patch_size=14, img_size=(70, 70), mlp_hidden_dim=384)),
    "avg_pool_fc_norm": (lambda: _vit(global_pool="avg", fc_norm=True), "pth",
                         dict(global_pool="avg", fc_norm=True, class_token=True)),
    "no_class_token_gap": (lambda: _vit(class_token=False, global_pool="avg", fc_norm=False), "pth",
                           dict(global_pool="avg", fc_norm=False, class_token=False)),
    "pre_norm_clip_like": (lambda: _vit(pre_norm=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-5)),
                           "safetensors", dict(pre_norm=True, norm_eps=1e-5)),
    "patch8": (lambda: _vit(patch_size=8, img_size=32), "safetensors", dict(patch_size=8, img_size=(32, 32))),
    "patch32": (lambda: _vit(patch_size=32, img_size=128), "safetensors", dict(patch_size=32, img_size=(128, 128))),
    "swin_v1_w7_224": (lambda: _swin(), "nested",
                       dict(version=1, window_size=(7, 7, 7, 7), num_heads=(1, 2, 2, 4), img_size=(224, 224))),
    "swin_v1_w12_384": (lambda: _swin(img_size=384, window_size=12), "safetensors",
                        dict(version=1, window_size=(12, 12, 12, 12), img_size=(384, 384))),
    "swin_v1_w12_at_224_clipped_last_stage": (
        lambda: _swin(window_size=12, depths=(1, 1, 2, 1)), "safetensors",
        dict(version=1, window_size=(12, 12, 12, 7), img_size=(224, 224))),
    "swin_v1_no_head_no_qkv_bias": (lambda: _swin(num_classes=0, qkv_bias=False, depths=(2, 2)),
                                    "pth", dict(num_classes=0, qkv_bias=False, depths=(2, 2))),
    "swin_v2_w8_256": (lambda: _swinv2(), "safetensors",
                       dict(version=2, window_size=(8, 8, 8, 8), num_heads=(1, 2, 2, 4), img_size=(256, 256))),
}


@pytest.mark.parametrize("case", list(TIMM_FILES))
def test_timm_file_loads_into_an_equal_model(case: str, tmp_path: Path) -> None:
    factory, fmt, expected = TIMM_FILES[case]
    torch.manual_seed(0)
    reference = perturb_(factory())
    info, sd = load_checkpoint(_save(reference, tmp_path, fmt))
    assert info.source_format == "timm"
    assert info.family == ("swin" if "swin" in case else "vit")
    for field, value in expected.items():
        assert getattr(info.config, field) == value, field
    assert native_shapes(info.config) == {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert_matches_reference(reference, info, sd)


def test_real_deit_tiny_file(tmp_path: Path) -> None:
    """A full-size DeiT-Ti: 192 wide with 3 heads (width/64), 1000 ImageNet classes."""
    reference = perturb_(timm.create_model("deit_tiny_patch16_224"))
    info, sd = load_checkpoint(_save(reference, tmp_path, "nested", "deit_tiny_patch16_224-a1311bcf"))
    assert (info.config.num_heads, info.config.depth, info.config.embed_dim) == (3, 12, 192)
    assert info.class_names == imagenet_class_names()
    assert info.name == "deit_tiny_patch16_224-a1311bcf"
    assert_matches_reference(reference, info, sd)


def test_vit_img_size_override_resamples_position_embedding(tmp_path: Path) -> None:
    reference = perturb_(_vit(dynamic_img_size=True))
    info, sd = load_checkpoint(_save(reference, tmp_path, "safetensors"), img_size=96)
    assert info.config.img_size == (64, 64)  # what the stored embedding covers
    assert info.preprocess.input_size == (96, 96)
    assert_matches_reference(reference, info, sd, input_size=(96, 96))


def test_swin_img_size_override_builds_for_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = perturb_(_swin(depths=(2, 2), num_heads=(1, 2)))
    info, sd = load_checkpoint(_save(trained, tmp_path, "safetensors"), img_size=(336, 280))
    assert info.config.img_size == (336, 280) and info.preprocess.input_size == (336, 280)
    reference = _swin(depths=(2, 2), num_heads=(1, 2), img_size=(336, 280))
    reference.load_state_dict(trained.state_dict())
    assert_matches_reference(reference, info, sd)


def test_swin_v2_window_and_pretrained_windows_from_the_name(tmp_path: Path) -> None:
    """A bare file named like timm's swinv2_base_window12to16_192to256: window 16 at 256,
    pretrained windows (12, 12, 12, 6) as timm registers them."""
    reference = perturb_(timm.create_model("swinv2_base_window12to16_192to256", embed_dim=16,
                                           depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2), num_classes=5))
    info, sd = load_checkpoint(_save(reference, tmp_path, "safetensors", "swinv2_base_window12to16_192to256"))
    assert info.config.window_size == (16, 16, 16, 16)
    assert info.config.pretrained_window_size == (12, 12, 12, 6)
    assert info.config.img_size == (256, 256)
    assert_matches_reference(reference, info, sd)


# --- timm's hub format ---------------------------------------------------------------------------


def _hub_folder(model: torch.nn.Module, folder: Path, model_config: dict | None = None,
                safe: bool | str = True) -> Path:
    save_for_hf(model, folder, model_config=model_config, safe_serialization=safe)
    return folder


def test_hub_folder_vit_heads_and_labels_from_config(tmp_path: Path) -> None:
    """48 wide with 3 heads (not width/64): only model_args can say so; label names come along."""
    reference = perturb_(timm.create_model("vit_tiny_patch16_224", embed_dim=48, num_heads=3, depth=2,
                                           img_size=64, num_classes=3))
    labels = {"label_names": ["cat", "dog", "eel"]}
    info, sd = load_checkpoint(_hub_folder(reference, tmp_path / "hub", labels, safe=False))
    assert info.config.num_heads == 3
    assert info.class_names == ["cat", "dog", "eel"]
    assert info.name == "vit_tiny_patch16_224"
    # pretrained_cfg of vit_tiny_patch16_224.augreg: Inception mean/std, crop_pct 0.9
    assert info.preprocess.mean == (0.5, 0.5, 0.5) and info.preprocess.crop_pct == 0.9
    assert info.preprocess.input_size == (64, 64)
    assert_matches_reference(reference, info, sd)


def test_hub_folder_label_descriptions_are_used(tmp_path: Path) -> None:
    reference = perturb_(timm.create_model("vit_tiny_patch16_224", embed_dim=64, num_heads=1, depth=1,
                                           img_size=32, num_classes=2))
    meta = {"label_names": ["n01", "n02"], "label_descriptions": {"n01": "tench", "n02": "goldfish"}}
    info, _ = load_checkpoint(_hub_folder(reference, tmp_path / "hub", meta))
    assert info.class_names == ["tench", "goldfish"]


def test_hub_label_names_by_index_with_gaps() -> None:
    from attnviz.checkpoints.convert_timm import parse_hub_config

    hub = parse_hub_config({"architecture": "x", "label_names": {"0": "a", "2": "c"}}, "config.json")
    assert hub is not None and hub.label_names == ["a", "1", "c"]


def test_hub_folder_non_square_vit(tmp_path: Path) -> None:
    reference = perturb_(timm.create_model("vit_tiny_patch16_224", embed_dim=64, num_heads=2, depth=2,
                                           img_size=(48, 80), num_classes=4))
    info, sd = load_checkpoint(_hub_folder(reference, tmp_path / "hub"))
    assert info.config.img_size == (48, 80) and info.preprocess.input_size == (48, 80)
    assert_matches_reference(reference, info, sd)


def test_hub_folder_swin_v2_pretrained_windows_from_model_args(tmp_path: Path) -> None:
    reference = perturb_(timm.create_model("swinv2_tiny_window8_256", embed_dim=24, depths=(2, 2, 1, 1),
                                           num_heads=(1, 2, 2, 4), pretrained_window_sizes=(6, 6, 6, 4),
                                           num_classes=7))
    info, sd = load_checkpoint(_hub_folder(reference, tmp_path / "swinv2_hub"))
    assert info.config.window_size == (8, 8, 8, 8)  # from the architecture name
    assert info.config.pretrained_window_size == (6, 6, 6, 4)
    assert info.preprocess.input_size == (256, 256)
    assert_matches_reference(reference, info, sd)


def test_hub_cache_entry(tmp_path: Path) -> None:
    """A Hugging Face cache entry: refs/main -> snapshots/<commit>/ whose files link into blobs/."""
    reference = perturb_(timm.create_model("swin_tiny_patch4_window7_224", embed_dim=24, depths=(2, 2),
                                           num_heads=(1, 2), num_classes=10))
    staging = _hub_folder(reference, tmp_path / "staging")
    entry = tmp_path / "models--timm--swin_tiny_patch4_window7_224.ms_in1k"
    snapshot = entry / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (entry / "blobs").mkdir()
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("0123abcd")
    for name in ("config.json", "model.safetensors"):
        blob = entry / "blobs" / f"sha-{name}"
        (staging / name).rename(blob)
        (snapshot / name).symlink_to(blob)
    info, sd = load_checkpoint(entry)
    assert info.family == "swin" and info.name == "swin_tiny_patch4_window7_224"
    assert_matches_reference(reference, info, sd)


# --- timm's registered full-size architectures, on the meta device ------------------------------

# (architecture, whether a hub config.json comes with it): each path is exercised on the
# architectures where it matters (heads of ViT-H from the width table, Swin v2 windows from names).
REGISTERED = [
    ("vit_small_patch16_224", False), ("vit_base_patch32_384", True), ("vit_huge_patch14_224", False),
    ("deit_base_distilled_patch16_384", True), ("deit3_small_patch16_224", False),
    ("vit_small_patch14_reg4_dinov2", True), ("vit_base_patch16_clip_224", False),
    ("vit_base_patch16_reg4_gap_256", True), ("swin_base_patch4_window12_384", False),
    ("swin_tiny_patch4_window7_224", True), ("swinv2_tiny_window16_256", True),
    ("swinv2_base_window12to16_192to256", False),
]


def _vit_facts(m: torch.nn.Module) -> dict:
    return dict(
        img_size=tuple(m.patch_embed.img_size), patch=tuple(m.patch_embed.patch_size), depth=len(m.blocks),
        heads=m.blocks[0].attn.num_heads, hidden=m.blocks[0].mlp.fc1.out_features,
        prefix=m.num_prefix_tokens, regs=m.num_reg_tokens, no_embed_class=m.no_embed_class,
        pool=m.global_pool, fc_norm=not isinstance(m.fc_norm, torch.nn.Identity),
        num_classes=m.num_classes, ls=not isinstance(m.blocks[0].ls1, torch.nn.Identity),
        eps=m.blocks[0].norm1.eps,
    )


def _swin_facts(m: torch.nn.Module) -> dict:
    blocks = [b for layer in m.layers for b in layer.blocks]
    facts = dict(
        img_size=tuple(m.patch_embed.img_size), heads=[b.attn.num_heads for b in blocks],
        windows=[tuple(b.window_size) for b in blocks], shifts=[tuple(b.shift_size) for b in blocks],
        num_classes=m.num_classes,
    )
    if hasattr(blocks[0].attn, "pretrained_window_size"):
        facts["pretrained"] = [tuple(b.attn.pretrained_window_size) for b in blocks]
    return facts


@pytest.mark.parametrize(("arch", "with_config"), REGISTERED)
def test_registered_architectures(arch: str, with_config: bool) -> None:
    """The config inferred from a full-size state dict rebuilds timm's registered model.

    Without a config only the file name is known (as for a downloaded .pth); with one, the
    config holds just what timm's hub exports of registered models hold (architecture and
    pretrained_cfg, no model_args).
    """
    ref = timm.create_model(arch, device="meta")
    sd = ref.state_dict()
    config = None
    if with_config:
        config = {"architecture": f"{arch}.some_tag", "num_classes": ref.num_classes,
                  "pretrained_cfg": {"input_size": list(ref.pretrained_cfg["input_size"]),
                                     "mean": list(ref.pretrained_cfg["mean"]), "std": list(ref.pretrained_cfg["std"]),
                                     "crop_pct": ref.pretrained_cfg["crop_pct"]}}
        config = json.loads(json.dumps(config))
    info, native = convert(sd, config, None, f"/models/{arch}.pth", name=arch)
    assert native_shapes(info.config) == {k: tuple(v.shape) for k, v in sd.items()}
    rebuilt = _build_meta(info)
    if isinstance(info.config, ViTConfig):
        assert _vit_facts(rebuilt) == _vit_facts(ref)
    else:
        assert isinstance(info.config, SwinConfig)
        assert _swin_facts(rebuilt) == _swin_facts(ref)
    if with_config:
        assert info.preprocess.input_size == tuple(ref.pretrained_cfg["input_size"][1:])
        assert info.preprocess.crop_pct == ref.pretrained_cfg["crop_pct"]
        assert info.preprocess.mean == tuple(ref.pretrained_cfg["mean"])


def _build_meta(info) -> torch.nn.Module:
    with torch.device("meta"):
        return timm_model_for(info)


# --- transformers folders are handed to convert_hf ------------------------------------------------


def test_transformers_folder_is_delegated(tmp_path: Path) -> None:
    """load_checkpoint hands a transformers folder to convert_hf and checks what comes back: the
    result loads strictly into the matching timm model and gives transformers' logits."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=128, image_size=32, patch_size=8, num_labels=3,
                                    hidden_act="gelu", layer_norm_eps=1e-6)
    torch.manual_seed(0)
    hf = transformers.ViTForImageClassification(config).eval()
    perturb_(hf)
    hf.save_pretrained(tmp_path / "hf_vit")
    info, sd = load_checkpoint(tmp_path / "hf_vit")
    assert info.source_format == "transformers" and info.family == "vit"
    rebuilt = timm_model_for(info)
    rebuilt.load_state_dict(sd, strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), hf(pixel_values=x).logits, atol=1e-5, rtol=0)
