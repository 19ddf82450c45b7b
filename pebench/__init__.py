"""pebench: how well does a ViT position encoding trained at 224 px hold up at 384, 448 and 512 px?"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pebench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "register_encoding", "register_preset"]


def __getattr__(name: str):
    # plugins' entry to the registry (pebench.encodings.plugins); loaded on first use, so that `import pebench`
    # stays free of torch
    if name in ("register_encoding", "register_preset"):
        from pebench.encodings import plugins

        return getattr(plugins, name)
    raise AttributeError(f"module 'pebench' has no attribute '{name}'")
