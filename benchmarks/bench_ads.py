"""ads: normalise and index N Meta fixture ads (default 100,000) into SQLite and PostgreSQL,
against plain JSON parsing (``json.loads``) of the same API pages in the same run.

Goal: ads/s of normalise + index at least 0.3 of the ads/s of ``json.loads``, on each database.

Setup, not measured: the ads come from the Meta fixture's generator (``fixtures.meta_ads.data``,
the same ads the fixture server sends, ``N`` of them instead of its few hundred), served as the
Ad Library API sends them (the spider's ``fields``, the snapshot URL with the token redacted as
the archive stores it, slashes escaped) in pages of ``--page-ads`` (default 500) with their
``paging`` block. One real snapshot is archived into a temporary store; every version points
at it (versions reference snapshot ids only). Each database gets a fresh, migrated index: the
SQLite file of that store, and a new PostgreSQL database (127.0.0.1:5432, trust auth, as
tests/conftest.py; ``$BENCH_PG_ADMIN_URL`` or ``$TEST_PG_ADMIN_URL`` to point elsewhere).

Measured, in a child process per database (its peak RSS is its own): the baseline, the best of
three rounds of ``json.loads`` over every page; then, page by page as ``records.ads.parse``
does it, ``records.ads.platforms.meta.normalise`` over a ``Payload`` of the page and
``records.ads.store.record_ads`` in one transaction per page (``index.writing``). The time of
normalise and of the transaction are also summed apart. Informative, a second baseline: the
floor of indexing, ``json.loads`` of each page and one ``executemany`` INSERT of its ads' JSON
as they came (one row per ad, one transaction per page) into a scratch table of the same
database. ``--again`` indexes the same pages a second time (every ad unchanged: a nightly
run's steady state). ``--profile`` runs the SQLite child under cProfile and prints where the
time went.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import Figure, figure, peak_rss_mib, report, timed

DEFAULT_ADS = 100_000
PAGE_ADS = 500
GOAL_RATIO = 0.3
REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = (
    os.environ.get("BENCH_PG_ADMIN_URL")
    or os.environ.get("TEST_PG_ADMIN_URL")
    or "postgresql://postgres@127.0.0.1:5432/postgres"
)
QUERY = {"countries": ["DE"], "ad_type": "POLITICAL_AND_ISSUE_ADS", "ad_active_status": "ALL"}
API = "https://graph.facebook.com/v23.0"


# -- setup: the API pages ----------------------------------------------------------------------


def served(ad: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """The ad as the API sends it (fixtures/meta_ads/server.py ``_served``), the token redacted
    as the archive keeps it."""
    full = dict(ad)
    full["ad_snapshot_url"] = (
        f"https://www.facebook.com/ads/archive/render_ad/?id={ad['id']}&access_token=REDACTED"
    )
    out = {"id": full["id"]}
    for name in fields:
        if name in full and name != "topic":
            out[name] = full[name]
    if "total_reach_by_location" in full:  # schema drift: sent though nobody asked
        out["total_reach_by_location"] = full["total_reach_by_location"]
    return out


def build_pages(count: int, per_page: int) -> list[bytes]:
    """``count`` fixture ads as ``ads_archive`` answers of ``per_page`` ads each."""
    from crawlers.spiders.meta_ads import DEFAULT_FIELDS
    from fixtures.meta_ads import data

    ads = data.ads(1, count)
    pages = []
    for offset in range(0, len(ads), per_page):
        chunk = [served(ad, DEFAULT_FIELDS) for ad in ads[offset : offset + per_page]]
        answer: dict[str, Any] = {
            "data": chunk,
            "paging": {
                "cursors": {"before": f"offset:{offset}", "after": f"offset:{offset + len(chunk)}"}
            },
        }
        if offset + per_page < len(ads):
            answer["paging"]["next"] = f"{API}/ads_archive?after=offset:{offset + len(chunk)}"
        # The Graph API escapes slashes (and every non-ASCII character, json.dumps's default).
        pages.append(json.dumps(answer).replace("/", "\\/").encode())
    return pages


def archive_one_snapshot(root: Path) -> str:
    """One real snapshot in a fresh store (its SQLite index is the SQLite figure's index)."""
    from benchmarks.bench_store import open_evidence
    from evidence_store.archive import archive
    from schemas import Capture, CaptureArtifact

    evidence = open_evidence(root)
    capture = Capture(
        collection="bench-ads",
        kind="capture-http",
        source="meta-ads",
        source_url=f"{API}/ads_archive?access_token=REDACTED",
        metadata={"ads": {"platform": "meta", "kind": "page", "query": QUERY}},
        artifacts=[CaptureArtifact(role="original", name="page.json", data=b'{"data": []}')],
    )
    snapshot = archive(evidence, capture).id
    evidence.index.dispose()
    return snapshot


def fresh_pg_database() -> tuple[str, str] | None:
    """(URL, name) of a new, migrated PostgreSQL database; None if the server is not there."""
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except Exception as exc:
        print(f"ads: PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
        return None
    from evidence_store.index import Index

    name = f"evidence_bench_ads_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    index = Index(url)
    index.upgrade()
    index.dispose()
    return url, name


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the child: baseline and ours, one database ------------------------------------------------


def _child(args: dict[str, Any]) -> dict[str, Any]:
    from evidence_store.index import Index
    from records.ads.parse import Payload
    from records.ads.platforms.meta import normalise
    from records.ads.store import Provenance, RecordStats, query_key, record_ads

    pages = Path(args["pages"]).read_bytes().split(b"\n")
    best = float("inf")
    for _ in range(3):
        with timed() as t:
            for page in pages:
                json.loads(page)
        best = min(best, t["seconds"])
    key = query_key("meta-ads", QUERY)
    run_id = str(uuid.uuid4())
    payloads = [
        Payload(
            snapshot_id=args["snapshot"],
            record_id=f"<urn:uuid:{uuid.uuid4()}>",
            url=f"{API}/ads_archive?access_token=REDACTED",
            status=200,
            media_type="application/json; charset=UTF-8",
            body=page,
            name=None,
            ads={"platform": "meta", "kind": "page", "query_key": key, "page": n, "query": QUERY},
        )
        for n, page in enumerate(pages, 1)
    ]
    index = Index(args["db_url"])
    index.ensure_schema()
    floor = _floor(index, pages)
    profiler = None
    if args.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    passes = []
    for _ in range(2 if args.get("again") else 1):
        totals = RecordStats()
        normalising = indexing = 0.0
        seen_at = datetime.now(UTC)
        if profiler is not None:
            profiler.enable()
        with timed() as t:
            for payload in payloads:
                start = time.perf_counter()
                records = list(normalise(payload))
                middle = time.perf_counter()
                with index.writing("ads:meta") as session:
                    totals.add(
                        record_ads(
                            session,
                            records,
                            Provenance(payload.snapshot_id, payload.record_id, run_id, seen_at),
                            query_key=key,
                        )
                    )
                normalising += middle - start
                indexing += time.perf_counter() - middle
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args["profile"])
            profiler = None  # the first pass only
        passes.append(
            {
                "seconds": t["seconds"],
                "normalise_s": normalising,
                "index_s": indexing,
                "ads": totals.ads,
                "new_ads": totals.new_ads,
                "unchanged": totals.unchanged,
            }
        )
    index.dispose()
    return {
        "pages": len(pages),
        "json_seconds": best,
        "floor_seconds": floor,
        "passes": passes,
        "peak_rss_mib": peak_rss_mib(),
    }


def _floor(index: Any, pages: list[bytes]) -> float:
    """Seconds to parse every page and insert each ad's JSON as it came, one row per ad, with
    one executemany and one transaction per page: the floor of indexing (a scratch table,
    dropped afterwards)."""
    from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, insert

    metadata = MetaData()
    raw = Table(
        "bench_raw_ads",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("ad_id", String(200)),
        Column("body", JSON),
    )
    metadata.create_all(index.engine)
    with timed() as t:
        for page in pages:
            ads = json.loads(page)["data"]
            with index.engine.begin() as conn:
                conn.execute(insert(raw), [{"ad_id": ad["id"], "body": ad} for ad in ads])
    metadata.drop_all(index.engine)
    return t["seconds"]


def in_child(args: dict[str, Any]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_ads", "--child", json.dumps(args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench_ads child failed:\n{proc.stderr or proc.stdout}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_profile(path: str) -> None:
    import pstats

    print(f"\n-- cProfile of normalise + record_ads on SQLite ({path}), by own time")
    pstats.Stats(path).sort_stats("tottime").print_stats(25)
    print("-- by cumulative time")
    pstats.Stats(path).sort_stats("cumulative").print_stats(40)


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--ads",
        type=int,
        default=int(os.environ.get("BENCH_ADS") or DEFAULT_ADS),
        help=f"ads to index (default $BENCH_ADS or {DEFAULT_ADS:,})",
    )
    parser.add_argument("--page-ads", type=int, default=PAGE_ADS, help="ads per API page")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--again", action="store_true", help="index the same pages twice")
    parser.add_argument("--profile", default=None, help="profile the SQLite child into FILE")
    args = parser.parse_args(argv)
    load = round(os.getloadavg()[0], 1)
    work = Path(tempfile.mkdtemp(prefix="bench-ads-"))
    pg_name = None
    try:
        with timed() as t:
            pages = build_pages(args.ads, args.page_ads)
            (work / "pages.jsonl").write_bytes(b"\n".join(pages))
            snapshot = archive_one_snapshot(work / "store")
        payload_mb = sum(len(p) for p in pages) / 1e6
        print(
            f"ads: {args.ads:,} ads in {len(pages)} pages ({payload_mb:,.1f} MB of JSON) made "
            f"in {t['seconds']:.1f} s"
        )
        del pages
        databases: list[tuple[str, str]] = []
        if args.db in ("sqlite", "both"):
            databases.append(("SQLite", f"sqlite:///{work / 'store' / 'index.sqlite'}"))
        if args.db in ("postgresql", "both"):
            fresh = fresh_pg_database()
            if fresh is not None:
                databases.append(("PostgreSQL", fresh[0]))
                pg_name = fresh[1]
        results: dict[str, dict[str, Any]] = {}
        for label, url in databases:
            child_args: dict[str, Any] = {
                "pages": str(work / "pages.jsonl"),
                "snapshot": snapshot,
                "db_url": url,
                "again": args.again,
            }
            if args.profile and label == "SQLite":
                child_args["profile"] = args.profile
            result = in_child(child_args)
            if result["passes"][0]["ads"] != args.ads:
                raise SystemExit(f"{label}: indexed {result['passes'][0]['ads']} of {args.ads}")
            results[label] = result
            first = result["passes"][0]
            print(
                f"ads: {label}: {args.ads / first['seconds']:,.0f} ads/s "
                f"(json.loads {args.ads / result['json_seconds']:,.0f} ads/s)"
            )

        figures: dict[str, float | int | str] = {
            "ads (N)": args.ads,
            "ads per page": args.page_ads,
            "pages": len(range(0, args.ads, args.page_ads)),
            "JSON MB": round(payload_mb, 1),
            "load average at start": load,
        }
        made: list[Figure] = []
        for label, result in results.items():
            json_rate = args.ads / result["json_seconds"]
            first = result["passes"][0]
            rate = args.ads / first["seconds"]
            figures |= {
                f"{label}: json.loads ads/s": round(json_rate),
                f"{label}: normalise+index ads/s": round(rate),
                f"{label}: ratio to json.loads": rate / json_rate,
                f"{label}: floor ads/s (json.loads + executemany INSERT)": round(
                    args.ads / result["floor_seconds"]
                ),
                f"{label}: ratio to the floor": rate / (args.ads / result["floor_seconds"]),
                f"{label}: normalise ms/ad": first["normalise_s"] / args.ads * 1000,
                f"{label}: record_ads+commit ms/ad": first["index_s"] / args.ads * 1000,
                f"{label}: child peak RSS MiB": round(result["peak_rss_mib"]),
            }
            made.append(
                figure(
                    "ads",
                    f"normalise+index ads/s ({label})",
                    rate,
                    unit="ads/s",
                    baseline=json_rate,
                    baseline_name="json.loads ads/s",
                    goal=GOAL_RATIO,
                    note=(
                        f"{args.ads:,} ads in pages of {args.page_ads}; normalise "
                        f"{first['normalise_s'] / args.ads * 1000:.2f} ms/ad, record_ads+commit "
                        f"{first['index_s'] / args.ads * 1000:.2f} ms/ad"
                    ),
                )
            )
            made.append(
                figure(
                    "ads",
                    f"normalise+index ads/s vs the floor ({label})",
                    rate,
                    unit="ads/s",
                    baseline=args.ads / result["floor_seconds"],
                    baseline_name="ads/s json.loads + executemany INSERT of raw ads",
                )
            )
            if len(result["passes"]) > 1:
                again = result["passes"][1]
                again_rate = args.ads / again["seconds"]
                figures[f"{label}: again (unchanged) ads/s"] = round(again_rate)
                made.append(
                    figure(
                        "ads",
                        f"re-index, all unchanged, ads/s ({label})",
                        again_rate,
                        unit="ads/s",
                        baseline=json_rate,
                        baseline_name="json.loads ads/s",
                        goal=GOAL_RATIO,
                    )
                )
        figures["goal ratio (at least)"] = GOAL_RATIO
        figures["cores"] = os.cpu_count() or 1
        report("ads", figures)
        if args.profile:
            print_profile(args.profile)
        return made
    finally:
        if pg_name is not None:
            drop_pg_database(pg_name)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(_child(json.loads(sys.argv[2]))))
    else:
        main()
