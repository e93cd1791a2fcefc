"""Sources: what a source declares about itself, in the module that implements it.

A source is declared once, as auto-archiver declares a module in its ``__manifest__.py``: a
module-level ``SOURCE = SourceSpec(...)`` beside the spider or collector. ``jobs.sources``
finds the declarations; users configure a source under ``[sources.NAME]`` in evidence.toml.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from schemas.capture import CaptureOutcome
from schemas.evidence import Capture, check_collection_name

SourceKind = Literal["spider", "api", "dump", "upload"]
TimestampMode = Literal["snapshot", "merkle"]
SOURCE_NAME = r"^[a-z](?:[a-z0-9-]{0,62}[a-z0-9])?$"  # "x" is a source


class SourceSettings(BaseModel):
    """What every source's settings have; a source's own model adds its keys.

    Fields typed ``SecretStr`` are credentials: they come from evidence.toml or the environment
    only (never from ``-a`` on the command line) and ``evidence config show`` hides them.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)

    type: str | None = Field(
        default=None,
        description="the registered source this entry runs, when its name is another "
        '(two watchlists of `pages` on their own schedules: [sources.eu-pages] type = "pages")',
    )
    collection: str | None = Field(
        default=None, description="collection to archive into (default: the source's own)"
    )
    schedule: str | None = Field(
        default=None,
        description="when `evidence schedule start` runs it: a cron expression, 5 fields "
        "(minute hour day month weekday) or 6 with seconds first",
    )
    timezone: str = Field(default="Europe/Berlin", description="time zone of the schedule")
    concurrency: int | None = Field(
        default=None, ge=1, le=256, description="requests in flight at once (spiders)"
    )
    delay: float | None = Field(
        default=None, ge=0, le=3600, description="politeness delay between requests, seconds"
    )
    max_pages: int | None = Field(
        default=None, ge=1, description="stop a run after this many pages or items"
    )

    @field_validator("collection")
    @classmethod
    def _collection(cls, value: str | None) -> str | None:
        return None if value is None else check_collection_name(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use e.g. Europe/Berlin, UTC)") from None
        return value

    def uses_browser(self, default: bool) -> bool:
        """Whether this run renders pages with Chromium (a source may decide per run)."""
        return default

    def scrapy_settings(self) -> dict[str, Any]:
        """Scrapy settings this configuration sets for a run (spiders only): the limits."""
        limits: dict[str, Any] = {}
        if self.concurrency is not None:
            limits["CONCURRENT_REQUESTS"] = self.concurrency
            limits["CONCURRENT_REQUESTS_PER_DOMAIN"] = self.concurrency
        if self.delay is not None:
            limits["DOWNLOAD_DELAY"] = self.delay
        if self.max_pages is not None:
            limits["CLOSESPIDER_PAGECOUNT"] = self.max_pages
        return limits

    def spider_arguments(self) -> dict[str, Any]:
        """Keyword arguments for the spider (spiders only): every setting but the common ones."""
        return self.model_dump(exclude=set(SourceSettings.model_fields))

    def work_items(self) -> list[dict[str, Any]]:
        """The run split into items that workers can take one by one (``evidence worker``,
        ``--workers N``): a source that cannot be split is one item."""
        return [{}]

    def for_items(self, items: list[dict[str, Any]]) -> SourceSettings:
        """These settings narrowed to some of ``work_items()``."""
        return self


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_is_secret(arg) for arg in get_args(annotation))


def secret_fields(model: type[BaseModel]) -> list[str]:
    """The names of a settings model's credential fields (typed ``SecretStr``)."""
    return [name for name, info in model.model_fields.items() if _is_secret(info.annotation)]


@dataclass(frozen=True)
class CollectContext:
    """What a collector (a source that is not a Scrapy spider) gets for one run."""

    run_id: str
    collection: str
    source: str
    note: str | None
    operator: str
    workdir: Any  # pathlib.Path: a private folder for downloads, removed after the run
    allow_private: bool = False  # fetching from loopback and private addresses is allowed


@dataclass
class ParseResult:
    """What a source's record parser did with the snapshots of one run.

    ``snapshots`` are derived snapshots it archived (columnar files made from a dump): the run
    timestamps them with its own. ``outcomes`` are items it could not parse (a broken part of
    a dump), each with ``snapshot`` None: they make the run partial and are retried next time.
    """

    records: int = 0
    snapshots: list[str] = field(default_factory=list)
    outcomes: list[CaptureOutcome] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceSpec:
    """A registered source: its name, how it runs, its settings and its defaults.

    Exactly one of ``spider`` (a Scrapy spider class, run with the archive pipeline) and
    ``collect`` (a callable yielding captures, archived with group commit) is given.
    """

    name: str
    kind: SourceKind
    description: str
    settings: type[SourceSettings]
    collection: str
    timestamp_mode: TimestampMode = "snapshot"
    browser: bool = False
    spider: type | None = None
    # Yields a Capture per item, or a CaptureOutcome for an item it could not capture.
    collect: Callable[[Any, CollectContext], Iterable[Capture | CaptureOutcome]] | None = None
    # "module:function" in `records`, called after the run archived its snapshots as
    # parse(evidence, source_settings, context, snapshot_ids) -> ParseResult. A dotted name,
    # not a callable: crawlers sit below records and must not import them.
    records: str | None = None
    # "module:function" in `records`, called before the run as
    # prepare(evidence, source_settings, context) -> source_settings: what the archive already
    # knows that the run needs (the watched posts due for another capture).
    prepare: str | None = None

    def __post_init__(self) -> None:
        import re

        if not re.match(SOURCE_NAME, self.name):
            raise ValueError(f"invalid source name {self.name!r}")
        if (self.spider is None) == (self.collect is None):
            raise ValueError(f"source {self.name!r}: give exactly one of spider and collect")
        check_collection_name(self.collection)
        for hook in ("records", "prepare"):
            value = getattr(self, hook)
            if value is not None and not re.match(r"^records(\.\w+)+:\w+$", value):
                raise ValueError(
                    f"source {self.name!r}: {hook} must name a function as records.module:function"
                )
