"""What `pebench list` prints: encodings with their options, modes and papers; presets; shipped models;
timm families; backbone sizes. Everything is read from the code, so the listing cannot go stale; what
imports torch (encodings, checkpoints, timm families) is imported by the listing that needs it."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from pebench.models.sizes import SIZES


def options_text(cls) -> str:
    items = []
    for key, opt in cls.options.items():
        default = str(opt.default).lower() if isinstance(opt.default, bool) else opt.default
        choices = f" ({'|'.join(str(c) for c in opt.choices)})" if opt.choices else ""
        items.append(f"{key}={default}{choices}")
    return ", ".join(items) or "none"


def print_encodings(console: Console) -> None:
    from pebench.encodings import REGISTRY

    console.print("[bold]Position encodings[/] (spec: name[:key=value,...]; combine with '+', e.g. ape+peg)\n")
    for name, cls in REGISTRY.items():
        console.print(f"[bold cyan]{name}[/]  {cls.summary}", highlight=False)
        scale = cls.scale_means or f"not applicable: {cls.scale_unsupported or 'nothing to scale'}"
        for label, text in (("paper", cls.paper), ("options", options_text(cls)),
                            ("native", cls.native_means), ("interp", cls.interp_means), ("scale=S", scale)):
            console.print(f"    {label:8}{text}", highlight=False, markup=False)
        console.print()


def presets_table() -> Table:
    from pebench.encodings import PRESETS

    table = Table(title="Presets")
    table.add_column("name")
    table.add_column("same as")
    for name, (family, opts) in PRESETS.items():
        table.add_row(name, family + ":" + ",".join(f"{k}={v}" for k, v in opts.items()))
    return table


def models_table() -> Table:
    from pebench.data import parse_data
    from pebench.models.checkpoint import read_sidecar
    from pebench.zoo import BELOW_WHERE_BAR, ZOO, zoo_path

    table = Table(title="Shipped models (micro ViT trained by pebench on synthetic at 224)")
    for column in ("name", "encoding", "val top-1 at 224", "where (position classes)", "samples seen",
                   "training steps"):
        table.add_column(column)
    total_s = 0.0
    for name, spec in ZOO.items():
        path = zoo_path(name)
        if not path.exists():
            table.add_row(name, spec, "[dim]not built: pebench train --all[/]", "", "", "")
            continue
        meta = read_sidecar(path)
        curve = meta["learning_curve"]
        val_size = parse_data(meta["data"]).size("val")
        where = f"{100 * meta['val_where']:.1f}%"
        if name in BELOW_WHERE_BAR:
            where += f" [yellow]below the bar: {BELOW_WHERE_BAR[name]}[/]"
        seconds = training_seconds(curve)
        total_s += seconds
        table.add_row(name, meta["encoding"], f"{100 * meta['val_top1']:.1f}% (n={val_size:,}, {meta['data']})",
                      where, str(curve[-1]["samples"]), f"{seconds / 60:.0f} min")
    table.caption = (f"training steps: {total_s / 3600:.1f} h in all, from each epoch's samples and img/s in the "
                     "sidecars (one process; `pebench train --all --jobs 2` runs two at once)")
    return table


def training_seconds(curve: list[dict]) -> float:
    """Time a model spent in training steps: each epoch's samples at its recorded img/s."""
    seconds, seen = 0.0, 0
    for epoch in curve:
        seconds += (epoch["samples"] - seen) / epoch["img_per_s"]
        seen = epoch["samples"]
    return seconds


def timm_table() -> Table:
    from pebench.models.timm_families import FAMILIES

    table = Table(title="timm families (model spec timm:NAME, weights from --checkpoint or the local HF cache)")
    for column in ("family", "timm names", "native off the trained grid", "interp"):
        table.add_column(column)
    for family in FAMILIES:
        table.add_row(family.name, " ".join(family.patterns), family.native or "[dim]not applicable[/]", family.interp)
    return table


def sizes_table() -> Table:
    table = Table(title="Backbone sizes (patch 16, trained at 224 unless told otherwise)")
    for column in ("size", "dim", "depth", "heads"):
        table.add_column(column)
    for name, s in SIZES.items():
        table.add_row(name, str(s.dim), str(s.depth), str(s.num_heads))
    return table
