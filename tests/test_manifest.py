"""Manifests: canonical JSON (RFC 8785), parsing, signatures."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import rfc8785

from evidence_store.manifest import ManifestError, manifest_bytes, parse_manifest
from evidence_store.signing import Signer, verify_signature
from schemas import ArtifactEntry, Manifest


def make_manifest(signer: Signer, capture: dict) -> Manifest:
    return Manifest(
        collection="tiktok",
        sequence=1,
        previous=None,
        kind="capture",
        captured_at=datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC),
        archived_at=datetime(2026, 11, 28, 12, 0, 1, tzinfo=UTC),
        source_url="https://www.tiktok.com/@someone",
        artifacts=[
            ArtifactEntry(
                role="warc",
                name="a.warc.gz",
                media_type="application/warc",
                size=3,
                sha256="a" * 64,
            )
        ],
        capture=capture,
        signer=signer.info,
    )


@pytest.mark.parametrize(
    "capture",
    [
        {"status": 200, "headers": {"Content-Type": "text/html; charset=utf-8"}},
        {"timing_ms": 1234.5, "ratio": 1e21, "small": 5e-7},  # numbers RFC 8785 formats its own way
        {"emoji 😀": 1, "\ufb01": 2, "a": {"z": [1, 2], "b": None}},  # UTF-16 key order differs
        {"big": 2**60 + 1},
        {"text": 'quotes " and \\ and \n control \x01 and Grüße'},
    ],
)
def test_manifest_bytes_are_rfc8785_and_parse_back(tmp_path, capture: dict) -> None:
    signer = Signer.load_or_create(tmp_path)
    manifest = make_manifest(signer, capture)
    if "big" in capture:  # I-JSON has no exact form for integers beyond 2**53
        with pytest.raises(ManifestError, match="no canonical JSON form"):
            manifest_bytes(manifest)
        return
    data = manifest_bytes(manifest)
    assert data == rfc8785.dumps(json.loads(data))
    assert parse_manifest(data) == manifest
    # Times are RFC 3339 UTC with milliseconds.
    assert json.loads(data)["captured_at"] == "2026-11-28T12:00:00.123Z"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d.replace(b'","', b'", "', 1),  # whitespace
        lambda d: json.dumps(json.loads(d), sort_keys=False).encode(),  # key order
        lambda d: d + b"\n",
    ],
)
def test_non_canonical_bytes_are_refused(tmp_path, mangle) -> None:
    data = manifest_bytes(make_manifest(Signer.load_or_create(tmp_path), {"x": 1.5, "y": "z"}))
    with pytest.raises(ManifestError, match="canonical"):
        parse_manifest(mangle(data))


def test_invalid_manifest_names_the_problem() -> None:
    with pytest.raises(ManifestError, match="not a valid manifest"):
        parse_manifest(b'{"type": "something else"}')


def test_signature_round_trip_and_tamper(tmp_path) -> None:
    signer = Signer.load_or_create(tmp_path)
    data = manifest_bytes(make_manifest(signer, {}))
    signature = signer.sign(data)
    assert verify_signature(signer.info, data, signature) is None
    assert "does not match" in verify_signature(
        signer.info, data.replace(b"tiktok", b"tiktak"), signature
    )
    # The key is made once and reloaded, never replaced.
    assert Signer.load_or_create(tmp_path).info == signer.info
    assert oct((tmp_path / "manifest-signing.ed25519.pem").stat().st_mode & 0o777) == "0o600"
