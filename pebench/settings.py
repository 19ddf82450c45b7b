"""Choices and defaults that several stages share, defined once and torch-free (the command line
checks them before importing torch)."""

from __future__ import annotations

from pebench.errors import PebenchError
from pebench.resolution import Label

#: where models run; "auto" (every command's default) is CUDA where one is visible, else the CPU, resolved
#: before any cell is made, so records and cell keys name the device that ran
DEVICES = ("auto", "cpu", "cuda")
#: where an image folder's JPEGs are decoded: by the DataLoader workers with PIL (the reference, timm's path)
#: or on the GPU in batches (pebench.data.gpu_decode)
DECODES = ("cpu", "gpu")
#: how pebench's own models attend where an encoding's terms are more than a bias (pebench.models.attention):
#: auto (FlexAttention on a GPU, the reference on a CPU), the reference (explicit attention, or SDPA with the
#: dense bias), or FlexAttention everywhere
ATTENTION_PATHS = ("auto", "reference", "flex")
#: compute precisions of `pebench profile`: fp32, or autocast to bf16 / fp16 (CUDA only)
DTYPES = ("fp32", "bf16", "fp16")
DEFAULT_RESOLUTIONS: tuple[Label, ...] = (224, 384, 448, 512)
#: image folders: the centre-crop fraction of timm's eval transform, unless a suite or --crop-pct says otherwise
DEFAULT_CROP_PCT = 0.875

CropPct = float | dict[Label, float]


def crop_at(crop_pct: CropPct, res: Label) -> float:
    """The crop fraction at ``res``: one value for every resolution, or a mapping resolution -> fraction
    (resolutions it does not name get :data:`DEFAULT_CROP_PCT`)."""
    return crop_pct.get(res, DEFAULT_CROP_PCT) if isinstance(crop_pct, dict) else crop_pct


#: environment variable: plugins (modules or .py files, separated by ':') every command loads first
PLUGINS_ENV = "PEBENCH_PLUGINS"
#: the entry-point group an installed package declares its encodings in
PLUGIN_ENTRY_POINTS = "pebench.encodings"


def check_decode(spec: str, decode: str) -> None:
    """``decode`` is one of :data:`DECODES` and applies to the dataset ``spec``."""
    if decode not in DECODES:
        raise PebenchError(f"unknown decode '{decode}'; use {' or '.join(DECODES)}")
    if decode == "gpu" and not spec.startswith("imagefolder:"):
        raise PebenchError(f"--decode gpu decodes JPEG files: it applies to imagefolder:PATH, not to '{spec}'; "
                           "use --decode cpu")
