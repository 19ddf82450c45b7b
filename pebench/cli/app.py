"""The `pebench` app: its commands, registered from one module per group, and the entry point that turns
pebench's errors into one line (exit 2 for bad input, 1 for a run that failed), never a traceback."""

from __future__ import annotations

import os
import platform
import sys
from enum import Enum
from typing import Annotated

import typer
from rich.console import Console

from pebench import __version__
from pebench.cli.evaluation import eval_, inspect, tune
from pebench.cli.listing import (
    models_table,
    plugins_in_use,
    presets_table,
    print_encodings,
    print_plugins,
    sizes_table,
    timm_table,
)
from pebench.cli.options import PebenchCommand, console
from pebench.cli.profiling import profile
from pebench.cli.records import check, report
from pebench.cli.runs import interrupted_message
from pebench.cli.suites import run, validate
from pebench.cli.training import finetune, train
from pebench.errors import PebenchError
from pebench.settings import PLUGINS_ENV

app = typer.Typer(
    help="Benchmark how ViT position encodings trained at 224 px hold up at 384 to 1024 px. Every command also "
         "takes --plugin MODULE_OR_FILE (repeatable; or PEBENCH_PLUGINS=a:b) to load encodings from outside "
         "pebench (docs/plugins.md).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Listing(str, Enum):
    encodings = "encodings"
    models = "models"
    sizes = "sizes"


@app.command("list", cls=PebenchCommand)
def list_(
    what: Annotated[Listing | None, typer.Argument(help="what to list; everything when omitted")] = None,
) -> None:
    """List position encodings (with options, modes and papers), shipped models and backbone sizes."""
    if what in (None, Listing.encodings):
        print_encodings(console)
        console.print(presets_table())
        if plugins_in_use():
            print_plugins(console)
    if what in (None, Listing.models):
        table, notes = models_table()
        console.print(table)
        for note in notes:
            console.print(note, highlight=False, markup=False, soft_wrap=True)
        console.print(timm_table())
    if what in (None, Listing.sizes):
        console.print(sizes_table())


for command, name in ((train, None), (finetune, None), (eval_, "eval"), (tune, None), (inspect, None),
                      (profile, None), (validate, None), (run, None), (report, None), (check, None)):
    app.command(name, cls=PebenchCommand)(command)


def _versions_line() -> str:
    """Versions read from package metadata, so that printing them does not import torch."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    def of(package: str) -> str:
        try:
            return installed(package)
        except PackageNotFoundError:
            return "not installed"

    return f"pebench {__version__}  torch {of('torch')}  timm {of('timm')}  python {platform.python_version()}"


@app.command(cls=PebenchCommand)
def version() -> None:
    """Print pebench's version and the versions it runs with (same as --version)."""
    console.print(_versions_line(), highlight=False)


def _print_version(value: bool) -> None:
    if value:
        console.print(_versions_line(), highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version_: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                           help="print pebench's version and the versions it runs with")] = False,
) -> None:
    """Benchmark how ViT position encodings trained at 224 px hold up at higher resolutions."""


def take_plugin_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """``--plugin X`` / ``--plugin=X`` anywhere on the command line (any command takes it): (plugins, the rest)."""
    plugins, rest, items = [], [], iter(argv)
    for item in items:
        if item == "--plugin":
            value = next(items, None)
            if value is None:
                raise PebenchError("--plugin needs a module or a .py file, e.g. --plugin my_encodings.py")
            plugins.append(value)
        elif item.startswith("--plugin="):
            plugins.append(item.partition("=")[2])
        else:
            rest.append(item)
    return plugins, rest


def main() -> None:
    """Entry point; typer reports usage errors itself (exit 2), pebench's own errors go here as one line:
    bad input exits 2, a run that failed for another reason (a data worker died) exits 1. Plugins named by
    ``--plugin`` or ``PEBENCH_PLUGINS`` are imported first (torch with them, only when there are any)."""
    try:
        plugins, sys.argv[1:] = take_plugin_options(sys.argv[1:])
        if plugins or os.environ.get(PLUGINS_ENV):
            from pebench.encodings.plugins import load_requested

            load_requested(plugins)
        app()
    except PebenchError as error:
        Console(stderr=True).print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except SystemExit as exit_:
        if exit_.code == 130:  # typer turns Ctrl-C (KeyboardInterrupt) into exit code 130, silently
            Console(stderr=True).print(interrupted_message(), highlight=False, soft_wrap=True)
        raise
