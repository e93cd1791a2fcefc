"""Manifests as canonical JSON (RFC 8785): the bytes that are hashed, signed and chained."""

from __future__ import annotations

import json
import platform
import re
import sys
from functools import cache
from importlib import metadata
from typing import Any

import rfc8785
from pydantic import ValidationError

from evidence_store.errors import EvidenceError
from schemas import Manifest

SOFTWARE_PACKAGES = ("dsa-evidence", "sqlalchemy", "cryptography", "minio", "pydantic", "rfc8785")


class ManifestError(EvidenceError, ValueError):
    """Manifest bytes that do not parse, validate or round-trip canonically."""


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON: one byte sequence per value, whoever serialises it."""
    return rfc8785.dumps(value)


def manifest_bytes(manifest: Manifest) -> bytes:
    """The canonical bytes of a manifest; their SHA-256 is the snapshot id."""
    try:
        return canonical_json(manifest.model_dump(mode="json"))
    except rfc8785.CanonicalizationError as exc:
        # e.g. an integer beyond 2**53 in capture metadata: I-JSON has no exact form for it
        raise ManifestError(f"capture metadata has no canonical JSON form: {exc}") from None


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_SAFE_INTEGER = 2**53


class _Scan:
    """What json.loads saw that makes Python's sorted compact JSON differ from RFC 8785."""

    def __init__(self) -> None:
        self.unusual = False

    def float(self, text: str) -> float:
        self.unusual = True  # RFC 8785 formats numbers as ECMAScript does
        return float(text)

    def int(self, text: str) -> int:
        value = int(text)
        self.unusual |= abs(value) > _SAFE_INTEGER
        return value

    def pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # RFC 8785 sorts keys by UTF-16 code units, Python by code points: they differ only
        # for characters outside the Basic Multilingual Plane.
        self.unusual |= any(_ASTRAL.search(key) for key, _ in pairs)
        return dict(pairs)


def parse_manifest(data: bytes) -> Manifest:
    """Parse manifest bytes, insisting they are exactly the canonical form of what they say."""
    scan = _Scan()
    try:
        manifest = Manifest.model_validate(
            json.loads(
                data, parse_float=scan.float, parse_int=scan.int, object_pairs_hook=scan.pairs
            )
        )
    except (ValueError, ValidationError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ManifestError(f"not a valid manifest: {first}") from None
    dumped = manifest.model_dump(mode="json")
    if scan.unusual:
        canonical = canonical_json(dumped)
    else:
        # Without floats, huge integers or astral keys, RFC 8785 output equals sorted compact
        # JSON, which the C encoder writes many times faster than the rfc8785 package.
        canonical = json.dumps(
            dumped, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
        ).encode("utf-8")
    if canonical != data:
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
