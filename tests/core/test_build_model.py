"""Building a network from a state dict (attnviz.nets.build_model): no random initialisation is spent on
weights that are then overwritten, and what is loaded is exactly the state dict, in the module's dtype."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attnviz.nets import SwinConfig, ViTConfig, build_model, create_net
from attnviz.nets.config import ModelInfo

CONFIGS = {
    "vit": ViTConfig(img_size=(32, 32), patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_hidden_dim=64,
                     num_classes=3),
    "swin": SwinConfig(version=2, img_size=(32, 32), patch_size=4, embed_dim=16, depths=(2, 2), num_heads=(1, 2),
                       window_size=(4, 4), pretrained_window_size=(0, 0), num_classes=3),
}


def _info(cfg) -> ModelInfo:
    return ModelInfo(config=cfg, family="vit" if isinstance(cfg, ViTConfig) else "swin", source_format="timm")


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_built_network_holds_the_state_dict_and_runs_as_its_source(kind: str) -> None:
    torch.manual_seed(0)
    src = create_net(CONFIGS[kind]).eval()
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    net = build_model(_info(CONFIGS[kind]), sd)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, src.state_dict()[k], atol=0, rtol=0)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(net(x), src(x), atol=0, rtol=0)
    assert not net.training


def test_half_precision_weights_are_cast_to_the_module_dtype() -> None:
    cfg = CONFIGS["vit"]
    sd = {k: v.half() for k, v in create_net(cfg).state_dict().items()}
    net = build_model(_info(cfg), sd)
    assert {p.dtype for p in net.parameters()} == {torch.float32}
    torch.testing.assert_close(net.pos_embed, sd["pos_embed"].float(), atol=0, rtol=0)


def test_init_functions_work_again_after_a_build_and_after_a_failed_one() -> None:
    cfg = CONFIGS["vit"]
    sd = create_net(cfg).state_dict()
    build_model(_info(cfg), dict(sd))
    with pytest.raises(ValueError, match="missing"):
        build_model(_info(cfg), {k: v for k, v in sd.items() if k != "pos_embed"})
    t = torch.zeros(1000)
    nn.init.normal_(t)
    assert float(t.std()) > 0.5  # the real initialiser, not the build's no-op
    lin = nn.Linear(16, 16)
    assert float(lin.weight.detach().abs().max()) > 0.0


@pytest.mark.parametrize("cfg, img", [
    (ViTConfig(img_size=(48, 32), patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_hidden_dim=32,
               num_reg_tokens=2, num_classes=0), (48, 32)),
    (SwinConfig(version=1, img_size=(60, 44), patch_size=4, embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 4),
                window_size=(4, 4, 4), num_classes=3), (60, 44)),  # odd stage sides: merging and window padding
    (CONFIGS["swin"], (32, 32)),
])
def test_capture_size_is_known_before_the_capture(cfg, img) -> None:
    """What a batch of folder export will hold in memory, computed from the geometry, equals the capture's."""
    from attnviz.nets import capture_bytes_per_image

    net = create_net(cfg).eval()
    with torch.inference_mode():
        cap = net.capture(torch.randn(2, 3, *img))
    held = sum(b.attn.numel() * b.attn.element_size() for b in cap.blocks)
    assert capture_bytes_per_image(net, img) * 2 == held
