"""The DSA Transparency Database imitation, over real HTTP on 127.0.0.1 and real zip files."""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import re
import subprocess
import sys
import time
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from fixtures.dsa_sor import (
    FULL_COLUMNS_V1,
    FULL_COLUMNS_V2,
    LIGHT_EXCLUDED,
    DsaSorServer,
    DumpSpec,
    corrupt_part,
    csv_bytes,
    dump_columns,
    generate_rows,
    platform_slug,
    real_rows,
    write_dump,
    write_sha1,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "fixtures" / "dsa_sor" / "data"
TIMEOUT = 10
TOKEN = "test-token"
DUP_UUID = "03b1b1c9-a860-4bf6-afff-0d8f0d944871"


@pytest.fixture(scope="module")
def server() -> Iterator[DsaSorServer]:
    # A high limit so that the many research tests here never meet it; see test_rate_limit.
    with DsaSorServer(research_rate_limit=10_000) as running:
        yield running


def fetch(
    server: DsaSorServer,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, Message, bytes]:
    """One raw request on a fresh connection."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def download(
    server: DsaSorServer, day: str, platform: str = "global", variant: str = "full"
) -> tuple[bytes, bytes]:
    """(zip bytes, sidecar body) of one dump, via urllib like a client would."""
    url = server.dump_url(day, platform, variant)
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        assert response.headers["Content-Type"] == "application/zip"
        data = response.read()
    with urllib.request.urlopen(url + ".sha1", timeout=TIMEOUT) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        sidecar = response.read()
    return data, sidecar


def read_all(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    """(header of the first CSV, every row of every CSV) of a dump, checking all headers agree."""
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    with zipfile.ZipFile(io.BytesIO(data)) as outer:
        for part in outer.namelist():
            with zipfile.ZipFile(io.BytesIO(outer.read(part))) as inner:
                for name in inner.namelist():
                    text = inner.read(name).decode("utf-8")
                    reader = csv.DictReader(io.StringIO(text, newline=""))
                    rows.extend(reader)
                    assert reader.fieldnames is not None
                    header = header or list(reader.fieldnames)
                    assert list(reader.fieldnames) == header
    assert header is not None
    return header, rows


def research(
    server: DsaSorServer, endpoint: str, payload: Any, token: str | None = TOKEN
) -> tuple[int, Message, Any]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, response_headers, raw = fetch(
        server, f"/api/v1/research/{endpoint}", method="POST", headers=headers, body=body
    )
    assert response_headers["Content-Type"] == "application/json"
    return status, response_headers, json.loads(raw)


# --------------------------------------------------------------------------------------------
# Data and pure functions
# --------------------------------------------------------------------------------------------


def test_data_files_are_the_documented_bytes() -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in readme and "10.2906/134353607485211" in readme
    listed = dict(
        (name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+\.csv)$", readme, re.M)
    )
    assert len(listed) == 2
    for name, digest in listed.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest


def test_real_rows_and_column_lists() -> None:
    old, new = real_rows(1), real_rows(2)
    assert len(old) == 50 and len(new) == 50
    assert [row["uuid"] for row in old[:2]] == [DUP_UUID, DUP_UUID]  # the source's duplicate
    assert old[0] == old[1]
    assert tuple(old[0]) == FULL_COLUMNS_V1 and len(FULL_COLUMNS_V1) == 37
    assert tuple(new[0]) == FULL_COLUMNS_V2 and len(FULL_COLUMNS_V2) == 38
    assert [c for c in FULL_COLUMNS_V2 if c not in FULL_COLUMNS_V1] == ["content_id_ean"]
    light = dump_columns(2, "light")
    assert set(LIGHT_EXCLUDED) <= set(FULL_COLUMNS_V1)
    assert list(light) == [c for c in FULL_COLUMNS_V2 if c not in LIGHT_EXCLUDED]
    assert len(light) == 27
    real_rows(2)[0]["uuid"] = "changed"
    assert real_rows(2)[0]["uuid"] != "changed"  # callers get copies


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("TikTok", "tiktok"),
        ("X", "x"),
        ("Google Shopping", "google-shopping"),
        ("Discord Netherlands B.V.", "discord-netherlands-b-v"),
        ("Hotel Hideaway", "hotel-hideaway"),
        ("  LinkedIn -- Ireland ", "linkedin-ireland"),
    ],
)
def test_platform_slug(name: str, slug: str) -> None:
    assert platform_slug(name) == slug


def test_generate_rows_is_deterministic_and_realistic() -> None:
    for schema, columns in ((1, FULL_COLUMNS_V1), (2, FULL_COLUMNS_V2)):
        first = list(generate_rows(500, day="2025-08-15", schema=schema, seed=7))
        assert first == list(generate_rows(500, day="2025-08-15", schema=schema, seed=7))
        assert first != list(generate_rows(500, day="2025-08-15", schema=schema, seed=8))
        assert all(tuple(row) == columns for row in first)
        real = real_rows(schema)
        uuids = [row["uuid"] for row in first]
        assert len(set(uuids)) == 500
        assert all(
            re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", u)
            for u in uuids
        )
        created = [row["created_at"] for row in first]
        assert created == sorted(created)
        assert all(re.fullmatch(r"2025-08-15 \d\d:\d\d:\d\d", c) for c in created)
        for row in first:
            for column in ("application_date", "content_date"):
                assert row[column] == "" or row[column][:10] <= "2025-08-15"
            assert row["platform_uid"].isdigit()
        for column in ("category", "decision_visibility", "territorial_scope", "decision_facts"):
            assert {row[column] for row in first} <= {row[column] for row in real}
        assert {row["platform_name"] for row in first} == {row["platform_name"] for row in real}
    weighted = list(
        generate_rows(1000, day="2025-08-15", schema=2, platforms={"TikTok": 3, "X": 1})
    )
    tiktok = sum(row["platform_name"] == "TikTok" for row in weighted)
    assert {row["platform_name"] for row in weighted} == {"TikTok", "X"}
    assert 650 < tiktok < 850


def test_write_dump_streams_many_rows(tmp_path: Path) -> None:
    rows = generate_rows(100_000, day="2025-07-04", schema=2, seed=1)
    info = write_dump(
        tmp_path,
        rows,
        platform="global",
        day="2025-07-04",
        schema=2,
        rows_per_csv=30_000,
        csvs_per_part=2,
    )
    assert info.rows == 100_000
    assert info.path == tmp_path / "sor-global-2025-07-04-full.zip"
    assert info.parts == [f"sor-global-2025-07-04-full-0000{i}.csv.zip" for i in range(2)]
    assert len(info.csv_files) == 4
    assert [p.name for p in tmp_path.iterdir()] == [info.path.name]  # no temp files left
    counted = 0
    with zipfile.ZipFile(info.path) as outer:
        for part in outer.infolist():
            with outer.open(part) as part_file, zipfile.ZipFile(part_file) as inner:
                for name in inner.namelist():
                    with inner.open(name) as raw:
                        counted += sum(1 for _ in raw) - 1  # minus the header
    assert counted == 100_000


def test_write_dump_is_deterministic_and_light_drops_free_text(tmp_path: Path) -> None:
    rows = real_rows(2)
    a = write_dump(tmp_path / "a", rows, platform="global", day="2025-07-01", schema=2)
    b = write_dump(tmp_path / "b", rows, platform="global", day="2025-07-01", schema=2)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert write_sha1(a) == f"{a.sha1}  sor-global-2025-07-01-full.zip\n".encode()
    assert hashlib.sha256(a.path.read_bytes()).hexdigest() == a.sha256
    light = write_dump(
        tmp_path / "a", rows, platform="global", day="2025-07-01", schema=2, variant="light"
    )
    with zipfile.ZipFile(light.path) as outer:
        part = outer.read(light.parts[0])
    with zipfile.ZipFile(io.BytesIO(part)) as inner:
        data = inner.read(light.csv_files[0])
    assert data == csv_bytes(rows, dump_columns(2, "light"))
    empty = write_dump(tmp_path / "c", [], platform="x", day="2025-07-01", schema=2)
    assert (empty.rows, len(empty.parts), len(empty.csv_files)) == (0, 1, 1)
    with pytest.raises(ValueError, match="content_id_ean"):
        write_dump(tmp_path / "d", real_rows(1), platform="global", day="2024-03-14", schema=2)


def test_corrupt_part_damages_one_part_only(tmp_path: Path) -> None:
    rows = generate_rows(90, day="2025-07-05", schema=1, seed=2)
    good = write_dump(
        tmp_path, rows, platform="tiktok", day="2025-07-05", schema=1, rows_per_csv=30
    )
    bad = tmp_path / "bad.zip"
    corrupt_part(good.path, bad, 2)
    with zipfile.ZipFile(bad) as outer:
        assert outer.testzip() is None  # the outer archive is consistent
        for index, part in enumerate(outer.namelist()):
            with zipfile.ZipFile(io.BytesIO(outer.read(part))) as inner:
                name = inner.namelist()[0]
                if index == 2:
                    with pytest.raises((zlib.error, zipfile.BadZipFile)):
                        inner.read(name)
                else:
                    assert inner.read(name).count(b"\n") == 31
    with pytest.raises(IndexError):
        corrupt_part(good.path, tmp_path / "nope.zip", 3)


# --------------------------------------------------------------------------------------------
# Downloads over HTTP
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "platform", "variant"),
    [
        ("2025-07-01", "global", "full"),
        ("2025-07-01", "global", "light"),
        ("2025-07-01", "hotel-hideaway", "full"),
        ("2024-03-14", "global", "full"),
        ("2024-03-14", "tiktok", "light"),
        ("2025-07-03", "global", "full"),
    ],
)
def test_sidecar_matches_zip(server: DsaSorServer, day: str, platform: str, variant: str) -> None:
    data, sidecar = download(server, day, platform, variant)
    filename = f"sor-{platform}-{day}-{variant}.zip"
    assert sidecar == f"{hashlib.sha1(data).hexdigest()}  {filename}\n".encode()


def test_wrong_sidecar_looks_valid_but_does_not_match(server: DsaSorServer) -> None:
    data, sidecar = download(server, "2025-07-02")
    match = re.fullmatch(rb"([0-9a-f]{40})  sor-global-2025-07-02-full\.zip\n", sidecar)
    assert match is not None
    assert match.group(1).decode() != hashlib.sha1(data).hexdigest()
    header, rows = read_all(data)  # the zip itself is fine
    assert tuple(header) == FULL_COLUMNS_V2 and len(rows) == 300


def test_global_full_is_the_real_rows_in_order(server: DsaSorServer) -> None:
    data, _ = download(server, "2025-07-01")
    with zipfile.ZipFile(io.BytesIO(data)) as outer:
        assert outer.namelist() == [
            "sor-global-2025-07-01-full-00000.csv.zip",
            "sor-global-2025-07-01-full-00001.csv.zip",
        ]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in outer.infolist())
        inner_names = []
        for part in outer.namelist():
            with zipfile.ZipFile(io.BytesIO(outer.read(part))) as inner:
                assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in inner.infolist())
                inner_names.append(inner.namelist())
    assert inner_names == [
        [
            "sor-global-2025-07-01-full-00000-00000.csv",
            "sor-global-2025-07-01-full-00000-00001.csv",
        ],
        ["sor-global-2025-07-01-full-00001-00000.csv"],
    ]
    header, rows = read_all(data)
    assert tuple(header) == FULL_COLUMNS_V2
    assert rows == real_rows(2)
    header, rows = read_all(download(server, "2024-03-14")[0])
    assert tuple(header) == FULL_COLUMNS_V1
    assert rows == real_rows(1)  # duplicate included


def test_light_variant_lacks_free_text(server: DsaSorServer) -> None:
    for day, schema in (("2025-07-01", 2), ("2024-03-14", 1)):
        header, rows = read_all(download(server, day, variant="light")[0])
        assert tuple(header) == dump_columns(schema, "light")
        assert not set(header) & set(LIGHT_EXCLUDED)
        assert rows == [{c: row[c] for c in header} for row in real_rows(schema)]


def test_per_platform_dumps(server: DsaSorServer) -> None:
    for day, schema in (("2025-07-01", 2), ("2024-03-14", 1)):
        real = real_rows(schema)
        names = {row["platform_name"] for row in real}
        seen = 0
        for name in names:
            _, rows = read_all(download(server, day, platform_slug(name))[0])
            assert rows == [row for row in real if row["platform_name"] == name]
            seen += len(rows)
        assert seen == 50
    _, tiktok = read_all(download(server, "2024-03-14", "tiktok")[0])
    assert len(tiktok) == 8 and {row["platform_name"] for row in tiktok} == {"TikTok"}


def test_corrupt_day(server: DsaSorServer) -> None:
    data, sidecar = download(server, "2025-07-03")
    assert sidecar.split()[0].decode() == hashlib.sha1(data).hexdigest()
    with zipfile.ZipFile(io.BytesIO(data)) as outer:
        names = outer.namelist()
        assert len(names) == 3
        for index, part in enumerate(names):
            with zipfile.ZipFile(io.BytesIO(outer.read(part))) as inner:
                csv_name = inner.namelist()[0]
                if index == 1:
                    with pytest.raises((zlib.error, zipfile.BadZipFile)):
                        inner.read(csv_name)
                else:
                    rows = list(csv.DictReader(io.StringIO(inner.read(csv_name).decode())))
                    assert len(rows) == 100


@pytest.mark.parametrize(
    "path",
    [
        "/explore-data/download/sor-global-2025-06-30-full.zip",
        "/explore-data/download/sor-global-2025-06-30-full.zip.sha1",
        "/explore-data/download/sor-nosuchplatform-2025-07-01-full.zip",
        "/explore-data/download/sor-global-2025-07-02-light.zip",
        "/nothing-here",
    ],
)
def test_unknown_is_404_html(server: DsaSorServer, path: str) -> None:
    status, headers, body = fetch(server, path)
    assert status == 404
    assert headers["Content-Type"].startswith("text/html")
    assert b"404" in body and len(body) < 1000


def test_head_range_and_if_range(server: DsaSorServer) -> None:
    path = "/explore-data/download/sor-global-2024-03-14-full.zip"
    status, headers, full = fetch(server, path)
    assert status == 200 and headers["Accept-Ranges"] == "bytes"
    status, head, body = fetch(server, path, method="HEAD")
    assert (status, body) == (200, b"")
    assert int(head["Content-Length"]) == len(full)
    assert head["ETag"] == headers["ETag"]
    status, headers, tail = fetch(server, path, headers={"Range": "bytes=1000-"})
    assert status == 206 and tail == full[1000:]
    assert headers["Content-Range"] == f"bytes 1000-{len(full) - 1}/{len(full)}"
    assert int(headers["Content-Length"]) == len(full) - 1000
    status, _, middle = fetch(server, path, headers={"Range": "bytes=10-19"})
    assert (status, middle) == (206, full[10:20])
    status, headers, _ = fetch(server, path, headers={"Range": f"bytes={len(full)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(full)}"
    status, _, whole = fetch(server, path, headers={"Range": "bytes=5-", "If-Range": '"stale"'})
    assert (status, whole) == (200, full)


def test_listing_page(server: DsaSorServer) -> None:
    status, headers, body = fetch(server, "/explore-data/download")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"sor-global-2025-07-03-full.zip.sha1" in body
    assert b"sor-discord-netherlands-b-v-2025-07-01-light.zip" in body


def test_failures_cuts_replacement_and_hits(tmp_path: Path) -> None:
    extra = DumpSpec("2025-08-01", "x", rows=real_rows(2)[:5], rows_per_csv=2, csvs_per_part=2)
    with DsaSorServer(root=tmp_path, dumps=[extra]) as server:
        path = "/explore-data/download/sor-x-2025-08-01-full.zip"
        status, _, good = fetch(server, path)
        assert status == 200
        assert len(read_all(good)[1]) == 5
        server.fail_downloads(2, status=503, retry_after=3)
        for _ in range(2):
            status, headers, _ = fetch(server, path)
            assert status == 503 and headers["Retry-After"] == "3"
        assert fetch(server, path + ".sha1")[0] == 200  # sidecars do not consume failures
        assert fetch(server, path)[0] == 200
        assert server.hits[path] == 4
        assert [r.method for r in server.requests if r.path == path] == ["GET"] * 4

        server.cut_downloads(1, after_bytes=100)
        conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
        conn.request("GET", path)
        response = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead) as caught:
            response.read()
        conn.close()
        assert caught.value.partial == good[:100]
        status, _, rest = fetch(server, path, headers={"Range": "bytes=100-"})
        assert status == 206 and good[:100] + rest == good

        server.throttle_bytes_per_second = 20_000
        began = time.monotonic()
        assert fetch(server, path)[2] == good
        assert time.monotonic() - began >= 0.8 * len(good) / 20_000  # sleeps are never short
        server.throttle_bytes_per_second = None

        old_etag = server.dump("2025-08-01", "x").etag
        served = server.replace_dump("2025-08-01", "x", "full", real_rows(2)[5:8])
        assert served.version == 2 and served.etag != old_etag
        status, headers, new = fetch(server, path)
        assert headers["ETag"] == served.etag
        assert read_all(new)[1] == real_rows(2)[5:8]
        _, _, sidecar = fetch(server, path + ".sha1")
        assert sidecar.split()[0].decode() == hashlib.sha1(new).hexdigest()
        # A resume against the old version gets the whole new file instead.
        status, _, body = fetch(server, path, headers={"Range": "bytes=100-", "If-Range": old_etag})
        assert (status, body) == (200, new)
    assert (tmp_path / "v1" / "sor-global-2025-07-01-full.zip").exists()  # root is kept


# --------------------------------------------------------------------------------------------
# Research API
# --------------------------------------------------------------------------------------------


def test_research_auth(server: DsaSorServer) -> None:
    for token in (None, "wrong-token"):
        for endpoint in ("search", "count"):
            status, _, body = research(server, endpoint, {}, token=token)
            assert (status, body) == (401, {"message": "Unauthenticated."})


def test_research_count_and_filters(server: DsaSorServer) -> None:
    status, headers, body = research(server, "count", {"query": {"match_all": {}}})
    assert status == 200 and body == {"count": 99}  # 100 rows, one duplicate uuid
    assert headers["X-RateLimit-Limit"] == "10000"
    tiktok = {"bool": {"filter": [{"term": {"platform_name": "TikTok"}}]}}
    assert research(server, "count", {"query": tiktok})[2] == {"count": 7}
    day = {"range": {"created_at": {"gte": "2025-07-01 00:00:00", "lte": "2025-07-01 23:59:59"}}}
    assert research(server, "count", {"query": {"bool": {"filter": [day]}}})[2] == {"count": 50}
    query = {
        "bool": {
            "filter": [
                {"term": {"platform_name": "Hotel Hideaway"}},
                day,
                {"match": {"decision_facts": "initiative"}},
            ]
        }
    }
    expected = [
        row["uuid"]
        for row in real_rows(2)
        if row["platform_name"] == "Hotel Hideaway" and "initiative" in row["decision_facts"]
    ]
    assert len(expected) == 39
    status, _, body = research(server, "search", {"query": query, "size": 100})
    assert status == 200
    assert body["hits"]["total"] == {"value": len(expected), "relation": "eq"}
    assert [hit["_id"] for hit in body["hits"]["hits"]] == expected
    source = body["hits"]["hits"][0]["_source"]
    assert isinstance(source["territorial_scope"], list) and isinstance(
        source["content_type"], list
    )
    assert source["platform_name"] == "Hotel Hideaway"
    guidelines = {"match": {"decision_facts": "Community Guidelines"}}
    words = {"community", "guidelines"}  # match: any word, case-insensitive
    expected_count = len(
        {
            r["uuid"]
            for r in real_rows(1) + real_rows(2)
            if words & set(re.findall(r"\w+", r["decision_facts"].lower()))
        }
    )
    assert 4 < expected_count < 99
    assert research(server, "count", {"query": guidelines})[2] == {"count": expected_count}
    both = {"match": {"decision_facts": {"query": "Community Guidelines", "operator": "and"}}}
    assert 4 <= research(server, "count", {"query": both})[2]["count"] <= expected_count
    query["bool"]["filter"][2] = guidelines
    assert research(server, "count", {"query": query})[2] == {"count": 0}
    # Array columns match element-wise.
    term = {"term": {"territorial_scope": "NL"}}
    count = research(server, "count", {"query": term})[2]["count"]
    assert count == len(
        {r["uuid"] for r in real_rows(1) + real_rows(2) if '"NL"' in r["territorial_scope"]}
    )
    _, _, few = research(server, "search", {"query": tiktok, "size": 3})
    assert len(few["hits"]["hits"]) == 3 and few["hits"]["total"]["value"] == 7


def test_research_bad_requests(server: DsaSorServer) -> None:
    status, _, body = research(server, "search", b'{"query": ')
    assert status == 422 and "message" in body
    status, _, body = research(server, "count", {"query": {"fuzzy": {"category": "x"}}})
    assert status == 422 and "fuzzy" in body["message"]
    status, _, _ = fetch(server, "/api/v1/research/search")
    assert status == 405


def test_research_cap_and_rate_limit() -> None:
    extra = generate_rows(1200, day="2025-07-01", schema=2, seed=5)
    with DsaSorServer(research_rows=extra, research_rate_limit=5, research_token="t") as server:
        status, _, body = research(server, "search", {"size": 5000}, token="t")
        assert status == 200
        assert body["hits"]["total"] == {"value": 1299, "relation": "eq"}
        assert len(body["hits"]["hits"]) == 1000
        for _ in range(4):
            assert research(server, "count", {}, token="t")[0] == 200
        status, headers, body = research(server, "count", {}, token="t")
        assert status == 429
        assert 1 <= int(headers["Retry-After"]) <= 60
        assert body == {"message": "Too Many Attempts."}
        assert research(server, "count", {}, token="bad")[0] == 401  # auth comes first


def test_main_prints_base_url() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "fixtures.dsa_sor", "--port", "0", "--quiet"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base)
        url = f"{base}/explore-data/download/sor-global-2025-07-01-light.zip.sha1"
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            assert response.read().endswith(b"  sor-global-2025-07-01-light.zip\n")
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
