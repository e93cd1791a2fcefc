"""Snapshots, artifacts and manifests: what the evidence store keeps and signs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.time import UtcDateTime, utc_now

SHA256_HEX = r"^[0-9a-f]{64}$"
COLLECTION_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MANIFEST_TYPE = "dsa-evidence/manifest"


def check_collection_name(name: str) -> str:
    """Collection names become path parts and CLI arguments: keep them to a small slug alphabet."""
    if not COLLECTION_NAME.match(name):
        raise ValueError(
            f"invalid collection name {name!r}: use 1-64 lower-case letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return name


class ArtifactEntry(BaseModel):
    """One stored artifact of a snapshot, as listed in its manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str = Field(
        min_length=1,
        max_length=64,
        description="what the artifact is: original, warc, screenshot, pdf, dom, ...",
    )
    name: str = Field(min_length=1, max_length=255, description="a file name for exports")
    media_type: str = Field(min_length=3, max_length=255)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=SHA256_HEX)


class SignerInfo(BaseModel):
    """The public half of the key that signed a manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: Literal["Ed25519"] = "Ed25519"
    public_key: str = Field(description="raw 32-byte public key, base64")
    fingerprint: str = Field(
        pattern=r"^sha256:[0-9a-f]{64}$", description="SHA-256 of the raw public key"
    )


class Manifest(BaseModel):
    """The signed statement that binds a snapshot's artifacts, metadata and place in its chain.

    Serialised as canonical JSON (RFC 8785); the SHA-256 of those bytes is the snapshot's id.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["dsa-evidence/manifest"] = MANIFEST_TYPE
    version: Literal[1] = 1
    collection: str
    sequence: int = Field(ge=1, description="position in the collection's hash chain, from 1")
    previous: str | None = Field(
        pattern=SHA256_HEX, description="digest of the collection's previous manifest"
    )
    kind: str = Field(description="how the bytes were obtained: ingest, capture, ...")
    captured_at: UtcDateTime
    archived_at: UtcDateTime
    source_url: str | None = None
    source: str | None = None
    run_id: str | None = None
    note: str | None = None
    artifacts: list[ArtifactEntry] = Field(min_length=1)
    capture: dict[str, Any] = Field(default_factory=dict, description="capture metadata")
    software: dict[str, str] = Field(default_factory=dict)
    clock: dict[str, Any] = Field(default_factory=dict, description="where the times came from")
    signer: SignerInfo

    @field_validator("collection")
    @classmethod
    def _collection(cls, value: str) -> str:
        return check_collection_name(value)

    @model_validator(mode="after")
    def _chain(self) -> Manifest:
        if (self.sequence == 1) != (self.previous is None):
            raise ValueError(
                "the first manifest of a chain has no previous digest; every other has one"
            )
        return self


class CaptureArtifact(BaseModel):
    """An artifact handed to ``archive()``: its bytes in memory or in a file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=255)
    media_type: str = Field(default="application/octet-stream", min_length=3, max_length=255)
    path: Path | None = None
    data: bytes | None = None
    sha256: str | None = Field(
        default=None,
        pattern=SHA256_HEX,
        description="the digest the bytes must have (a file hashed before it was handed over): "
        "the store refuses other bytes, so a file that changed in between is never archived",
    )

    @model_validator(mode="after")
    def _one_source(self) -> CaptureArtifact:
        if (self.path is None) == (self.data is None):
            raise ValueError(f"artifact {self.role!r}: give exactly one of path or data")
        return self


class Capture(BaseModel):
    """Everything one capture produced, before it is archived as a snapshot."""

    model_config = ConfigDict(extra="forbid")

    collection: str = "default"
    kind: str = "capture"
    captured_at: UtcDateTime = Field(default_factory=utc_now)
    source_url: str | None = None
    source: str | None = None
    run_id: str | None = None
    note: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[CaptureArtifact] = Field(min_length=1)

    @field_validator("collection")
    @classmethod
    def _collection(cls, value: str) -> str:
        return check_collection_name(value)


class SnapshotInfo(BaseModel):
    """A snapshot as the index describes it (for listings and ``--json`` output)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    collection: str
    sequence: int
    previous: str | None
    kind: str
    captured_at: UtcDateTime
    archived_at: UtcDateTime
    source_url: str | None = None
    note: str | None = None
    key_fingerprint: str
    artifacts: list[ArtifactEntry]
    # Set when the retention policy deleted the artifacts' bytes; manifest and signature remain.
    deleted_at: UtcDateTime | None = None
