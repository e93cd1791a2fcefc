"""What can be an exhibit: the kinds of items, and how a reference names one.

An exhibit shows one item: now a **snapshot** (a capture or an ingested file), later the
records the ``records/`` layer parses out of snapshots (ad versions, statements of reasons,
platform posts). Every kind resolves a reference to an :class:`ExhibitItem`, which names the
snapshots whose originals go into the bundle and the fields its PDF shows; the bundle builder,
the PDFs and the offline verifier only ever see that protocol, so a new kind plugs in by
registering a resolver in :data:`KINDS`.

References: a snapshot id or unique prefix (``3f9a1c…``, or ``snapshot:3f9a1c…``); a
statement of reasons ``sor:UUID``, an ad ``ad:PLATFORM:ID`` and a post ``post:PLATFORM:ID``
(``exhibits.records``). A kind may be registered before its records exist, with the reason it
is refused (``ItemKind.unavailable``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session

from evidence_store.errors import EvidenceError
from evidence_store.queries import resolve_snapshot, snapshot_info
from schemas import SnapshotInfo


class ExhibitError(EvidenceError):
    """An exhibit cannot be built or read (the message says why)."""


class ExhibitItem(Protocol):
    """One thing shown as one exhibit."""

    kind: str
    """``snapshot`` now; ``ad``, ``sor``, ``post`` with the records layer."""
    ref: str
    """The reference it was resolved from, for messages."""

    @property
    def snapshots(self) -> list[SnapshotInfo]:
        """The snapshots whose originals (manifest, signature, artifacts, tokens) go into the
        bundle: the capture itself, or the captures a record was parsed from."""
        ...

    @property
    def url(self) -> str | None:
        """The address the item was captured from, when it has one."""
        ...

    def fields(self) -> list[tuple[str, str]]:
        """(label key, value) pairs shown in the exhibit's "record" section (a record's
        parsed fields; empty for a plain snapshot)."""
        ...


@dataclass
class SnapshotItem:
    """A snapshot as an exhibit: the capture and everything that proves it."""

    snapshot: SnapshotInfo
    ref: str
    kind: str = "snapshot"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def snapshots(self) -> list[SnapshotInfo]:
        return [self.snapshot]

    @property
    def url(self) -> str | None:
        return self.snapshot.source_url

    def fields(self) -> list[tuple[str, str]]:
        return []


Resolver = Callable[[Session, str], ExhibitItem]


@dataclass(frozen=True)
class ItemKind:
    """A kind of exhibit item: how to resolve its references, or why it cannot be yet."""

    name: str
    description: str
    resolve: Resolver | None = None
    unavailable: str | None = None


def _resolve_snapshot(session: Session, ref: str) -> ExhibitItem:
    return SnapshotItem(snapshot_info(resolve_snapshot(session, ref)), ref)


def _resolve_record(name: str) -> Resolver:
    # exhibits.records imports this module: resolved when used, not at import.
    def resolve(session: Session, ref: str) -> ExhibitItem:
        from exhibits import records

        resolver: Resolver = getattr(records, name)
        return resolver(session, ref)

    return resolve


KINDS: dict[str, ItemKind] = {
    "snapshot": ItemKind(
        "snapshot", "an archived snapshot (id or unique prefix)", _resolve_snapshot
    ),
    "ad": ItemKind("ad", "an ad (platform:id, or its id)", _resolve_record("resolve_ad")),
    "sor": ItemKind(
        "sor", "a statement of reasons (its uuid)", _resolve_record("resolve_statement")
    ),
    "post": ItemKind(
        "post", "a platform post (platform:id, or its id)", _resolve_record("resolve_post")
    ),
}


def parse_ref(ref: str) -> tuple[ItemKind, str]:
    """The kind a reference names and the rest of it; a bare reference is a snapshot."""
    text = ref.strip()
    head, sep, rest = text.partition(":")
    if sep and head.lower() in KINDS:
        return KINDS[head.lower()], rest.strip()
    if sep and head.lower() == "sha256":  # a snapshot id written as sha256:<hex>
        return KINDS["snapshot"], text
    if sep:
        known = ", ".join(f"{k}:" for k in KINDS)
        raise ExhibitError(f"{ref!r}: unknown kind {head!r} (known: {known})")
    return KINDS["snapshot"], text


def resolve_item(session: Session, ref: str) -> ExhibitItem:
    """The item a reference names; a kind that does not exist yet is refused, with why."""
    kind, rest = parse_ref(ref)
    if kind.resolve is None:
        raise ExhibitError(f"{ref!r}: {kind.unavailable}")
    if not rest:
        raise ExhibitError(f"{ref!r}: give a {kind.description}")
    return kind.resolve(session, rest)
