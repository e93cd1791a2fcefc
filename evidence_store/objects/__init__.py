"""Object stores: where the bytes of evidence live, under their SHA-256."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from evidence_store.objects.base import ObjectInfo, ObjectStore, PutResult, object_key
from evidence_store.objects.local import LocalStore

__all__ = ["LocalStore", "ObjectInfo", "ObjectStore", "PutResult", "object_key", "open_store"]


def open_store(url: str, **options: Any) -> ObjectStore:
    """Open the store a URL names: ``file:///path`` (or a plain path) or ``s3://host:port/bucket``.

    ``options`` go to the store's constructor (S3 credentials and lock settings).
    """
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        path = parts.path if parts.scheme == "file" else url
        return LocalStore(Path(path), **options)
    if parts.scheme in ("s3", "minio", "http", "https"):
        from evidence_store.objects.s3 import S3Store

        return S3Store.from_url(url, **options)
    raise ValueError(
        f"unsupported object store URL {url!r}: use file:///path or s3://host:port/bucket"
    )
