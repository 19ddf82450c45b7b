"""The ViT backbone (and, later, adapters for timm's own models)."""

from pebench.models.vit import SIZES, VisionTransformer, build_model

__all__ = ["SIZES", "VisionTransformer", "build_model"]
