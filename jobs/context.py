"""Wiring: from validated settings to the evidence store's parts."""

from __future__ import annotations

from evidence_store.archive import EvidenceStore
from evidence_store.errors import EvidenceError
from evidence_store.index import Index
from evidence_store.keys import load_signer
from evidence_store.objects import ObjectStore, open_store
from jobs.config import ConfigError, Settings


def open_objects(settings: Settings) -> ObjectStore:
    try:
        return open_store(settings.object_store_url, **settings.store_options())
    except ValueError as exc:
        raise ConfigError(f"invalid setting 'store_url': {exc}") from None


def open_index(settings: Settings, *, auto_migrate: bool = True) -> Index:
    # A new SQLite file in the data folder is created and migrated on first use; the folder
    # itself is made here so that `evidence ingest` works on a fresh machine.
    if settings.db_url is None:
        ensure_data_dir(settings)
    return Index(settings.database_url, auto_migrate=auto_migrate)


def ensure_data_dir(settings: Settings) -> None:
    path = settings.data_path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvidenceError(f"cannot create the data folder {path}: {exc.strerror}") from None


def open_evidence(settings: Settings) -> EvidenceStore:
    """Everything `archive`, `verify` and `sweep` need, built from the settings."""
    ensure_data_dir(settings)
    index = open_index(settings)
    index.ensure_schema()
    objects = open_objects(settings)
    # load_signer first finishes (or undoes) a key rotation a crash interrupted.
    signer = load_signer(settings.keys_dir, index)
    return EvidenceStore(objects=objects, index=index, signer=signer, actor=settings.actor)
