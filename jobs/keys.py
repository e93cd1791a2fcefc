"""The manifest-signing keys: listing, rotation, and the exportable history (logged)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evidence_store.errors import EvidenceError
from evidence_store.keys import export_key_history, list_keys, rotate_key
from evidence_store.signing import KEY_FILE, Signer
from jobs.access import record_access
from jobs.config import Settings
from jobs.context import open_evidence, open_index


def local_fingerprint(keys_dir: Path) -> str | None:
    """This machine's key, if it has one (listing must not create a key)."""
    path = keys_dir / KEY_FILE
    return Signer.load(path).info.fingerprint if path.exists() else None


def keys(settings: Settings) -> tuple[list[Any], str | None]:
    """Every key the index trusts, oldest first, and the fingerprint of this machine's key."""
    index = open_index(settings)
    with index.session() as session:
        entries = list_keys(session)
    return entries, local_fingerprint(settings.keys_dir)


def rotate(settings: Settings, *, reason: str | None) -> Any:
    """Replace this machine's key; the old key endorses the new one and is destroyed."""
    if not reason or not reason.strip():
        raise EvidenceError("a key rotation needs --reason (it goes into the custody log)")
    evidence = open_evidence(settings)
    return rotate_key(
        settings.keys_dir, evidence.objects, evidence.index, actor=settings.actor, reason=reason
    )


@dataclass
class KeyHistoryExport:
    result: Any  # evidence_store.keys.KeyExport
    warnings: list[str] = field(default_factory=list)


def export_history(settings: Settings, output: Path) -> KeyHistoryExport:
    """Write the key history to a new folder (written even when it does not check out)."""
    if output.exists():
        raise EvidenceError(f"{output} exists: an export is never overwritten")
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        result = export_key_history(evidence.objects, session, output)
    warning = record_access(
        evidence,
        action="exported",
        details={
            "format": "key-history",
            "folder": str(result.path.absolute()),
            "keys": result.keys,
            "sha256sums": result.sha256sums,
            "problems": len(result.problems),
        },
    )
    return KeyHistoryExport(result, [warning] if warning else [])
