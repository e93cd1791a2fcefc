"""How the capture of one URL ended: the line a run report and the CLI table show."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from schemas.evidence import ArtifactEntry


class CaptureOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    outcome: str
    mode: str
    status: int | None = None
    final_url: str | None = None
    snapshot: str | None = None
    sequence: int | None = None  # the snapshot's place in its collection's chain
    error: str | None = None
    artifacts: list[ArtifactEntry] = []
