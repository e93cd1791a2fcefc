"""Media of a post (video, images, cover): fetched as the platform's player fetches them, kept
as artifacts of the post's snapshot, and described by ffprobe.

Generic on purpose, for every post spider (``tiktok``, ``x``): a spider hands over a media URL,
the cookies of the page it came from and the Referer the platform expects; what it gets back is
a ``MediaFile`` holding

- the HTTP exchanges (every redirect hop and the final answer, recorded by the project's
  downloader middlewares, so the URL policy applied and the WARC shows the transfer; the
  ``Cookie`` header is redacted in the WARC like every other one),
- the bytes (``resource()`` makes the ``Resource`` the archive pipeline stores as its own
  artifact, under its SHA-256),
- ``facts()`` for the capture metadata: URL (the pipeline redacts its secret parameters),
  artifact name, digest, size, status, the *names* of the cookies sent (never their values)
  and what ffprobe read.

Fetching goes through Scrapy's downloader (``crawler.engine.download_async``), not a client of
its own, so a media request obeys the run's address policy, timeouts and size limits, and it
never enters Scrapy's cookie jar (``dont_merge_cookies``): the cookies are exactly the page's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import scrapy
from twisted.python.failure import Failure

from crawlers.exchanges import Exchange
from crawlers.items import Resource
from crawlers.middlewares import EXCHANGES

log = logging.getLogger(__name__)

MEDIA_ROLE = "media"  # the artifact role of every media file
PROBE_TIMEOUT = 60  # seconds ffprobe may take for one file
# File name extensions by media type, for artifact names (the type itself is kept too).
EXTENSIONS = {
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
    "video/mp2t": "ts",
    "audio/mp4": "m4a",
    "audio/mpeg": "mp3",
    "audio/aac": "aac",
    "image/jpeg": "jpeg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/avif": "avif",
    "image/heic": "heic",
}
DEFAULT_MEDIA_TYPES = {"video": "video/mp4", "audio": "audio/mp4", "gif": "video/mp4"}


@dataclass
class MediaFile:
    """One media file of a post as fetched: bytes (None if not fetched), exchanges, facts."""

    kind: str  # video, image, cover, audio, gif
    url: str
    name: str  # artifact name, e.g. video.mp4
    outcome: str = "fetched"  # fetched, http-error, too-large, refused, failed
    status: int | None = None
    media_type: str | None = None
    data: bytes | None = None
    error: str | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    cookies_sent: list[str] = field(default_factory=list)
    referer: str | None = None
    probe: dict[str, Any] | None = None
    role: str = MEDIA_ROLE

    @property
    def sha256(self) -> str | None:
        return hashlib.sha256(self.data).hexdigest() if self.data is not None else None

    def resource(self) -> Resource | None:
        """The artifact the archive stores (None when nothing usable arrived)."""
        if self.data is None:
            return None
        return Resource(
            self.role, self.name, self.media_type or "application/octet-stream", self.data
        )

    def facts(self) -> dict[str, Any]:
        """What the capture metadata records about this file (no cookie values)."""
        facts: dict[str, Any] = {
            "kind": self.kind,
            "url": self.url,
            "outcome": self.outcome,
            "status": self.status,
            "artifact": self.name if self.data is not None else None,
            "role": self.role if self.data is not None else None,
            "media_type": self.media_type,
            "sha256": self.sha256,
            "size": len(self.data) if self.data is not None else None,
            "cookies_sent": self.cookies_sent,
            "referer": self.referer,
        }
        if self.error:
            facts["error"] = self.error
        if self.probe is not None:
            facts["ffprobe"] = self.probe
        return facts


# -- cookies ---------------------------------------------------------------------------------
def _domain_matches(host: str, domain: str, host_only: bool) -> bool:
    domain = domain.lower().lstrip(".")
    host = host.lower()
    if host_only:
        return host == domain
    return host == domain or host.endswith("." + domain)


def cookie_header(cookies: Iterable[Mapping[str, Any]], url: str) -> tuple[str | None, list[str]]:
    """The ``Cookie`` header a browser would send to ``url`` from ``cookies`` (Playwright's
    cookie dicts: name, value, domain, path, secure), and the names it holds.

    RFC 6265 matching: a domain cookie (``.tiktok.com``) goes to every subdomain, a host-only
    cookie to its host only, a path cookie below its path, a secure cookie over https only.
    The last cookie of a name wins (later pages and responses set newer values).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = parts.path or "/"
    chosen: dict[str, str] = {}
    for cookie in cookies:
        name, value = cookie.get("name"), cookie.get("value")
        if not name or value is None:
            continue
        domain = str(cookie.get("domain") or host)
        host_only = not domain.startswith(".") and cookie.get("host_only", True)
        if not _domain_matches(host, domain, bool(host_only)):
            continue
        cookie_path = str(cookie.get("path") or "/")
        if not (path == cookie_path or path.startswith(cookie_path.rstrip("/") + "/")):
            continue
        if cookie.get("secure") and parts.scheme != "https":
            continue
        chosen.pop(name, None)
        chosen[name] = str(value)
    if not chosen:
        return None, []
    return "; ".join(f"{k}={v}" for k, v in chosen.items()), list(chosen)


def cookies_from_exchanges(exchanges: Iterable[Exchange]) -> list[dict[str, Any]]:
    """Cookies the responses of a page set (``Set-Cookie``), as cookie dicts in order.

    A page's cookies are read from the browser too, but only up to the moment they are read;
    responses that came later (an API call setting a fresh token) are caught here.
    """
    found: list[dict[str, Any]] = []
    for exchange in exchanges:
        host = urlsplit(exchange.url).hostname or ""
        for name, value in exchange.response_headers:
            if name.lower() != "set-cookie":
                continue
            jar: SimpleCookie = SimpleCookie()
            with contextlib.suppress(CookieError):
                jar.load(value)
            for morsel in jar.values():
                domain = morsel["domain"]
                found.append(
                    {
                        "name": morsel.key,
                        "value": morsel.value,
                        "domain": ("." + domain.lstrip(".")) if domain else host,
                        "host_only": not domain,
                        "path": morsel["path"] or "/",
                        "secure": bool(morsel["secure"]),
                    }
                )
    return found


# -- fetching --------------------------------------------------------------------------------
def media_name(kind: str, media_type: str | None, index: int | None = None) -> str:
    """An artifact name: ``video.mp4``, ``cover.jpeg``, ``image-02.webp``."""
    ext = EXTENSIONS.get((media_type or "").split(";")[0].strip().lower(), "bin")
    stem = kind if index is None else f"{kind}-{index:02d}"
    return f"{stem}.{ext}"


async def fetch_media(
    spider: scrapy.Spider,
    url: str,
    *,
    kind: str,
    index: int | None = None,
    cookies: Iterable[Mapping[str, Any]] = (),
    referer: str | None = None,
    max_bytes: int | None = None,
    headers: Mapping[str, str] | None = None,
    role: str = MEDIA_ROLE,
) -> MediaFile:
    """Fetch one media URL with the page's cookies and a Referer, through the spider's
    downloader; never raises (a failure is the file's ``outcome``)."""
    from crawlers.spiders.pages import classify_failure  # pages imports nothing of media

    cookie, names = cookie_header(cookies, url)
    sent: dict[str, str] = {"Accept": "*/*", "Accept-Encoding": "identity"}
    if referer:
        sent["Referer"] = referer
    if cookie:
        sent["Cookie"] = cookie
    sent.update(headers or {})
    exchanges: list[Exchange] = []
    meta: dict[str, Any] = {
        EXCHANGES: exchanges,
        "dont_merge_cookies": True,  # exactly the page's cookies; nothing kept for later
        "dont_obey_robotstxt": True,  # part of the page, as the player loads it
        "handle_httpstatus_all": True,
    }
    if max_bytes:
        meta["download_maxsize"] = max_bytes
        meta["download_warnsize"] = 0
    media = MediaFile(kind=kind, url=url, name="", cookies_sent=names, referer=referer, role=role)
    request = scrapy.Request(url, headers=sent, meta=meta, dont_filter=True)
    try:
        response = await spider.crawler.engine.download_async(request)
    except Exception as exc:
        outcome, message = classify_failure(Failure(exc))
        media.outcome = "refused" if outcome in ("private-address", "invalid-url") else outcome
        media.error = message
        media.exchanges = exchanges
        media.name = media_name(kind, DEFAULT_MEDIA_TYPES.get(kind), index)
        return media
    media.exchanges = exchanges
    media.status = response.status
    content_type = response.headers.get("Content-Type", b"").decode("latin-1").split(";")[0]
    media.media_type = content_type.strip().lower() or DEFAULT_MEDIA_TYPES.get(kind)
    media.name = media_name(kind, media.media_type, index)
    if 200 <= response.status < 300:
        media.data = bytes(response.body)
    else:
        media.outcome = "http-error"
        media.error = f"the server answered {response.status}"
    return media


# -- ffprobe ---------------------------------------------------------------------------------
@functools.cache
def ffprobe_path() -> str | None:
    """The ffprobe executable, or None if it is not installed."""
    return shutil.which("ffprobe")


@functools.cache
def ffprobe_version() -> str | None:
    """ffprobe's version line (``ffprobe version 5.1.6-0+deb12u1 ...``), recorded with facts."""
    path = ffprobe_path()
    if path is None:
        return None
    try:
        out = subprocess.run(
            [path, "-version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def summarise_probe(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The facts of ffprobe's JSON (``-show_format -show_streams``) that a court asks about:
    duration, frame size, codecs, bit rate, container; plus each stream, briefly."""
    fmt = raw.get("format") or {}
    streams = [s for s in raw.get("streams") or [] if isinstance(s, Mapping)]
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = _number(fmt.get("duration"))
    if duration is None and video is not None:
        duration = _number(video.get("duration"))
    keep = (
        "index",
        "codec_type",
        "codec_name",
        "profile",
        "width",
        "height",
        "duration",
        "bit_rate",
        "r_frame_rate",
        "pix_fmt",
        "sample_rate",
        "channels",
    )
    return {
        "container": fmt.get("format_name"),
        "duration": round(duration, 3) if duration is not None else None,
        "bitrate": _integer(fmt.get("bit_rate")),
        "width": _integer(video.get("width")) if video else None,
        "height": _integer(video.get("height")) if video else None,
        "codec": video.get("codec_name") if video else (audio or {}).get("codec_name"),
        "audio_codec": audio.get("codec_name") if audio else None,
        "streams": [{k: s[k] for k in keep if k in s} for s in streams],
    }


def probe(data: bytes, *, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """What ffprobe reads from ``data``: ``summarise_probe`` plus the ffprobe version, or
    ``{"error": ...}`` when ffprobe is missing or cannot read the file."""
    path = ffprobe_path()
    if path is None:
        return {"error": "ffprobe is not installed (Debian: apt-get install ffmpeg)"}
    # A file, not a pipe: an MP4 whose index (moov) sits at the end needs seeking.
    with tempfile.TemporaryDirectory(prefix="evidence-probe-") as tmp:
        media = Path(tmp) / "media"
        media.write_bytes(data)
        try:
            proc = subprocess.run(
                [
                    path,
                    "-v",
                    "error",
                    "-print_format",
                    "json",
                    "-show_format",
                    "-show_streams",
                    str(media),
                ],
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {
                "error": f"ffprobe took longer than {timeout:g} s",
                "ffprobe": ffprobe_version(),
            }
        except OSError as exc:
            return {"error": f"ffprobe could not run: {exc}"}
    try:
        raw = json.loads(proc.stdout or b"{}")
    except ValueError:
        raw = {}
    if proc.returncode != 0 or not raw.get("streams"):
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        return {
            "error": (message[-1] if message else f"ffprobe exited {proc.returncode}")[:300],
            "ffprobe": ffprobe_version(),
        }
    return summarise_probe(raw) | {"ffprobe": ffprobe_version()}


async def probe_async(data: bytes, *, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """``probe`` in a worker thread (the reactor's loop keeps running)."""
    return await asyncio.to_thread(probe, data, timeout=timeout)
