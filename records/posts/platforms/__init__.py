"""One module per platform: ``parse(capture: records.posts.parse.PostCapture) -> PostRecord | None``
from an archived capture of a post page (its WARC, DOM and metadata)."""
