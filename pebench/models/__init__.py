"""The ViT backbone and adapters for timm's own models.

``SIZES`` is plain data; the torch-backed names load on first use, so that importing this package
(the command line does, for its help text) does not import torch.
"""

from pebench.models.sizes import SIZES

__all__ = ["SIZES", "VisionTransformer", "build_model"]


def __getattr__(name: str):
    if name in ("VisionTransformer", "build_model"):
        from pebench.models import vit

        return getattr(vit, name)
    raise AttributeError(f"module 'pebench.models' has no attribute '{name}'")
