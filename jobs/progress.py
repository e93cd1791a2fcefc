"""How a job reports progress to whoever runs it (the CLI's bars, a scheduler's log, an API).

Jobs print nothing: they call a ``Progress`` and return typed results. ``NO_PROGRESS`` is the
default for callers that do not watch.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Stages of a job, each with an optional total, advanced as work is done."""

    def stage(self, description: str, total: float | None = None, *, unit: str = "items") -> None:
        """A new stage begins (the previous one is over); ``unit`` is "items" or "bytes"."""

    def advance(self, amount: float = 1, *, item: str | None = None) -> None:
        """``amount`` more of the current stage is done; ``item`` names what is being done."""

    def total(self, total: float | None) -> None:
        """The current stage's total, once it is known."""


class _NoProgress:
    def stage(self, description: str, total: float | None = None, *, unit: str = "items") -> None:
        pass

    def advance(self, amount: float = 1, *, item: str | None = None) -> None:
        pass

    def total(self, total: float | None) -> None:
        pass


NO_PROGRESS: Progress = _NoProgress()
