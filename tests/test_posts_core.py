"""The posts core: versions when a field other than the counts changes, counts as a time
series, removal as a status with the capture that proved it, and the watchlist's due
re-captures; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from evidence_store.archive import archive
from jobs.config import load_settings
from jobs.context import open_evidence
from records.posts.models import Post, PostCount, PostVersion
from records.posts.store import Provenance, record_post
from records.posts.watch import due_posts
from schemas import Capture, CaptureArtifact
from schemas.post import PostAuthor, PostCounts, PostLabels, PostRecord
from tests.conftest import run_cli

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def _post(**fields: Any) -> PostRecord:
    base: dict[str, Any] = {
        "platform": "tiktok",
        "post_id": "7345617503298525984",
        "url": "https://www.tiktok.com/@wahlkampf/video/7345617503298525984",
        "author": PostAuthor(id="1", handle="wahlkampf", name="Wahlkampf 2025"),
        "created_at": T0 - timedelta(hours=3),
        "text": "Geht wählen! #bundestagswahl",
        "hashtags": ["bundestagswahl"],
        "counts": PostCounts(views=1000, likes=10),
    }
    return PostRecord(**(base | fields))


def _snapshot(ev: Any, n: int) -> str:
    capture = Capture(
        collection="tiktok",
        kind="capture-browser",
        source_url=f"https://www.tiktok.com/@wahlkampf/video/7345617503298525984?n={n}",
        artifacts=[CaptureArtifact(role="dom", name="dom.html", data=f"<p>{n}</p>".encode())],
    )
    return archive(ev, capture).id


def test_a_posts_life_as_versions_counts_and_status(db_url: str, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", db_url=db_url)
    ev = open_evidence(settings)
    snaps = [_snapshot(ev, n) for n in range(4)]
    captures = [
        _post(),  # first capture
        _post(counts=PostCounts(views=5000, likes=80)),  # only the counts moved
        _post(counts=PostCounts(views=9000, likes=90), labels=PostLabels(ai_generated=True)),
        PostRecord(  # gone: what the page says now
            platform="tiktok",
            post_id="7345617503298525984",
            url=_post().url,
            status="removed",
            status_detail="Video currently unavailable",
        ),
    ]
    changes = []
    for n, (record, snap) in enumerate(zip(captures, snaps, strict=True)):
        with ev.index.writing() as session:
            changes.append(
                record_post(
                    session,
                    record,
                    Provenance(snap, f"run-{n}", T0 + timedelta(days=n)),
                    watched_by="account:@wahlkampf",
                )
            )
    assert changes[0].new_post and not changes[1].new_version and changes[2].new_version
    assert (changes[3].status_from, changes[3].status_to) == ("available", "removed")
    with ev.index.session() as session:
        post = session.scalar(select(Post))
        versions = session.scalars(select(PostVersion).order_by(PostVersion.number)).all()
        counts = session.scalars(select(PostCount).order_by(PostCount.captured_at)).all()
    assert post.status == "removed" and post.status_since == T0 + timedelta(days=3)
    assert [v.snapshot_id for v in versions] == [snaps[0], snaps[2], snaps[3]]
    # The removed version keeps what the post was, and says it is gone.
    assert versions[-1].fields["text"] == "Geht wählen! #bundestagswahl"
    assert versions[-1].fields["status_detail"] == "Video currently unavailable"
    assert [c.views for c in counts] == [1000, 5000, 9000]

    env = {"EVIDENCE_DATA_DIR": str(settings.data_path), "EVIDENCE_DB_URL": settings.database_url}
    shown = json.loads(
        run_cli("posts", "show", "tiktok:7345617503298525984", "--json", env=env, check=True).stdout
    )
    assert shown["status"] == "removed" and len(shown["versions"]) == 3
    assert "labels" in shown["versions"][1]["changed"]
    listed = json.loads(
        run_cli("posts", "list", "--status", "removed", "--json", env=env, check=True).stdout
    )
    assert listed["total"] == 1


def test_due_recaptures(db_url: str, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", db_url=db_url)
    ev = open_evidence(settings)
    now = datetime.now(UTC)
    ages = {"1": timedelta(hours=30), "2": timedelta(hours=2), "3": timedelta(days=40)}
    for post_id, age in ages.items():
        status = "removed" if post_id == "3" else "available"
        snapshot = _snapshot(ev, int(post_id))
        with ev.index.writing() as session:
            record_post(
                session,
                _post(
                    post_id=post_id, url=f"https://www.tiktok.com/@a/video/{post_id}", status=status
                ),
                Provenance(snapshot, None, now - age),
            )
    with ev.index.session() as session:
        due = due_posts(session, "tiktok", older_than=timedelta(hours=24), limit=10)
    # 2 is fresh; 3 has been gone for longer than a month: not looked at every run.
    assert due == ["https://www.tiktok.com/@a/video/1"]


@pytest.mark.parametrize("bad", ["", "x" * 101])
def test_post_ids_are_checked(bad: str) -> None:
    with pytest.raises(ValueError):
        _post(post_id=bad)
