"""The `evidence` command line: one module per command group, shared parts in ``common``."""

from jobs.cli.main import app, main

__all__ = ["app", "main"]
