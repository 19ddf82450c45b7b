"""Options shared by the `pebench` commands, the parsers that turn their text into values (each raising
a one-line :class:`~pebench.errors.PebenchError`, exit 2, for bad input) and the console they print to.

Nothing here imports torch: `pebench --help` and the checks of options stay fast."""

from __future__ import annotations

import difflib
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperCommand

try:  # typer 0.2x parses with its own copy of click, whose errors are not click's
    from typer._click.exceptions import NoSuchOption
except ImportError:  # pragma: no cover - a typer that parses with click itself
    from click.exceptions import NoSuchOption

from pebench.errors import PebenchError
from pebench.modes import FIXED, parse_mode
from pebench.resolution import parse_res
from pebench.settings import ATTENTION_PATHS, DECODES, DEFAULT_RESOLUTIONS, DEVICES, DTYPES


def _console() -> Console:
    """The console commands print to. Not a terminal (a pipe, a file, a CI log) and no COLUMNS set: no
    width limit, so tables keep their natural width and no number is ever cut."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console()
    return Console(width=UNLIMITED_WIDTH)


UNLIMITED_WIDTH = 100_000
console = _console()

ModelOption = Annotated[list[str] | None, typer.Option(
    "--model", "-m", help="shipped name, .safetensors path, timm:NAME or py:MODULE_OR_FILE:FACTORY (a model of "
                          "your own, docs/plugins.md); repeat for several (default: every built shipped model)")]
ResOption = Annotated[list[str] | None, typer.Option(
    help="resolution in px, square (384) or height x width (384x512); repeat (default 224 384 448 512)")]
DataOption = Annotated[str, typer.Option(help="dataset spec: synthetic[:options] or imagefolder:PATH")]
NOption = Annotated[int | None, typer.Option(help="evaluate the first N validation images (default: all)")]
BatchOption = Annotated[int, typer.Option(help="batch size (halved automatically on out-of-memory)")]
DeviceOption = Annotated[str, typer.Option(help="auto (CUDA where one is visible, else CPU), cpu, cuda or cuda:N")]
AttentionChoice = Enum("AttentionChoice", {name: name for name in ATTENTION_PATHS}, type=str)
AttentionOption = Annotated[AttentionChoice, typer.Option(
    help="how pebench's own models attend where an encoding's terms are more than a bias, and whether kernels "
         "fuse (FlexAttention, RoPE's rotation): auto (fused on a GPU, the reference on a CPU), reference "
         "(explicit attention or SDPA with the dense bias; the eager rotation) or flex (fused anywhere)")]
DecodeChoice = Enum("DecodeChoice", {name: name for name in DECODES}, type=str)
DecodeOption = Annotated[DecodeChoice, typer.Option(
    help="where an image folder's JPEGs are decoded: cpu (PIL in the workers, timm's path) or gpu (batched nvJPEG "
         "on the CUDA device)")]
#: the choices of --dtype (pebench.settings.DTYPES)
DtypeChoice = Enum("DtypeChoice", {name: name for name in DTYPES}, type=str)
WorkersOption = Annotated[int | None, typer.Option(help="data worker processes that decode/render batches "
                                                         "(default min(8, CPU cores); 0 = in this process)")]
CacheOption = Annotated[str | None, typer.Option(help="folder for decoded splits (uint8, memory-mapped), so reruns "
                                                       "skip decoding; 'off' = none (default: synthetic renders only)")]
OutOption = Annotated[Path | None, typer.Option(help="append the records to this .jsonl file, or to results.jsonl in "
                                                     "this folder (default: a run folder of its own under "
                                                     "results/runs/, printed); rerun to resume")]
CropOption = Annotated[str, typer.Option(help="image folders: centre-crop fraction, one value or per resolution, "
                                              "e.g. '224=0.875,384=1.0'")]
CheckpointOption = Annotated[Path | None, typer.Option(help="weights for the one --model timm:NAME "
                                                            "(.safetensors, .pth, .bin)")]
PretrainedOption = Annotated[bool, typer.Option("--pretrained", help="timm:NAME models get timm's own pretrained "
                                                "weights through the Hugging Face cache, downloaded when missing "
                                                "(unless HF_HUB_OFFLINE is set)")]


class PebenchCommand(TyperCommand):
    """A command whose unknown-option error suggests what was probably meant: click offers only close
    spellings (``--resolution`` gets nothing), this also offers the option a longer or shorter name
    starts like (``--res``)."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except NoSuchOption as error:
            known = [name for param in self.params for name in getattr(param, "opts", []) if name.startswith("--")]
            wrong = error.option_name.split("=")[0]
            prefix = [name for name in known if len(name) > 3 and (wrong.startswith(name) or name.startswith(wrong))]
            suggested = prefix or difflib.get_close_matches(wrong, known, n=3)
            raise NoSuchOption(error.option_name, possibilities=suggested or None, ctx=ctx) from None


def attach_pretrained(models: list[str] | None, pretrained: bool) -> list[str] | None:
    """``--pretrained``: every ``timm:NAME`` without weights of its own becomes ``timm:NAME@hf-hub``."""
    if not pretrained:
        return models
    if not any(m.startswith("timm:") and "@" not in m for m in models or []):
        raise PebenchError("--pretrained applies to --model timm:NAME (without @FILE); name one")
    return [f"{m}@hf-hub" if m.startswith("timm:") and "@" not in m else m for m in models]


def attach_checkpoint(models: list[str] | None, checkpoint: Path | None) -> list[str] | None:
    """``--checkpoint FILE`` belongs to the one timm model: ``timm:NAME`` becomes ``timm:NAME@FILE``."""
    if checkpoint is None:
        return models
    timm_models = [m for m in models or [] if m.startswith("timm:")]
    if len(timm_models) != 1:
        raise PebenchError("--checkpoint needs exactly one --model timm:NAME (for several, use timm:NAME@FILE each)")
    return [f"{m}@{checkpoint}" if m in timm_models else m for m in models]


def parse_resolutions(raw: list[str] | None) -> tuple:
    """--res values (384, 384x512), deduplicated in order; the defaults when none is given."""
    if not raw:
        return DEFAULT_RESOLUTIONS
    return tuple(dict.fromkeys(parse_res(r, what="--res") for r in raw))


def parse_modes(raw: list[str] | None, default: tuple[str, ...] = FIXED) -> tuple[str, ...]:
    """--mode values: native, interp, both (= native and interp), tuned or scale=S; repeatable."""
    modes: list[str] = []
    for text in raw or []:
        modes += list(FIXED) if text.strip().lower() == "both" else [parse_mode(text, what="--mode")]
    return tuple(dict.fromkeys(modes)) or default


def check_data_spec(spec: str) -> None:
    """What a dataset spec names, checked before torch loads: an image folder must be a folder (the data
    package checks the rest, and the synthetic options, when it opens the data)."""
    kind, _, rest = spec.partition(":")
    if kind == "imagefolder" and not Path(rest).expanduser().is_dir():
        raise PebenchError(f"--data {spec}: '{rest}' is not a folder; give imagefolder:PATH with one subfolder "
                           "per class")


def check_device_name(device: str) -> None:
    if device not in DEVICES and not device.startswith("cuda:"):
        raise PebenchError(f"unknown device '{device}'; use {', '.join(DEVICES)} or cuda:N")


def check_decode_device(decode: str, device) -> None:
    """--decode gpu runs where the models do: on a CUDA device."""
    if decode == "gpu" and device.type != "cuda":
        raise PebenchError(f"--decode gpu needs a CUDA device and this run is on {device.type}; use --decode cpu")


def parse_device(device: str):
    """The torch device a --device value names; "auto" is CUDA where one is visible, else the CPU."""
    check_device_name(device)
    import torch  # only once the options are checked: see the module docstring

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PebenchError(f"device '{device}' asked for but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(device)


def parse_crop_pct(text: str) -> dict[int, float] | float:
    def fraction(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not 0 < number <= 1:
            raise PebenchError(f"--crop-pct value '{value}' must be a fraction in (0, 1], e.g. 0.875")
        return number

    if "=" not in text:
        return fraction(text)
    per_res = {}
    for item in text.split(","):
        res, _, value = item.partition("=")
        per_res[parse_res(res, what=f"--crop-pct item '{item}': resolution")] = fraction(value)
    return per_res


def parse_cache(text: str | None) -> str | bool | None:
    return False if text == "off" else text


def parse_scales(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        values = []
    if not values or any(not v > 0 for v in values):
        raise PebenchError(f"--scales '{text}' must be positive numbers separated by commas, e.g. 0.25,0.5,1")
    return tuple(sorted(set(values)))
