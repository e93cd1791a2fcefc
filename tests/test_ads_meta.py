"""The `meta-ads` source end to end against the imitation Ad Library (fixtures/meta_ads):
every page fetched through rate limits, the ads normalised into the index (SQLite and
PostgreSQL), versions on day 2, removals only for queries read whole, creatives rendered in
Chromium, and the access token in no stored byte.

Crawls run in subprocesses (a Twisted reactor runs once per process), through
``jobs.crawl.crawl`` as every front end calls it.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from crawlers.spiders.adlib import query_key as crawler_query_key
from crawlers.spiders.meta_ads import MetaAdsSettings
from evidence_store.manifest import parse_manifest
from fixtures.meta_ads import TOKEN, MetaAdLibrary
from fixtures.meta_ads.data import AD_COUNT, ad_id, gone_on_day_2
from jobs.config import load_settings
from jobs.context import open_evidence
from jobs.sources import SourceError, get_source, settings_for_run
from records.ads.models import Ad, AdVersion
from records.ads.parse import Payload
from records.ads.platforms.meta import normalise
from records.ads.store import query_key
from tests.conftest import DB_KINDS, PG_ADMIN_URL, _pg_admin
from tests.test_ads_core import assert_versions_consistent

CREATIVES = 3
QUERY = {"countries": ["DE"], "ad_type": "POLITICAL_AND_ISSUE_ADS", "ad_active_status": "ALL"}

_CRAWL = """
import json, sys
from jobs.config import load_settings
from jobs.crawl import crawl
config = json.loads(sys.argv[1])
result = crawl(load_settings(**config["settings"]), config["source"], config["arguments"])
print(json.dumps(result.to_dict(), default=str))
"""


def crawl_meta(
    root: Path, db_url: str, source: dict[str, Any], arguments: list[str] = (), token: Any = TOKEN
) -> dict[str, Any]:
    """One run of meta-ads in a subprocess; the token comes from the environment, as a user
    would give it. Returns ``CrawlResult.to_dict()``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    if token is not None:
        env["EVIDENCE_SOURCES__META_ADS__ACCESS_TOKEN"] = token
    config = {
        "settings": {
            "data_dir": str(root / "data"),
            "db_url": db_url,
            "allow_private": True,  # the fixture is on 127.0.0.1
            "sources": {"meta-ads": {"backoff": 0.2, "limit": 50} | source},
        },
        "source": "meta-ads",
        "arguments": list(arguments),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _CRAWL, json.dumps(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise AssertionError(f"crawl failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def library() -> Iterator[MetaAdLibrary]:
    with MetaAdLibrary() as running:
        yield running


@pytest.fixture(scope="module", params=DB_KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The index of the module's runs: SQLite, and a fresh migrated PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('meta-index') / 'index.sqlite'}"
        return
    template = request.getfixturevalue("pg_template")
    admin = _pg_admin()
    name = f"evidence_meta_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def runs(
    library: MetaAdLibrary, db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Day 1 (creatives rendered), then day 2 (ads grown, edited, gone and new)."""
    root = tmp_path_factory.mktemp("meta")
    source = {"api_base": library.api_base}
    found: dict[str, Any] = {"root": root, "db_url": db_url, "days": {}}
    for day in (1, 2):
        library.day = day
        library.reset()
        extra = {"max_creatives": CREATIVES} if day == 1 else {"render_creatives": False}
        result = crawl_meta(root, db_url, source | extra)
        found["days"][day] = {
            "result": result,
            "hits": dict(library.hits),
            "requests": list(library.requests),
        }
    library.day = 1
    return found


def evidence_of(runs: dict[str, Any]) -> Any:
    return open_evidence(load_settings(data_dir=runs["root"] / "data", db_url=runs["db_url"]))


def captures(runs: dict[str, Any], day: int) -> list[tuple[Any, dict[str, Any]]]:
    """(outcome, capture metadata) of each archived snapshot of a day's run."""
    evidence = evidence_of(runs)
    found = []
    for outcome in runs["days"][day]["result"]["outcomes"]:
        if outcome["snapshot"]:
            manifest = parse_manifest(evidence.objects.get(outcome["snapshot"]))
            found.append((outcome, manifest.capture))
    return found


def ads_by_id(runs: dict[str, Any]) -> dict[str, Ad]:
    evidence = evidence_of(runs)
    with evidence.index.session() as session:
        return {a.ad_id: a for a in session.scalars(select(Ad).where(Ad.platform == "meta"))}


# -- day 1: pages, rate limits, records ----------------------------------------------------
def test_every_page_is_fetched_and_rate_limits_are_waited_out(
    runs: dict[str, Any], library: MetaAdLibrary
) -> None:
    day1 = runs["days"][1]
    result = day1["result"]
    assert result["status"] == "succeeded", result
    assert result["counts"] == {"archived": 7 + CREATIVES}
    # 300 ads, 50 a page: six full pages and the empty seventh that ends the query; pages 2
    # and 4 were refused once (613, then code 4) and asked again.
    assert day1["hits"]["/v23.0/ads_archive"] == 7 + 2
    offsets = [r["params"].get("after") for r in day1["requests"] if "ads_archive" in r["path"]]
    assert len(set(offsets)) == 7
    pages = {
        meta["ads"]["page"]: meta for _, meta in captures(runs, 1) if meta["ads"]["kind"] == "page"
    }
    assert sorted(pages) == [1, 2, 3, 4, 5, 6, 7]
    assert [p for p, meta in pages.items() if "pages" in meta["ads"]] == [7]
    assert pages[7]["ads"]["pages"] == 7 and pages[7]["meta_ads"]["ads"] == 0
    key = query_key("meta-ads", QUERY)
    assert {meta["ads"]["query_key"] for meta in pages.values()} == {key}
    assert crawler_query_key("meta-ads", QUERY) == key
    [refused] = pages[2]["attempts"]
    assert refused["status"] == 400 and "613" in refused["message"]
    assert refused["waited_s"] == 1  # the Retry-After the API sent
    [refused] = pages[4]["attempts"]
    assert refused["status"] == 403 and "error 4" in refused["message"]
    assert refused["waited_s"] == 0.2  # no hint: the backoff setting
    [throttled] = pages[3]["attempts"]
    assert throttled["kind"] == "throttled" and "96% of the limit" in throttled["message"]
    assert result["records_stats"]["ads"]["new"] == AD_COUNT
    with evidence_of(runs).index.session() as session:
        count = session.scalar(text("SELECT count(*) FROM ads WHERE platform = 'meta'"))
    assert count >= AD_COUNT


def test_a_throttled_answer_stays_in_the_page_snapshot(runs: dict[str, Any]) -> None:
    from warcio.archiveiterator import ArchiveIterator

    evidence = evidence_of(runs)
    for outcome, meta in captures(runs, 1):
        if meta["ads"].get("page") != 2:
            continue
        manifest = parse_manifest(evidence.objects.get(outcome["snapshot"]))
        [warc] = [a for a in manifest.artifacts if a.role == "warc"]
        with evidence.objects.open(warc.sha256) as stream:
            statuses = [
                int(r.http_headers.get_statuscode())
                for r in ArchiveIterator(stream)
                if r.rec_type == "response"
            ]
        assert statuses == [400, 200]  # the refusal, then the answer the records came from


def _current(runs: dict[str, Any], number: int) -> dict[str, Any]:
    return ads_by_id(runs)[ad_id(number)]


def test_records_are_normalised_field_by_field(runs: dict[str, Any], library: MetaAdLibrary):
    # Ad 0 on day 1 (unchanged on day 2): SPD, reached DE and AT, stopped, two languages.
    ad = library.ad(ad_id(0), day=1)
    row = _current(runs, 0)
    fields = row.current
    assert row.versions == 1 and row.advertiser_name == "SPD"
    assert fields["platform"] == "meta" and fields["ad_type"] == "POLITICAL_AND_ISSUE_ADS"
    assert (fields["page_id"], fields["page_name"]) == (ad["page_id"], "SPD")
    assert fields["advertiser_id"] == ad["page_id"]
    assert fields["funding_entity"] == "SPD-Parteivorstand"
    assert fields["payers"] == ["SPD-Parteivorstand"] and fields["beneficiaries"] == ["SPD"]
    assert fields["first_shown"] == ad["ad_delivery_start_time"]
    assert fields["last_shown"] == ad["ad_delivery_stop_time"]
    assert fields["status"] == "inactive"
    assert fields["spend"] == {
        "lower": int(ad["spend"]["lower_bound"]),
        "upper": int(ad["spend"]["upper_bound"]),
        "original": f"{ad['spend']['lower_bound']}-{ad['spend']['upper_bound']}",
        "currency": "EUR",
    }
    assert fields["impressions"]["lower"] == int(ad["impressions"]["lower_bound"])
    assert fields["impressions"]["original"] == (
        f"{ad['impressions']['lower_bound']}-{ad['impressions']['upper_bound']}"
    )
    assert fields["reach"] == {
        "lower": ad["eu_total_reach"],
        "upper": ad["eu_total_reach"],
        "original": str(ad["eu_total_reach"]),
    }
    breakdown = {
        e["country"]: sum(
            c[g] for c in e["age_gender_breakdowns"] for g in ("female", "male", "unknown")
        )
        for e in ad["age_country_gender_reach_breakdown"]
    }
    assert set(breakdown) == {"DE", "AT"}
    assert {c: b["lower"] for c, b in fields["reach_by_country"].items()} == breakdown
    assert sum(breakdown.values()) == ad["eu_total_reach"]
    shares = [d for d in fields["demographics"] if d["share"] is not None]
    assert len(shares) == 12 and abs(sum(d["share"] for d in shares) - 1) < 1e-3
    assert shares[0] == {
        "country": None,
        "age": "18-24",
        "gender": "female",
        "share": float(ad["demographic_distribution"][0]["percentage"]),
        "reach": None,
    }
    cells = [d for d in fields["demographics"] if d["reach"] is not None]
    assert len(cells) == 2 * 6 * 3  # country x age band x gender
    first = ad["age_country_gender_reach_breakdown"][0]["age_gender_breakdowns"][0]
    assert {"country": "DE", "age": "18-24", "gender": "female"}.items() <= cells[1].items()
    assert cells[1]["reach"]["lower"] == first["female"]
    targeting = fields["targeting"]
    assert targeting["ages"] == ["18-65+"] and targeting["genders"] == ["all"]
    assert targeting["locations_included"] == ["Germany", "Austria"]
    assert targeting["locations_excluded"] == []
    assert targeting["other"]["target_locations"] == ad["target_locations"]
    assert fields["creative"]["bodies"] == ad["ad_creative_bodies"]
    assert fields["creative"]["titles"] == ad["ad_creative_link_titles"]
    assert fields["creative"]["descriptions"] == ad["ad_creative_link_descriptions"]
    assert fields["creative"]["captions"] == ["spd.de"]
    assert fields["languages"] == ["de", "en"]
    assert fields["countries"] == ["DE", "AT"]
    assert fields["snapshot_url"] == (
        f"{library.base_url}/ads/archive/render_ad/?id={ad['id']}&access_token=REDACTED"
    )
    extra = fields["extra"]
    assert extra["publisher_platforms"] == ["facebook"]
    assert extra["ad_creation_time"] == ad["ad_creation_time"]
    assert extra["estimated_audience_size"]["lower"] == int(
        ad["estimated_audience_size"]["lower_bound"]
    )
    assert extra["delivery_by_region"][0] == {
        "region": ad["delivery_by_region"][0]["region"],
        "share": float(ad["delivery_by_region"][0]["percentage"]),
    }
    assert extra["beneficiary_payers"] == ad["beneficiary_payers"]
    assert "topic" not in extra  # the fixture's own bookkeeping is never served

    # Ad 3: Bayern excluded; ad 5: a location Meta obfuscated; ad 4: no languages sent; ad 6:
    # a field nobody asked for (kept in extra); ad 7: no demographic distribution sent.
    assert _current(runs, 3).current["targeting"]["locations_excluded"] == ["Bayern"]
    assert _current(runs, 5).current["targeting"]["other"]["locations_obfuscated"] == 2
    assert _current(runs, 4).current["languages"] == []
    drift = library.ad(ad_id(6), day=1)["total_reach_by_location"]
    assert _current(runs, 6).current["extra"]["total_reach_by_location"] == drift
    seven = _current(runs, 7).current
    assert [d for d in seven["demographics"] if d["share"] is not None] == []
    assert "delivery_by_region" not in seven["extra"]
    # Women-only targeting, active ad (no stop time).
    one = _current(runs, 10).current  # ad 10: women, not stopped
    assert one["targeting"]["genders"] == ["female"] and one["status"] == "active"


def test_creatives_are_rendered_and_archived(runs: dict[str, Any], library: MetaAdLibrary):
    evidence = evidence_of(runs)
    creatives = [(o, m) for o, m in captures(runs, 1) if m["ads"]["kind"] == "creative"]
    assert len(creatives) == CREATIVES
    linked = {a.ad_id: a.creative_snapshot_id for a in ads_by_id(runs).values()}
    for outcome, meta in creatives:
        assert outcome["mode"] == "browser" and outcome["outcome"] == "archived"
        assert outcome["url"].endswith("&access_token=REDACTED")
        assert linked[meta["ads"]["ad_id"]] == outcome["snapshot"]
        roles = {a["role"] for a in outcome["artifacts"]}
        assert {"warc", "screenshot", "dom", "metadata"} <= roles
        manifest = parse_manifest(evidence.objects.get(outcome["snapshot"]))
        [dom] = [a for a in manifest.artifacts if a.role == "dom"]
        html = evidence.objects.get(dom.sha256).decode()
        ad = library.ad(meta["ads"]["ad_id"], day=1)
        # Drawn by the page's script: the text is in the rendered DOM, not in the HTML sent.
        assert ad["ad_creative_bodies"][0] in html and 'data-rendered="true"' in html
        assert f"Bezahlt von {ad['bylines']}" in html
        assert '"accessToken": "REDACTED"' in html
        assert "query:access_token" in meta["redacted_body"]


def test_the_token_is_in_no_stored_byte(runs: dict[str, Any]) -> None:
    needle = TOKEN.encode()
    files = [p for p in (runs["root"] / "data").rglob("*") if p.is_file()]
    assert len(files) > 20
    for path in files:
        data = path.read_bytes()
        for variant in _unpacked(data):
            assert needle not in variant, f"the token is in {path}"
    # The index (ads, versions, runs, snapshots, custody): every row of every table.
    evidence = evidence_of(runs)
    with evidence.index.session() as session:
        names = [
            r[0]
            for r in session.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'table'")
                if runs["db_url"].startswith("sqlite")
                else text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
        ]
        for name in names:
            for row in session.execute(text(f'SELECT * FROM "{name}"')):
                assert TOKEN not in repr(tuple(row)), f"the token is in table {name}"
    for day in (1, 2):
        assert TOKEN not in json.dumps(runs["days"][day]["result"])


def _unpacked(data: bytes) -> list[bytes]:
    """The bytes, and their decompressed form if they are gzip (WARCs are gzip members)."""
    variants = [data]
    if data[:2] == b"\x1f\x8b":
        try:
            variants.append(gzip.decompress(data))
        except (OSError, EOFError, zlib.error):
            variants.append(zlib.decompressobj(31).decompress(data))
    return variants


# -- day 2: versions and removals ----------------------------------------------------------
def test_day_two_makes_versions_and_notices_removals(
    runs: dict[str, Any], library: MetaAdLibrary
) -> None:
    day2 = runs["days"][2]["result"]
    assert day2["status"] == "succeeded", day2
    stats = day2["records_stats"]["ads"]
    grown = [n for n in range(AD_COUNT) if n % 10 == 1]
    gone = [n for n in range(AD_COUNT) if gone_on_day_2(n)]
    assert stats["new"] == 5
    assert stats["new_versions"] == len(grown) + 1  # and ad 5, whose text was edited
    assert stats["unseen"] == len(gone) == 12
    # 293 ads: five full pages and a last one of 43 without `next`.
    assert day2["counts"] == {"archived": 6}
    ads = ads_by_id(runs)
    run_id = day2["run"]
    for number in gone:
        row = ads[ad_id(number)]
        assert row.unseen_since is not None and row.unseen_run_id == run_id
    assert all(ads[ad_id(n)].unseen_since is None for n in grown)
    evidence = evidence_of(runs)
    with evidence.index.session() as session:
        row = ads[ad_id(61)]
        versions = session.scalars(
            select(AdVersion).where(AdVersion.ad_pk == row.id).order_by(AdVersion.number)
        ).all()
    assert [v.number for v in versions] == [1, 2]
    before, after = versions[0].fields, versions[1].fields
    assert before["impressions"] == {"lower": 200000, "upper": 249999, "original": "200000-249999"}
    # The top bucket has no upper bound: kept open, the text as sent.
    assert after["impressions"] == {"lower": 1000000, "upper": None, "original": "1000000-"}
    assert after["reach"]["lower"] > before["reach"]["lower"]
    assert versions[0].snapshot_id != versions[1].snapshot_id
    assert versions[1].warc_record_id.startswith("<urn:uuid:")
    edited = ads[ad_id(5)].current["creative"]["bodies"][0]
    assert edited.endswith("Jetzt erst recht!") and ads[ad_id(5)].versions == 2
    new = [a for a in ads.values() if int(a.ad_id) >= int(ad_id(AD_COUNT))]
    assert len(new) == 5 and all(a.versions == 1 for a in new)
    assert_versions_consistent(evidence.index)


# -- failures -------------------------------------------------------------------------------
def test_an_expired_or_missing_token_ends_the_run_with_a_clear_outcome(
    library: MetaAdLibrary, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    source = {"api_base": library.api_base, "render_creatives": False}
    library.expired = True
    try:
        library.reset()
        result = crawl_meta(tmp_path, db_url, source)
    finally:
        library.expired = False
    assert result["status"] == "failed"
    [outcome] = result["outcomes"]
    assert outcome["outcome"] == "auth-failed" and outcome["snapshot"] is None
    assert "Meta refused the access token" in outcome["error"]
    assert "error 190/463" in outcome["error"] and "Session has expired" in outcome["error"]
    assert "EVIDENCE_SOURCES__META_ADS__ACCESS_TOKEN" in outcome["error"]
    assert TOKEN not in json.dumps(result)
    assert library.hits["/v23.0/ads_archive"] == 1  # not asked again and again

    library.reset()
    result = crawl_meta(tmp_path, db_url, source, token=None)
    [outcome] = result["outcomes"]
    assert result["status"] == "failed" and outcome["outcome"] == "auth-failed"
    assert "no access token for meta-ads" in outcome["error"]
    assert library.hits["/v23.0/ads_archive"] == 0


def test_a_malformed_page_is_archived_unparseable_and_removes_nothing(
    library: MetaAdLibrary, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    source = {"api_base": library.api_base, "render_creatives": False, "limit": 10}
    arguments = ["search_term=Rente", "search_term=Klima"]
    library.rate_limits = {}
    try:
        library.reset()
        first = crawl_meta(tmp_path, db_url, source, arguments)
        assert first["status"] == "succeeded", first
        library.day = 2
        library.malformed = {("Klima", 2)}
        library.reset()
        second = crawl_meta(tmp_path, db_url, source, arguments)
    finally:
        library.day, library.malformed = 1, set()
        library.rate_limits = {2: 613, 4: 4}
    assert second["status"] == "partial"
    unparseable = [o for o in second["outcomes"] if o["outcome"] == "unparseable"]
    assert len(unparseable) == 1 and "not JSON" in unparseable[0]["error"]
    assert "search_terms=Klima" in unparseable[0]["url"]
    # The cut page is archived as it came, and the query stopped there (no cursor).
    klima_pages = [
        o for o in second["outcomes"] if "search_terms=Klima" in o["url"] and o["mode"] == "http"
    ]
    assert [o["outcome"] for o in klima_pages] == ["archived", "archived"]
    evidence = open_evidence(load_settings(data_dir=tmp_path / "data", db_url=db_url))
    klima = query_key("meta-ads", QUERY | {"search_terms": "Klima"})
    rente = query_key("meta-ads", QUERY | {"search_terms": "Rente"})
    with evidence.index.session() as session:
        unseen = session.execute(
            text(
                "SELECT s.query_key, count(*) FROM ads a JOIN ad_sightings s ON s.ad_pk = a.id "
                "WHERE a.unseen_since IS NOT NULL GROUP BY s.query_key"
            )
        ).all()
    # Rente was read whole on day 2: its vanished ads are unseen. Klima was not: none is.
    assert klima not in dict(unseen) and dict(unseen).get(rente, 0) >= 1
    assert TOKEN not in json.dumps(second)


# -- settings and the normaliser alone -----------------------------------------------------
def test_per_run_arguments_fill_the_query_and_the_token_is_refused() -> None:
    spec = get_source("meta-ads")
    settings = settings_for_run(
        spec,
        {"access_token": "x"},
        ["country=DE", "country=at", "search_term=Rente", "date_min=2025-01-01", "ad_type=ALL"],
    )
    assert isinstance(settings, MetaAdsSettings)
    assert settings.countries == ["DE", "AT"] and settings.search_terms == ["Rente"]
    assert str(settings.date_min) == "2025-01-01" and settings.ad_type == "ALL"
    assert settings.api_base == "https://graph.facebook.com/v23.0"
    assert "access_token" in settings.spider_arguments()
    with pytest.raises(SourceError, match="credentials are never taken from the command line"):
        settings_for_run(spec, {}, ["access_token=abc"])
    with pytest.raises(SourceError, match="not an ISO 3166 country code"):
        settings_for_run(spec, {}, ["country=Germany"])


def test_the_normaliser_refuses_what_is_not_an_answer() -> None:
    def payload(body: bytes) -> Payload:
        return Payload("s" * 64, None, None, 200, "application/json", body, None, {})

    with pytest.raises(ValueError, match="not JSON"):
        list(normalise(payload(b'{"data": [')))
    with pytest.raises(ValueError, match="no `data` list"):
        list(normalise(payload(b'{"error": {"code": 1}}')))
    with pytest.raises(ValueError, match="ad 2: no id"):
        list(normalise(payload(b'{"data": [{"id": "1"}, {"page_name": "x"}]}')))
    with pytest.raises(ValueError, match="ad 9: not a range"):
        list(normalise(payload(b'{"data": [{"id": "9", "eu_total_reach": "viele"}]}')))
    [ad] = normalise(
        payload(
            b'{"data": [{"id": "1", "ad_snapshot_url": "https://www.facebook.com/ads/archive/'
            b'render_ad/?id=1&access_token=EAAreal", "target_ages": ["25"]}]}'
        )
    )
    assert ad.snapshot_url.endswith("access_token=REDACTED") and ad.targeting.ages == ["25"]
