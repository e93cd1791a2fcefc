"""Records as timelines: an ad's versions and its removal from a query, made one exhibit,
built through the CLI on SQLite and PostgreSQL and verified offline.

(A post's exhibit and timeline are built in tests/test_posts_tiktok.py, over the real browser
captures of the TikTok fixture that test module makes anyway.)"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from evidence_store.archive import archive
from evidence_store.runs import finish_run, start_run
from exhibits.records import record_lines
from jobs.config import load_settings
from jobs.context import open_evidence
from records.ads.ranges import parse_range
from records.ads.store import Provenance, mark_unseen, query_key, record_ads
from schemas import Capture, CaptureArtifact
from schemas.ad import AdRecord, Targeting
from tests.conftest import run_cli

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
API = "https://graph.facebook.com/v23.0/ads_archive"


def _ad(ad_id: str, **fields: Any) -> AdRecord:
    base: dict[str, Any] = {
        "platform": "meta",
        "ad_id": ad_id,
        "page_name": "Beispielpartei",
        "advertiser_name": "Beispielpartei",
        "funding_entity": "Beispielpartei e. V.",
        "impressions": parse_range("10K-15K"),
        "targeting": Targeting(interests=["Politik"]),
    }
    return AdRecord(**(base | fields))


def _answer(ev: Any, run_id: str, page: int, ads: list[str], when: datetime) -> str:
    """The API answer a run archived (a real snapshot of the run)."""
    body = json.dumps({"data": [{"id": a} for a in ads], "paging": {}}).encode()
    capture = Capture(
        collection="ads-meta",
        kind="capture-http",
        source_url=f"{API}?search_terms=Wahl&page={page}",
        captured_at=when,
        run_id=run_id,
        artifacts=[CaptureArtifact(role="original", name="page.json", data=body)],
    )
    return archive(ev, capture).id


def _pdf_text(path: Path) -> str:
    done = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True)
    return " ".join(done.stdout.split())


def test_record_lines_are_stable_and_readable() -> None:
    fields = {
        "spend": {"lower": 100, "upper": 499, "original": "€100-€499", "currency": "EUR"},
        "ad_id": "7",
        "targeting": {"interests": ["Politik", "Umwelt"], "ages": [], "other": {"k": ["x"]}},
        "demographics": [{"age": "25-34", "gender": "female", "share": 0.4, "reach": None}],
        "platform": "meta",
        "status": None,
        "music": {"title": "Originalton", "original": True},  # not a range
    }
    lines = record_lines(fields, ("platform", "ad_id"))
    assert lines == [
        "platform: meta",
        "ad_id: 7",
        "demographics[1]: age=25-34, gender=female, share=0.4",
        "music.original: True",
        "music.title: Originalton",
        "spend: €100-€499 EUR",
        "targeting.interests: Politik, Umwelt",
        "targeting.other.k: x",
    ]
    # The order of a JSON object's keys (PostgreSQL's jsonb sorts them) does not matter.
    assert record_lines(dict(reversed(list(fields.items()))), ("platform", "ad_id")) == lines


def test_an_ads_versions_and_removal_are_one_timeline_exhibit(db_url: str, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", db_url=db_url)
    ev = open_evidence(settings)
    key = query_key("meta-ads", {"countries": ["DE"], "search_terms": "Wahl"})
    days = [T0 + timedelta(days=n) for n in range(3)]
    runs = [start_run(ev, kind="crawl", collection="ads-meta") for _ in days]
    first = _answer(ev, runs[0], 1, ["1", "2"], days[0])
    second = _answer(ev, runs[1], 1, ["1", "2"], days[1])
    # Day 3: the query's two pages no longer hold ad 2; both prove it together.
    third = [_answer(ev, runs[2], p, ["1"] if p == 1 else [], days[2]) for p in (1, 2)]
    with ev.index.writing() as session:
        record_ads(
            session, [_ad("1"), _ad("2")], Provenance(first, None, runs[0], days[0]), query_key=key
        )
    changed = _ad(
        "2",
        impressions=parse_range("15K-20K"),
        targeting=Targeting(interests=["Politik", "Gewerkschaft"]),
    )
    with ev.index.writing() as session:
        record_ads(
            session,
            [_ad("1"), changed],
            Provenance(second, "<urn:uuid:2>", runs[1], days[1]),
            query_key=key,
        )
    with ev.index.writing() as session:
        record_ads(session, [_ad("1")], Provenance(third[0], None, runs[2], days[2]), query_key=key)
        assert [a.ad_id for a in mark_unseen(session, key, runs[2], days[2])] == ["2"]
    for run in runs:
        finish_run(ev, run, status="succeeded", stats={})

    env = {"EVIDENCE_DATA_DIR": str(settings.data_path), "EVIDENCE_DB_URL": settings.database_url}
    bundle = tmp_path / "timeline"
    args = ["exhibit", "timeline", "ad:meta:2", "--case", "Muster ./. Meta", "--lang", "en"]
    proc = run_cli(*args, "-o", str(bundle), "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [exhibit] = json.loads((bundle / "BUNDLE.json").read_text(encoding="utf-8"))["exhibits"]
    assert exhibit["kind"] == "timeline" and exhibit["ref"] == "ad:meta:2"
    assert [s["id"] for s in exhibit["snapshots"]] == [first, second, *third]
    verified = run_cli("exhibit", "verify", str(bundle), env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    text = _pdf_text(bundle / "K1.pdf")
    assert "Timeline of ad:meta:2 (Beispielpartei)" in text
    assert "present – first capture in this exhibit" in text  # noqa: RUF001 (typography of a court document)
    assert "changed – fields changed since T1" in text  # noqa: RUF001 (typography of a court document)
    assert "impressions: 10K-15K" in text and "impressions: 15K-20K" in text
    assert "10K → 15K" in text and "15K → 20K" in text  # the figures that changed
    assert "targeting.interests: Politik, Gewerkschaft" in text
    assert "no longer returned by the query since" in text and "2 answer(s) without the ad" in text
    assert "Further originals" in text and third[1] in text.replace(" ", "")

    # Only the first day in the range: the first version alone.
    narrow = tmp_path / "narrow"
    proc = run_cli(*args, "--to", days[0].date().isoformat(), "-o", str(narrow), env=env)
    assert proc.returncode == 0, proc.stderr
    [only] = json.loads((narrow / "BUNDLE.json").read_text(encoding="utf-8"))["exhibits"]
    assert [s["id"] for s in only["snapshots"]] == [first]
