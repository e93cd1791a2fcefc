"""capture: page captures per second (plain HTTP) and per minute (browser), through the whole
pipeline: Scrapy, exchange recorder, WARC writer, archive() into a local store and SQLite.

- ``capture_http``: N small pages (``/p/{i}``, default 2000) from a tiny standard-library server,
  captured into a temporary evidence store, against a bare Scrapy crawl of the same pages with
  the same settings minus the exchange recorder and the archive pipeline (it archives
  nothing). Goal: ratio (capture pages/s / bare pages/s) of at least 0.6.
- ``capture_browser``: one fixture page (``/@alice/post/1001``) captured M times (default 60)
  in one browser with reused contexts: WARC, screenshot, PDF and DOM each time. Figures:
  captures per minute (goal: 60 on 2 cores) and the peak memory of the whole process tree
  (Scrapy, the Playwright driver, Chromium), sampled from /proc: the sum of RSS (counts
  memory shared between Chromium's processes several times) and of PSS (shares it out).

Every crawl runs in a subprocess of its own, because Scrapy's reactor cannot be restarted in a
process; the servers run in this process. Run as ``python -m benchmarks.bench_capture``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.common import Figure, figure, report

PAGE_SIZE = 4096  # KiB-sized pages, as small articles or error pages


# -- the tiny site for the HTTP benchmark ----------------------------------------------------
class _PageHandler(BaseHTTPRequestHandler):
    """``/p/{i}``: a small unique HTML page; ``/robots.txt``: allow everything."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the fixture site and real servers
    # Headers and body go out in two writes: with Nagle's algorithm the second waits for the
    # client's delayed ACK (40 ms), which would make the server the bottleneck.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        if self.path == "/robots.txt":
            body, kind = b"User-agent: *\nAllow: /\n", "text/plain"
        elif self.path.startswith("/p/"):
            number = self.path[3:]
            text = f"<p>Beitrag {number}: Notes on platform transparency.</p>\n"
            filler = text * (PAGE_SIZE // len(text))
            body = (
                f"<!doctype html><html><head><meta charset='utf-8'><title>Page {number}</title>"
                f"</head><body><h1>Page {number}</h1>{filler}</body></html>"
            ).encode()
            kind = "text/html; charset=utf-8"
        else:
            body, kind = b"not found", "text/plain"
        self.send_response(200 if kind != "text/plain" or "robots" in self.path else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def serve_pages() -> tuple[_Server, str]:
    """Start the tiny site on 127.0.0.1; returns the server and its base URL."""
    server = _Server(("127.0.0.1", 0), _PageHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# -- memory of a process tree ------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    found = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:  # the process ended while we looked
        return found
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo += _children(current)
    return pids


def memory_kib(pids: list[int]) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in KiB of the processes still alive."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


class PeakMemory:
    """Samples the memory of a process tree every ``interval`` seconds; keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss = self.peak_pss = 0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = tree(self.pid)
            rss, pss = memory_kib(pids)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.processes = max(self.processes, len(pids))
            self._stop.wait(self.interval)


# -- the crawls (each in a subprocess) --------------------------------------------------------
def child(
    kind: str, urls_file: Path, store: Path, out: Path, contexts: int, reuse_pages: bool
) -> None:
    """Run one crawl in this process and write its figures as JSON to ``out``."""
    from crawlers.runner import capture_pages, capture_settings
    from crawlers.spiders.pages import PagesSpider, read_urls

    urls = read_urls(urls_file=str(urls_file))
    finished: list[float] = []
    start = time.perf_counter()
    if kind == "bare":
        from scrapy import signals
        from scrapy.crawler import CrawlerProcess

        settings = capture_settings(
            LOG_INSTALL_ROOT_HANDLER=False,
            ITEM_PIPELINES={},
            DOWNLOADER_MIDDLEWARES={
                "crawlers.middlewares.ExchangeRecorder": None,
                "crawlers.middlewares.UrlPolicy": None,
            },
            EVIDENCE_ALLOW_PRIVATE=True,  # the benchmark server is on 127.0.0.1
        )
        process = CrawlerProcess(settings)
        crawler = process.create_crawler(PagesSpider)

        def scraped(**_: Any) -> None:
            finished.append(time.perf_counter())

        # a named function: Scrapy holds signal receivers by weak reference
        crawler.signals.connect(scraped, signal=signals.item_scraped)
        process.crawl(crawler, urls=urls, mode="http")
        process.start()
        outcomes: list[Any] = []
    else:
        from benchmarks.bench_store import open_evidence

        evidence = open_evidence(store)
        extra: dict[str, Any] = {}
        if kind == "browser":
            extra = {"BROWSER_CONTEXTS": contexts, "BROWSER_REUSE_PAGES": reuse_pages}
        outcomes = capture_pages(
            evidence,
            urls,
            mode="browser" if kind == "browser" else "http",
            on_outcome=lambda _: finished.append(time.perf_counter()),
            EVIDENCE_COLLECTION="bench",
            EVIDENCE_ALLOW_PRIVATE=True,  # the benchmark and fixture servers are on 127.0.0.1
            **extra,
        )
        evidence.index.dispose()
    seconds = time.perf_counter() - start
    pages = [o for o in outcomes if o.mode != "robots"]
    out.write_text(
        json.dumps(
            {
                "seconds": seconds,
                "pages": len(pages) if kind != "bare" else len(finished),
                "archived": sum(1 for o in pages if o.snapshot),
                "outcomes": sorted({o.outcome for o in pages}),
                "first_done": (finished[0] - start) if finished else None,
                "last_done": (finished[-1] - start) if finished else None,
                "done": len(finished),
            }
        )
    )


def run_child(
    kind: str, urls: list[str], work: Path, *, contexts: int = 0, reuse_pages: bool = False
) -> tuple[dict[str, Any], PeakMemory]:
    """Run a crawl of ``urls`` in a subprocess; its figures and its memory peaks."""
    urls_file = work / f"{kind}-urls.txt"
    urls_file.write_text("\n".join(urls) + "\n")
    out = work / f"{kind}-result.json"
    store = work / f"{kind}-store"
    args = [sys.executable, "-m", "benchmarks.bench_capture", "--child", kind]
    args += ["--urls-file", str(urls_file), "--store", str(store), "--out", str(out)]
    args += ["--contexts", str(contexts)] + (["--reuse-pages"] if reuse_pages else [])
    proc = subprocess.Popen(args, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    with PeakMemory(proc.pid) as memory:
        # wait4: the CPU time of the whole tree (Chromium's processes are reaped by their
        # parents, so their time adds up into the crawl's)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"the {kind} crawl failed with exit status {proc.returncode}")
    shutil.rmtree(store, ignore_errors=True)
    result = json.loads(out.read_text())
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return result, memory


def _steady(result: dict[str, Any]) -> float | str:
    """Pages per second between the first and the last page done (start-up left out)."""
    if result["done"] < 2 or result["last_done"] <= result["first_done"]:
        return "-"
    return (result["done"] - 1) / (result["last_done"] - result["first_done"])


def bench_http(pages: int, work: Path) -> dict[str, float | int | str]:
    """Plain-HTTP capture of ``pages`` small pages against a bare crawl of the same pages."""
    server, base = serve_pages()
    try:
        urls = [f"{base}/p/{i}" for i in range(pages)]
        bare, _ = run_child("bare", urls, work)
        capture, _ = run_child("http", urls, work)
    finally:
        server.shutdown()
        server.server_close()
    bare_rate = bare["done"] / bare["seconds"]
    capture_rate = capture["archived"] / capture["seconds"]
    figures: dict[str, float | int | str] = {
        "pages": pages,
        "bare crawl seconds": bare["seconds"],
        "bare crawl pages/s": bare_rate,
        "capture seconds": capture["seconds"],
        "capture pages/s (archived)": capture_rate,
        "archived snapshots": capture["archived"],
        "ratio capture/bare": capture_rate / bare_rate,
        "bare pages/s (first to last page)": _steady(bare),
        "capture pages/s (first to last page)": _steady(capture),
        "bare CPU ms per page": bare["cpu_seconds"] / pages * 1000,
        "capture CPU ms per page": capture["cpu_seconds"] / pages * 1000,
        "goal ratio": 0.6,
    }
    report("capture_http", figures)
    return figures


def bench_browser(
    captures: int, contexts: int, work: Path, *, reuse_pages: bool = False
) -> dict[str, float | int | str]:
    """``captures`` browser captures of one fixture page, one browser, reused contexts."""
    from fixtures.site import FixtureSite

    with FixtureSite() as site:
        urls = [site.url("/@alice/post/1001")] * captures
        result, memory = run_child(
            "browser", urls, work, contexts=contexts, reuse_pages=reuse_pages
        )
    steady = None
    if result["done"] > 1:
        steady = (result["done"] - 1) / (result["last_done"] - result["first_done"]) * 60
    figures: dict[str, float | int | str] = {
        "captures": captures,
        "archived (WARC+screenshot+PDF+DOM)": result["archived"],
        "outcomes": ", ".join(result["outcomes"]),
        "browser contexts": contexts,
        "tabs": "reused" if reuse_pages else "new tab per capture",
        "seconds (incl. browser start)": result["seconds"],
        "captures/minute (incl. start)": result["archived"] / result["seconds"] * 60,
        "captures/minute (steady)": steady if steady is not None else "-",
        "CPU seconds per capture (tree)": result["cpu_seconds"] / captures,
        "peak RSS of process tree MiB": memory.peak_rss / 1024,
        "peak PSS of process tree MiB": memory.peak_pss / 1024,
        "processes in tree (max)": memory.processes,
        "goal captures/minute": 60,
    }
    report("capture_browser", figures)
    return figures


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=2000, help="pages of the HTTP benchmark")
    parser.add_argument("--captures", type=int, default=60, help="browser captures")
    parser.add_argument("--contexts", type=int, default=3, help="browser contexts (pages at once)")
    parser.add_argument(
        "--reuse-pages", action="store_true", help="BROWSER_REUSE_PAGES: keep each context's tab"
    )
    parser.add_argument("--only", choices=("http", "browser"), default=None)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    parser.add_argument("--child", choices=("bare", "http", "browser"), help=argparse.SUPPRESS)
    parser.add_argument("--urls-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.urls_file, args.store, args.out, args.contexts, args.reuse_pages)
        return []
    made: list[Figure] = []
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-capture-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.only in (None, "http"):
            made += http_figures(bench_http(args.pages, work))
        if args.only in (None, "browser"):
            made += browser_figures(
                bench_browser(args.captures, args.contexts, work, reuse_pages=args.reuse_pages)
            )
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return made


def http_figures(figures: dict[str, Any]) -> list[Figure]:
    # Issue 15 also asks for GNU `wget --warc-file` as a baseline (goal 0.5): not built yet.
    rate = figures["capture pages/s (archived)"]
    return [
        figure(
            "capture_http",
            "capture pages/s (archived)",
            rate,
            unit="pages/s",
            baseline=figures["bare crawl pages/s"],
            baseline_name="pages/s bare Scrapy crawl",
            goal=0.6,
            note=f"{figures['pages']} pages; CPU ms per page "
            f"{figures['capture CPU ms per page']:.1f} vs {figures['bare CPU ms per page']:.1f}",
        ),
        figure(
            "capture_http",
            "capture pages/s vs wget --warc-file",
            rate,
            unit="pages/s",
            baseline_name="wget --warc-file: not built",
            goal=0.5,
            note="the wget --warc-file baseline of issue 15 is not in bench_capture yet",
        ),
    ]


def browser_figures(figures: dict[str, Any]) -> list[Figure]:
    steady = figures["captures/minute (steady)"]
    return [
        figure(
            "capture_browser",
            "browser captures/minute (steady)",
            steady if isinstance(steady, float) else None,
            unit="/min",
            goal=60,
            goal_on="value",
            note=f"{figures['captures']} captures, {figures['browser contexts']} contexts; "
            f"{figures['captures/minute (incl. start)']:.1f}/min incl. browser start",
        ),
        figure(
            "capture_browser",
            "browser captures/minute vs bare Playwright",
            steady if isinstance(steady, float) else None,
            unit="/min",
            baseline_name="bare Playwright loop: not built",
            goal=0.9,
            note="the bare Playwright loop baseline of issue 15 is not in bench_capture yet",
        ),
        figure(
            "capture_browser",
            "browser capture peak PSS of process tree",
            figures["peak PSS of process tree MiB"],
            unit="MiB",
        ),
    ]


if __name__ == "__main__":
    main()
