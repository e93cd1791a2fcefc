"""The `tiktok-ads` source end to end against the imitation Commercial Content API
(fixtures/tiktok_ads): client-token auth with a token that expires mid-run, every page and
every ad's detail fetched through 429s, the documentation's contradicting variants read,
the ads normalised into the index (SQLite and PostgreSQL) with their special-category flags,
versions and removals on day 2, and no credential in any stored byte.

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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from crawlers.spiders.adlib import query_key as crawler_query_key
from crawlers.spiders.tiktok_ads import TikTokAdsSettings, truthy
from evidence_store.manifest import parse_manifest
from fixtures.tiktok_ads import CLIENT_KEY, CLIENT_SECRET, TikTokAdLibrary
from fixtures.tiktok_ads.data import (
    AD_COUNT,
    ADVERTISERS,
    REMOVAL_STATEMENT,
    REMOVED_NUMBER,
    ad_id,
    gone_on_day_2,
    grown_on_day_2,
    without_reach,
)
from jobs.config import load_settings
from jobs.context import open_evidence
from jobs.sources import SourceError, get_source, settings_for_run
from records.ads.models import Ad, AdVersion
from records.ads.parse import Payload
from records.ads.platforms.tiktok import normalise
from records.ads.store import query_key
from tests.conftest import DB_KINDS, PG_ADMIN_URL, _pg_admin
from tests.test_ads_core import assert_versions_consistent

QUERY = {"country": "DE", "date_min": "2022-10-01", "date_max": "today"}
EXPIRE_AFTER = 100  # API calls a token is good for: the day-1 run needs three

_CRAWL = """
import json, sys
from jobs.config import load_settings
from jobs.crawl import crawl
config = json.loads(sys.argv[1])
result = crawl(load_settings(**config["settings"]), config["source"], config["arguments"])
print(json.dumps(result.to_dict(), default=str))
"""


def crawl_tiktok(
    root: Path,
    db_url: str,
    source: dict[str, Any],
    arguments: list[str] = (),
    secret: str = CLIENT_SECRET,
) -> dict[str, Any]:
    """One run of tiktok-ads in a subprocess; the credentials come from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    env["EVIDENCE_SOURCES__TIKTOK_ADS__CLIENT_KEY"] = CLIENT_KEY
    env["EVIDENCE_SOURCES__TIKTOK_ADS__CLIENT_SECRET"] = secret
    config = {
        "settings": {
            "data_dir": str(root / "data"),
            "db_url": db_url,
            "allow_private": True,  # the fixture is on 127.0.0.1
            "sources": {"tiktok-ads": {"backoff": 0.2} | source},
        },
        "source": "tiktok-ads",
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
def library() -> Iterator[TikTokAdLibrary]:
    with TikTokAdLibrary() as running:
        yield running


@pytest.fixture(scope="module", params=DB_KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The index of the module's runs: SQLite, and a fresh migrated PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('tiktok-index') / 'index.sqlite'}"
        return
    template = request.getfixturevalue("pg_template")
    admin = _pg_admin()
    name = f"evidence_tiktok_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def runs(
    library: TikTokAdLibrary, db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Day 1 (a token that expires after 100 calls, two 429s), then day 2."""
    root = tmp_path_factory.mktemp("tiktok")
    found: dict[str, Any] = {"root": root, "db_url": db_url, "days": {}}
    library.expire_after = EXPIRE_AFTER
    try:
        for day in (1, 2):
            library.day = day
            library.reset()
            result = crawl_tiktok(root, db_url, {"api_base": library.base_url})
            found["days"][day] = {
                "result": result,
                "hits": dict(library.hits),
                "requests": list(library.requests),
                "tokens": list(library.issued),
            }
    finally:
        library.day, library.expire_after = 1, None
    return found


def evidence_of(runs: dict[str, Any]) -> Any:
    return open_evidence(load_settings(data_dir=runs["root"] / "data", db_url=runs["db_url"]))


def pages_of(runs: dict[str, Any], day: int) -> dict[int, dict[str, Any]]:
    """The capture metadata of each page snapshot of a day's run, by page number."""
    evidence = evidence_of(runs)
    found = {}
    for outcome in runs["days"][day]["result"]["outcomes"]:
        if outcome["snapshot"]:
            meta = parse_manifest(evidence.objects.get(outcome["snapshot"])).capture
            found[meta["ads"]["page"]] = meta
    return found


def ads_by_id(runs: dict[str, Any]) -> dict[str, Ad]:
    with evidence_of(runs).index.session() as session:
        return {a.ad_id: a for a in session.scalars(select(Ad).where(Ad.platform == "tiktok"))}


# -- day 1 -----------------------------------------------------------------------------------
def test_every_page_and_detail_is_fetched_through_429s_and_an_expired_token(
    runs: dict[str, Any],
) -> None:
    day1 = runs["days"][1]
    result = day1["result"]
    assert result["status"] == "succeeded", result
    assert result["counts"] == {"archived": 5}  # 240 ads, 50 a page
    queries = [r for r in day1["requests"] if r["path"] == "/v2/research/adlib/ad/query/"]
    bodies = [json.loads(r["body"]) for r in queries]
    today = datetime.now(UTC).strftime("%Y%m%d")
    assert bodies[0]["filters"] == {
        "ad_published_date_range": {"min": "20221001", "max": today},
        "country_code": "DE",
    }
    assert bodies[0]["max_count"] == 50 and "search_id" not in bodies[0]
    # Paging by sending back the search_id of the previous answer, to the end.
    assert len({b.get("search_id") for b in bodies}) == 5
    assert "ad.reach" in queries[0]["params"]["fields"].split(",")
    details = [r for r in day1["requests"] if r["path"] == "/v2/research/adlib/ad/detail/"]
    asked = {json.loads(r["body"])["ad_id"] for r in details}
    assert asked == {ad_id(n) for n in range(AD_COUNT)}
    assert "ad_group.targeting_info" in details[0]["params"]["fields"].split(",")
    # The token stopped working twice (100 calls each): a new one each time, and the
    # requests it refused were sent again with the new one.
    assert len(day1["tokens"]) == 3 and day1["hits"]["/v2/oauth/token/"] == 3
    authorizations = {r["headers"].get("Authorization") for r in details + queries}
    assert authorizations == {f"Bearer {t}" for t in day1["tokens"]}
    pages = pages_of(runs, 1)
    assert sorted(pages) == [1, 2, 3, 4, 5]
    assert [p for p, meta in pages.items() if "pages" in meta["ads"]] == [5]
    assert sum(len(meta["ads"]["details"]) for meta in pages.values()) == AD_COUNT
    key = query_key("tiktok-ads", QUERY)
    assert crawler_query_key("tiktok-ads", QUERY) == key
    assert {meta["ads"]["query_key"] for meta in pages.values()} == {key}
    waits = [a for meta in pages.values() for a in meta.get("attempts", [])]
    assert [(a["status"], a["waited_s"]) for a in waits] == [(429, 1), (429, 1)]
    assert all("rate_limit_exceeded" in a["message"] for a in waits)
    assert result["records_stats"]["ads"]["new"] == AD_COUNT


def test_a_page_and_its_details_are_one_snapshot(runs: dict[str, Any]) -> None:
    from warcio.archiveiterator import ArchiveIterator

    evidence = evidence_of(runs)
    outcome = runs["days"][1]["result"]["outcomes"][-1]
    manifest = parse_manifest(evidence.objects.get(outcome["snapshot"]))
    [warc] = [a for a in manifest.artifacts if a.role == "warc"]
    with evidence.objects.open(warc.sha256) as stream:
        responses = [
            (r.rec_headers.get_header("WARC-Target-URI"), r.http_headers.get_statuscode())
            for r in ArchiveIterator(stream)
            if r.rec_type == "response"
        ]
    paths = [uri.split("?")[0].rsplit("/ad/", 1)[1] for uri, _ in responses]
    assert paths[0] == "query/" and set(paths[1:]) == {"detail/"}
    assert len(responses) >= 1 + manifest.capture["tiktok_ads"]["ads"]


def _fields(runs: dict[str, Any], number: int) -> dict[str, Any]:
    return ads_by_id(runs)[str(ad_id(number))].current


def test_records_are_normalised_with_every_variant(
    runs: dict[str, Any], library: TikTokAdLibrary
) -> None:
    # Ad 0: dates as integers, reach in DE and AT, a video with its cover, targeting_info.
    item = library.ad(ad_id(0), day=1)
    fields = _fields(runs, 0)
    assert fields["platform"] == "tiktok" and fields["ad_id"] == str(ad_id(0))
    assert fields["advertiser_id"] == str(item["advertiser"]["business_id"])
    name, paid_for_by = ADVERTISERS[0][:2]
    assert name.startswith("AOK") and fields["advertiser_name"] == name
    assert fields["funding_entity"] == paid_for_by == "AOK-Bundesverband GbR"
    assert fields["payers"] == [paid_for_by] and fields["beneficiaries"] == [name]
    first = str(item["ad"]["first_shown_date"])
    assert fields["first_shown"] == f"{first[:4]}-{first[4:6]}-{first[6:]}"
    assert fields["status"] == "inactive"  # ad 0: every third ad has ended
    assert fields["reach"]["original"] == item["ad"]["reach"]["unique_users_seen"]
    by_country = item["ad"]["reach"]["unique_users_seen_by_country"]
    assert {c: b["original"] for c, b in fields["reach_by_country"].items()} == by_country
    assert fields["countries"] == ["DE", "AT"]
    targeting = fields["targeting"]
    info = item["ad_group"]["targeting_info"]
    assert targeting["ages"] == [band for band, on in info["age"].items() if on]
    assert targeting["genders"] == ["female", "male", "unknown"]
    assert targeting["locations_included"] == ["DE", "AT"]
    assert targeting["interests"] == ["Gesundheit"]
    assert targeting["languages"] == ["de"] and fields["languages"] == ["de"]
    assert fields["creative"]["titles"] == [item["ad"]["title"]]
    assert fields["creative"]["links"] == ["https://www.aok.de/pk/"]
    [video] = fields["creative"]["media"]
    assert video == {
        "kind": "video",
        "url": f"{library.base_url}/media/video/{ad_id(0)}.mp4",
        "cover_image_url": f"{library.base_url}/media/cover/{ad_id(0)}.jpeg",
    }
    assert fields["extra"]["number_of_users_targeted"]["original"] == "100K-1M"
    assert fields["extra"]["advertising_objective"] == "REACH"
    assert "advertiser.follower_count" not in fields["extra"]
    assert fields["special_categories"][0]["category"] == "health"

    # Ad 3: dates as strings, "paid_by"; ad 2: "unique_user_seen", targeting "country_code".
    three = _fields(runs, 3)
    assert three["funding_entity"] == ADVERTISERS[3][1]
    assert "paid_by" in library.ad(ad_id(3), day=1)["advertiser"]
    assert three["first_shown"] is not None and three["last_shown"] > three["first_shown"]
    two, sent = _fields(runs, 2), library.ad(ad_id(2), day=1)["ad"]["reach"]
    assert two["reach"]["original"] == sent["unique_user_seen"]
    assert two["targeting"]["locations_included"] == ["DE"]
    # Ad 4: targeting under "target", images instead of a video, interests naming religion.
    four = _fields(runs, 4)
    assert four["targeting"]["interests"] == ["Islam", "Ramadan"]
    assert [m["kind"] for m in four["creative"]["media"]] == ["image", "image"]
    assert "?" not in four["creative"]["media"][0]["url"]  # the signed part is left out
    assert ads_by_id(runs)[str(ad_id(4))].special_categories == ["religious_beliefs"]
    flags = {f["category"]: f for f in four["special_categories"]}
    assert flags["religious_beliefs"]["value"] == "Islam"
    assert flags["religious_beliefs"]["field"] == "interests"
    # Ads 13 and 5: a union's and a queer festival's interests; audiences kept as lists.
    assert "trade_union_membership" in ads_by_id(runs)[str(ad_id(13))].special_categories
    assert "sex_life_or_sexual_orientation" in ads_by_id(runs)[str(ad_id(5))].special_categories
    assert _fields(runs, 5)["targeting"]["audiences"] == [
        "Custom Audience: Newsletter-Abonnent:innen"
    ]
    assert _fields(runs, 1)["targeting"]["other"]["video_interactions"] == ["Sport", "Comedy"]
    # Schema drift: a field nobody asked for is kept; an ad without reach has none.
    assert _fields(runs, 6)["extra"]["ad_format"] == "spark_ad"
    assert _fields(runs, 5)["reach"] is None and _fields(runs, 5)["reach_by_country"] == {}


def test_no_credential_is_in_any_stored_byte(runs: dict[str, Any]) -> None:
    secrets = [CLIENT_KEY, CLIENT_SECRET, *runs["days"][1]["tokens"], *runs["days"][2]["tokens"]]
    files = [p for p in (runs["root"] / "data").rglob("*") if p.is_file()]
    assert len(files) > 10
    for path in files:
        for variant in _unpacked(path.read_bytes()):
            for secret in secrets:
                assert secret.encode() not in variant, f"a credential is in {path}"
    with evidence_of(runs).index.session() as session:
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
                for secret in secrets:
                    assert secret not in repr(tuple(row)), f"a credential is in table {name}"
    pages = pages_of(runs, 1)
    assert any("secret:access_token_1" in m.get("redacted_body", []) for m in pages.values())


def _unpacked(data: bytes) -> list[bytes]:
    variants = [data]
    if data[:2] == b"\x1f\x8b":
        try:
            variants.append(gzip.decompress(data))
        except (OSError, EOFError, zlib.error):
            variants.append(zlib.decompressobj(31).decompress(data))
    return variants


# -- day 2 -----------------------------------------------------------------------------------
def test_day_two_versions_removals_and_a_removed_ad(runs: dict[str, Any]) -> None:
    day2 = runs["days"][2]["result"]
    assert day2["status"] == "succeeded", day2
    stats = day2["records_stats"]["ads"]
    # An ad sent without reach shows no growth: no new version for it.
    grown = [n for n in range(AD_COUNT) if grown_on_day_2(n) and not without_reach(n)]
    gone = [n for n in range(AD_COUNT) if gone_on_day_2(n)]
    assert stats["new"] == 3 and stats["unseen"] == len(gone) == 12
    # Media links signed anew and follower counts changed for every ad: no version for
    # that; the grown ads and the one TikTok removed have one.
    assert stats["new_versions"] == len(grown) + 1
    ads = ads_by_id(runs)
    for number in gone:
        row = ads[str(ad_id(number))]
        assert row.unseen_since is not None and row.unseen_run_id == day2["run"]
    removed = ads[str(ad_id(REMOVED_NUMBER))]
    assert removed.current["status"] == "removed" and removed.unseen_since is None
    assert removed.current["removal_reason"] == REMOVAL_STATEMENT
    with evidence_of(runs).index.session() as session:
        versions = session.scalars(
            select(AdVersion)
            .where(AdVersion.ad_pk == ads[str(ad_id(11))].id)
            .order_by(AdVersion.number)
        ).all()
    assert [v.number for v in versions] == [1, 2]
    before, after = versions[0].fields["reach"], versions[1].fields["reach"]
    assert (before["original"], after["original"]) == ("1K-10K", "10K-100K")
    assert (after["lower"], after["upper"]) == (10_000, 100_000)
    assert versions[1].snapshot_id != versions[0].snapshot_id
    assert_versions_consistent(evidence_of(runs).index)


# -- failures and caps -------------------------------------------------------------------------
def test_refused_credentials_end_the_run_with_a_clear_outcome(
    library: TikTokAdLibrary, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    library.reset()
    result = crawl_tiktok(tmp_path, db_url, {"api_base": library.base_url}, secret="wrong-secret")
    [outcome] = result["outcomes"]
    assert result["status"] == "failed" and outcome["outcome"] == "auth-failed"
    assert "invalid_client" in outcome["error"] and "Client key or secret" in outcome["error"]
    assert "EVIDENCE_SOURCES__TIKTOK_ADS__CLIENT_SECRET" in outcome["error"]
    assert "wrong-secret" not in json.dumps(result)
    assert library.hits["/v2/research/adlib/ad/query/"] == 0

    # A token the API refuses from the start: renewed once, refused again, the run ends.
    library.refuse_tokens = True
    library.rate_limited_calls = set()
    try:
        library.reset()
        result = crawl_tiktok(tmp_path, db_url, {"api_base": library.base_url})
    finally:
        library.refuse_tokens = False
        library.rate_limited_calls = {2, 9}
    [outcome] = result["outcomes"]
    assert result["status"] == "failed" and outcome["outcome"] == "auth-failed"
    assert "access_token_invalid" in outcome["error"] and "a new token" in outcome["error"]
    assert library.hits["/v2/oauth/token/"] == 2
    assert library.hits["/v2/research/adlib/ad/query/"] == 2
    for token in library.issued:
        assert token not in json.dumps(result)


def test_a_malformed_page_is_archived_and_details_are_capped(
    library: TikTokAdLibrary, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    library.malformed = {("Gesund", 2)}
    library.rate_limited_calls = set()
    try:
        library.reset()
        result = crawl_tiktok(
            tmp_path,
            db_url,
            {"api_base": library.base_url, "max_count": 5, "max_details": 3},
            ["search_term=Gesund", "search_type=fuzzy_phrase"],
        )
    finally:
        library.malformed, library.rate_limited_calls = set(), {2, 9}
    assert result["status"] == "partial"
    archived = [o for o in result["outcomes"] if o["mode"] == "http"]
    assert [o["outcome"] for o in archived] == ["archived", "archived"]  # then it stopped
    [unparseable] = [o for o in result["outcomes"] if o["outcome"] == "unparseable"]
    assert "not JSON" in unparseable["error"]
    assert library.hits["/v2/research/adlib/ad/detail/"] == 3
    bodies = [
        json.loads(r["body"])
        for r in library.requests
        if r["path"] == "/v2/research/adlib/ad/query/"
    ]
    assert bodies[0]["search_term"] == "Gesund" and bodies[0]["search_type"] == "fuzzy_phrase"
    # Page 1's five ads are indexed: three from their details, two from the page alone.
    evidence = open_evidence(load_settings(data_dir=tmp_path / "data", db_url=db_url))
    with evidence.index.session() as session:
        rows = session.scalars(select(Ad).where(Ad.platform == "tiktok")).all()
    assert len(rows) == 5
    with_targeting = [r for r in rows if r.current["targeting"]["ages"]]
    assert len(with_targeting) == 3
    assert all(r.current["advertiser_name"] for r in rows)


# -- settings and the normaliser alone --------------------------------------------------------
def test_per_run_arguments_and_refused_settings() -> None:
    spec = get_source("tiktok-ads")
    settings = settings_for_run(
        spec, {}, ["country=DE", "country=fr", "search_term=Rente", "date_min=2025-01-01"]
    )
    assert isinstance(settings, TikTokAdsSettings)
    assert settings.countries == ["DE", "FR"] and settings.search_terms == ["Rente"]
    assert settings.api_base == "https://open.tiktokapis.com" and settings.token_url is None
    with pytest.raises(SourceError, match="credentials are never taken from the command line"):
        settings_for_run(spec, {}, ["client_secret=abc"])
    with pytest.raises(SourceError, match="starts on 2022-10-01"):
        settings_for_run(spec, {}, ["date_min=2021-01-01"])
    with pytest.raises(SourceError, match="at most 50 characters"):
        settings_for_run(spec, {}, ["search_term=" + "x" * 51])


def test_the_normaliser_reads_every_documented_variant() -> None:
    def payload(value: Any, **ads: Any) -> Payload:
        body = json.dumps(value).encode()
        return Payload("s" * 64, None, None, 200, "application/json", body, None, ads)

    assert [truthy(v) for v in (True, "true", "True", 1, "1", False, "false", 0, None)] == [
        True,
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    flat = {
        "data": {
            "ads": [
                {
                    "id": "42",
                    "first_shown_date": 1735689600000,  # epoch milliseconds
                    "last_shown_date": "2025-01-05",
                    "status": "inactive",
                    "status_statement": "",
                    "reach": {"unique_user_seen": "30K"},
                }
            ],
            "has_more": "false",
        },
        "error": {"code": "ok"},
    }
    [ad] = normalise(payload(flat, query={"country": "FR"}))
    assert (ad.ad_id, str(ad.first_shown), str(ad.last_shown)) == ("42", "2025-01-01", "2025-01-05")
    assert (ad.reach.lower, ad.reach.upper) == (30_000, 30_000) and ad.countries == ["FR"]
    detail = {
        "data": {
            "ad": {"id": 7, "status": "active", "status_statement": "Removed: policy violation"},
            "advertiser": {"business_name": "X", "paid_by": "Y GmbH"},
            "ad_group": {
                "target": {
                    "country": {"DE": "1K-10K"},
                    "interest": "Yes",
                    "audience_targeting": "No",
                    "age": {"18-24": "true", "25-34": False},
                }
            },
        },
        "error": {"code": "ok", "message": ""},
    }
    [ad] = normalise(payload(detail))
    assert ad.status == "removed" and ad.removal_reason == "Removed: policy violation"
    assert ad.funding_entity == "Y GmbH" and ad.targeting.locations_included == ["DE"]
    assert ad.targeting.interests == [] and ad.targeting.other["interest"] == "Yes"
    assert ad.targeting.ages == ["18-24"]
    page = {"data": {"ads": [{"ad": {"id": 1}}, {"ad": {"id": 2}}]}, "error": {"code": "ok"}}
    assert [a.ad_id for a in normalise(payload(page, details=["2"]))] == ["1"]
    with pytest.raises(ValueError, match="an error: access_token_invalid"):
        list(normalise(payload({"data": {}, "error": {"code": "access_token_invalid"}})))
    with pytest.raises(ValueError, match="not a date"):
        list(normalise(payload({"data": {"ad": {"id": 1, "first_shown_date": "soon"}}})))
    with pytest.raises(ValueError, match="neither"):
        list(normalise(payload({"data": {"advertisers": []}})))
