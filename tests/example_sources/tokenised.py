"""`tokenised`: yields one capture per configured text, and needs a (fake) API token.

Only the registry tests load this package (they add it to ``jobs.sources.SOURCE_PACKAGES``).
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field, SecretStr

from schemas import Capture, CaptureArtifact, CollectContext, SourceSettings, SourceSpec


class TokenisedSettings(SourceSettings):
    base_url: str = Field(default="https://api.example.org/v1", description="API endpoint")
    access_token: SecretStr | None = Field(default=None, description="API token")
    texts: list[str] = Field(default_factory=list, description="texts to archive")
    limit: int = Field(default=10, ge=1, description="at most this many")


def collect(settings: TokenisedSettings, context: CollectContext) -> Iterator[Capture]:
    for i, text in enumerate(settings.texts[: settings.limit]):
        yield Capture(
            collection=context.collection,
            kind="api",
            source=context.source,
            run_id=context.run_id,
            source_url=f"{settings.base_url}/items/{i}",
            artifacts=[CaptureArtifact(role="original", name=f"{i}.txt", data=text.encode())],
        )


SOURCE = SourceSpec(
    name="tokenised-api",
    kind="api",
    description="a test API collector",
    settings=TokenisedSettings,
    collection="api-items",
    timestamp_mode="merkle",
    collect=collect,
)
