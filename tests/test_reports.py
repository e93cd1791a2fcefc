"""The `transparency-reports` source end to end: the fixture's index pages (one built by
JavaScript) rendered by Chromium, the report files captured with plain HTTP, parsed into
reports and versions in the real SQLite index, a second day with a corrected report, and
`evidence reports list|show|diff`. The readers and the inference are also tested on the
fixture's files directly (fast, no crawl)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawlers.spiders.reports import ReportsSettings, report_links
from fixtures.reports import (
    FACEBOOK_XLSX,
    INSTAGRAM_PDF,
    LINKEDIN_CSV,
    TIKTOK_PDF,
    TIKTOK_ZIP,
    X_CORRUPT,
    X_MISSING,
    X_PDF,
    YOUTUBE_PDF,
    ReportsSite,
    documents,
)
from fixtures.reports.server import tiktok_hub
from records.reports.extract import extract, parse_number
from records.reports.infer import infer_articles, infer_period, infer_platform, period_label
from tests.conftest import run_cli

FILES = (
    TIKTOK_ZIP,
    TIKTOK_PDF,
    X_PDF,
    X_CORRUPT,
    FACEBOOK_XLSX,
    INSTAGRAM_PDF,
    "/meta/files/Facebook-DSA-Transparency-Report-H1-2025.pdf",
    YOUTUBE_PDF,
    LINKEDIN_CSV,
)


def evidence(config: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `evidence --config CONFIG ARGS` in a subprocess, without EVIDENCE_* variables."""
    return run_cli("--config", str(config), *args, check=check)


def write_config(path: Path, data: Path, pages: dict[str, str]) -> Path:
    entries = ", ".join(f'{{ platform = "{p}", url = "{u}" }}' for p, u in pages.items())
    path.write_text(
        f'data_dir = "{data}"\nallow_private = true  # the fixture is on 127.0.0.1\n'
        f"[sources.transparency-reports]\nindex_pages = [{entries}]\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def site() -> Iterator[ReportsSite]:
    with ReportsSite() as running:
        yield running


@pytest.fixture(scope="module")
def crawled(site: ReportsSite, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two runs of the source: day 1, then day 2 (TikTok's H1 2025 ZIP corrected)."""
    root = tmp_path_factory.mktemp("reports")
    config = write_config(root / "evidence.toml", root / "data", site.index_pages())
    runs: list[dict[str, Any]] = []
    for day in (1, 2):
        site.day = day
        site.reset_hits()
        proc = evidence(config, "crawl", "transparency-reports", "--json")
        runs.append(
            {
                "exit": proc.returncode,
                "stderr": proc.stderr,
                "result": json.loads(proc.stdout),
                "hits": dict(site.hits),
            }
        )
    return {"config": config, "data": root / "data", "site": site, "runs": runs}


def by_url(run: dict[str, Any], site: ReportsSite) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for outcome in run["result"]["outcomes"]:
        path = outcome["url"].removeprefix(site.base_url)
        found.setdefault(path, []).append(outcome)
    return found


def reports(crawled: dict[str, Any]) -> dict[str, dict[str, Any]]:
    proc = evidence(crawled["config"], "reports", "list", "--json", check=True)
    site = crawled["site"]
    return {r["url"].removeprefix(site.base_url): r for r in json.loads(proc.stdout)}


def metadata(crawled: dict[str, Any], snapshot: str) -> dict[str, Any]:
    proc = evidence(crawled["config"], "snapshots", "show", snapshot, "--json", check=True)
    return json.loads(proc.stdout)["manifest"]["capture"]


# -- end to end ------------------------------------------------------------------------------
@pytest.mark.slow
def test_index_pages_and_report_files_become_snapshots(crawled: dict[str, Any]) -> None:
    site = crawled["site"]
    day1 = crawled["runs"][0]
    outcomes = by_url(day1, site)
    index_pages = [o for o in day1["result"]["outcomes"] if o["mode"] == "browser"]
    assert len(index_pages) == 4
    assert all(o["outcome"] == "archived" and o["snapshot"] for o in index_pages)
    for path in FILES:
        [captured] = [o for o in outcomes[path] if o["mode"] == "http"]
        assert captured["outcome"] == "archived" and captured["snapshot"], path
        assert captured["status"] == 200
    # X's PDF is linked from X's page and from the Commission's list: fetched once.
    assert day1["hits"][X_PDF] == 1
    # The TikTok hub's links exist only after its script ran: read from the rendered DOM.
    zip_capture = next(o for o in outcomes[TIKTOK_ZIP] if o["mode"] == "http")
    facts = metadata(crawled, zip_capture["snapshot"])["transparency_report"]
    assert facts == {
        "role": "file",
        "platform": "tiktok",
        "index_page": site.index_pages()["tiktok"],
        "link_text": "DSA Transparency Report - January to June 2025 (ZIP: report and CSV)",
    }
    hub = next(o for o in index_pages if "/tiktok/" in o["url"])
    hub_facts = metadata(crawled, hub["snapshot"])["transparency_report"]
    assert hub_facts["role"] == "index" and hub_facts["platform"] == "tiktok"
    assert {link["url"] for link in hub_facts["links"]} == {
        site.url(TIKTOK_ZIP),
        site.url(TIKTOK_PDF),
    }
    assert {a["role"] for a in hub["artifacts"]} >= {"warc", "dom", "screenshot", "metadata"}


@pytest.mark.slow
def test_broken_link_and_corrupt_pdf_make_the_run_partial(crawled: dict[str, Any]) -> None:
    site = crawled["site"]
    for run in crawled["runs"]:
        assert run["exit"] == 3, run["stderr"]
        assert "partial" in run["stderr"]
        assert run["result"]["status"] == "partial"
        outcomes = by_url(run, site)
        [missing] = outcomes[X_MISSING]
        # The 404 answer is archived (evidence of the broken link), and labelled.
        assert missing["outcome"] == "http-error" and missing["status"] == 404
        assert missing["snapshot"]
        parsed = [o for o in outcomes[X_CORRUPT] if o["mode"] == "parse"]
        assert len(parsed) == 1 and parsed[0]["outcome"] == "unparseable"
        assert parsed[0]["snapshot"] is None and "not a readable PDF" in parsed[0]["error"]
        counts = run["result"]["counts"]
        assert counts == {"archived": 13, "http-error": 1, "unparseable": 1}
    corrupt = reports(crawled)[X_CORRUPT]
    assert corrupt["latest_status"] == "unparseable"
    assert corrupt["period_start"] == "2025-04-01" and corrupt["period_end"] == "2025-09-30"
    run_id = crawled["runs"][1]["result"]["run"]
    shown = json.loads(evidence(crawled["config"], "runs", "show", run_id, "--json").stdout)
    failures = {
        (f["outcome"], f["item"].removeprefix(site.base_url)) for f in shown["stats"]["failures"]
    }
    # failures lists what was not archived; the 404 was (as such), and is counted.
    assert failures == {("unparseable", X_CORRUPT)}
    assert shown["stats"]["outcomes"]["http-error"] == 1


@pytest.mark.slow
def test_reports_are_recorded_with_platform_period_and_articles(crawled: dict[str, Any]) -> None:
    found = reports(crawled)
    assert set(found) == set(FILES)
    expected = {
        TIKTOK_ZIP: ("tiktok", "2025-H1"),
        TIKTOK_PDF: ("tiktok", "2024-H2"),
        X_PDF: ("x", "2024-10-01/2025-03-31"),
        INSTAGRAM_PDF: ("instagram", "2025-H1"),
        FACEBOOK_XLSX: ("facebook", "2025-H1"),
        YOUTUBE_PDF: ("youtube", "2025-H1"),  # from the Commission's list, by its link text
        LINKEDIN_CSV: ("linkedin", "2025-H1"),
    }
    for path, (platform, period) in expected.items():
        assert (found[path]["platform"], found[path]["period"]) == (platform, period), path
        assert found[path]["articles"] == "Art. 15, Art. 24, Art. 42", path
        assert found[path]["language"] == "en", path
    assert found[TIKTOK_PDF]["title"] == "DSA Transparency Report - July to December 2024"
    assert found[TIKTOK_ZIP]["media_type"] == "application/zip"
    only_42 = evidence(crawled["config"], "reports", "list", "--article", "42", "--json")
    assert len(json.loads(only_42.stdout)) == len(FILES) - 1  # the corrupt PDF says nothing
    tiktok = evidence(crawled["config"], "reports", "list", "--platform", "tiktok", "--json")
    assert {r["url"] for r in json.loads(tiktok.stdout)} == {
        crawled["site"].url(TIKTOK_ZIP),
        crawled["site"].url(TIKTOK_PDF),
    }
    table = evidence(crawled["config"], "reports", "list", check=True).stdout
    assert "9 report(s)" in table and "2024-10-01/2025-03-31" in table


@pytest.mark.slow
def test_day_two_records_the_new_version_and_no_duplicates(crawled: dict[str, Any]) -> None:
    site = crawled["site"]
    found = reports(crawled)
    assert found[TIKTOK_ZIP]["versions"] == 2
    assert all(found[path]["versions"] == 1 for path in FILES if path != TIKTOK_ZIP)
    stats = [
        json.loads(evidence(crawled["config"], "runs", "show", r["result"]["run"], "--json").stdout)
        for r in crawled["runs"]
    ]
    assert stats[0]["stats"]["reports"] == {
        "files": 9,
        "new_reports": 9,
        "new_versions": 0,
        "unchanged": 0,
        "unparseable": 1,
    }
    assert stats[1]["stats"]["reports"] == {
        "files": 9,
        "new_reports": 0,
        "new_versions": 1,
        "unchanged": 8,
        "unparseable": 1,
    }
    shown = json.loads(
        evidence(crawled["config"], "reports", "show", X_PDF, "--json", check=True).stdout
    )
    [version] = shown["versions"]
    assert version["times_seen"] == 2 and version["status"] == "parsed"
    assert [c["change"] for c in shown["captures"]] == ["unchanged", "new-report"]
    assert version["snapshot_id"] != version["last_snapshot_id"]  # each day's capture kept
    tiktok = json.loads(
        evidence(crawled["config"], "reports", "show", TIKTOK_ZIP, "--json", check=True).stdout
    )
    first, second = tiktok["versions"]
    assert first["sha256"] != second["sha256"]
    assert second["sha256"] == hashlib.sha256(site.file(TIKTOK_ZIP, 2)).hexdigest()
    assert [d["path"] for d in second["documents"]] == [
        "TikTok_DSA_Transparency_Report_H1_2025.pdf",
        "harmonised-template/TikTok_DSA_TR_2025H1_part-1.csv",
        "harmonised-template/TikTok_DSA_TR_2025H1_part-2.csv",
        "harmonised-template/TikTok_DSA_TR_2025H1_part-3.csv",
    ]
    assert second["page_count"] == 2 and second["figures"] == first["figures"]
    assert {d["template"] for d in second["documents"] if d["kind"] == "table"} == {"2024/2835"}
    text = evidence(crawled["config"], "reports", "show", TIKTOK_ZIP, check=True).stdout
    assert "2 version(s)" in text and "part-3.csv" in text


@pytest.mark.slow
def test_diff_shows_changed_text_and_figures(crawled: dict[str, Any]) -> None:
    proc = evidence(crawled["config"], "reports", "diff", TIKTOK_ZIP, "--json", check=True)
    diff = json.loads(proc.stdout)
    assert (diff["old"]["number"], diff["new"]["number"]) == (1, 2)
    [text] = diff["text"]
    assert text["path"] == "TikTok_DSA_Transparency_Report_H1_2025.pdf"
    assert "-Median time to action on notices: 18 hours" in text["diff"]
    assert "+Median time to action on notices: 16 hours" in text["diff"]
    assert (
        "+Correction of 2 March 2026: orders from Germany revised; Austria added." in text["diff"]
    )
    assert (text["added_lines"], text["removed_lines"]) == (3, 2)
    cells = {(c["sheet"], c["cell"]): c for c in diff["cells"]}
    germany = cells[("TikTok_DSA_TR_2025H1_part-2.csv", "B2")]
    assert (germany["change"], germany["old"], germany["new"], germany["delta"]) == (
        "changed",
        "1204",
        "1240",
        36.0,
    )
    assert (germany["row_label"], germany["column_label"]) == ("DE", "Orders to act received")
    assert cells[("TikTok_DSA_TR_2025H1_part-2.csv", "A6")]["new"] == "AT"
    assert cells[("TikTok_DSA_TR_2025H1_part-3.csv", "A4")]["old"] == "Scams and fraud"
    assert (diff["cells_changed"], diff["cells_added"], diff["cells_removed"]) == (2, 3, 3)
    shown = evidence(crawled["config"], "reports", "diff", TIKTOK_ZIP, check=True).stdout
    assert "+Median time to action on notices: 16 hours" in shown
    assert "2 changed, 3 added, 3 removed" in shown and "1240" in shown
    # Viewing a diff shows archived evidence: it is in the custody log.
    with sqlite3.connect(crawled["data"] / "index.sqlite") as db:
        actions = [
            json.loads(row[0])
            for row in db.execute("SELECT details FROM custody_events WHERE action = 'viewed'")
        ]
    assert any(a.get("use") == "reports diff" and a["versions"] == [1, 2] for a in actions)
    unchanged = evidence(crawled["config"], "reports", "diff", X_PDF)
    assert unchanged.returncode == 2 and "one version only" in unchanged.stderr
    assert evidence(crawled["config"], "reports", "show", "no-such-report").returncode == 2


@pytest.mark.slow
def test_without_the_browser_links_built_by_javascript_are_missed(
    site: ReportsSite, tmp_path: Path
) -> None:
    site.day = 1
    pages = site.index_pages()
    config = write_config(
        tmp_path / "evidence.toml", tmp_path / "data", {"tiktok": pages["tiktok"], "x": pages["x"]}
    )
    proc = evidence(config, "crawl", "transparency-reports", "-a", "browser=false", "--json")
    result = json.loads(proc.stdout)
    modes = {o["url"].removeprefix(site.base_url): o["mode"] for o in result["outcomes"]}
    assert modes[X_PDF] == "http"
    assert TIKTOK_ZIP not in modes and TIKTOK_PDF not in modes
    assert {o["mode"] for o in result["outcomes"]} == {"http", "parse", "robots"}


# -- the parts, on the fixture's files ---------------------------------------------------------
def test_links_are_read_from_html_by_extension() -> None:
    assert report_links(tiktok_hub().decode(), "http://h/", extensions=[".pdf", ".zip"]) == []
    html = (
        '<base href="http://cdn.example/reports/"><a href="a.PDF">Report <b>H1</b> 2025</a>'
        '<a href="b.zip#top" title="Archive"></a><a href="a.PDF">again</a>'
        '<a href="page.html">not a file</a><a href="mailto:x@y">mail</a>'
        '<a href="c.csv?download=1">CSV</a>'
    )
    links = report_links(html, "http://h/", extensions=[".pdf", ".zip", ".csv"])
    assert links == [
        ("http://cdn.example/reports/a.PDF", "Report H1 2025"),
        ("http://cdn.example/reports/b.zip", "Archive"),
        ("http://cdn.example/reports/c.csv?download=1", "CSV"),
    ]
    assert report_links(html, "http://h/", extensions=[".pdf"], pattern="nothing") == []


def test_settings_take_a_table_or_a_list_of_index_pages() -> None:
    table = ReportsSettings(index_pages={"tiktok": "http://a/", "x": "http://b/"}, browser=False)
    assert [(p.platform, p.url) for p in table.index_pages] == [
        ("tiktok", "http://a/"),
        ("x", "http://b/"),
    ]
    assert not table.uses_browser(True)
    listed = ReportsSettings(index_pages=["meta=http://c/", {"platform": "ec", "url": "http://d/"}])
    assert listed.uses_browser(True) and listed.index_pages[0].platform == "meta"
    default = ReportsSettings()
    assert {p.platform for p in default.index_pages} == {"tiktok", "x", "meta", "commission"}
    with pytest.raises(ValueError, match="platform=url"):
        ReportsSettings(index_pages=["http://only-a-url/"])
    with pytest.raises(ValueError, match="regular expression"):
        ReportsSettings(link_pattern="(")


def test_pdfs_tables_and_zips_are_read_and_broken_files_say_why() -> None:
    [pdf] = extract(documents.x_report_pdf(), "report.pdf", "application/pdf")
    assert (pdf.kind, pdf.status, pdf.page_count) == ("pdf", "parsed", 2)
    assert "Reporting period: 1 October 2024 to 31 March 2025" in (pdf.text or "")
    assert pdf.title == "DSA Transparency Report"
    [xlsx] = extract(documents.meta_facebook_xlsx(), "template.xlsx")
    assert xlsx.kind == "table" and xlsx.template == "2024/2835"
    cell = next(c for c in xlsx.cells if c.sheet == "Orders" and (c.row, c.column) == (2, 3))
    assert (cell.value, cell.number, cell.row_label, cell.column_label) == (
        "20.5",
        20.5,
        "DE",
        "Median time to give effect (hours)",
    )
    members = extract(documents.tiktok_h1_2025_zip(1), "report.zip")
    assert [m.kind for m in members] == ["pdf", "table", "table", "table"]
    [broken] = extract(documents.corrupt_pdf(documents.x_report_pdf()), "broken.pdf")
    assert broken.status == "unparseable" and broken.error.startswith("not a readable PDF")
    [not_zip] = extract(b"PK\x03\x04 cut short", "report.zip")
    assert not_zip.status == "unparseable" and "ZIP" in not_zip.error
    [text] = extract(b"hello", "notes.txt")
    assert text.status == "skipped"


def test_numbers_periods_articles_and_platforms_are_inferred() -> None:
    assert [parse_number(v) for v in ("1,204", "1.204.000", "12,5", "48 300 000", "7 %")] == [
        1204.0,
        1204000.0,
        12.5,
        48300000.0,
        7.0,
    ]
    assert parse_number("2025-01-01") is None and parse_number("DE") is None
    cases = {
        "DSA-Transparency-Report-October-2024-March-2025.pdf": "2024-10-01/2025-03-31",
        "tiktok-dsa-transparency-report-2025-H1.zip": "2025-H1",
        "Berichtszeitraum: 1. Juli 2024 bis 31. Dezember 2024": "2024-H2",
        "Reporting period start | 2025-01-01\nReporting period end | 2025-06-30": "2025-H1",
    }
    for text, period in cases.items():
        found = infer_period(text)
        assert found is not None and period_label(*found) == period, text
    assert infer_period("DSA-Transparency-Report-April-2024.pdf") is None
    assert infer_articles("under Articles 15, 24 and 42 of Regulation (EU) 2022/2065") == (
        "Art. 15, Art. 24, Art. 42"
    )
    assert infer_articles("Art. 42(2) and Article 16 notices") == "Art. 42"
    assert (
        infer_platform(
            link_text="YouTube (Google Ireland Limited)",
            file_names=[],
            text=None,
            index_platform="commission",
        )
        == "youtube"
    )
    assert (
        infer_platform(
            link_text="Report (PDF)",
            file_names=["report.pdf"],
            text="Meta publishes this for Instagram",
            index_platform="meta",
        )
        == "instagram"
    )
    assert infer_platform(link_text="Annex X", file_names=[], text=None, index_platform="x") == "x"
