"""Manifests as canonical JSON (RFC 8785): the bytes that are hashed, signed and chained."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from functools import cache
from importlib import metadata
from typing import Any

import rfc8785
from pydantic import ValidationError

from schemas import Manifest

SOFTWARE_PACKAGES = ("dsa-evidence", "sqlalchemy", "cryptography", "minio", "pydantic", "rfc8785")


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON: one byte sequence per value, whoever serialises it."""
    return rfc8785.dumps(value)


def manifest_bytes(manifest: Manifest) -> bytes:
    """The canonical bytes of a manifest; their SHA-256 is the snapshot id."""
    return canonical_json(manifest.model_dump(mode="json"))


def manifest_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ManifestError(ValueError):
    """Manifest bytes that do not parse, validate or round-trip canonically."""


def parse_manifest(data: bytes) -> Manifest:
    """Parse manifest bytes, insisting they are exactly the canonical form of what they say."""
    try:
        manifest = Manifest.model_validate(json.loads(data))
    except (ValueError, ValidationError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ManifestError(f"not a valid manifest: {first}") from None
    if manifest_bytes(manifest) != data:
        raise ManifestError("manifest bytes are not the canonical JSON of their content")
    return manifest


@cache
def software_versions() -> dict[str, str]:
    """Versions of the software that made a manifest (recorded for the expert's report)."""
    versions = {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
    }
    for package in SOFTWARE_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
