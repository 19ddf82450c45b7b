"""Models: pebench's ViT backbone with any encoding, timm's models behind an adapter, checkpoints, and
the one place every model spec is resolved.

Enters: a model spec (shipped name, ``.safetensors`` checkpoint, ``timm:NAME[@FILE]``) or a backbone size
and encoding spec.
Leaves: a :class:`~pebench.models.interface.LoadedModel` whose network implements
:class:`~pebench.models.interface.ResolutionModel` (``net(images, mode)`` at any resolution).

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
