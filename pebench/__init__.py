"""pebench: how well does a ViT position encoding trained at 224 px hold up at 384, 448 and 512 px?"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pebench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
