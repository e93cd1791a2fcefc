"""The application layer: one module per use case, the source registry, settings, and the
adapters that call them (the `evidence` CLI in ``jobs.cli``, the scheduler in
``jobs.schedule``; the web API later).

Each use case is a plain function taking the validated ``Settings``, a ``jobs.progress.Progress``
and its arguments, returning a typed result and printing nothing: capture, crawl, ingest,
verify, export, exhibit, snapshots, custody, timestamps, holds, retention, keys, store. What
every run shares (its row, timestamps after it, custody) lives in ``jobs.runs``; custody
entries for views, exports and verifications in ``jobs.access``. See docs/architecture.md.
"""
