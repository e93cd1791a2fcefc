"""posts: re-capture N watched TikTok posts (default 300; browser + TikTok's JSON + a video of
1 MB each) on this machine's cores, against the plain browser capture of the same pages
(the `pages` source in browser mode) in the same run.

Goal: posts/minute of the re-capture at least 0.7 of the plain capture's pages/minute. Also
reported: the peak memory of each run's process tree (Scrapy, the Playwright driver, Chromium;
sampled from /proc as in bench_capture: summed RSS and PSS), and the first capture of the posts.

The fixture (fixtures/tiktok) publishes eight posts with videos of a few kB. The benchmark
adds N posts to it in this process, without editing it: copies of its post P1 (the universal
page layout, available, counts on both days) with new ids, each with one 540x960 H.264 video
made by the fixture's own ffmpeg recipe (``testsrc2``, about 0.95 MB), which the fixture then
serves under each post's signed CDN address, made unique per post and padded to ``--video-bytes``
(default 1 MiB) by a trailing MP4 ``free`` box (ffprobe reads it as the same 2 s video). The
fixture needs this to be a feature of its own (a count of generated posts and a video size):
see the docstring's last paragraph.

The runs, each `jobs.crawl.crawl` in a child process of its own (Twisted's reactor starts once
per process), the fixture served from this process:

1. setup (fixture day 1): ``crawl(settings, "tiktok", ["url=…", …])`` captures the N posts
   into a fresh archive, so that they are watched (informative: "first capture");
2. the fixture turns to day 2 (counts moved), then the baseline: ``crawl(settings, "pages",
   ["mode=browser", "urls_file=…"])`` of the same N post URLs into another fresh archive;
3. the re-capture: the tiktok source with ``recapture_hours = 0`` and one of the posts as
   ``urls`` (a watchlist must name something); its prepare step finds the other N-1 due, so the
   run re-captures all N, with the records step (versions, counts) as every run.

Posts/minute are archived items over the seconds of ``crawl()`` (browser start included), and
between the first and the last item done ("steady"). Each re-capture stores the same video
bytes as the first capture (the store keeps one copy), as a re-capture of an unchanged video
would.

What the fixture would need for this benchmark to use it as it is: a way to publish N
generated posts (e.g. ``TikTokSite(generated_posts=N)``, ids and handles derived from the
number, listed on an account page) whose videos are unique files of a given size (e.g.
``video_bytes=1_048_576``), rather than the eight hand-written posts with few-kB videos.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Figure, figure, report

DEFAULT_POSTS = 300
VIDEO_BYTES = 1 << 20
GOAL_RATIO = 0.7
REPO = Path(__file__).resolve().parent.parent
FIRST_ID = 7_460_000_000_000_000_000


# -- the fixture with N posts ----------------------------------------------------------------


def unique_mp4(video: bytes, tag: str, size: int) -> bytes:
    """``video`` with a trailing ``free`` box that makes it unique (``tag``) and ``size`` long
    (or just unique, if the video is larger already)."""
    pad = max(size - len(video) - 8, len(tag) + 1)
    payload = (tag.encode() + b"\0") * (pad // (len(tag) + 1) + 1)
    return video + struct.pack(">I", 8 + pad) + b"free" + payload[:pad]


def start_site(posts: int, video_size: int) -> tuple[Any, list[str], list[str]]:
    """The TikTok fixture with ``posts`` more posts; (site, their URLs, their ids)."""
    from fixtures.tiktok import TikTokSite, data
    from fixtures.tiktok.media import VideoSpec, video_bytes

    template = data.POSTS[data.P1]
    spec = VideoSpec("testsrc2", 540, 960, 440)
    ids = []
    for n in range(posts):
        post_id = str(FIRST_ID + n)
        data.POSTS[post_id] = dataclasses.replace(
            template,
            post_id=post_id,
            desc=f"Beitrag {n}: am Sonntag ist Wahl! #bundestagswahl #wahl2025",
            variants=(data.Variant("normal_540_0", 2_400_000, "540p", spec),),
            play_variant=0,
        )
        ids.append(post_id)
    site = TikTokSite().start()
    video = video_bytes(spec)
    for post_id in ids:
        post = data.POSTS[post_id]
        site._files[data.file_id(post, post.variants[0])] = unique_mp4(video, post_id, video_size)
    return site, [site.post_url(i) for i in ids], ids


def remove_posts(ids: list[str]) -> None:
    from fixtures.tiktok import data

    for post_id in ids:
        data.POSTS.pop(post_id, None)


# -- the runs, each in a child process ---------------------------------------------------------


def _child(args: dict[str, Any]) -> dict[str, Any]:
    from jobs.config import load_settings
    from jobs.crawl import crawl

    settings = load_settings(
        data_dir=Path(args["data_dir"]), allow_private=True, sources=args["sources"]
    )
    done: list[float] = []

    def outcome(o: Any) -> None:
        if o.mode == "browser":
            done.append(time.perf_counter())

    start = time.perf_counter()
    result = crawl(settings, args["source"], args["arguments"], on_outcome=outcome)
    seconds = time.perf_counter() - start
    items = [o for o in result.items if o.mode == "browser"]
    return {
        "seconds": seconds,
        "status": result.status,
        "items": len(items),
        "archived": sum(1 for o in items if o.snapshot and o.outcome == "archived"),
        "counts": result.counts(),
        "first_done": (done[0] - start) if done else None,
        "last_done": (done[-1] - start) if done else None,
        "done": len(done),
    }


def run_child(name: str, work: Path, args: dict[str, Any]) -> dict[str, Any]:
    """One crawl in a child process; its figures, its CPU time and its tree's memory peaks."""
    from benchmarks.bench_capture import PeakMemory

    out = work / f"{name}-result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_posts", "--child", json.dumps(args), str(out)],
        cwd=REPO,
        env=env | {"PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    with PeakMemory(proc.pid) as memory:
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"posts: the {name} run failed ({proc.returncode}):\n{stderr[-4000:]}")
    result = json.loads(out.read_text())
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    result["peak_rss_mib"] = memory.peak_rss / 1024
    result["peak_pss_mib"] = memory.peak_pss / 1024
    result["processes"] = memory.processes
    result["per_minute"] = result["archived"] / result["seconds"] * 60
    steady = None
    if result["done"] > 1 and result["last_done"] > result["first_done"]:
        steady = (result["done"] - 1) / (result["last_done"] - result["first_done"]) * 60
    result["steady_per_minute"] = steady
    print(
        f"posts: {name}: {result['archived']}/{result['items']} archived in "
        f"{result['seconds']:.1f} s = {result['per_minute']:.1f}/min, peak PSS "
        f"{result['peak_pss_mib']:.0f} MiB ({result['counts']}), load "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return result


def tiktok_source(base_url: str, urls: list[str], posts: int) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "urls": urls,
        "recapture_hours": 0,  # every watched post is due again
        "max_recaptures": posts + 10,
        "backoff": 0.2,
        "max_backoff": 1,
    }


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--posts",
        type=int,
        default=int(os.environ.get("BENCH_POSTS") or DEFAULT_POSTS),
        help=f"watched posts (default $BENCH_POSTS or {DEFAULT_POSTS})",
    )
    parser.add_argument("--video-bytes", type=int, default=VIDEO_BYTES, help="size of each video")
    args = parser.parse_args(argv)
    if args.posts < 2:
        parser.error("--posts must be at least 2")
    load = round(os.getloadavg()[0], 1)
    work = Path(tempfile.mkdtemp(prefix="bench-posts-"))
    site, urls, ids = start_site(args.posts, args.video_bytes)
    try:
        (work / "urls.txt").write_text("\n".join(urls) + "\n")
        ours, plain = work / "ours", work / "plain"
        site.day = 1
        first = run_child(
            "first capture (tiktok, day 1)",
            work,
            {
                "data_dir": str(ours),
                "source": "tiktok",
                "sources": {"tiktok": tiktok_source(site.base_url, urls, args.posts)},
                "arguments": [],
            },
        )
        issued_first = len(site.secrets())
        site.day = 2
        baseline = run_child(
            "plain browser capture (pages, day 2)",
            work,
            {
                "data_dir": str(plain),
                "source": "pages",
                "sources": {},
                "arguments": ["mode=browser", f"urls_file={work / 'urls.txt'}"],
            },
        )
        shutil.rmtree(plain, ignore_errors=True)
        issued_plain = len(site.secrets()) - issued_first
        again = run_child(
            "re-capture (tiktok, day 2)",
            work,
            {
                "data_dir": str(ours),
                "source": "tiktok",
                "sources": {"tiktok": tiktok_source(site.base_url, urls[:1], args.posts)},
                "arguments": [],
            },
        )
        media = [m for m in site.media_requests if m["path"].startswith("/video/")]
        videos_served = sum(1 for m in media if m["status"] == 200)
        issued_again = len(site.secrets()) - issued_first - issued_plain
    finally:
        site.stop()
        remove_posts(ids)
        shutil.rmtree(work, ignore_errors=True)
    if again["items"] != args.posts:
        print(f"posts: WARNING: the re-capture ran {again['items']} posts, not {args.posts}")
    ratio = again["per_minute"] / baseline["per_minute"] if baseline["per_minute"] else 0.0
    figures: dict[str, float | int | str] = {
        "posts (N)": args.posts,
        "video bytes (each)": args.video_bytes,
        "videos served (both tiktok runs)": videos_served,
        # Each is a secret the run's redactor learns and then looks for in every later capture.
        "cookie values issued: first capture": issued_first,
        "cookie values issued: plain capture": issued_plain,
        "cookie values issued: re-capture": issued_again,
        "load average at start": load,
        "plain capture pages/minute": baseline["per_minute"],
        "plain capture steady pages/minute": baseline["steady_per_minute"] or "-",
        "plain capture peak PSS MiB": baseline["peak_pss_mib"],
        "plain capture peak RSS (sum) MiB": baseline["peak_rss_mib"],
        "plain capture CPU s per page": baseline["cpu_seconds"] / max(baseline["items"], 1),
        "re-capture posts/minute": again["per_minute"],
        "re-capture steady posts/minute": again["steady_per_minute"] or "-",
        "re-capture archived": again["archived"],
        "re-capture outcomes": json.dumps(again["counts"]),
        "re-capture peak PSS MiB": again["peak_pss_mib"],
        "re-capture peak RSS (sum) MiB": again["peak_rss_mib"],
        "re-capture CPU s per post": again["cpu_seconds"] / max(again["items"], 1),
        "ratio re-capture/plain": ratio,
        "goal ratio (at least)": GOAL_RATIO,
        "first capture posts/minute": first["per_minute"],
        "first capture peak PSS MiB": first["peak_pss_mib"],
        "cores": os.cpu_count() or 1,
    }
    report("posts", figures)
    note = (
        f"{args.posts} posts, video {args.video_bytes / 1e6:.2f} MB each; CPU s per item "
        f"{again['cpu_seconds'] / max(again['items'], 1):.2f} vs "
        f"{baseline['cpu_seconds'] / max(baseline['items'], 1):.2f}"
    )
    return [
        figure(
            "posts",
            "re-capture posts/minute (tiktok)",
            again["per_minute"],
            unit="/min",
            baseline=baseline["per_minute"],
            baseline_name="pages/min, pages source, browser",
            goal=GOAL_RATIO,
            note=note,
        ),
        figure(
            "posts",
            "re-capture peak PSS of process tree",
            again["peak_pss_mib"],
            unit="MiB",
            baseline=baseline["peak_pss_mib"],
            baseline_name="MiB, plain browser capture",
        ),
        figure(
            "posts",
            "first capture posts/minute (tiktok)",
            first["per_minute"],
            unit="/min",
            baseline=baseline["per_minute"],
            baseline_name="pages/min, pages source, browser",
        ),
    ]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        Path(sys.argv[3]).write_text(json.dumps(_child(json.loads(sys.argv[2]))))
    else:
        main()
