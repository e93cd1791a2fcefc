"""The shared vocabulary: pydantic models every other package speaks.

Nothing here imports from the rest of the project (see docs/architecture.md).
"""

from schemas.capture import CaptureOutcome
from schemas.evidence import (
    ArtifactEntry,
    Capture,
    CaptureArtifact,
    Manifest,
    SignerInfo,
    SnapshotInfo,
)
from schemas.source import (
    CollectContext,
    ParseResult,
    SourceSettings,
    SourceSpec,
    secret_fields,
)
from schemas.time import UtcDateTime, format_rfc3339, parse_rfc3339, utc_now

__all__ = [
    "ArtifactEntry",
    "Capture",
    "CaptureArtifact",
    "CaptureOutcome",
    "CollectContext",
    "Manifest",
    "ParseResult",
    "SignerInfo",
    "SnapshotInfo",
    "SourceSettings",
    "SourceSpec",
    "UtcDateTime",
    "format_rfc3339",
    "parse_rfc3339",
    "secret_fields",
    "utc_now",
]
