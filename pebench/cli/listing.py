"""What `pebench list` prints: encodings with their options, modes and papers; presets; shipped models;
timm families; backbone sizes. It imports no torch: what the registries say is kept in catalogue.json
(written from the code by :func:`catalogue`, checked equal by the tests), the shipped models are read
from their sidecars."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pebench.models.sizes import SIZES
from pebench.settings import PLUGIN_ENTRY_POINTS as ENTRY_POINT_GROUP
from pebench.zoo import BELOW_WHERE_BAR, ZOO, zoo_path

#: what `pebench list` shows of the encodings, presets and timm families, read from the code by
#: :func:`catalogue` and kept as JSON so that listing needs no torch (tests/test_cli.py holds them equal;
#: `python -m pebench.cli.listing` rewrites it)
CATALOGUE = Path(__file__).with_name("catalogue.json")


def options_text(cls) -> str:
    items = []
    for key, opt in cls.options.items():
        default = str(opt.default).lower() if isinstance(opt.default, bool) else opt.default
        choices = f" ({'|'.join(str(c) for c in opt.choices)})" if opt.choices else ""
        items.append(f"{key}={default}{choices}")
    return ", ".join(items) or "none"


def catalogue() -> dict:
    """The listing's content, from the registries themselves (imports torch)."""
    from pebench.encodings import PRESETS, REGISTRY
    from pebench.encodings.plugins import ORIGIN
    from pebench.models.timm_families import FAMILIES

    encodings = {name: describe(cls) for name, cls in REGISTRY.items() if name not in ORIGIN}
    presets = {name: preset_text(family, opts) for name, (family, opts) in PRESETS.items() if name not in ORIGIN}
    timm = [{"family": f.name, "patterns": list(f.patterns), "native": f.native, "interp": f.interp}
            for f in FAMILIES]
    return {"encodings": encodings, "presets": presets, "timm": timm}


def describe(cls) -> dict[str, str]:
    """What `pebench list` says of one encoding class."""
    return {"summary": cls.summary, "paper": cls.paper, "options": options_text(cls), "native": cls.native_means,
            "interp": cls.interp_means,
            "scale=S": cls.scale_means or f"not applicable: {cls.scale_unsupported or 'nothing to scale'}"}


def preset_text(family: str, options: dict) -> str:
    return family + ":" + ",".join(f"{k}={v}" for k, v in options.items())


def plugins_in_use() -> bool:
    """Whether any plugin was loaded or is installed (then listing imports it, and torch)."""
    from importlib.metadata import entry_points

    return "pebench.encodings.plugins" in sys.modules or bool(entry_points(group=ENTRY_POINT_GROUP))


def print_plugins(console: Console) -> None:
    """The plugins' encodings and presets, with where each comes from, and every plugin that failed."""
    from pebench.encodings import PRESETS, REGISTRY
    from pebench.encodings.plugins import PLUGINS, load_entry_points

    load_entry_points()
    console.print("[bold]Encodings from plugins[/]\n")
    for plugin in PLUGINS.values():
        origin = ", ".join(f"{k} {v}" for k, v in plugin.provenance.items())
        if plugin.error:
            console.print(f"[red]failed[/] {plugin.target} ({plugin.source}): {plugin.error}", highlight=False,
                          markup=False, soft_wrap=True)
            continue
        for name in plugin.encodings:
            console.print(f"[bold cyan]{name}[/]  {REGISTRY[name].summary}", highlight=False)
            entry = describe(REGISTRY[name]) | {"plugin": f"{plugin.target} ({plugin.source}; {origin})"}
            for label in ("plugin", "paper", "options", "native", "interp", "scale=S"):
                console.print(f"    {label:8}{entry[label]}", highlight=False, markup=False)
            console.print()
        for name in plugin.presets:
            console.print(f"preset [bold cyan]{name}[/] = {preset_text(*PRESETS[name])} (plugin {plugin.target})",
                          highlight=False)


def read_catalogue() -> dict:
    return json.loads(CATALOGUE.read_text(encoding="utf-8"))


def print_encodings(console: Console) -> None:
    console.print("[bold]Position encodings[/] (spec: name[:key=value,...]; combine with '+', e.g. ape+peg)\n")
    for name, entry in read_catalogue()["encodings"].items():
        console.print(f"[bold cyan]{name}[/]  {entry['summary']}", highlight=False)
        for label in ("paper", "options", "native", "interp", "scale=S"):
            console.print(f"    {label:8}{entry[label]}", highlight=False, markup=False)
        console.print()


def presets_table() -> Table:
    table = Table(title="Presets")
    table.add_column("name")
    table.add_column("same as")
    for name, same_as in read_catalogue()["presets"].items():
        table.add_row(name, same_as)
    return table


def models_table() -> tuple[Table, list[str]]:
    """The shipped models, and the notes printed below the table (why a model is below the bar)."""
    table = Table(title="Shipped models (micro ViT trained by pebench on synthetic at 224)")
    for column in ("name", "encoding", "val top-1 at 224", "where (position classes)", "samples seen",
                   "training steps"):
        table.add_column(column)
    total_s, notes = 0.0, []
    for name, spec in ZOO.items():
        path = zoo_path(name)
        if not path.exists():
            table.add_row(name, spec, "[dim]not built: pebench train --all[/]", "", "", "")
            continue
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        curve = meta["learning_curve"]
        where = f"{100 * meta['val_where']:.1f}%"
        if name in BELOW_WHERE_BAR:
            notes.append(f"[{len(notes) + 1}] {name}: {BELOW_WHERE_BAR[name]}")
            where += f" [yellow]below the bar [{len(notes)}][/]"
        seconds = training_seconds(curve)
        total_s += seconds
        table.add_row(name, meta["encoding"], f"{100 * meta['val_top1']:.1f}% ({meta['data']}, val split)",
                      where, str(curve[-1]["samples"]), f"{seconds / 60:.0f} min")
    table.caption = (f"training steps: {total_s / 3600:.1f} h in all, from each epoch's samples and img/s in the "
                     "sidecars (one process; `pebench train --all --jobs 2` runs two at once)")
    return table, notes


def training_seconds(curve: list[dict]) -> float:
    """Time a model spent in training steps: each epoch's samples at its recorded img/s."""
    seconds, seen = 0.0, 0
    for epoch in curve:
        seconds += (epoch["samples"] - seen) / epoch["img_per_s"]
        seen = epoch["samples"]
    return seconds


def timm_table() -> Table:
    table = Table(title="timm families (model spec timm:NAME; weights from --checkpoint, the local HF cache, or "
                        "timm's own with --pretrained)",
                  caption="A name no family lists runs by its class: a plain VisionTransformer with a learned "
                          "pos_embed as learned APE; any other class with set_input_size in interp through that "
                          "method (native unknown, no ratio to none in profiles); docs/timm.md")
    for column in ("family", "timm names", "native off the trained grid", "interp"):
        table.add_column(column)
    for family in read_catalogue()["timm"]:
        table.add_row(family["family"], " ".join(family["patterns"]), family["native"] or "[dim]not applicable[/]",
                      family["interp"])
    return table


def sizes_table() -> Table:
    table = Table(title="Backbone sizes (patch 16, trained at 224 unless told otherwise)")
    for column in ("size", "dim", "depth", "heads"):
        table.add_column(column)
    for name, s in SIZES.items():
        table.add_row(name, str(s.dim), str(s.depth), str(s.num_heads))
    return table


if __name__ == "__main__":
    CATALOGUE.write_text(json.dumps(catalogue(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {CATALOGUE}")
