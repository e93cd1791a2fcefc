"""The `evidence` command: wiring of the command groups, and the one-line errors.

Exit codes: 0 success, 1 verification found problems, 2 the command could not do its work
(bad input, unreachable store or database, invalid configuration, a run that archived
nothing), 3 a run archived some of its items but not all.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from evidence_store.errors import EvidenceError
from evidence_store.index import redact_url
from jobs.cli import archive
from jobs.cli.ads import ads_app
from jobs.cli.common import err, safe, state
from jobs.cli.config import config_app, db_app
from jobs.cli.custody import custody_app
from jobs.cli.exhibit import exhibit_app
from jobs.cli.export import export_app
from jobs.cli.hold import hold_app
from jobs.cli.keys import keys_app
from jobs.cli.posts import posts_app
from jobs.cli.reports import reports_app
from jobs.cli.retention import retention_app
from jobs.cli.runs import runs_app
from jobs.cli.schedule import schedule_app
from jobs.cli.snapshots import snapshots_app
from jobs.cli.sor import sor_app
from jobs.cli.sources import sources_app
from jobs.cli.store import store_app
from jobs.cli.timestamp import timestamp_app
from jobs.cli.verify import verify
from jobs.cli.workers import crawl_part, enqueue, worker

app = typer.Typer(
    help="Evidence collection for DSA, GDPR and AI Act violations: archive, verify, export.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(archive.capture)
app.command()(archive.crawl)
app.command()(archive.ingest)
app.command()(enqueue)
app.command()(worker)
app.command("crawl-part", hidden=True)(crawl_part)
app.command()(verify)
for group, name in (
    (db_app, "db"),
    (sources_app, "sources"),
    (runs_app, "runs"),
    (schedule_app, "schedule"),
    (snapshots_app, "snapshots"),
    (sor_app, "sor"),
    (ads_app, "ads"),
    (reports_app, "reports"),
    (posts_app, "posts"),
    (store_app, "store"),
    (config_app, "config"),
    (export_app, "export"),
    (exhibit_app, "exhibit"),
    (timestamp_app, "timestamp"),
    (custody_app, "custody"),
    (keys_app, "keys"),
    (hold_app, "hold"),
    (retention_app, "retention"),
):
    app.add_typer(group, name=name)


@app.callback()
def _root(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML configuration file (default ./evidence.toml)."),
    ] = None,
) -> None:
    state.config_path = config
    state._settings = None


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or exc.title
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager, the scheduler's shutdown): stop as on Ctrl-C, so that a
    run in progress is recorded as interrupted. Scrapy installs its own handler while it
    crawls, and stops the crawl cleanly."""


def _terminate(signum: int, _frame: object) -> None:
    raise Terminated()


def main() -> None:
    """Console entry point: one-line errors, exit status 2 for failures."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except EvidenceError as exc:
        err.print(f"[red]error:[/] {safe(exc)}", soft_wrap=True)
        sys.exit(2)
    except ValidationError as exc:
        err.print(f"[red]error:[/] invalid input: {safe(_validation_message(exc))}", soft_wrap=True)
        sys.exit(2)
    except SQLAlchemyError as exc:
        # A damaged or foreign index (a dropped table, a schema from another version).
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        database = redact_url(state.settings.database_url) if state._settings else "the index"
        err.print(
            f"[red]error:[/] the index database {safe(database)} failed: {safe(reason)} "
            "(check it with `evidence db status`)",
            soft_wrap=True,
        )
        sys.exit(2)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        err.print(f"[red]error:[/] {safe(exc.strerror or str(exc))}{safe(where)}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
