"""`evidence sources`: the registered sources, their settings and defaults."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from jobs.cli.common import JsonOption, out, print_json, safe, state
from jobs.sources import configured_source, describe, registry

sources_app = typer.Typer(
    help="Registered sources: what `evidence crawl` can run.", no_args_is_help=True
)


@sources_app.command("list")
def sources_list(as_json: JsonOption = False) -> None:
    """Every registered source with its kind, collection and settings."""
    configured = state.settings.sources
    described = [describe(spec, configured.get(name)) for name, spec in registry().items()]
    # Entries of the configuration with a name of their own (type = "<registered source>").
    for name in sorted(set(configured) - set(registry())):
        _, spec, values = configured_source(configured, name)
        described.append(describe(spec, values) | {"name": name, "type": spec.name})
    if as_json:
        print_json(described)
        return
    table = Table(title=f"{len(described)} source(s)", box=box.SIMPLE_HEAD)
    for column in ("source", "kind", "collection", "timestamps", "browser", "settings"):
        table.add_column(column, overflow="fold")
    for d in described:
        table.add_row(
            d["name"] + (f" ({d['type']})" if "type" in d else ""),
            d["kind"],
            d["collection"],
            d["timestamp_mode"],
            "yes" if d["browser"] else "no",
            ", ".join(s["name"] + ("*" if s["configured"] else "") for s in d["settings"]),
        )
    out.print(table)
    out.print("* configured in evidence.toml or the environment; `evidence sources show NAME`")


@sources_app.command("show")
def sources_show(
    name: Annotated[str, typer.Argument(help="The source's name.")],
    as_json: JsonOption = False,
) -> None:
    """One source: what it does, and each setting with its default, value and help."""
    entry, spec, values = configured_source(state.settings.sources, name)
    d = describe(spec, values) | {"name": entry}
    if as_json:
        print_json(d)
        return
    out.print(f"[bold]{d['name']}[/] ({d['kind']}): {safe(d['description'])}")
    out.print(
        f"collection {d['collection']}; timestamps {d['timestamp_mode']}; "
        f"browser {'yes' if d['browser'] else 'no'}; implemented by {d['implementation']}"
    )
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("setting", "value", "default", "help"):
        table.add_column(column, overflow="fold")
    for s in d["settings"]:
        value = json.dumps(s["value"]) if s["configured"] else "-"
        default = "(secret)" if s["secret"] else json.dumps(s["default"])
        table.add_row(s["name"], safe(value), safe(default), safe(s["help"]))
    env = spec.name.replace("-", "_").upper()
    out.print(table)
    out.print(
        f"set in evidence.toml under \\[sources.{spec.name}] or as EVIDENCE_SOURCES__{env}__KEY; "
        f"per run: evidence crawl {spec.name} -a key=value"
    )
