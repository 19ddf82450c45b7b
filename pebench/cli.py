"""The `pebench` command line: one-line errors with exit code 2 for bad input, never a traceback."""

from __future__ import annotations

import platform
import sys
from enum import Enum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pebench import __version__
from pebench.encodings import PRESETS, REGISTRY
from pebench.errors import PebenchError
from pebench.models import SIZES

app = typer.Typer(
    help="Benchmark how ViT position encodings trained at 224 px hold up at 384, 448 and 512 px.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


class Listing(str, Enum):
    encodings = "encodings"
    sizes = "sizes"


def _options_text(cls) -> str:
    items = []
    for key, opt in cls.options.items():
        default = str(opt.default).lower() if isinstance(opt.default, bool) else opt.default
        choices = f" ({'|'.join(str(c) for c in opt.choices)})" if opt.choices else ""
        items.append(f"{key}={default}{choices}")
    return ", ".join(items) or "none"


def _print_encodings() -> None:
    console.print("[bold]Position encodings[/] (spec: name[:key=value,...]; combine with '+', e.g. ape+peg)\n")
    for name, cls in REGISTRY.items():
        console.print(f"[bold cyan]{name}[/]  {cls.summary}", highlight=False)
        for label, text in (("paper", cls.paper), ("options", _options_text(cls)),
                            ("native", cls.native_means), ("interp", cls.interp_means)):
            console.print(f"    {label:8}{text}", highlight=False, markup=False)
        console.print()


def _presets_table() -> Table:
    table = Table(title="Presets")
    table.add_column("name")
    table.add_column("same as")
    for name, (family, opts) in PRESETS.items():
        table.add_row(name, family + ":" + ",".join(f"{k}={v}" for k, v in opts.items()))
    return table


def _sizes_table() -> Table:
    table = Table(title="Backbone sizes (patch 16, trained at 224 unless told otherwise)")
    for column in ("size", "dim", "depth", "heads"):
        table.add_column(column)
    for name, s in SIZES.items():
        table.add_row(name, str(s.dim), str(s.depth), str(s.num_heads))
    return table


@app.command("list")
def list_(
    what: Annotated[Listing | None, typer.Argument(help="what to list; everything when omitted")] = None,
) -> None:
    """List position encodings (with options, modes and papers) and backbone sizes."""
    if what in (None, Listing.encodings):
        _print_encodings()
        console.print(_presets_table())
    if what in (None, Listing.sizes):
        console.print(_sizes_table())


@app.command()
def version() -> None:
    """Print pebench's version and the versions it runs with."""
    import timm
    import torch

    console.print(
        f"pebench {__version__}  torch {torch.__version__}  timm {timm.__version__}  "
        f"python {platform.python_version()}"
    )


def main() -> None:
    """Entry point; typer reports usage errors itself (exit 2), pebench's own bad-input errors go here."""
    try:
        app()
    except PebenchError as error:
        Console(stderr=True).print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
