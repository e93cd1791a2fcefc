"""The `x-ads` source end to end against the imitation X Ads Repository (fixtures/x_ads):
export jobs created, polled and downloaded, every answer archived, a 429 waited out, the
CSVs normalised into the real index (SQLite and PostgreSQL), day 2 with schema drift,
changed, new and vanished ads; empty exports, a failed job, a malformed CSV, an expired
token. The normaliser is also tested on its own (fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from warcio.archiveiterator import ArchiveIterator

from crawlers.spiders.x_ads import XAdsSettings
from evidence_store.manifest import parse_manifest
from fixtures.x_ads import DEFAULT_ACCOUNTS, EXPIRED_TOKEN, XAdsServer, expected, find_account
from fixtures.x_ads.ads import ACCOUNTS, export_csv
from jobs import sources
from jobs.ads import ads_show, ads_versions
from jobs.config import load_settings
from jobs.context import open_evidence
from records.ads.models import Ad, AdVersion
from records.ads.parse import Payload
from records.ads.platforms.x import normalise
from records.ads.store import query_key
from tests.conftest import DB_KINDS, PG_ADMIN_URL, _pg_admin
from tests.test_ads_core import assert_versions_consistent

START, END = date(2024, 1, 1), date(2025, 12, 31)
RANGE = [f"date_from={START}", f"date_to={END}"]
ACCOUNT_ARGS = [f"account={a}" for a in DEFAULT_ACCOUNTS]

# A spider runs Twisted's reactor, which starts once per process: each run is a subprocess
# calling jobs.crawl.crawl, as `evidence crawl` and the scheduler do.
_RUN = """
import json, sys
from pathlib import Path
from jobs.config import load_settings
from jobs.crawl import crawl
args = json.loads(sys.argv[1])
settings = load_settings(
    data_dir=Path(args["data_dir"]), db_url=args["db_url"], allow_private=True,
    sources=args["sources"],
)
print(json.dumps(crawl(settings, args["source"], args["arguments"]).to_dict()))
"""


def run_crawl(
    root: Path,
    db_url: str,
    source: str,
    configured: dict[str, Any],
    arguments: list[str],
    *,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One run of ``source`` in a subprocess; its CrawlResult as JSON."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    args = {
        "data_dir": str(root / "data"),
        "db_url": db_url,
        "sources": {source: configured},
        "source": source,
        "arguments": arguments,
    }
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(args)],
        env=clean | (env or {}),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise AssertionError(f"crawl {source} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=DB_KINDS)
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The index for the module's two-day crawl: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('x-ads-index') / 'index.sqlite'}"
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
def server(db_url: str) -> Iterator[XAdsServer]:
    """A fresh repository per index (its clock and rate limits start again)."""
    with XAdsServer() as running:
        yield running


def configured(server: XAdsServer) -> dict[str, Any]:
    return {"api_base": server.api_base, "poll_interval": 0.05, "backoff": 0.5}


@pytest.fixture(scope="module")
def crawled(
    server: XAdsServer, db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Two days of the source over every kind of account the fixture has (but the broken)."""
    root = tmp_path_factory.mktemp("x-ads")
    token = {"EVIDENCE_SOURCES__X_ADS__BEARER_TOKEN": server.token}
    days = []
    for day in (1, 2):
        server.day = day
        server.reset_stats()
        result = run_crawl(
            root, db_url, "x-ads", configured(server), ACCOUNT_ARGS + RANGE, env=token
        )
        days.append(
            {"result": result, "requests": list(server.requests), "hits": dict(server.hits)}
        )
    settings = load_settings(data_dir=root / "data", db_url=db_url)
    return {"root": root, "settings": settings, "days": days, "server": server}


def _ads(settings: Any) -> dict[str, Ad]:
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        rows = session.scalars(select(Ad).where(Ad.platform == "x")).all()
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


def _all_expected(day: int) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for handle in DEFAULT_ACCOUNTS:
        found |= expected(find_account(handle), day, START, END)
    return found


# -- the crawl -----------------------------------------------------------------------------
def test_every_job_is_polled_and_every_export_archived(crawled: dict[str, Any]) -> None:
    first = crawled["days"][0]
    result = first["result"]
    assert result["status"] == "succeeded", result["counts"]
    manifests = _manifests(crawled["settings"], result)
    roles = [m.capture["x_ads"]["role"] for m in manifests]
    # One job per account (the 429 and its retry are one snapshot), polls until ready, one CSV.
    assert roles.count("create-job") == len(DEFAULT_ACCOUNTS)
    assert roles.count("export") == len(DEFAULT_ACCOUNTS)
    polls = sum(find_account(a).polls + 1 for a in DEFAULT_ACCOUNTS)
    assert roles.count("job-status") == polls
    hits = first["hits"]
    assert hits["/12/ads_repository/export_jobs"] == len(DEFAULT_ACCOUNTS) + 1  # @CDU twice
    # In the order they were captured (outcomes arrive in the order the pipeline finished them).
    spd = sorted(
        (m for m in manifests if m.capture["x_ads"]["account"] == "@spdde"),
        key=lambda m: m.captured_at,
    )
    statuses = [
        m.capture["x_ads"].get("status") for m in spd if m.capture["x_ads"]["role"] == "job-status"
    ]
    assert statuses == ["PROCESSING", "PROCESSING", "PROCESSING", "SUCCESS"]
    exports = [m for m in manifests if m.capture["x_ads"]["role"] == "export"]
    assert {m.capture["ads"]["account"] for m in exports} == set(DEFAULT_ACCOUNTS)
    assert all(m.capture["ads"]["platform"] == "x" for m in exports)
    # The job answers are evidence, not ads: no `ads` block on them.
    assert all("ads" not in m.capture for m in manifests if m.capture["x_ads"]["role"] != "export")


def test_a_rate_limit_is_waited_out_and_kept_in_the_same_snapshot(crawled: dict[str, Any]) -> None:
    first = crawled["days"][0]
    creates = [
        r
        for r in first["requests"]
        if r.path == "/12/ads_repository/export_jobs" and b'"@CDU"' in r.body
    ]
    assert len(creates) == 2
    assert creates[1].at - creates[0].at >= crawled["server"].retry_after * 0.95
    manifest = next(
        m
        for m in _manifests(crawled["settings"], first["result"])
        if m.capture["x_ads"]["account"] == "@CDU" and m.capture["x_ads"]["role"] == "create-job"
    )
    attempts = manifest.capture["attempts"]
    assert attempts[0]["status"] == 429 and attempts[0]["waited_s"] >= 1
    evidence = open_evidence(crawled["settings"])
    warc = next(a for a in manifest.artifacts if a.role == "warc")
    with evidence.objects.open(warc.sha256) as stream:
        statuses = [
            int(r.http_headers.get_statuscode())
            for r in ArchiveIterator(stream)
            if r.rec_type == "response"
        ]
    assert statuses == [429, 201]
    assert manifest.capture["outcome"] == "archived"


def test_ads_are_normalised_field_by_field(crawled: dict[str, Any]) -> None:
    ads = _ads(crawled["settings"])
    day1 = _all_expected(1)
    assert set(day1) <= set(ads)
    assert len(day1) == 194
    spd = next(a for a in day1.values() if a.account.handle == "spdde" and a.keywords)
    fields = ads[spd.ad_id]
    history = ads_versions(crawled["settings"], f"x:{spd.ad_id}")
    first = history[0]
    evidence = open_evidence(crawled["settings"])
    with evidence.index.session() as session:
        version = session.scalars(
            select(AdVersion).where(AdVersion.ad_pk == fields.id, AdVersion.number == 1)
        ).one()
        got = version.fields
    assert first["snapshot"] == version.snapshot_id and first["warc_record"]
    assert got["advertiser_name"] == "SPD" and got["page_name"] == "@spdde"
    assert got["advertiser_id"] == "18ce54d4x5t"
    assert got["funding_entity"] == "SPD-Parteivorstand, Wilhelmstraße 141, 10963 Berlin"
    assert got["first_shown"] == spd.start.isoformat() and got["last_shown"] == spd.end.isoformat()
    assert got["impressions"] == {
        "lower": spd.impressions,
        "upper": spd.impressions,
        "original": str(spd.impressions),
    }
    assert got["spend"] == {
        "lower": spd.spend[0],
        "upper": spd.spend[1],
        "original": f"{spd.spend[0]}-{spd.spend[1]}",
        "currency": "EUR",
    }
    targeting = got["targeting"]
    assert targeting["ages"] == spd.ages and targeting["genders"] == [spd.gender]
    assert targeting["locations_included"] == spd.locations
    assert targeting["interests"] == spd.interests
    assert targeting["other"]["keywords"] == spd.keywords
    assert targeting["audiences"] == [f"Follower look-alikes: {h}" for h in spd.lookalikes]
    assert got["creative"]["bodies"] == [spd.text]
    assert got["creative"]["links"] == [spd.destination]
    assert got["snapshot_url"] == f"https://x.com/spdde/status/{spd.tweet_id}"
    assert got["countries"] == ["DE"] and got["extra"]["tweet_id"] == spd.tweet_id
    # Special categories come from the targeting: a union keyword, a religion interest.
    union = [a for a in day1.values() if "Gewerkschaft" in a.keywords]
    assert union and all("trade_union_membership" in ads[a.ad_id].special_categories for a in union)
    religion = [a for a in day1.values() if "Christianity" in a.interests]
    assert religion and all(
        "religious_beliefs" in ads[a.ad_id].special_categories for a in religion
    )
    # The account whose export lacks two known columns: tolerated, fields left empty.
    left = next(a for a in day1.values() if a.account.handle == "Linksfraktion")
    assert ads[left.ad_id].current["creative"]["links"] == []
    assert ads[left.ad_id].current["targeting"]["languages"] == []


def test_day_two_versions_removals_and_schema_drift(crawled: dict[str, Any]) -> None:
    second = crawled["days"][1]["result"]
    assert second["status"] == "succeeded"
    ads = _ads(crawled["settings"])
    day1, day2 = _all_expected(1), _all_expected(2)
    gone = set(day1) - set(day2)
    new = set(day2) - set(day1)
    changed = {i for i in set(day1) & set(day2) if day2[i].impressions != day1[i].impressions}
    assert gone and new and changed
    stats = second["records_stats"]["ads"]
    assert stats["unseen"] == len(gone) and stats["new"] == len(new)
    assert stats["new_versions"] == len(changed)
    for ad_id in gone:
        assert ads[ad_id].unseen_since is not None
        assert ads[ad_id].unseen_run_id == second["run"]
    for ad_id in changed:
        row = ads[ad_id]
        assert row.versions == 2 and row.unseen_since is None
        assert row.current["impressions"]["lower"] == day2[ad_id].impressions
        # The column X added on day 2 is kept, under its own name.
        assert row.current["extra"]["unknown_columns"] == {"Placement": day2[ad_id].placement}
    # "Paid For By" became "Funding Entity": the same field, so no new version for the rest.
    unchanged = set(day1) & set(day2) - changed
    assert all(ads[i].versions == 1 for i in unchanged)
    assert all(ads[i].current["funding_entity"] for i in unchanged)
    # Every changed ad's history names what changed (not only a set member picked by the
    # hash seed: spend and last_shown change for some of them only).
    for ad_id in sorted(changed):
        history = ads_versions(crawled["settings"], ad_id)
        assert {"impressions", "extra"} <= set(history[1]["changed"]), ad_id
    assert_versions_consistent(open_evidence(crawled["settings"]).index)


def test_empty_exports_are_archived_and_give_no_ads(crawled: dict[str, Any]) -> None:
    result = crawled["days"][0]["result"]
    exports = {
        m.capture["ads"]["account"]: m
        for m in _manifests(crawled["settings"], result)
        if m.capture["x_ads"]["role"] == "export"
    }
    header_only = exports["@FREIEWAEHLER_BV"]
    assert header_only.capture["x_ads"]["empty_export"] == "header-only"
    assert header_only.capture["ads"]["pages"] == 1  # a whole answer, though empty
    zero = exports["@oedp_de"]
    assert zero.capture["x_ads"]["empty_export"] == "zero-bytes"
    assert zero.capture["x_ads"]["bytes"] == 0
    assert "pages" not in zero.capture["ads"]  # cannot be told from a broken transfer
    ads = _ads(crawled["settings"])
    assert not [a for a in ads.values() if a.advertiser_name in ("FREIE WÄHLER", "ÖDP")]


def test_the_token_is_in_no_stored_byte(crawled: dict[str, Any]) -> None:
    token = crawled["server"].token
    needles = {token.encode(), token.replace("%2B", "+").encode()}
    data = crawled["root"] / "data"
    checked = 0
    for path in data.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            checked += 1
            assert not any(n in content for n in needles), path
    assert checked > 50
    # The requests did carry it (so the check above means something).
    first = crawled["days"][0]["requests"][0]
    assert first.headers["Authorization"] == f"Bearer {token}"
    # ... and what `evidence ads show` prints from the index carries it nowhere either.
    some = next(iter(_ads(crawled["settings"])))
    shown = ads_show(crawled["settings"], f"x:{some}").to_dict()
    assert token not in json.dumps(shown)
    assert shown["versions_from"][0]["warc_record"].startswith("<urn:uuid:")


def test_the_query_key_is_the_records_key(crawled: dict[str, Any]) -> None:
    manifests = _manifests(crawled["settings"], crawled["days"][0]["result"])
    export = next(m for m in manifests if m.capture["x_ads"]["role"] == "export")
    block = export.capture["ads"]
    assert block["query_key"] == query_key("x-ads", block["query"])
    assert block["query"] == {
        "account": block["account"],
        "country": "DE",
        "date_from": START.isoformat(),
        "date_to": END.isoformat(),
    }


# -- what goes wrong -----------------------------------------------------------------------
def test_a_failed_job_and_a_malformed_export_make_the_run_partial(tmp_path: Path) -> None:
    with XAdsServer() as server:
        result = run_crawl(
            tmp_path,
            f"sqlite:///{tmp_path / 'index.sqlite'}",
            "x-ads",
            configured(server),
            ["account=@dieBasis_Partei", "account=@Tierschutzpartei", "account=@fdp", *RANGE],
            env={"EVIDENCE_SOURCES__X_ADS__BEARER_TOKEN": server.token},
        )
    assert result["status"] == "partial"
    failed = [o for o in result["outcomes"] if o["outcome"] == "export-failed"]
    assert len(failed) == 1 and failed[0]["snapshot"]  # the FAILED answer is archived
    assert "EXPORT_FAILED" not in failed[0]["error"] and "could not be built" in failed[0]["error"]
    broken = [o for o in result["outcomes"] if o["outcome"] == "unparseable"]
    assert len(broken) == 1 and "not well-formed CSV" in broken[0]["error"]
    assert result["records"] == len(expected(find_account("@fdp"), 1, START, END))
    assert result["records_stats"]["ads"]["unseen"] == 0


def test_an_expired_token_ends_the_run_without_a_crash(tmp_path: Path) -> None:
    with XAdsServer() as server:
        result = run_crawl(
            tmp_path,
            f"sqlite:///{tmp_path / 'index.sqlite'}",
            "x-ads",
            configured(server),
            ["account=@spdde", "account=@CDU", *RANGE],
            env={"EVIDENCE_SOURCES__X_ADS__BEARER_TOKEN": EXPIRED_TOKEN},
        )
        hits = dict(server.hits)
    assert result["status"] == "failed"
    [outcome] = result["outcomes"]
    assert outcome["outcome"] == "auth-failed" and outcome["snapshot"] is None
    assert "Invalid or expired token" in outcome["error"]
    assert "EVIDENCE_SOURCES__X_ADS__BEARER_TOKEN" in outcome["error"]
    assert EXPIRED_TOKEN not in json.dumps(result)
    assert hits == {"/12/ads_repository/export_jobs": 1}  # nothing asked after the refusal


def test_no_token_is_a_clear_outcome(tmp_path: Path) -> None:
    with XAdsServer() as server:
        result = run_crawl(
            tmp_path,
            f"sqlite:///{tmp_path / 'index.sqlite'}",
            "x-ads",
            configured(server),
            ["account=@spdde", *RANGE],
        )
        assert not server.hits
    assert result["status"] == "failed"
    assert result["outcomes"][0]["outcome"] == "auth-failed"
    assert "bearer_token" in result["outcomes"][0]["error"]


# -- settings ------------------------------------------------------------------------------
def test_settings_take_accounts_per_run_and_the_token_only_from_configuration() -> None:
    spec = sources.get_source("x-ads")
    run = sources.settings_for_run(
        spec, {}, ["account=@spdde", "account=18ce55a1b2c", "country=el", "date_from=2025-01-01"]
    )
    assert isinstance(run, XAdsSettings)
    assert run.accounts == ["@spdde", "18ce55a1b2c"] and run.country == "GR"
    assert run.api_base == "https://ads-api.x.com/12" and run.date_to is None
    with pytest.raises(sources.SourceError, match="never taken from the command line"):
        sources.parse_arguments(spec, ["bearer_token=abc"])
    with pytest.raises(sources.SourceError, match="not an EU member state"):
        sources.settings_for_run(spec, {}, ["country=US"])
    with pytest.raises(sources.SourceError, match="before date_from"):
        sources.settings_for_run(spec, {}, ["date_from=2025-02-01", "date_to=2025-01-01"])


# -- the normaliser alone ------------------------------------------------------------------
def _payload(body: bytes, **ads: Any) -> Payload:
    block = {"platform": "x", "kind": "page", "account": "@someone", "country": "DE"} | ads
    return Payload("0" * 64, None, "https://x.test/f.csv", 200, "text/csv", body, None, block)


def test_unknown_columns_are_kept_and_missing_ones_tolerated() -> None:
    body = (
        "Tweet ID,Advertiser,Paid by,Impressions,Spend,Currency,Brand Safety,Age\r\n"
        '111,Volt,"Volt Deutschland e.V.",≤ 10k,153.27,EUR,strict,"18-24, 25-34"\r\n'
    ).encode()
    [ad] = normalise(_payload(body))
    assert ad.ad_id == "111" and ad.advertiser_name == "Volt" and ad.page_name == "@someone"
    assert ad.funding_entity == "Volt Deutschland e.V."
    assert (ad.impressions.lower, ad.impressions.upper) == (0, 10_000)
    assert (ad.spend.lower, ad.spend.upper, ad.spend.original) == (153, 154, "153.27")
    assert ad.targeting.ages == ["18-24", "25-34"]
    assert ad.extra["unknown_columns"] == {"Brand Safety": "strict"}
    assert ad.first_shown is None and ad.creative.bodies == []


def test_empty_and_broken_exports() -> None:
    assert list(normalise(_payload(b""))) == []
    assert list(normalise(_payload(b"\xef\xbb\xbfAd ID,Tweet ID,Spend\r\n"))) == []
    with pytest.raises(ValueError, match="no column names the ad"):
        list(normalise(_payload(b"Advertiser,Spend\r\nSPD,100\r\n")))
    with pytest.raises(ValueError, match="cells for"):
        list(normalise(_payload(b"Ad ID,Spend\r\n1,100,extra\r\n")))
    with pytest.raises(ValueError, match="not UTF-8"):
        list(normalise(_payload(b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xff\xfe")))


def test_every_fixture_export_normalises() -> None:
    for account in ACCOUNTS:
        body = export_csv(account, 2, START, END)
        if account.export == "malformed":
            with pytest.raises(ValueError):
                list(normalise(_payload(body)))
            continue
        ads = list(normalise(_payload(body, account=f"@{account.handle}")))
        assert len(ads) == len(expected(account, 2, START, END))
