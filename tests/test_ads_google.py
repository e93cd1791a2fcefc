"""The `google-ads` source end to end against the imitation of Google's political-ads data
(fixtures/google_ads): the transparency bundle streamed and archived as served (after a 503
with Retry-After), its EU rows normalised into the real index (SQLite and PostgreSQL), day 2
with schema drift, changed, new and vanished ads, and Ads Transparency Center creative pages
rendered by Chromium and linked to their ads. The normaliser is also tested on its own."""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from warcio.archiveiterator import ArchiveIterator

from crawlers.spiders.google_ads import GoogleAdsSettings, read_bundle
from evidence_store.manifest import parse_manifest
from fixtures.google_ads import CREATIVE_STATS, FOLDER, GoogleAdsServer, bundle, expected
from fixtures.google_ads.bundle import ADVERTISERS, EU_MEMBERS
from jobs import sources
from jobs.ads import ads_show, ads_versions
from jobs.config import load_settings
from jobs.context import open_evidence
from records.ads.models import Ad, AdVersion
from records.ads.parse import Payload
from records.ads.platforms.google import normalise
from records.ads.store import query_key
from tests.conftest import DB_KINDS, PG_ADMIN_URL, _pg_admin
from tests.test_ads_core import assert_versions_consistent
from tests.test_ads_x import run_crawl

CREATIVES = 3


@pytest.fixture(scope="module", params=DB_KINDS)
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The index for the module's two-day crawl: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('google-ads-index') / 'index.sqlite'}"
        return
    template = request.getfixturevalue("pg_template")
    admin = _pg_admin()
    name = f"evidence_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def server(db_url: str) -> Iterator[GoogleAdsServer]:
    """A fresh fixture per index (its clock and its first-request failures start again)."""
    with GoogleAdsServer() as running:
        yield running


def configured(server: GoogleAdsServer, **more: Any) -> dict[str, Any]:
    return {
        "bundle_url": server.bundle_url,
        "transparency_base": server.base_url,
        "max_creatives": CREATIVES,
    } | more


@pytest.fixture(scope="module")
def crawled(
    server: GoogleAdsServer, db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Two days of the source: the bundle and three creative pages each day."""
    root = tmp_path_factory.mktemp("google-ads")
    days = []
    for day in (1, 2):
        server.day = day
        server.reset_stats()
        result = run_crawl(root, db_url, "google-ads", configured(server), [])
        days.append(
            {"result": result, "requests": list(server.requests), "hits": dict(server.hits)}
        )
    settings = load_settings(data_dir=root / "data", db_url=db_url)
    return {"root": root, "settings": settings, "days": days, "server": server}


def _ads(settings: Any) -> dict[str, Ad]:
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        rows = session.scalars(select(Ad).where(Ad.platform == "google")).all()
        for row in rows:
            session.expunge(row)
    return {row.ad_id: row for row in rows}


def _manifests(settings: Any, result: dict[str, Any]) -> list[Any]:
    evidence = open_evidence(settings)
    return [
        parse_manifest(evidence.objects.get(o["snapshot"]))
        for o in result["outcomes"]
        if o.get("snapshot") and o["mode"] != "robots"
    ]


def _responses(settings: Any, manifest: Any) -> list[tuple[str, int, bytes]]:
    evidence = open_evidence(settings)
    warc = next(a for a in manifest.artifacts if a.role == "warc")
    found = []
    with evidence.objects.open(warc.sha256) as stream:
        for record in ArchiveIterator(stream):
            if record.rec_type == "response":
                found.append(
                    (
                        record.rec_headers.get_header("WARC-Target-URI"),
                        int(record.http_headers.get_statuscode()),
                        record.content_stream().read(),
                    )
                )
    return found


# -- the bundle ----------------------------------------------------------------------------
@pytest.mark.slow  # Chromium and Scrapy in a subprocess per run
def test_the_bundle_is_archived_as_served_after_waiting_out_a_503(crawled: dict[str, Any]) -> None:
    server = crawled["server"]
    for day, run in enumerate(crawled["days"], start=1):
        result = run["result"]
        assert result["status"] == "succeeded", result["counts"]
        fetches = [r for r in run["requests"] if r.path.endswith(".zip")]
        assert len(fetches) == 2  # the 503, then the bundle
        assert fetches[1].at - fetches[0].at >= server.retry_after * 0.95
        [manifest] = [
            m
            for m in _manifests(crawled["settings"], result)
            if m.capture["google_ads"]["role"] == "bundle"
        ]
        [(url, status, body)] = _responses(crawled["settings"], manifest)
        assert (url, status) == (server.bundle_url, 200)
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(bundle(day)).hexdigest()
        facts = manifest.capture["google_ads"]
        assert facts["sha256"] == hashlib.sha256(bundle(day)).hexdigest()
        assert CREATIVE_STATS in facts["files"] and "README.txt" in facts["files"]
        assert facts["updated"] == f"2025-11-0{2 + day}"
        assert facts["selected_ads"] == len(expected(day))
        block = manifest.capture["ads"]
        assert block["pages"] == 1 and block["regions"] == ["EU"]
        assert block["query_key"] == query_key("google-ads", {"regions": ["EU"]})


@pytest.mark.slow  # Chromium and Scrapy in a subprocess per run
def test_eu_rows_are_normalised_field_by_field(crawled: dict[str, Any]) -> None:
    ads = _ads(crawled["settings"])
    day1 = expected(1)
    assert len(day1) == 211 and set(day1) <= set(ads)
    outside = [a.advertiser_id for a in ADVERTISERS if a.country not in EU_MEMBERS]
    assert not [a for a in ads.values() if a.current["advertiser_id"] in outside]
    ad = next(a for a in day1.values() if a.excluded and a.advertiser.country == "DE")
    row = ads[ad.ad_id]
    first = ads_versions(crawled["settings"], f"google:{ad.ad_id}")[0]
    evidence = open_evidence(crawled["settings"])
    with evidence.index.session() as session:
        got = (
            session.scalars(
                select(AdVersion).where(AdVersion.ad_pk == row.id, AdVersion.number == 1)
            )
            .one()
            .fields
        )
    assert first["warc_record"].startswith("<urn:uuid:")
    assert got["advertiser_id"] == ad.advertiser.advertiser_id
    assert got["advertiser_name"] == ad.advertiser.name and got["ad_type"] == ad.ad_type
    assert got["first_shown"] == ad.start.isoformat() and got["last_shown"] == ad.end.isoformat()
    low, high = ad.spend_eur
    assert got["spend"] == {
        "lower": low,
        "upper": high,
        "original": f"{low}-{high}",
        "currency": "EUR",
    }
    assert got["impressions"]["original"] == ad.impressions
    bounds = {
        "≤ 10k": (0, 10_000),
        "10k-100k": (10_000, 100_000),
        "100k-1M": (100_000, 1_000_000),
        "1M-10M": (1_000_000, 10_000_000),
    }
    assert (got["impressions"]["lower"], got["impressions"]["upper"]) == bounds[ad.impressions]
    assert got["targeting"]["ages"] == ad.ages
    assert got["targeting"]["genders"] == ad.genders.split(", ")
    assert got["targeting"]["locations_included"] == ad.included
    assert got["targeting"]["locations_excluded"] == ad.excluded
    assert got["countries"] == ["DE"] and got["snapshot_url"] == ad.url
    assert got["extra"]["spend_ranges"]["USD"] == f"{round(low * 1.08)}-{round(high * 1.08)}"
    assert got["extra"]["num_of_days"] == (ad.end - ad.start).days + 1
    assert got["status"] == "unknown"


@pytest.mark.slow  # Chromium and Scrapy in a subprocess per run
def test_day_two_versions_removals_and_schema_drift(crawled: dict[str, Any]) -> None:
    second = crawled["days"][1]["result"]
    ads = _ads(crawled["settings"])
    day1, day2 = expected(1), expected(2)
    gone, new = set(day1) - set(day2), set(day2) - set(day1)
    changed = {i for i in set(day1) & set(day2) if day2[i].end != day1[i].end}
    assert gone and new and changed
    stats = second["records_stats"]["ads"]
    assert (stats["unseen"], stats["new"], stats["new_versions"]) == (
        len(gone),
        len(new),
        len(changed),
    )
    for ad_id in gone:
        assert ads[ad_id].unseen_since is not None and ads[ad_id].unseen_run_id == second["run"]
    for ad_id in changed:
        assert ads[ad_id].versions == 2
        assert ads[ad_id].current["impressions"]["original"] == day2[ad_id].impressions
        assert ads[ad_id].current["last_shown"] == day2[ad_id].end.isoformat()
    # Ad_Campaigns_List gone, Is_Funded_By_Google_Ad_Grants ("No") added: no change read.
    assert all(ads[i].versions == 1 for i in set(day1) & set(day2) - changed)
    history = ads_versions(crawled["settings"], next(iter(changed)))
    assert {"last_shown", "impressions", "spend"} <= set(history[1]["changed"])
    assert_versions_consistent(open_evidence(crawled["settings"]).index)


# -- creative pages ------------------------------------------------------------------------
@pytest.mark.slow  # Chromium and Scrapy in a subprocess per run
def test_creative_pages_are_rendered_archived_and_linked(crawled: dict[str, Any]) -> None:
    result = crawled["days"][0]["result"]
    creatives = [
        m
        for m in _manifests(crawled["settings"], result)
        if m.capture.get("ads", {}).get("kind") == "creative"
    ]
    newest = sorted(expected(1).values(), key=lambda a: (a.end.isoformat(), a.ad_id), reverse=True)
    assert sorted(m.capture["ads"]["ad_id"] for m in creatives) == sorted(
        a.ad_id for a in newest[:CREATIVES]
    )
    assert result["records_stats"]["ads"]["creatives"] == CREATIVES
    evidence = open_evidence(crawled["settings"])
    ads = _ads(crawled["settings"])
    for manifest in creatives:
        ad = expected(1)[manifest.capture["ads"]["ad_id"]]
        assert manifest.kind == "capture-browser"
        roles = {a.role for a in manifest.artifacts}
        assert {"warc", "screenshot", "dom", "metadata"} <= roles
        dom = evidence.objects.get(next(a.sha256 for a in manifest.artifacts if a.role == "dom"))
        text = dom.decode()
        # Drawn by the page's script from the RPC's answer: absent from the HTML as served.
        assert ad.advertiser.name in text and ad.ad_id in text and "Zuletzt gezeigt" in text
        urls = [u for u, _, _ in _responses(crawled["settings"], manifest)]
        assert any("LookupService/GetCreativeById" in u for u in urls)
        assert "region=DE" in manifest.source_url
        linked = ads[ad.ad_id]
        assert linked.creative_snapshot_id is not None
    shown = ads_show(crawled["settings"], f"google:{newest[0].ad_id}")
    assert shown.creative_snapshot is not None


# -- what goes wrong -----------------------------------------------------------------------
@pytest.mark.slow  # Chromium and Scrapy in a subprocess per run
def test_a_broken_bundle_is_archived_and_reported_unparseable(tmp_path: Path) -> None:
    with GoogleAdsServer() as server:
        server.corrupt = True
        server.fail_first = False
        result = run_crawl(
            tmp_path,
            f"sqlite:///{tmp_path / 'index.sqlite'}",
            "google-ads",
            configured(server),
            ["render_creatives=false"],
        )
    assert result["status"] == "partial"
    archived = [o for o in result["outcomes"] if o["outcome"] == "archived"]
    assert len(archived) == 1 and archived[0]["snapshot"]  # what Google served is kept
    [broken] = [o for o in result["outcomes"] if o["outcome"] == "unparseable"]
    assert "not a zip file" in broken["error"]
    assert result["records"] == 0


def test_settings() -> None:
    spec = sources.get_source("google-ads")
    run = sources.settings_for_run(spec, {}, ["region=de", "region=AT", "render_creatives=false"])
    assert isinstance(run, GoogleAdsSettings)
    assert run.regions == ["DE", "AT"] and not run.uses_browser(True)
    assert run.bundle_url.endswith("/political-csv/google-political-ads-transparency-bundle.zip")
    assert sources.settings_for_run(spec, {}, []).uses_browser(True)
    with pytest.raises(sources.SourceError, match="not a region code"):
        sources.settings_for_run(spec, {}, ["region=Germany"])


# -- the normaliser alone ------------------------------------------------------------------
def _payload(data: bytes, regions: list[str] | None = None) -> Payload:
    block = {"platform": "google", "kind": "page", "regions": regions or ["EU"]}
    return Payload(
        "0" * 64, None, "https://x.test/b.zip", 200, "application/zip", data, None, block
    )


def _zip(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{FOLDER}/{CREATIVE_STATS}", out.getvalue())
    return buffer.getvalue()


def test_the_spider_and_the_normaliser_select_the_same_ads(tmp_path: Path) -> None:
    path = tmp_path / "bundle.zip"
    path.write_bytes(bundle(1))
    for regions in (["EU"], ["DE"], ["AT", "PL"]):
        spider_side = {ad_id for ad_id, _, _ in read_bundle(path, regions)["ads"]}
        records_side = {ad.ad_id for ad in normalise(_payload(bundle(1), regions))}
        assert spider_side == records_side
    assert len(records_side) == len(expected(1, frozenset({"AT", "PL"})))


def test_unknown_columns_duplicates_and_a_missing_eur_range() -> None:
    base = {
        "Ad_ID": "CR1",
        "Regions": "EU,PL",
        "Advertiser_ID": "AR1",
        "Advertiser_Name": "Konfederacja",
        "Impressions": "10000-15000",
        "Spend_Range_Min_EUR": "",
        "Spend_Range_Max_EUR": "",
        "Spend_Range_Min_PLN": "0",
        "Spend_Range_Max_PLN": "250",
        "Spend_Range_Min_USD": "0",
        "Spend_Range_Max_USD": "60",
        "Ad_Topic": "Wybory",
    }
    other = base | {"Regions": "EU,DE", "Ad_Topic": ""}
    us = base | {"Ad_ID": "CR2", "Regions": "US"}
    [ad] = normalise(_payload(_zip([base, other, us])))
    assert ad.ad_id == "CR1" and ad.countries == ["PL"]
    assert (ad.spend.lower, ad.spend.upper, ad.spend.currency) == (0, 250, "PLN")
    assert ad.extra["spend_ranges"] == {"USD": "0-60"}
    assert (ad.impressions.lower, ad.impressions.upper) == (10_000, 15_000)
    assert ad.extra["unknown_columns"] == {"Ad_Topic": "Wybory"}
    assert ad.extra["other_rows"][0]["Regions"] == "EU,DE"
    assert ad.targeting.ages == [] and ad.first_shown is None  # missing columns tolerated
    assert [a.ad_id for a in normalise(_payload(_zip([base, us]), ["US"]))] == ["CR2"]


def test_what_is_not_a_bundle_is_refused() -> None:
    with pytest.raises(ValueError, match="not a zip file"):
        list(normalise(_payload(b"<html>Service Unavailable</html>")))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "nothing here")
    with pytest.raises(ValueError, match=r"has no google-political-ads-creative-stats\.csv"):
        list(normalise(_payload(buffer.getvalue())))
