"""Browser capture: pages rendered by Chromium through scrapy-playwright.

A page is captured in one browser tab, in this order (every step is bounded and logged in
``details["interactions"]``)::

    listeners on (before navigation) -> navigate, wait for DOMContentLoaded (DOWNLOAD_TIMEOUT)
    -> wait for load (capped) -> network idle (capped) and a short settle -> scroll down a
    viewport at a time so that lazy content loads (capped in pixels and seconds) -> back to
    the top -> network idle again -> full-page screenshot -> PDF print -> rendered DOM
    -> remaining bodies -> storage of the visited origins cleared -> tab closed

What a capture holds:

- **Exchanges**: every HTTP(S) request the page made (document, redirects, scripts, API
  calls, images), with the request headers as Chromium sent them and the response headers as
  received. Bodies come from Chromium *decoded* (gzip/br removed), so the original
  ``Content-Encoding`` and a ``Content-Length`` that no longer matches are kept under
  ``X-Archive-Orig-*`` names and the stored length is given; the plain-HTTP path keeps
  bodies as transferred. Redirect responses have no body in the browser. Document bodies
  are copied through DevTools as they arrive, because Chromium's network log shows a
  stand-in page instead of a PDF it hands to its viewer. The bytes kept per page are bounded
  (``BROWSER_MAX_PAGE_BYTES``, and ``DOWNLOAD_MAXSIZE`` per response); what was cut is
  listed in ``details["bodies"]``.
- **Resources**: ``screenshot`` (full-page PNG), ``pdf`` (Chromium's print to PDF) and
  ``dom`` (the serialised DOM as UTF-8 HTML, with every secret value the capture saw
  replaced by ``REDACTED``). A screenshot or PDF cannot be scrubbed: when the visible text or
  the PDF would show a secret, they are withheld and the reason recorded. A PDF document
  gets a screenshot of Chromium's viewer only: its DOM and a print would show the viewer.
- **Details** (the capture metadata): final URL, redirect chain of the main document, server
  IP, protocol, TLS (security details of the main document and the certificate chain from a
  separate TLS connection), user agent as sent, browser version, interactions, console
  errors, failed requests, timings.

One browser serves the whole run (``SharedPlaywrightHandler``: one handler for http and
https). Pages run in a small pool of browser contexts (``BROWSER_CONTEXTS``), one page per
context at a time; cookies are cleared before each page and the storage of the origins it
visited after it, so that no capture carries state from another one. Each page gets a new
tab, closed after the capture; ``BROWSER_REUSE_PAGES`` keeps the tab instead (left on
``about:blank``), which saves Chromium a renderer process per page.

This module drives the capture (handler, settings, context pool, rendering, outcome); what a
tab does while it is captured is recorded by ``crawlers.recorder.PageRecorder``, which also
applies the address policy (``crawlers.urls``) to every request Chromium makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import re
import shutil
import socket
import ssl
import struct
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.http import Response
from scrapy.settings import BaseSettings
from scrapy_playwright.handler import ScrapyPlaywrightDownloadHandler
from twisted.python.failure import Failure

from crawlers.detect import looks_like_login_wall
from crawlers.exchanges import Exchange
from crawlers.items import PageCapture, Resource
from crawlers.recorder import (
    OPTIONS_META,
    RECORDER,
    PageRecorder,
    SeenRequest,
    archived_response_headers,
    ms,
    start_recording,
)
from crawlers.redaction import Redactor
from crawlers.urls import AddressPolicy
from schemas import format_rfc3339, utc_now

log = logging.getLogger(__name__)

PLAYWRIGHT_HANDLER = "crawlers.browser.SharedPlaywrightHandler"
CONTEXT_META = "playwright_context"
BODY_NOTE = (
    "Response bodies were recorded by Chromium after decoding: Content-Encoding (gzip, br) "
    "is removed. The original Content-Encoding and Content-Length headers are kept as "
    "X-Archive-Orig-Content-Encoding and X-Archive-Orig-Content-Length, and Content-Length "
    "gives the stored length. The plain-HTTP capture keeps bodies as transferred."
)
CONTEXT_NOTE = (
    "One browser for the run; pages run in reused browser contexts, one page per context at "
    "a time. Cookies are cleared before each page, and the storage of every origin the page "
    "contacted (cookies, local storage, IndexedDB, cache storage) after it. Requests are "
    "intercepted, which disables Chromium's HTTP cache: every resource came from the network."
)

# In the page: scroll position and size; the promise resolves after two animation frames so
# that IntersectionObserver callbacks (lazy images) have run for the new position.
_SCROLL_JS = """
(y) => {
  if (y !== null) { window.scrollTo(0, y); }
  const state = () => ({
    y: Math.round(window.scrollY),
    height: Math.max(document.documentElement ? document.documentElement.scrollHeight : 0,
                     document.body ? document.body.scrollHeight : 0),
    inner: window.innerHeight,
  });
  return new Promise((resolve) =>
    requestAnimationFrame(() => requestAnimationFrame(() => resolve(state()))));
}
"""
# Resource Timing knows the protocol (http/1.1, h2, h3) that Playwright does not expose.
_PROTOCOLS_JS = """
() => performance.getEntries()
  .filter((e) => typeof e.nextHopProtocol === "string" && e.nextHopProtocol)
  .map((e) => [e.name, e.nextHopProtocol])
"""
_VISIBLE_TEXT_JS = "() => document.body ? document.body.innerText : ''"
_CLEAR_SESSION_JS = "() => { try { sessionStorage.clear(); } catch (e) {} }"
# Documents Chromium shows in a built-in viewer rather than rendering them as a page.
VIEWER_TYPES = frozenset({"application/pdf", "application/x-pdf"})


# -- the download handler --------------------------------------------------------------------
class SharedPlaywrightHandler(ScrapyPlaywrightDownloadHandler):
    """scrapy-playwright's download handler, one instance for both http and https.

    Scrapy builds one handler per scheme, and scrapy-playwright's handler starts its own
    Playwright driver and browser: configured for http and https, a run would have two
    browsers. This subclass hands the crawler's first instance out again, and closes once.
    """

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SharedPlaywrightHandler:
        """The crawler's handler, created on the first call."""
        handler = getattr(crawler, "_evidence_playwright_handler", None)
        if handler is None:
            handler = cls(crawler)
            crawler._evidence_playwright_handler = handler  # type: ignore[attr-defined]
        return handler

    async def close(self) -> None:
        """Close the browser and the driver (once, though Scrapy asks once per scheme)."""
        if getattr(self, "_evidence_closed", False):
            return
        self._evidence_closed = True
        await super().close()


# -- settings --------------------------------------------------------------------------------
def chromium_user_agent(executable: str | None, fallback: str) -> str:
    """A desktop Chrome user agent naming the engine's real major version.

    Headless Chromium announces itself as ``HeadlessChrome``; sites treat that as a bot. The
    replacement names the same major version as the ``sec-ch-ua`` client hints Chromium sends,
    so that the two agree. Falls back to ``fallback`` if the version cannot be read.
    """
    if not executable:
        return fallback
    try:
        out = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return fallback
    match = re.search(r"(\d+)\.\d+\.\d+\.\d+", out)
    if not match:
        return fallback
    return (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{match.group(1)}.0.0.0 Safari/537.36"
    )


def context_names(count: int) -> list[str]:
    """Names of the reused browser contexts."""
    return [f"capture-{n}" for n in range(1, max(1, count) + 1)]


def context_kwargs(settings: BaseSettings, user_agent: str) -> dict[str, Any]:
    """Options of every browser context (Playwright's ``browser.new_context`` keywords)."""
    return {
        "user_agent": user_agent,
        "viewport": dict(settings.getdict("BROWSER_VIEWPORT") or {"width": 1280, "height": 800}),
        "device_scale_factor": 1,
        "locale": settings.get("BROWSER_LOCALE", "en-US"),
        "timezone_id": settings.get("BROWSER_TIMEZONE", "UTC"),
        # A capture records what a server sends, valid certificate or not; the certificate
        # and the verification result go into the metadata.
        "ignore_https_errors": True,
        # A service worker could answer requests itself, unseen by the network listeners.
        "service_workers": "block",
        "accept_downloads": True,
        "java_script_enabled": True,
    }


def playwright_settings(settings: BaseSettings) -> dict[str, Any]:
    """The Scrapy settings that switch a crawl to browser capture (crawlers.runner applies
    them when the mode is ``browser``): download handler, launch options, contexts, timeouts.
    """
    executable = settings.get("BROWSER_EXECUTABLE")
    if executable and not Path(executable).exists():
        log.warning("BROWSER_EXECUTABLE %s not found: using Playwright's own Chromium", executable)
        executable = None
    user_agent = chromium_user_agent(executable, settings.get("USER_AGENT"))
    launch: dict[str, Any] = {
        "headless": True,  # page.pdf() needs headless Chromium
        "args": list(settings.getlist("BROWSER_ARGS")),
        "timeout": 60_000,
    }
    if executable:
        launch["executable_path"] = executable
    kwargs = context_kwargs(settings, user_agent)
    timeout_ms = settings.getfloat("DOWNLOAD_TIMEOUT") * 1000
    return {
        "DOWNLOAD_HANDLERS": {"http": PLAYWRIGHT_HANDLER, "https": PLAYWRIGHT_HANDLER},
        "PLAYWRIGHT_BROWSER_TYPE": "chromium",
        "PLAYWRIGHT_LAUNCH_OPTIONS": launch,
        "PLAYWRIGHT_CONTEXTS": {
            name: dict(kwargs) for name in context_names(settings.getint("BROWSER_CONTEXTS", 3))
        },
        "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": 1,
        # The browser's own headers are sent (and recorded), not Scrapy's.
        "PLAYWRIGHT_PROCESS_REQUEST_HEADERS": None,
        "PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT": timeout_ms,
        "PLAYWRIGHT_DOWNLOAD_TIMEOUT": timeout_ms,
        # The same user agent for robots.txt (fetched by Scrapy) and in the warcinfo record.
        "USER_AGENT": user_agent,
    }


@dataclass(frozen=True)
class BrowserOptions:
    """Limits and choices of a browser capture, read from the Scrapy settings."""

    contexts: tuple[str, ...]
    context_kwargs: dict[str, Any]
    navigation_timeout: float
    load_timeout: float
    idle_ms: int
    idle_timeout: float
    settle_ms: int
    scroll_max_px: int
    scroll_max_seconds: float
    scroll_idle_ms: int
    screenshot_max_px: int
    render_timeout: float
    max_page_bytes: int
    max_response_bytes: int
    max_console: int
    reuse_pages: bool = False
    redact_query_params: tuple[str, ...] = ()
    redact_headers: tuple[str, ...] = ()
    policy: AddressPolicy = field(default_factory=AddressPolicy)

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> BrowserOptions:
        """Options from ``BROWSER_*`` and the Playwright settings of ``playwright_settings``."""
        contexts = settings.getdict("PLAYWRIGHT_CONTEXTS")
        names = tuple(contexts) or tuple(context_names(settings.getint("BROWSER_CONTEXTS", 3)))
        timeout = settings.getfloat("DOWNLOAD_TIMEOUT", 30)
        return cls(
            contexts=names,
            context_kwargs=dict(next(iter(contexts.values()), {})),
            navigation_timeout=timeout,
            load_timeout=settings.getfloat("BROWSER_LOAD_TIMEOUT", timeout),
            idle_ms=settings.getint("BROWSER_NETWORK_IDLE_MS", 500),
            idle_timeout=settings.getfloat("BROWSER_NETWORK_IDLE_TIMEOUT", 10),
            settle_ms=settings.getint("BROWSER_SETTLE_MS", 200),
            scroll_max_px=settings.getint("BROWSER_SCROLL_MAX_PX", 20000),
            scroll_max_seconds=settings.getfloat("BROWSER_SCROLL_MAX_SECONDS", 10),
            scroll_idle_ms=settings.getint("BROWSER_SCROLL_IDLE_MS", 100),
            screenshot_max_px=settings.getint("BROWSER_SCREENSHOT_MAX_PX", 16384),
            render_timeout=settings.getfloat("BROWSER_RENDER_TIMEOUT", 30),
            max_page_bytes=settings.getint("BROWSER_MAX_PAGE_BYTES", 100 * 1024 * 1024),
            max_response_bytes=settings.getint("DOWNLOAD_MAXSIZE", 0) or (1 << 62),
            max_console=settings.getint("BROWSER_MAX_CONSOLE", 200),
            reuse_pages=settings.getbool("BROWSER_REUSE_PAGES", False),
            redact_query_params=tuple(settings.getlist("REDACT_QUERY_PARAMS")),
            redact_headers=tuple(settings.getlist("REDACT_HEADERS")),
            policy=AddressPolicy.from_settings(settings),
        )


# -- the pool of reused contexts -------------------------------------------------------------
class ContextPool:
    """Browser contexts handed out one page at a time, so that each page's state can be reset.

    ``acquire`` waits until a context is free; ``release`` gives it back. The spider acquires
    before it yields a request, so pages never queue up inside the browser. With tab reuse,
    the pool also keeps each context's tab between captures (``keep`` and ``tab``).
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._free: asyncio.Queue[str] | None = None
        self.pages: dict[str, int] = dict.fromkeys(names, 0)  # pages captured in each so far
        self._tabs: dict[str, Page] = {}
        self.tab_uses: dict[str, int] = dict.fromkeys(names, 0)  # captures in the kept tab

    def _queue(self) -> asyncio.Queue[str]:
        # created lazily: the queue binds to the running event loop (the reactor's)
        if self._free is None:
            self._free = asyncio.Queue()
            for name in self.names:
                self._free.put_nowait(name)
        return self._free

    async def acquire(self) -> str:
        """A free context's name (waits for one)."""
        return await self._queue().get()

    def release(self, name: str | None) -> None:
        """Give a context back; ``None`` and unknown names are ignored."""
        if name in self.pages:
            self.pages[name] += 1
            self._queue().put_nowait(name)

    def tab(self, name: str) -> Page | None:
        """The context's kept tab, if it is still open."""
        page = self._tabs.get(name)
        return page if page is not None and not page.is_closed() else None

    def keep(self, name: str | None, page: Page | None) -> None:
        """Keep ``page`` as the context's tab for the next capture (``None``: forget it)."""
        if name not in self.pages:
            return
        if page is None:
            self._tabs.pop(name, None)
            self.tab_uses[name] = 0
        else:
            self.tab_uses[name] = self.tab_uses[name] + 1 if self._tabs.get(name) is page else 1
            self._tabs[name] = page


# -- TLS -------------------------------------------------------------------------------------
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_PEM = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----", re.S)


def fetch_certificate_chain(host: str, port: int, timeout: float = 10.0) -> dict[str, Any]:
    """The certificate chain the server presents, as PEM, from a separate TLS connection.

    ``openssl s_client -showcerts`` gives the whole chain and the verification result
    against the capture host's trust store; without openssl, Python's ssl module gives the
    leaf certificate only (Python 3.11 cannot return the chain).
    """
    fetched_at = format_rfc3339(utc_now())
    openssl = shutil.which("openssl")
    if openssl:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        args = [openssl, "s_client", "-connect", target, "-showcerts"]
        if _is_ip(host):
            args += ["-noservername", "-verify_ip", host]
        else:
            args += ["-servername", host, "-verify_hostname", host]
        try:
            out = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            out = ""
            log.warning("openssl s_client %s failed: %s", target, exc)
        pems = [p.replace("\r\n", "\n") + "\n" for p in _PEM.findall(out)]
        if pems:
            verify = re.search(r"Verify return code: (\d+) \(([^)]*)\)", out)
            return {
                "certificate_chain_pem": pems,
                "chain_source": f"openssl s_client -showcerts to {target} from the capture host",
                "chain_fetched_at": fetched_at,
                "verification": f"{verify.group(1)} ({verify.group(2)})" if verify else None,
            }
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the certificate is recorded, not judged, here
    with (
        socket.create_connection((host, port), timeout=timeout) as sock,
        context.wrap_socket(sock, server_hostname=None if _is_ip(host) else host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    return {
        "certificate_chain_pem": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "chain_source": f"Python ssl to {host}:{port} from the capture host (leaf only)",
        "chain_fetched_at": fetched_at,
        "verification": None,
    }


def _epoch(value: Any) -> str | None:
    if not isinstance(value, int | float) or value <= 0:
        return None
    return format_rfc3339(datetime.fromtimestamp(value, UTC))


class TlsChains:
    """Certificate chains fetched once per host and port during a run."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._chains: dict[tuple[str, int], asyncio.Future[dict[str, Any]]] = {}

    def get(self, url: str) -> asyncio.Future[dict[str, Any]] | None:
        """The chain of the server of ``url`` (https only), being fetched in a thread."""
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            return None
        key = (parts.hostname, parts.port or 443)
        if key not in self._chains:
            self._chains[key] = asyncio.ensure_future(
                asyncio.to_thread(fetch_certificate_chain, key[0], key[1], self.timeout)
            )
        return self._chains[key]


# -- outcome of failures ---------------------------------------------------------------------
_NET_ERRORS = (
    ("ERR_NAME_NOT_RESOLVED", "dns-error"),
    ("ERR_NAME_RESOLUTION_FAILED", "dns-error"),
    ("ERR_TOO_MANY_REDIRECTS", "redirect-loop"),
    ("ERR_TIMED_OUT", "timeout"),
    ("ERR_CONNECTION_TIMED_OUT", "timeout"),
    ("ERR_CERT_", "tls-error"),
    ("ERR_SSL_", "tls-error"),
    ("ERR_BAD_SSL_CLIENT_AUTH_CERT", "tls-error"),
    ("ERR_CONNECTION_", "connection-error"),
    ("ERR_EMPTY_RESPONSE", "connection-error"),
    ("ERR_ADDRESS_UNREACHABLE", "connection-error"),
    ("ERR_INTERNET_DISCONNECTED", "connection-error"),
    ("ERR_SOCKET_NOT_CONNECTED", "connection-error"),
    ("ERR_INVALID_HTTP_RESPONSE", "connection-error"),
    ("ERR_FILE_TOO_BIG", "too-large"),
    # Chromium's own refusal of a redirect to file:, data: and the like
    ("ERR_UNSAFE_REDIRECT", "unsupported-scheme"),
)


def classify_browser_failure(failure: Failure) -> tuple[str, str] | None:
    """(outcome, message) for a Playwright error, or None if it is not one."""
    exc = failure.value
    if isinstance(exc, PlaywrightTimeoutError):
        return "timeout", exc.message.splitlines()[0]
    if not isinstance(exc, PlaywrightError):
        return None
    message = exc.message.splitlines()[0] if exc.message else type(exc).__name__
    for code, outcome in _NET_ERRORS:
        if code in message:
            return outcome, message
    if "Timeout" in message and "exceeded" in message:
        return "timeout", message
    return "failed", message


# -- the capture -----------------------------------------------------------------------------
def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@dataclass
class _Page:
    """What a capture collects while it runs."""

    resources: list[Resource] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


class BrowserCapture:
    """The browser side of the `pages` spider: request options, and the capture of a page."""

    def __init__(self, settings: BaseSettings) -> None:
        self.options = BrowserOptions.from_settings(settings)
        self.contexts = ContextPool(self.options.contexts)
        self.tls = TlsChains()

    def redactor(self) -> Redactor:
        """A fresh redactor configured like the archive pipeline's."""
        return Redactor(
            query_params=set(self.options.redact_query_params),
            header_names=set(self.options.redact_headers),
        )

    def request_meta(self, context: str) -> dict[str, Any]:
        """The request meta that makes scrapy-playwright render a page in ``context``."""
        meta = {
            "playwright": True,
            "playwright_include_page": True,  # the spider closes the page after the capture
            CONTEXT_META: context,
            # used if the browser had to be restarted and the context re-created
            "playwright_context_kwargs": dict(self.options.context_kwargs),
            "playwright_page_init_callback": start_recording,
            "playwright_page_goto_kwargs": {
                "wait_until": "domcontentloaded",
                "timeout": self.options.navigation_timeout * 1000,
            },
            OPTIONS_META: self.options,
        }
        tab = self.contexts.tab(context) if self.options.reuse_pages else None
        if tab is not None:
            meta["playwright_page"] = tab  # scrapy-playwright navigates this tab again
        return meta

    # -- after a successful navigation -----------------------------------------------------
    async def capture(
        self, response: Response, *, requested_url: str, started_at: datetime
    ) -> PageCapture:
        """Wait, scroll, screenshot, print, read the DOM; one PageCapture with everything.

        Never raises: an unexpected error ends the capture as ``failed``, with the exchanges
        recorded so far, so that every URL has an outcome and the run goes on.
        """
        try:
            return await self._capture(response, requested_url=requested_url, started_at=started_at)
        except Exception as exc:
            log.exception("browser capture of %s failed", requested_url)
            return await self._unexpected(response.meta, exc, requested_url, started_at)

    async def _unexpected(
        self, meta: dict[str, Any], exc: Exception, requested_url: str, started_at: datetime
    ) -> PageCapture:
        page: Page | None = meta.get("playwright_page")
        recorder: PageRecorder | None = meta.get(RECORDER)
        if page is not None:
            with contextlib.suppress(Exception):
                await self._close(page, recorder, None)  # closed, never reused after this
        return PageCapture(
            requested_url=requested_url,
            mode="browser",
            outcome="failed",
            started_at=started_at,
            finished_at=utc_now(),
            exchanges=recorder.exchanges() if recorder is not None else [],
            error=f"browser capture failed: {type(exc).__name__}: {exc}",
            details={"interactions": recorder.interactions} if recorder is not None else {},
        )

    async def _capture(
        self, response: Response, *, requested_url: str, started_at: datetime
    ) -> PageCapture:
        page: Page = response.meta["playwright_page"]
        recorder: PageRecorder | None = response.meta.get(RECORDER)
        context = response.meta.get(CONTEXT_META)
        if recorder is None:  # the init callback failed: nothing was recorded
            await self._close(page, None, context)
            return PageCapture(
                requested_url=requested_url,
                mode="browser",
                outcome="failed",
                started_at=started_at,
                finished_at=utc_now(),
                error="the network recorder could not be attached to the page",
            )
        options = self.options
        result = _Page()
        recorder.note(
            "navigate",
            url=requested_url,
            wait_until="domcontentloaded",
            duration_ms=ms(response.meta.get("download_latency", 0.0)),
            status=response.status,
        )
        download = response.meta.get("playwright_suggested_filename")
        tls_future = self.tls.get(response.url)
        if download is None:
            try:
                content_type = response.headers.get("Content-Type", b"").decode("latin-1")
                await self._render(page, recorder, result, content_type.split(";")[0].lower())
            except PlaywrightError as exc:  # e.g. the page crashed: keep what was recorded
                recorder.errors.append(f"rendering stopped: {exc.message.splitlines()[0]}")
        else:
            result.details["download"] = {"suggested_filename": download}
        t = time.monotonic()
        await recorder.settle(options.idle_timeout)
        await self._protocols(page, recorder)
        result.timings["bodies_ms"] = ms(time.monotonic() - t)
        final_url = page.url if download is None else response.url
        security = await self._security(recorder)  # asks the page: before it is closed
        result.details["tab"] = self._tab_note(page, context)
        await self._close(page, recorder, context)
        if download is not None:
            self._attach_download(recorder, response)
        if recorder.refused_main is not None:
            # The page was answered from a refused address (checked before it left, so the
            # name changed its answer: DNS rebinding): nothing rendered from it is kept.
            outcome, message = recorder.refused_main
            return PageCapture(
                requested_url=requested_url,
                mode="browser",
                outcome=outcome,
                started_at=recorder.started_at,
                finished_at=utc_now(),
                exchanges=recorder.exchanges(),
                error=message,
                details={"refused_requests": recorder.refused},
            )
        dom = next((r.data for r in result.resources if r.role == "dom"), None)
        outcome = "archived"
        main = self._main_exchange(recorder)
        if main is not None and main.notes.get("truncated") == "length":
            outcome = "too-large"
        elif looks_like_login_wall(dom if dom is not None else main.body if main else b""):
            outcome = "login-wall"
        details = self._details(page, recorder, result, context)
        tls = await self._tls(recorder, security, tls_future)
        if tls is not None:
            details["tls"] = tls
        return PageCapture(
            requested_url=requested_url,
            mode="browser",
            outcome=outcome,
            started_at=recorder.started_at,
            finished_at=utc_now(),
            exchanges=recorder.exchanges(),
            resources=result.resources,
            final_url=final_url,
            status=main.status if main is not None else response.status,
            details=details,
        )

    async def _render(
        self, page: Page, recorder: PageRecorder, result: _Page, content_type: str
    ) -> None:
        options = self.options
        t = time.monotonic()
        entry = recorder.note("wait", **{"for": "load", "cap_ms": ms(options.load_timeout)})
        try:
            await page.wait_for_load_state("load", timeout=options.load_timeout * 1000)
            entry["timed_out"] = False
        except PlaywrightTimeoutError:
            entry["timed_out"] = True
        entry["duration_ms"] = ms(time.monotonic() - t)
        await recorder.wait_step("network-idle", options.idle_ms, options.idle_timeout)
        await self._settle(page, recorder)
        result.timings["load_and_idle_ms"] = ms(time.monotonic() - t)

        # A PDF is shown by Chromium's viewer: its DOM is the viewer's stand-in page and a
        # print would print the viewer. The file itself is the main response's body.
        viewer = content_type in VIEWER_TYPES
        if viewer:
            result.details["rendering"] = (
                f"{content_type} shown by Chromium's built-in viewer: the screenshot shows the "
                "viewer; no DOM or print of it is kept; the document is the main response body"
            )
        t = time.monotonic()
        height = await self._scroll(page, recorder) if not viewer else options.screenshot_max_px
        result.timings["scroll_ms"] = ms(time.monotonic() - t)

        # Secrets the capture has seen (cookies, tokens in URLs and headers), to keep them out
        # of the DOM, and out of screenshots and PDFs, which cannot be scrubbed.
        await recorder.settle(options.idle_timeout)
        redactor = self.redactor()
        await self._teach(redactor, page, recorder)
        visible = await page.evaluate(_VISIBLE_TEXT_JS)
        _, shown = redactor.redact_text(visible or "")
        if shown:
            reason = "the visible page shows a secret value: " + ", ".join(shown)
            result.details["withheld"] = {"screenshot": reason, "pdf": reason}
        else:
            await self._screenshot(page, recorder, result, height)
            if not viewer:
                await self._pdf(page, recorder, result, redactor)
        if viewer:
            return

        t = time.monotonic()
        entry = recorder.note("read-dom")
        html = await page.content()
        await self._teach(redactor, page, recorder)
        dom, names = redactor.redact_text(html.encode("utf-8"))
        entry.update(duration_ms=ms(time.monotonic() - t), bytes=len(dom))
        result.timings["dom_ms"] = ms(time.monotonic() - t)
        if names:
            result.details["dom_redacted"] = names
        result.resources.append(
            Resource("dom", "dom.html", "text/html; charset=utf-8", dom, redacted=names)
        )

    async def _settle(self, page: Page, recorder: PageRecorder) -> None:
        """A short pause and two animation frames: rendering after the last response."""
        t = time.monotonic()
        entry = recorder.note("wait", **{"for": "settle", "pause_ms": self.options.settle_ms})
        await asyncio.sleep(self.options.settle_ms / 1000)
        await self._scroll_state(page, None, self.options.render_timeout)
        entry["duration_ms"] = ms(time.monotonic() - t)

    async def _scroll(self, page: Page, recorder: PageRecorder) -> int:
        """Scroll down a viewport at a time until the bottom or a cap; back to the top.

        Returns the page height at the end.
        """
        options = self.options
        start = time.monotonic()
        state = await self._scroll_state(page, None, options.render_timeout)
        scrolled = 0
        reason = "bottom"
        while state["y"] + state["inner"] < state["height"] - 1:
            elapsed = time.monotonic() - start
            if scrolled >= options.scroll_max_px:
                reason = "max-px"
                break
            if elapsed >= options.scroll_max_seconds:
                reason = "max-seconds"
                break
            target = min(state["y"] + state["inner"], state["y"] + options.scroll_max_px - scrolled)
            entry = recorder.note("scroll", from_y=state["y"], to_y=target)
            scrolled_at = time.monotonic()
            new = await self._scroll_state(page, target, options.scroll_max_seconds - elapsed)
            waited, timed_out = await recorder.wait_for_idle(
                options.scroll_idle_ms,
                max(0.0, options.scroll_max_seconds - elapsed),
                since=scrolled_at,
            )
            entry.update(
                to_y=new["y"],
                page_height=new["height"],
                wait_ms=ms(waited),
                wait_timed_out=timed_out,
            )
            if new["y"] <= state["y"]:
                reason = "cannot-scroll-further"
                break
            scrolled += new["y"] - state["y"]
            state = new
        recorder.note(
            "scroll-end",
            reason=reason,
            scrolled_px=scrolled,
            page_height=state["height"],
            duration_ms=ms(time.monotonic() - start),
            max_px=options.scroll_max_px,
            max_seconds=options.scroll_max_seconds,
        )
        if state["y"] > 0:
            recorder.note("scroll", from_y=state["y"], to_y=0, purpose="back to the top")
            state = await self._scroll_state(page, 0, options.render_timeout)
        if scrolled:  # whatever the scrolling started must be in the capture too
            remaining = options.idle_timeout - (time.monotonic() - start)
            await recorder.wait_step("network-idle", options.idle_ms, max(1.0, remaining))
        return int(state["height"])

    @staticmethod
    async def _scroll_state(page: Page, y: int | None, timeout: float) -> dict[str, int]:
        try:
            return await asyncio.wait_for(page.evaluate(_SCROLL_JS, y), max(1.0, timeout))
        except TimeoutError:  # no animation frame (a hidden or frozen page): read at once
            return await page.evaluate(
                "() => ({y: Math.round(scrollY), inner: innerHeight, "
                "height: document.documentElement.scrollHeight})"
            )

    async def _screenshot(
        self, page: Page, recorder: PageRecorder, result: _Page, height: int
    ) -> None:
        options = self.options
        t = time.monotonic()
        clip = None
        if height > options.screenshot_max_px:
            viewport = page.viewport_size or {"width": 1280}
            clip = {"x": 0, "y": 0, "width": viewport["width"], "height": options.screenshot_max_px}
        # A full-page screenshot lays the whole page out at once: it can start requests
        # (lazy content), which is why it is logged as an interaction.
        entry = recorder.note("screenshot", full_page=True, clipped_at_px=clip and clip["height"])
        try:
            png = await page.screenshot(
                full_page=True, type="png", clip=clip, timeout=options.render_timeout * 1000
            )
        except PlaywrightError as exc:
            entry["error"] = exc.message.splitlines()[0]
            recorder.errors.append(f"screenshot: {entry['error']}")
            return
        width, png_height = png_size(png)
        entry.update(duration_ms=ms(time.monotonic() - t), width=width, height=png_height)
        result.timings["screenshot_ms"] = entry["duration_ms"]
        result.resources.append(Resource("screenshot", "screenshot.png", "image/png", png))

    async def _pdf(
        self, page: Page, recorder: PageRecorder, result: _Page, redactor: Redactor
    ) -> None:
        t = time.monotonic()
        entry = recorder.note("print-pdf", format="A4", print_background=True)
        try:
            pdf = await asyncio.wait_for(
                page.pdf(format="A4", print_background=True), self.options.render_timeout
            )
        except (PlaywrightError, TimeoutError) as exc:
            message = getattr(exc, "message", None) or f"no PDF in {self.options.render_timeout} s"
            entry["error"] = message.splitlines()[0]
            recorder.errors.append(f"pdf: {entry['error']}")
            return
        entry.update(duration_ms=ms(time.monotonic() - t), bytes=len(pdf))
        result.timings["pdf_ms"] = entry["duration_ms"]
        # Link targets are written into the PDF as plain text: a secret in a link would be.
        _, names = redactor.redact_text(pdf)
        if names:
            result.details.setdefault("withheld", {})["pdf"] = "the PDF contains a secret value"
            return
        result.resources.append(Resource("pdf", "page.pdf", "application/pdf", pdf))

    @staticmethod
    async def _teach(redactor: Redactor, page: Page, recorder: PageRecorder) -> None:
        """Show the redactor every secret the capture has seen, so that it can scrub them."""
        for exchange in recorder.exchanges():
            redactor.redact_url(exchange.url)
            redactor.redact_headers(exchange.request_headers)
            redactor.redact_headers(exchange.response_headers)
        with contextlib.suppress(PlaywrightError):
            cookies = await page.context.cookies()
            if cookies:  # cookies set by scripts were perhaps never sent
                redactor.redact_headers(
                    [("Cookie", "; ".join(f"{c['name']}={c['value']}" for c in cookies))]
                )

    @staticmethod
    async def _protocols(page: Page, recorder: PageRecorder) -> None:
        with contextlib.suppress(PlaywrightError):
            entries = dict(await page.evaluate(_PROTOCOLS_JS))
            for exchange in recorder.exchanges():
                exchange.protocol = entries.get(exchange.url)

    async def _close(self, page: Page, recorder: PageRecorder | None, context: str | None) -> None:
        """Clear the storage of the origins the page visited; close the page, or, with tab
        reuse, leave it on ``about:blank`` for the context's next capture."""
        if recorder is not None and recorder.devtools is not None and not page.is_closed():
            origins = {f"{p.scheme}://{p.netloc}" for p in map(urlsplit, recorder.urls())}
            with contextlib.suppress(PlaywrightError, TimeoutError):
                if self.options.reuse_pages:  # per tab, not cleared with the origin's data
                    await asyncio.wait_for(page.evaluate(_CLEAR_SESSION_JS), 5)
                for origin in sorted(origins):
                    await asyncio.wait_for(
                        recorder.devtools.send(
                            "Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"}
                        ),
                        5,
                    )
        with contextlib.suppress(PlaywrightError):
            for other in page.context.pages:  # popups the page opened
                if other is not page:
                    await other.close()
        if self.options.reuse_pages and context is not None and not page.is_closed():
            if recorder is not None:
                await recorder.detach()
            try:
                await page.goto("about:blank", timeout=5000)
            except PlaywrightError:
                pass
            else:
                self.contexts.keep(context, page)
                return
        self.contexts.keep(context, None)
        with contextlib.suppress(PlaywrightError):
            await page.close()

    @staticmethod
    def _main_exchange(recorder: PageRecorder) -> Exchange | None:
        chain = recorder.main_chain()
        return chain[-1].exchange if chain else None

    @staticmethod
    def _attach_download(recorder: PageRecorder, response: Response) -> None:
        """A navigation that became a download: the file is the main document's body."""
        chain = recorder.main_chain()
        if not chain or chain[-1].exchange is None:
            return
        exchange = chain[-1].exchange
        if exchange.body:  # copied at the response stage already
            return
        limit = min(recorder.options.max_response_bytes, recorder.options.max_page_bytes)
        body = response.body[:limit]
        exchange.body = body
        exchange.response_headers = archived_response_headers(
            chain[-1].raw_headers, len(body), body_expected=True
        )
        exchange.notes["body"] = "decoded, saved by Chromium as a download"
        exchange.notes.pop("truncated", None)
        if len(response.body) > limit:
            exchange.notes.update(truncated="length", body="download, cut at the byte limit")
            recorder.truncated.append(
                {"url": exchange.url, "decoded_bytes": len(response.body), "kept_bytes": limit}
            )

    def _tab_note(self, page: Page, context: str | None) -> str:
        """How the page's tab came about (asked before the capture ends)."""
        if not self.options.reuse_pages:
            return "a new tab, closed after the capture"
        if context is not None and self.contexts.tab(context) is page:
            uses = self.contexts.tab_uses.get(context, 0)
            return (
                f"a reused tab ({uses} capture(s) before this one, each ended on about:blank "
                "with the storage of its origins and the tab's session storage cleared)"
            )
        return "a new tab, kept for the next capture"

    @staticmethod
    def _chain_details(chain: list[SeenRequest]) -> list[dict[str, Any]]:
        return [
            {
                "url": s.request.url,
                "status": s.exchange.status if s.exchange else None,
                "location": s.exchange.header("Location") if s.exchange else None,
            }
            for s in chain
        ]

    def _details(
        self, page: Page, recorder: PageRecorder, result: _Page, context: str | None
    ) -> dict[str, Any]:
        chain = recorder.main_chain()
        main = chain[-1].exchange if chain else None
        user_agent = None
        if main is not None:
            user_agent = next(
                (v for k, v in main.request_headers if k.lower() == "user-agent"), None
            )
        browser = page.context.browser
        details = result.details
        details.update(
            {
                "browser": {
                    "name": "chromium",
                    "version": browser.version if browser is not None else None,
                    "headless": True,
                    "viewport": self.options.context_kwargs.get("viewport"),
                    "locale": self.options.context_kwargs.get("locale"),
                    "timezone": self.options.context_kwargs.get("timezone_id"),
                    "context": context,
                    "pages_before_in_context": self.contexts.pages.get(context or "", 0),
                    "state": CONTEXT_NOTE,
                    "tab": result.details.pop("tab", None),
                },
                "user_agent": user_agent or self.options.context_kwargs.get("user_agent"),
                "interactions": recorder.interactions,
                "console": recorder.console,
                "redirect_chain": self._chain_details(chain),
                "server_ip": main.ip if main else None,
                "protocol": main.protocol if main else None,
                "bodies": {
                    "decoded": True,
                    "note": BODY_NOTE,
                    "kept_bytes": recorder.kept_bytes,
                    "max_page_bytes": self.options.max_page_bytes,
                    "max_response_bytes": self.options.max_response_bytes,
                    "truncated": recorder.truncated,
                },
                "failed_requests": recorder.failed,
                "unfinished_requests": recorder.unfinished(),
                "timings_ms": {**result.timings, "total_ms": recorder.tms()},
            }
        )
        if recorder.console_dropped:
            details["console_dropped"] = recorder.console_dropped
        if recorder.websockets:
            details["websockets"] = recorder.websockets
        if recorder.errors:
            details["errors"] = recorder.errors
        if recorder.refused:
            details["refused_requests"] = recorder.refused
        return details

    @staticmethod
    async def _security(recorder: PageRecorder) -> dict[str, Any] | None:
        """Chromium's TLS facts about the main document (https only)."""
        chain = recorder.main_chain()
        if not chain or urlsplit(chain[-1].request.url).scheme != "https":
            return None
        with contextlib.suppress(PlaywrightError):
            response = await chain[-1].request.response()
            if response is not None:
                return await response.security_details() or {}
        return {}

    @staticmethod
    async def _tls(
        recorder: PageRecorder,
        security: dict[str, Any] | None,
        tls_future: asyncio.Future[dict[str, Any]] | None,
    ) -> dict[str, Any] | None:
        if security is None:
            return None
        tls: dict[str, Any] = {
            "protocol": security.get("protocol"),
            "issuer": security.get("issuer"),
            "subject": security.get("subjectName"),
            "valid_from": _epoch(security.get("validFrom")),
            "valid_to": _epoch(security.get("validTo")),
            "source": "Chromium's security details of the main document",
            "certificate_errors_ignored_by_browser": True,
        }
        if tls_future is not None:
            try:
                chain = await asyncio.wait_for(asyncio.shield(tls_future), 15)
            except Exception as exc:  # the page is evidence without the chain too
                tls["certificate_chain_error"] = f"{type(exc).__name__}: {exc}"
            else:
                tls.update(chain)
                pems = chain.get("certificate_chain_pem") or []
                if pems:
                    der = ssl.PEM_cert_to_DER_cert(pems[0])
                    tls["leaf_sha256"] = hashlib.sha256(der).hexdigest()
        return tls

    # -- after a failed navigation ---------------------------------------------------------
    async def capture_failure(
        self,
        request: Request,
        *,
        outcome: str,
        message: str,
        requested_url: str,
        started_at: datetime,
    ) -> PageCapture:
        """What a page that did not load left behind: its exchanges and the error."""
        try:
            return await self._capture_failure(
                request,
                outcome=outcome,
                message=message,
                requested_url=requested_url,
                started_at=started_at,
            )
        except Exception as exc:
            log.exception("recording the failure of %s failed", requested_url)
            return await self._unexpected(request.meta, exc, requested_url, started_at)

    async def _capture_failure(
        self,
        request: Request,
        *,
        outcome: str,
        message: str,
        requested_url: str,
        started_at: datetime,
    ) -> PageCapture:
        page: Page | None = request.meta.get("playwright_page")
        recorder: PageRecorder | None = request.meta.get(RECORDER)
        exchanges: list[Exchange] = []
        details: dict[str, Any] = {}
        status = final_url = None
        if recorder is not None:
            await recorder.settle(5)
            if recorder.refused_main is not None:  # the address policy stopped the page
                outcome, message = recorder.refused_main
            recorder.note("navigate", url=requested_url, error=message)
            exchanges = recorder.exchanges()
            chain = recorder.main_chain()
            if chain and chain[-1].exchange is not None:
                status = chain[-1].exchange.status
                final_url = chain[-1].exchange.url
            details = {
                "interactions": recorder.interactions,
                "console": recorder.console,
                "failed_requests": recorder.failed,
                "unfinished_requests": recorder.unfinished(),
                "redirect_chain": self._chain_details(chain),
                "bodies": {"decoded": True, "note": BODY_NOTE, "truncated": recorder.truncated},
                "user_agent": self.options.context_kwargs.get("user_agent"),
            }
            if chain and chain[-1].exchange is not None:
                details["server_ip"] = chain[-1].exchange.ip
            if recorder.refused:
                details["refused_requests"] = recorder.refused
        if page is not None:
            await self._close(page, recorder, request.meta.get(CONTEXT_META))
        return PageCapture(
            requested_url=requested_url,
            mode="browser",
            outcome=outcome,
            started_at=recorder.started_at if recorder is not None else started_at,
            finished_at=utc_now(),
            exchanges=exchanges,
            final_url=final_url,
            status=status,
            error=message,
            details=details,
        )
