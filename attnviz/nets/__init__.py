"""Instrumented ViT-family and Swin networks whose attention probabilities can be captured."""
from .build import AttnNet, build_model, capture_bytes_per_image, capture_qkv, create_net
from .capture import BlockCapture, BlockQKV, Capture, SwinBlockCapture
from .config import ModelInfo, PreprocessConfig, SwinConfig, ViTConfig

__all__ = ["AttnNet", "BlockCapture", "BlockQKV", "Capture", "ModelInfo", "PreprocessConfig", "SwinBlockCapture",
           "SwinConfig", "ViTConfig", "build_model", "capture_bytes_per_image", "capture_qkv", "create_net"]
