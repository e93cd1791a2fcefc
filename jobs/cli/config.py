"""`evidence config` and `evidence db`: the effective settings and the index's schema."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from jobs.cli.common import JsonOption, out, print_json, safe, state
from jobs.context import open_index

config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
db_app = typer.Typer(help="The SQL index: schema migrations.", no_args_is_help=True)


@config_app.command("show")
def config_show(as_json: JsonOption = False) -> None:
    """Show the effective configuration (secrets hidden)."""
    view = state.settings.public_view()
    if as_json:
        print_json(view)
        return
    table = Table(title="effective configuration")
    table.add_column("setting")
    table.add_column("value", overflow="fold")

    def rows(prefix: str, data: dict[str, Any]) -> None:
        for key, value in data.items():
            if isinstance(value, dict) and value:
                rows(f"{prefix}{key}.", value)
            else:
                table.add_row(safe(prefix + key), safe(value))

    rows("", view)
    out.print(table)


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOption = False) -> None:
    """Create or migrate the index database to the current schema."""
    index = open_index(state.settings, auto_migrate=False)
    before = index.current_revision()
    after = index.upgrade()
    if as_json:
        print_json({"database": index.describe(), "from": before, "to": after})
    else:
        out.print(f"index {safe(index.describe())}: schema {before or 'empty'} -> {after}")


@db_app.command("status")
def db_status(as_json: JsonOption = False) -> None:
    """Show the schema revision of the index database."""
    index = open_index(state.settings, auto_migrate=False)
    current, head = index.current_revision(), index.head_revision()
    if as_json:
        print_json(
            {
                "database": index.describe(),
                "current": current,
                "head": head,
                "up_to_date": current == head,
            }
        )
    else:
        status = "up to date" if current == head else "needs `evidence db upgrade`"
        out.print(
            f"index {safe(index.describe())}: schema {current or 'empty'} (head {head}), {status}"
        )
