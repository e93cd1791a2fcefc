"""The source registry: every source declared in the code, and its settings for a run.

A source declares itself once, beside its implementation, as ``SOURCE = SourceSpec(...)`` in a
module of ``crawlers.spiders`` or ``crawlers.collectors`` (or of another installed package,
through the ``dsa_evidence.sources`` entry point group). Users configure it under
``[sources.NAME]`` in evidence.toml or ``EVIDENCE_SOURCES__NAME__KEY`` (a dash in NAME becomes
an underscore), and give per-run arguments with ``-a key=value``. Credentials come from the
settings only, never from ``-a``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import pkgutil
import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib.metadata import entry_points
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from evidence_store.errors import EvidenceError
from schemas import SourceSettings, SourceSpec, secret_fields
from schemas.source import SOURCE_NAME

SOURCE_PACKAGES = ("crawlers.spiders", "crawlers.collectors")
ENTRY_POINT_GROUP = "dsa_evidence.sources"


class SourceError(EvidenceError):
    """An unknown source, or a setting or argument of one that is wrong."""


@cache
def registry() -> dict[str, SourceSpec]:
    """Every registered source by name (modules are imported once, on first use)."""
    found: dict[str, SourceSpec] = {}

    def add(spec: Any, where: str) -> None:
        if not isinstance(spec, SourceSpec):
            raise SourceError(f"{where}: SOURCE is not a SourceSpec")
        if spec.name in found:
            raise SourceError(f"source {spec.name!r} is declared twice (again in {where})")
        found[spec.name] = spec

    for package_name in SOURCE_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__, f"{package_name}."):
            module = importlib.import_module(info.name)
            if hasattr(module, "SOURCE"):
                add(module.SOURCE, info.name)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        add(point.load(), f"entry point {point.name}")
    return dict(sorted(found.items()))


def _by_module_name(name: str) -> SourceSpec | None:
    # A source usually lives in a module named after it: finding it there spares a command
    # the import of every other source (Scrapy, Playwright) just to run `files`.
    for package in SOURCE_PACKAGES:
        module_name = f"{package}.{name.replace('-', '_')}"
        if importlib.util.find_spec(package) is None:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        spec = getattr(module, "SOURCE", None)
        if isinstance(spec, SourceSpec) and spec.name == name:
            return spec
    return None


def get_source(name: str) -> SourceSpec:
    """The source called ``name``; the error lists the known ones."""
    if registry.cache_info().currsize == 0 and (spec := _by_module_name(name)) is not None:
        return spec
    sources = registry()
    spec = sources.get(name) or sources.get(name.replace("_", "-"))
    if spec is None:
        raise SourceError(f"unknown source {name!r}: known sources are {', '.join(sources)}")
    return spec


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) in (list, tuple, set, frozenset):
        return True
    return any(_is_list(arg) for arg in get_args(annotation) if arg is not type(None))


def _is_plain_text(annotation: Any) -> bool:
    if annotation is str:
        return True
    return get_origin(annotation) in (Union, UnionType) and all(
        a in (str, type(None)) for a in get_args(annotation)
    )


def from_environment(model: type[BaseModel], values: Mapping[str, Any]) -> dict[str, Any]:
    """Settings from variables arrive as text: lists and tables are given as JSON there."""
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        info = model.model_fields.get(key)
        if isinstance(value, str) and info is not None and not _is_plain_text(info.annotation):
            try:
                value = json.loads(value)
            except ValueError:
                if _is_list(info.annotation):
                    value = [value]
        parsed[key] = value
    return parsed


def normalise_configured(raw: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``[sources.NAME]`` tables and ``EVIDENCE_SOURCES__NAME__KEY`` variables by entry name.

    NAME is a registered source, or a name of the user's with ``type = "<registered source>"``
    (several entries of one source, say two watchlists of `pages` on their own schedules).
    Variables spell a dash in NAME as an underscore and win over the file.
    """
    merged: dict[str, dict[str, Any]] = {}
    # Keys with an underscore come from variables: apply them after the file's.
    for key in sorted(raw, key=lambda k: "_" in k):
        values = raw[key]
        if not isinstance(values, Mapping):
            raise SourceError(f"[sources.{key}] must be a table of settings")
        name = key
        if key not in merged and key.replace("_", "-") in merged:
            name = key.replace("_", "-")  # a variable naming an entry of the file
        type_name = values.get("type") or merged.get(name, {}).get("type")
        if type_name:
            spec = get_source(str(type_name))
            if not re.match(SOURCE_NAME, name):
                raise SourceError(
                    f"[sources.{name}]: invalid name (lower-case letters, digits and dashes)"
                )
            if name in registry() and name != spec.name:
                raise SourceError(
                    f"[sources.{name}] type = {type_name!r}: {name!r} is a registered source "
                    "of its own; give the entry another name"
                )
        else:
            spec = get_source(name)
            name = spec.name
        merged.setdefault(name, {}).update(from_environment(spec.settings, values))
    return merged


def configured_source(
    configured: Mapping[str, Mapping[str, Any]], name: str
) -> tuple[str, SourceSpec, dict[str, Any]]:
    """(entry name, registered source, its configured values) for a name given by a user."""
    values = configured.get(name) or configured.get(name.replace("_", "-"))
    if values is not None and values.get("type"):
        return (
            name if name in configured else name.replace("_", "-"),
            get_source(values["type"]),
            dict(values),
        )
    spec = get_source(name)
    return spec.name, spec, dict(configured.get(spec.name, {}))


def schedule_trigger(expression: str, timezone: str) -> Any:
    """An APScheduler cron trigger: 5 fields (minute hour day month weekday) or 6 (seconds
    first); the error names the expression."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expression.split()
    names = ["minute", "hour", "day", "month", "day_of_week"]
    if len(fields) == 6:
        names = ["second", *names]
    elif len(fields) != 5:
        raise SourceError(
            f"schedule {expression!r}: give 5 cron fields (minute hour day month weekday) "
            "or 6 (with seconds first)"
        )
    try:
        return CronTrigger(**dict(zip(names, fields, strict=True)), timezone=timezone)
    except ValueError as exc:
        raise SourceError(f"schedule {expression!r}: {exc}") from None


def _where(name: str, key: str, given: Mapping[str, str]) -> str:
    if key in given:
        return given[key]
    env = f"EVIDENCE_SOURCES__{name.replace('-', '_').upper()}__{key.upper()}"
    return f"[sources.{name}] {key} / {env}"


def validate_settings(
    spec: SourceSpec, values: Mapping[str, Any], given: Mapping[str, str] | None = None
) -> SourceSettings:
    """The source's settings model from these values; the error names each bad key and where
    it came from (``given``: key -> "-a key" or the command's option)."""
    arguments = dict(given or {})
    try:
        validated = spec.settings.model_validate(dict(values))
    except ValidationError as exc:
        messages = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "?"
            where = _where(spec.name, str(error["loc"][0]) if error["loc"] else key, arguments)
            if error["type"] == "extra_forbidden":
                known = ", ".join(spec.settings.model_fields)
                messages.append(
                    f"source {spec.name}: unknown setting {key!r} ({where}; known: {known})"
                )
            else:
                message = str(error["msg"]).removeprefix("Value error, ")
                messages.append(f"source {spec.name}: invalid {key!r} ({where}): {message}")
        raise SourceError("; ".join(messages)) from None
    if validated.schedule is not None:
        try:
            schedule_trigger(validated.schedule, validated.timezone)
        except SourceError as exc:
            raise SourceError(
                f"source {spec.name}: {exc} ({_where(spec.name, 'schedule', arguments)})"
            ) from None
    return validated


def parse_arguments(spec: SourceSpec, arguments: Iterable[str]) -> dict[str, Any]:
    """``-a key=value`` arguments as settings; a key given twice, or a list setting, collects
    its values (``-a url=A -a url=B`` sets ``urls``). Credentials are refused."""
    fields = spec.settings.model_fields
    secrets = set(secret_fields(spec.settings))
    values: dict[str, Any] = {}
    for argument in arguments:
        key, equals, value = argument.partition("=")
        key = key.strip().replace("-", "_")
        if not equals or not key:
            raise SourceError(f"argument {key or argument!r}: give -a key=value")
        if key not in fields and f"{key}s" in fields:
            key = f"{key}s"  # -a url=… adds to urls
        elif key not in fields and key.endswith("y") and f"{key[:-1]}ies" in fields:
            key = f"{key[:-1]}ies"  # -a query=… adds to queries
        elif key not in fields and f"{key}es" in fields:
            key = f"{key}es"  # -a search=… adds to searches
        if key == "type":
            raise SourceError("-a type: an entry's type is set in [sources.NAME] only")
        if key in secrets:
            env = f"EVIDENCE_SOURCES__{spec.name.replace('-', '_').upper()}__{key.upper()}"
            raise SourceError(
                f"-a {key}: credentials are never taken from the command line (they would stay "
                f"in the shell history and the process list); set [sources.{spec.name}] {key} "
                f"in evidence.toml or {env}"
            )
        if key not in fields:
            raise SourceError(
                f"source {spec.name}: unknown argument -a {key} (known: {', '.join(fields)})"
            )
        if _is_list(fields[key].annotation):
            values.setdefault(key, [])
            values[key].extend(from_environment(spec.settings, {key: value})[key])
        elif key in values:
            raise SourceError(f"-a {key} given twice; {spec.name}'s {key} takes one value")
        else:
            values[key] = value
    return values


def settings_for_run(
    spec: SourceSpec,
    configured: Mapping[str, Any],
    arguments: Iterable[str] = (),
    overrides: Mapping[str, Any] | None = None,
) -> SourceSettings:
    """The source's settings for one run: configuration, then ``-a`` arguments, then the
    values a command's own options set (``overrides``)."""
    parsed = parse_arguments(spec, arguments)
    options = {k: v for k, v in (overrides or {}).items() if v is not None}
    given = {k: f"-a {k}" for k in parsed} | {k: f"--{k.replace('_', '-')}" for k in options}
    return validate_settings(spec, {**configured, **parsed, **options}, given)


def describe(spec: SourceSpec, configured: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A source as `evidence sources list/show` present it (credentials hidden)."""
    secrets = set(secret_fields(spec.settings))
    settings = []
    for name, info in spec.settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        value = (configured or {}).get(name, default)
        if name in secrets and value is not None:
            value = "********"
        settings.append(
            {
                "name": name,
                "default": None if name in secrets else _plain(default),
                "value": _plain(value),
                "configured": name in (configured or {}),
                "secret": name in secrets,
                "help": info.description or "",
            }
        )
    return {
        "name": spec.name,
        "kind": spec.kind,
        "description": spec.description,
        "collection": spec.collection,
        "timestamp_mode": spec.timestamp_mode,
        "browser": spec.browser,
        "implementation": _implementation(spec),
        "settings": settings,
    }


def _implementation(spec: SourceSpec) -> str:
    target = spec.spider if spec.spider is not None else spec.collect
    return f"{target.__module__}.{target.__qualname__}"  # type: ignore[union-attr]


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict | str | int | float | bool) or value is None:
        return value
    return str(value)
