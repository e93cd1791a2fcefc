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
import logging
import ssl
import struct
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from scrapy import Request
from scrapy.http import Response
from scrapy.settings import BaseSettings
from twisted.python.failure import Failure

from crawlers.chromium import BrowserOptions, ContextPool
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
from crawlers.tls import TlsChains
from schemas import format_rfc3339, utc_now

log = logging.getLogger(__name__)

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


def _epoch(value: Any) -> str | None:
    if not isinstance(value, int | float) or value <= 0:
        return None
    return format_rfc3339(datetime.fromtimestamp(value, UTC))


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
