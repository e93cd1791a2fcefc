"""The ads core: ranges, the special-category vocabulary, versions, sightings and removals in
the index (SQLite and PostgreSQL), and `evidence ads` over them."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from sqlalchemy import func, select

from evidence_store.archive import archive
from jobs.config import load_settings
from jobs.context import open_evidence
from records.ads.models import Ad, AdSighting, AdVersion
from records.ads.parse import Payload, normalise_all
from records.ads.ranges import bounds_of, parse_range, range_fields, spend_of
from records.ads.store import (
    Provenance,
    canonical_json,
    digest_of,
    fields_of,
    mark_unseen,
    query_key,
    record_ads,
)
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


def assert_versions_consistent(index: Any) -> None:
    """Every version's digest is the SHA-256 of rfc8785's canonical JSON of its fields (the
    definition the index was made with), and every ad's current fields and version count are
    its newest version's."""
    with index.session() as session:
        newest = dict(
            session.execute(
                select(AdVersion.ad_pk, func.max(AdVersion.number)).group_by(AdVersion.ad_pk)
            ).all()
        )
        ads = {a.id: a for a in session.scalars(select(Ad))}
        for version in session.scalars(select(AdVersion)):
            assert version.digest == hashlib.sha256(rfc8785.dumps(version.fields)).hexdigest()
            if version.number == newest[version.ad_pk]:
                assert ads[version.ad_pk].current == version.fields
    assert ads and all(ad.versions == newest[pk] for pk, ad in ads.items())


TRICKY: list[Any] = [
    0.0,
    -0.0,
    1.0,
    -3.0,
    0.27,
    1e-05,
    1.5e-07,
    1e16,
    1.5e21,
    123456789.125,
    2**53 - 1,
    -(2**53) + 1,
    'line\nbreak \x00 \x1f \x7f "quoted" \\ tab\t \u2028',
    "Grüße ✓ 😀",
    "1.0,2.0]",  # looks like a float to the quick check: the slow path, same bytes
    "e+5",
    [],
    {},
    [None, True, False],
]


@pytest.mark.parametrize("value", TRICKY, ids=repr)
def test_the_canonical_json_is_rfc8785_byte_for_byte(value: Any) -> None:
    document = {"value": value, "list": [value, {"nested": value}]}
    assert canonical_json(document) == rfc8785.dumps(document)


def test_keys_sort_by_utf16_and_what_rfc8785_refuses_is_refused() -> None:
    # U+FF5E sorts before U+1F600 by code point and after it by UTF-16 code unit.
    keys = {"\uff5e": 1, "\U0001f600": 2, "a": {"\U0001f600": [1.0], "\uff5e": 0.5}}
    assert canonical_json(keys) == rfc8785.dumps(keys)
    made = canonical_json(keys)
    assert made.index("\U0001f600".encode()) < made.index("\uff5e".encode())
    for bad in (2**53, float("nan"), float("inf"), "\ud800", 10**20):
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical_json({"value": bad})


def test_the_digests_of_the_meta_fixture_are_rfc8785s() -> None:
    from fixtures.meta_ads import data
    from records.ads.platforms.meta import ad_record

    for day in (1, 2):
        for ad in data.ads(day):
            fields = fields_of(ad_record(ad, {"countries": ["DE"], "ad_type": "POLITICAL"}))
            assert digest_of(fields) == hashlib.sha256(rfc8785.dumps(fields)).hexdigest()


# What every fixture ad normalises to (fields_of, key order included), per platform and day:
# pinned when the normalisers went from one model per nested value to plain dicts validated
# once, whose output had to stay byte for byte the same. A deliberate change of a normaliser
# or a fixture changes a digest: check the difference, then pin the new one.
NORMALISED_FIXTURES = {
    ("meta", 1): (300, "ebdc20b0889f19e2de28d0bc1fb6ed10fa03d7272330ebd335156bcbfe88648d"),
    ("meta", 2): (293, "ab70452e7bc56901aa37424e71296acfdf655072152c0dd161dc2496a1733506"),
    ("tiktok", 1): (240, "904b8638573f8265cab11fd378f490c6c12ff2bc36f01cb31b1821db2a297b4d"),
    ("tiktok", 2): (231, "29b69ed433172342809a5156e4c5b6bdde8e30194fad208344f5f00809d8b646"),
    ("google", 1): (211, "76ca611efea3a81a8a81ca00f6d323e3baf41b20269b7eb061f50559736b308b"),
    ("google", 2): (195, "5134ceb6cdb01d7b9ce31ceaacbad2e52c53e6dc3020bebaa6a440af1845b0e4"),
    ("x", 1): (194, "0c454f7f53423f98de452d12b07c566e78aad3eeeb09443b41a15336466ee41a"),
    ("x", 2): (191, "702e4a61bc0d95de0be5858dd405533cf1fd0cc78625ee82fe1df8a50b482ab7"),
}


def _fixture_payloads(platform: str, day: int) -> list[Payload]:
    """Every ad of a fixture library's ``day``, as archived answers (no server needed)."""

    def payload(body: bytes, ads: dict[str, Any]) -> Payload:
        return Payload("s", None, None, 200, None, body, None, ads)

    if platform == "meta":
        from fixtures.meta_ads import data

        ads = [
            dict(ad, ad_snapshot_url=f"https://x.test/render_ad/?id={ad['id']}&access_token=T")
            for ad in data.ads(day)
        ]
        query = {"countries": ["DE"], "ad_active_status": "ALL"}
        return [payload(json.dumps({"data": ads}).encode(), {"query": query})]
    if platform == "tiktok":
        from fixtures.tiktok_ads import data as tiktok

        items = list(tiktok.ads(day, "http://127.0.0.1:9/media"))
        return [payload(json.dumps({"data": {"ads": items}}).encode(), {"query": {}})]
    if platform == "google":
        from fixtures.google_ads import bundle

        return [payload(bundle(day), {})]
    from fixtures.x_ads.ads import ACCOUNTS, export_csv

    return [
        payload(export_csv(account, day, date(2020, 1, 1), date(2030, 1, 1)), {"country": "DE"})
        for account in ACCOUNTS
        if account.export != "malformed"
    ]


@pytest.mark.parametrize(("platform", "day"), sorted(NORMALISED_FIXTURES))
def test_every_fixture_ad_normalises_as_pinned(platform: str, day: int) -> None:
    ads = normalise_all(platform, _fixture_payloads(platform, day))
    text = json.dumps([fields_of(ad) for ad in ads], ensure_ascii=False)
    made = (len(ads), hashlib.sha256(text.encode()).hexdigest())
    assert made == NORMALISED_FIXTURES[platform, day]


def test_range_texts_are_parsed_once_and_refused_every_time() -> None:
    first, again = range_fields("10K-15K"), range_fields("10K-15K")
    assert first == again == {"lower": 10_000, "upper": 15_000, "original": "10K-15K"}
    again["lower"] = 0  # each caller's own dict: the cache holds none
    assert range_fields("10K-15K") == first
    for _ in range(2):
        with pytest.raises(ValueError, match="upper bound below"):
            range_fields("100-10")
    assert range_fields(2.0) == {"lower": 2, "upper": 2, "original": "2.0"}


def test_one_response_with_every_case_and_instances_already_loaded(evidence: Any) -> None:
    _, ev = evidence
    key = query_key("meta-ads", {"countries": ["DE"]})
    snaps = [_snapshot(ev, n) for n in range(3)]
    day1 = Provenance(snaps[0], "<urn:uuid:1>", "run-1", T0)
    with ev.index.writing() as session:
        record_ads(session, [_ad("1"), _ad("2"), _ad("3")], day1, query_key=key)
        record_ads(session, [_ad("4")], day1, query_key=None)  # no query: no sighting
        assert [a.ad_id for a in mark_unseen(session, key, "run-1b", T0)] == ["1", "2", "3"]
    day2 = Provenance(snaps[1], "<urn:uuid:2>", "run-2", T0 + timedelta(days=1))
    with ev.index.writing() as session:
        loaded = session.scalar(select(Ad).where(Ad.ad_id == "2"))
        sighting = session.scalar(select(AdSighting).where(AdSighting.ad_pk == loaded.id))
        assert loaded.unseen_since is not None
        # Unchanged and back (1), changed and back (2), new (5), twice in the answer (5, 2:
        # the last copy counts), known but new to the query (4); ad 3 not in this answer.
        stats = record_ads(
            session,
            [
                _ad("1"),
                _ad("2", impressions=parse_range("1M+")),
                _ad("5", page_name="Erste"),
                _ad("4"),
                _ad("5", page_name="Zweite"),
                _ad("2", impressions=parse_range("15K-20K")),
            ],
            day2,
            query_key=key,
        )
        assert (stats.ads, stats.new_ads, stats.new_versions) == (4, 1, 1)
        assert (stats.unchanged, stats.reappeared) == (2, 2)
        # What was written past the ORM shows through the instances already loaded.
        assert loaded.unseen_since is None and loaded.versions == 2
        assert loaded.current["impressions"]["original"] == "15K-20K"
        assert sighting.last_run_id == "run-2" and sighting.last_seen_at == day2.seen_at
        again = record_ads(session, [_ad("5", page_name="Zweite")], day2, query_key=key)
        assert (again.new_ads, again.unchanged) == (0, 1)
    with ev.index.session() as session:
        ads = {a.ad_id: a for a in session.scalars(select(Ad))}
        sightings = {(s.ad_pk, s.query_key): s for s in session.scalars(select(AdSighting))}
    assert ads["5"].current["page_name"] == "Zweite" and ads["5"].advertiser_name == "Zweite"
    assert ads["3"].unseen_since == T0 and ads["3"].last_run_id == "run-1"
    assert ads["1"].last_seen_at == day2.seen_at and ads["1"].first_seen_at == T0
    assert (ads["4"].id, key) in sightings and len(sightings) == 5
    assert sightings[(ads["4"].id, key)].last_seen_at == day2.seen_at
    # An answer older than what is known (a snapshot parsed again) moves no time back.
    with ev.index.writing() as session:
        record_ads(session, [_ad("1")], Provenance(snaps[2], None, "run-0", T0), query_key=key)
    with ev.index.session() as session:
        first = session.scalar(select(Ad).where(Ad.ad_id == "1"))
        seen = session.scalar(select(AdSighting).where(AdSighting.ad_pk == first.id))
    assert first.last_seen_at == day2.seen_at and first.last_run_id == "run-0"
    assert seen.last_seen_at == day2.seen_at
    assert_versions_consistent(ev.index)
