"""The ads core: ranges, the special-category vocabulary, versions, sightings and removals in
the index (SQLite and PostgreSQL), and `evidence ads` over them."""

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
from records.ads.models import Ad, AdVersion
from records.ads.ranges import bounds_of, parse_range, spend_of
from records.ads.store import Provenance, mark_unseen, query_key, record_ads
from records.ads.vocabulary import flag_targeting, vocabulary
from schemas import Capture, CaptureArtifact
from schemas.ad import AdRecord, Targeting
from tests.conftest import run_cli

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "lower", "upper"),
    [
        ("≤ 10k", 0, 10_000),
        ("10k-100k", 10_000, 100_000),
        ("10K-15K", 10_000, 15_000),
        ("< 100", 0, 99),
        ("> 10M", 10_000_001, None),
        ("1,000 - 4,999", 1_000, 4_999),
        ("1.000\u20134.999", 1_000, 4_999),  # an en dash, as German tables write it
        ("€100-€499", 100, 499),
        ("1M+", 1_000_000, None),
        ("1.5M-2M", 1_500_000, 2_000_000),
        ("5000", 5_000, 5_000),
    ],
)
def test_ranges_become_bounds_with_their_text_kept(text: str, lower: int, upper: int) -> None:
    bounds = parse_range(text)
    assert (bounds.lower, bounds.upper, bounds.original) == (lower, upper, text)


def test_ranges_that_are_not_refuse_to_guess() -> None:
    for text in ("about ten", "100-10", "k"):
        with pytest.raises(ValueError, match="range"):
            parse_range(text)
    assert parse_range("") is None and parse_range(None) is None
    assert bounds_of("1000", "1999").model_dump() == {
        "lower": 1000,
        "upper": 1999,
        "original": "1000-1999",
    }
    assert bounds_of("1000000", None).upper is None
    assert spend_of("100", "199", "EUR").currency == "EUR"


def test_special_categories_name_the_term_and_the_vocabulary() -> None:
    targeting = Targeting(
        interests=["Gewerkschaft", "Fußball", "Islam", "Christopher Street Day"],
        audiences=["Besucher: Diabetes-Ratgeber"],
        other={"keywords": ["Pride-Parade", "prideful"]},
    )
    flags = {(f.category, f.value): f for f in flag_targeting(targeting)}
    assert set(flags) == {
        ("trade_union_membership", "Gewerkschaft"),
        ("religious_beliefs", "Islam"),
        ("sex_life_or_sexual_orientation", "Christopher Street Day"),
        ("health", "Besucher: Diabetes-Ratgeber"),
        ("sex_life_or_sexual_orientation", "Pride-Parade"),
    }
    union = flags[("trade_union_membership", "Gewerkschaft")]
    assert union.language == "de" and union.term == "gewerkschaft"
    assert union.vocabulary == vocabulary().version and union.field == "interests"


def _ad(ad_id: str, **fields: Any) -> AdRecord:
    base: dict[str, Any] = {
        "platform": "meta",
        "ad_id": ad_id,
        "page_name": "Beispielpartei",
        "funding_entity": "Beispielpartei e. V.",
        "impressions": parse_range("10K-15K"),
        "targeting": Targeting(interests=["Politik"]),
    }
    return AdRecord(**(base | fields))


def _snapshot(ev: Any, n: int) -> str:
    """A real archived snapshot to point versions at (the API page they came from)."""
    capture = Capture(
        collection="ads-meta",
        kind="capture-http",
        source_url=f"https://graph.facebook.com/v23.0/ads_archive?page={n}",
        artifacts=[CaptureArtifact(role="original", name="page.json", data=b'{"data": []}')],
    )
    return archive(ev, capture).id


@pytest.fixture
def evidence(db_url: str, tmp_path: Path) -> Any:
    settings = load_settings(data_dir=tmp_path / "data", db_url=db_url)
    return settings, open_evidence(settings)


def test_versions_sightings_and_removals(evidence: Any) -> None:
    settings, ev = evidence
    key = query_key("meta-ads", {"countries": ["DE"], "search_terms": "Wahl"})
    other = query_key("meta-ads", {"countries": ["DE"], "search_terms": "Klima"})
    snaps = [_snapshot(ev, n) for n in range(3)]
    day1 = Provenance(snaps[0], "<urn:uuid:1>", "run-1", T0)
    with ev.index.writing() as session:
        stats = record_ads(session, [_ad("1"), _ad("2"), _ad("3"), _ad("1")], day1, query_key=key)
        record_ads(session, [_ad("3")], day1, query_key=other)
    assert (stats.ads, stats.new_ads, stats.new_versions) == (3, 3, 0)

    # Day 2: ad 1 unchanged, ad 2 changed, ad 3 gone from the query.
    day2 = Provenance(snaps[1], "<urn:uuid:2>", "run-2", T0 + timedelta(days=1))
    changed = _ad("2", impressions=parse_range("15K-20K"))
    with ev.index.writing() as session:
        stats = record_ads(session, [_ad("1"), changed], day2, query_key=key)
        gone = mark_unseen(session, key, "run-2", day2.seen_at)
    assert (stats.unchanged, stats.new_versions) == (1, 1)
    assert [a.ad_id for a in gone] == ["3"]
    with ev.index.session() as session:
        ads = {a.ad_id: a for a in session.scalars(select(Ad))}
        versions = session.scalars(select(AdVersion).order_by(AdVersion.id)).all()
    assert ads["3"].unseen_since == day2.seen_at and ads["3"].unseen_run_id == "run-2"
    assert ads["1"].versions == 1 and ads["2"].versions == 2
    assert ads["2"].current["impressions"] == {
        "lower": 15000,
        "upper": 20000,
        "original": "15K-20K",
    }
    assert ads["1"].special_categories == ["political_opinions"]
    assert [v.snapshot_id for v in versions if v.ad_pk == ads["2"].id] == snaps[:2]

    # The other query still returns ad 3: a removal is per query; seen again, it is back.
    day3 = Provenance(snaps[2], None, "run-3", T0 + timedelta(days=2))
    with ev.index.writing() as session:
        assert mark_unseen(session, other, "run-3", day3.seen_at) == []
        stats = record_ads(session, [_ad("3")], day3, query_key=key)
    assert stats.reappeared == 1

    env = {
        "EVIDENCE_DATA_DIR": str(settings.data_path),
        "EVIDENCE_DB_URL": settings.database_url,
    }
    listed = run_cli("ads", "list", "--json", env=env, check=True)
    assert json.loads(listed.stdout)["total"] == 3
    shown = json.loads(run_cli("ads", "show", "meta:2", "--json", env=env, check=True).stdout)
    assert [v["snapshot"] for v in shown["versions_from"]] == snaps[:2]
    assert shown["versions_from"][0]["warc_record"] == "<urn:uuid:1>"
    history = json.loads(run_cli("ads", "versions", "2", "--json", env=env, check=True).stdout)
    assert history[1]["changed"]["impressions"]["to"]["original"] == "15K-20K"
    missing = run_cli("ads", "show", "meta:404", env=env)
    assert missing.returncode == 2 and "no ad" in missing.stderr
    bundle = settings.data_path.parent / "ad-exhibit"
    run_cli(
        "exhibit",
        "build",
        "ad:meta:2",
        "--case",
        "Test ./. Meta",
        "-o",
        str(bundle),
        env=env,
        check=True,
    )
    built = json.loads((bundle / "BUNDLE.json").read_text(encoding="utf-8"))
    [exhibit] = built["exhibits"]
    assert exhibit["kind"] == "ad" and [s["id"] for s in exhibit["snapshots"]] == snaps[:2]
    assert dict(exhibit["fields"])["funding_entity"] == "Beispielpartei e. V."
    verified = run_cli("exhibit", "verify", str(bundle), env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
