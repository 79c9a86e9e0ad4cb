"""Parity of attnviz's instrumented networks with timm, through the real checkpoint loader.

Each case builds a timm model at random init, perturbs every weight, saves it as a timm checkpoint,
loads it with ``attnviz.model.load_model`` and compares logits (or features) and every block's attention
with timm's own (explicit-softmax) computation, within 1e-5 in float32.
"""
from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from safetensors.torch import save_file

timm = pytest.importorskip("timm")
from timm.models.swin_transformer import SwinTransformer  # noqa: E402
from timm.models.swin_transformer_v2 import SwinTransformerV2  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

from attnviz.model import load_model  # noqa: E402

from tests.parity.timm_attention import native_state_dict, perturb_, timm_attention  # noqa: E402

ATOL = 1e-5


def _vit(**kw):
    base = dict(img_size=64, patch_size=16, embed_dim=128, depth=3, num_heads=2, num_classes=10)  # head_dim 64: the convention a bare file implies
    base.update(kw)
    return VisionTransformer(**base)


# name -> (timm model factory, input (H, W), how the loader learns what the weights cannot tell:
#          None, an int img_size override, or a dict of timm hub `model_args` saved in config.json)
CASES = {
    "vit_base_patch16_224": (lambda: timm.create_model("vit_base_patch16_224"), (224, 224), None),
    "deit_small_distilled_patch16_224": (lambda: timm.create_model("deit_small_distilled_patch16_224"),
                                         (224, 224), None),
    "vit_reg4_cls": (lambda: _vit(reg_tokens=4), (64, 64), None),
    "dinov2_reg4_no_embed_class_ls_p14": (
        lambda: timm.create_model("vit_small_patch14_reg4_dinov2", img_size=98, num_classes=7), (98, 98), None),
    "dinov2_ls_p14_no_head": (lambda: timm.create_model("vit_small_patch14_dinov2", img_size=98), (98, 98), None),
    "vit_no_qkv_bias": (lambda: _vit(qkv_bias=False), (64, 64), None),
    "vit_avgpool_fc_norm_no_cls": (lambda: _vit(class_token=False, global_pool="avg", fc_norm=True), (64, 64), None),
    "vit_avgpool_fc_norm_cls": (lambda: _vit(global_pool="avg", fc_norm=True), (64, 64), None),
    # CLIP-style: pre-norm, no patch bias, LayerNorm eps 1e-5 (what every timm pre-norm ViT uses)
    "vit_pre_norm": (lambda: _vit(pre_norm=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-5)), (64, 64), None),
    "vit_patch8": (lambda: _vit(patch_size=8), (64, 64), None),
    "vit_patch32_96": (lambda: _vit(patch_size=32, img_size=96), (96, 96), None),
    "swin_tiny_patch4_window7_224": (lambda: timm.create_model("swin_tiny_patch4_window7_224"), (224, 224), None),
    "swin_window12_384": (lambda: SwinTransformer(img_size=384, window_size=12, embed_dim=32, depths=(2, 2, 2, 2),
                                                  num_heads=(1, 2, 2, 4), num_classes=10), (384, 384), 384),
    "swinv2_tiny_window8_256": (lambda: timm.create_model("swinv2_tiny_window8_256"), (256, 256), None),
    "swinv2_window16_pretrained8": (
        lambda: SwinTransformerV2(img_size=256, window_size=16, pretrained_window_sizes=(8, 8, 8, 4), embed_dim=32,
                                  depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), num_classes=10), (256, 256),
        dict(img_size=256, window_size=16, pretrained_window_sizes=[8, 8, 8, 4], embed_dim=32)),
}


def _save_and_load(tmp_path, model, how):
    """Save as a bare timm safetensors file, or as a timm hub folder when model_args are given."""
    path = tmp_path / "model.safetensors"
    save_file(native_state_dict(model), str(path))
    if isinstance(how, dict):
        arch = "swinv2_custom" if "pretrained_window_sizes" in how else "custom"
        (tmp_path / "config.json").write_text(json.dumps({
            "architecture": arch, "num_classes": model.num_classes, "model_args": how,
            "pretrained_cfg": {"input_size": [3, how["img_size"], how["img_size"]]}}))
        return load_model(str(tmp_path), device="cpu")
    return load_model(str(path), device="cpu", img_size=how)


def _compare(model, loaded, size):
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    ref_out, ref_attn = timm_attention(model, x)
    cap = loaded.capture(x)
    assert len(cap.blocks) == len(ref_attn) > 0
    for b, ref in zip(cap.blocks, ref_attn):
        assert b.attn.shape == ref.shape, (b.index, b.attn.shape, ref.shape)
        torch.testing.assert_close(b.attn, ref, atol=ATOL, rtol=0, msg=lambda m: f"block {b.index}: {m}")
    if cap.logits is not None:
        torch.testing.assert_close(cap.logits, ref_out, atol=ATOL, rtol=0)
    else:  # no classifier: the pooled features are what the network returns
        with torch.no_grad():
            feats = loaded.net(x)
        torch.testing.assert_close(feats, model.forward_head(model.forward_features(x), pre_logits=True),
                                   atol=ATOL, rtol=0)
    return cap


@pytest.mark.parametrize("name", list(CASES))
def test_logits_and_every_block_match_timm(tmp_path, name):
    factory, size, img_size = CASES[name]
    torch.manual_seed(0)
    model = perturb_(factory())
    loaded = _save_and_load(tmp_path, model, img_size)
    cap = _compare(model, loaded, size)
    # every attention row is a probability distribution
    for b in cap.blocks:
        torch.testing.assert_close(b.attn.sum(-1), torch.ones_like(b.attn[..., 0]), atol=1e-5, rtol=0)
    assert (cap.logits is None) == (getattr(model, "num_classes", 1) == 0)


def test_fused_timm_model_still_yields_every_block(tmp_path):
    """timm's default fused attention hides the softmax; attnviz captures every block regardless."""
    model = perturb_(_vit(depth=4))
    assert all(blk.attn.fused_attn for blk in model.blocks)  # timm's default path is fused here
    loaded = _save_and_load(tmp_path, model, None)
    cap = loaded.capture(torch.randn(1, 3, 64, 64))
    assert [b.index for b in cap.blocks] == [0, 1, 2, 3]
    with torch.no_grad():
        fused_out = model(torch.zeros(1, 3, 64, 64))
    torch.testing.assert_close(loaded.capture(torch.zeros(1, 3, 64, 64)).logits, fused_out, atol=ATOL, rtol=0)


@pytest.mark.parametrize("size", [(96, 128), (160, 64)])
def test_vit_other_input_sizes_resample_pos_embed_like_timm(tmp_path, size):
    model = perturb_(_vit(dynamic_img_size=True))
    loaded = _save_and_load(tmp_path, model, None)
    _compare(model, loaded, size)


@pytest.mark.parametrize("size", [(256, 256), (256, 320)])
def test_swin_other_input_sizes_match_timm_built_for_that_size(tmp_path, size):
    """Padding to whole windows at a size the weights were not trained for, as timm does."""
    trained = perturb_(timm.create_model("swin_tiny_patch4_window7_224"))
    loaded = _save_and_load(tmp_path, trained, None)
    ref = timm.create_model("swin_tiny_patch4_window7_224", img_size=size).eval()
    ref.load_state_dict(native_state_dict(trained), strict=False)
    _compare(ref, loaded, size)


def test_swin_shift_masks_equal_timm(tmp_path):
    model = perturb_(timm.create_model("swin_tiny_patch4_window7_224"))
    loaded = _save_and_load(tmp_path, model, None)
    cap = loaded.capture(torch.randn(1, 3, 224, 224))
    timm_blocks = [blk for layer in model.layers for blk in layer.blocks]
    assert len(timm_blocks) == len(cap.blocks)
    n_masked = 0
    for ours, ref in zip(cap.blocks, timm_blocks):
        assert ours.window_size == ref.window_size[0] and ours.shift_size == ref.shift_size[0]
        if ref.attn_mask is None:
            assert ours.attn_mask is None
        else:
            n_masked += 1
            assert torch.equal(ours.attn_mask, ref.attn_mask)
    # stages 1-3 shift every other block; stage 4 (7x7 map = one window) never shifts
    assert n_masked == 1 + 1 + 3 + 0


def test_swin_position_bias_is_what_timm_adds(tmp_path):
    model = perturb_(timm.create_model("swin_tiny_patch4_window7_224"))
    loaded = _save_and_load(tmp_path, model, None)
    cap = loaded.capture(torch.randn(1, 3, 224, 224))
    for ours, ref in zip(cap.blocks, [blk for layer in model.layers for blk in layer.blocks]):
        torch.testing.assert_close(ours.bias, ref.attn._get_rel_pos_bias()[0], atol=0, rtol=0)


def test_gradients_flow_to_captured_attention(tmp_path):
    model = perturb_(_vit())
    loaded = _save_and_load(tmp_path, model, None)
    cap = loaded.capture(torch.randn(1, 3, 64, 64), keep_graph=True)
    grads = torch.autograd.grad(cap.logits[0, 3], [b.attn for b in cap.blocks])
    assert len(grads) == 3
    assert all(g.shape == b.attn.shape and g.abs().sum() > 0 for g, b in zip(grads, cap.blocks))


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_half_precision_runs_on_cpu_and_stays_close(tmp_path, dtype):
    model = perturb_(_vit())
    path = tmp_path / "m.safetensors"
    save_file(native_state_dict(model), str(path))
    ref = load_model(str(path), device="cpu", dtype="fp32").capture(torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
    half = load_model(str(path), device="cpu", dtype=dtype).capture(torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
    assert half.blocks[0].attn.dtype == torch.float32  # captures always come back as float32
    for a, b in zip(half.blocks, ref.blocks):
        assert (a.attn - b.attn).abs().max() < 0.05


def test_sidecar_json_gives_a_bare_file_its_config(tmp_path):
    """NAME.safetensors + NAME.json (timm hub format): how the demo models ship."""
    model = perturb_(SwinTransformerV2(img_size=64, window_size=4, embed_dim=16, depths=(2, 2), num_heads=(1, 2),
                                       num_classes=3))
    save_file(native_state_dict(model), str(tmp_path / "demo.safetensors"))
    (tmp_path / "demo.json").write_text(json.dumps({
        "architecture": "swinv2_demo", "num_classes": 3, "label_names": ["a", "b", "c"],
        "model_args": {"img_size": 64, "window_size": 4, "embed_dim": 16},
        "pretrained_cfg": {"input_size": [3, 64, 64], "mean": [0.5] * 3, "std": [0.5] * 3}}))
    loaded = load_model(str(tmp_path / "demo.safetensors"), device="cpu")
    assert loaded.info.class_names == ["a", "b", "c"]
    assert loaded.info.config.window_size == (4, 4) and loaded.info.preprocess.mean == (0.5, 0.5, 0.5)
    _compare(model, loaded, (64, 64))
