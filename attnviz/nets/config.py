"""Architecture configs for the instrumented networks.

Field names follow timm where timm has a name for the concept. A config plus a state dict in
timm's key layout (our native layout, see ``attnviz/checkpoints``) fully determines a network.
Checkpoint converters fill these from config files and tensor shapes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class PreprocessConfig:
    """How an image becomes the network's input, as the checkpoint's own library does at evaluation.

    ``attnviz.images.preprocess`` executes it; ``attnviz.images.preprocess_config_from_timm`` and
    ``preprocess_config_from_hf`` build it from a timm ``pretrained_cfg`` or a transformers
    ``preprocessor_config.json``.
    """

    input_size: tuple[int, int] = (224, 224)  # (H, W) fed to the network
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # PIL resampling filter: 'bicubic' | 'bilinear' | 'nearest' | 'lanczos' | 'box' | 'hamming'.
    interpolation: str = "bicubic"
    # Fraction of the resized image kept by the centre crop (timm's crop_pct); 1.0 = no crop.
    # Used by the 'timm*' modes, and by the transformers modes when their resize size is unset.
    crop_pct: float = 0.875
    # How the image is resized and cropped to input_size. timm modes (torchvision geometry:
    # centre-crop offsets rounded, zero padding split floor-first):
    #   'timm':        short side (per axis) to floor(size / crop_pct), centre crop (timm 'center').
    #   'timm_squash': both sides to floor(size / crop_pct) ignoring aspect, centre crop (timm 'squash').
    #   'timm_border': long side to floor(size / crop_pct), centre crop or pad with the mean colour
    #                  (timm 'border').
    # transformers modes (slow PIL image processors: crop offsets floored, padding ceil-first):
    #   'resize':         resize straight to input_size, no crop (ViT, Swin, DINO ViT processors;
    #                     ConvNext at 384 and above).
    #   'shortest_edge':  short side to `shortest_edge`, centre crop to input_size (BitImageProcessor,
    #                     used by DINOv2; CLIP; ConvNext below 384).
    #   'resize_crop':    resize to `resize_size` ignoring aspect, centre crop to input_size (DeiT).
    crop_mode: Literal[
        "timm", "timm_squash", "timm_border", "resize", "shortest_edge", "resize_crop"
    ] = "timm"
    # 'shortest_edge' mode: the short side's length before the crop;
    # None = floor(min(input_size) / crop_pct).
    shortest_edge: Optional[int] = None
    # 'resize_crop' mode: (H, W) resized to before the crop; None = floor(input_size / crop_pct) per axis.
    resize_size: Optional[tuple[int, int]] = None


@dataclass
class ViTConfig:
    """ViT / DeiT / DINO / DINOv2 (pre-norm transformer over patch tokens)."""

    img_size: tuple[int, int] = (224, 224)  # size the position embedding was trained at
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_hidden_dim: int = 3072
    qkv_bias: bool = True
    class_token: bool = True
    num_reg_tokens: int = 0  # register tokens (Darcet et al. 2024), placed after class/dist tokens
    distilled: bool = False  # DeiT distillation token and second head
    # 'learn': a learned (or stored fixed sin-cos) absolute embedding; 'none': no position information.
    pos_embed: Literal["learn", "none"] = "learn"
    # True when the position embedding covers patches only (prefix tokens get none), as in DINOv2-reg.
    no_embed_class: bool = False
    layer_scale: bool = False  # per-channel ls1/ls2 gammas (CaiT, DINOv2)
    pre_norm: bool = False  # a LayerNorm before the blocks (CLIP-style norm_pre)
    patch_bias: bool = True  # the patch projection has a bias (CLIP-style pre-norm models have none)
    global_pool: Literal["token", "avg"] = "token"
    fc_norm: bool = False  # norm applied after pooling instead of before (timm's fc_norm)
    num_classes: int = 1000  # 0: no classifier, the network returns pooled features
    norm_eps: float = 1e-6
    # How the position embedding is resampled for other input sizes (timm: bicubic with antialias).
    pos_interp: str = "bicubic"
    pos_interp_antialias: bool = True

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + int(self.distilled) + self.num_reg_tokens

    @property
    def grid_size(self) -> tuple[int, int]:
        return (self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size)


@dataclass
class SwinConfig:
    """Swin Transformer v1 (Liu et al. 2021) and v2 (Liu et al. 2022)."""

    version: Literal[1, 2] = 1
    img_size: tuple[int, int] = (224, 224)
    patch_size: int = 4
    in_chans: int = 3
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: tuple[int, ...] = (7, 7, 7, 7)  # per stage, square windows
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    # Swin v2: window size the continuous position bias was trained with, per stage (0 = window_size).
    pretrained_window_size: tuple[int, ...] = (0, 0, 0, 0)
    num_classes: int = 1000
    norm_eps: float = 1e-5

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def grid_size(self) -> tuple[int, int]:
        return (self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size)


ArchConfig = ViTConfig | SwinConfig


@dataclass
class ModelInfo:
    """What a loader found besides the weights: where they came from and what the classes mean."""

    family: Literal["vit", "swin"]
    config: ArchConfig
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    class_names: Optional[list[str]] = None
    source_format: str = "timm"  # 'timm' | 'transformers' | 'official' | 'attnviz'
    path: str = ""
    name: str = ""  # a human-readable model name when the files carry one
