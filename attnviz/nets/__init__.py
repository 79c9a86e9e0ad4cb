"""Instrumented ViT-family and Swin networks whose attention probabilities can be captured."""
from .build import AttnNet, build_model, create_net
from .capture import BlockCapture, Capture, SwinBlockCapture
from .config import ModelInfo, PreprocessConfig, SwinConfig, ViTConfig

__all__ = ["AttnNet", "BlockCapture", "Capture", "ModelInfo", "PreprocessConfig", "SwinBlockCapture",
           "SwinConfig", "ViTConfig", "build_model", "create_net"]
