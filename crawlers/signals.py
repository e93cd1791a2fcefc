"""Signals of the capture project (sent through ``crawler.signals``)."""

capture_finished = object()
"""Sent once per requested URL with ``outcome`` (schemas.CaptureOutcome), archived or not."""
