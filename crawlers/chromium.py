"""Chromium through scrapy-playwright: the run's settings, one shared download handler (one
browser per run), the browser options read from ``BROWSER_*`` settings, and the pool of
reused browser contexts. What is captured from a page is in ``crawlers.browser`` (the capture
driver) and ``crawlers.recorder`` (every exchange a page made).
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Page
from scrapy.crawler import Crawler
from scrapy.settings import BaseSettings
from scrapy_playwright.handler import ScrapyPlaywrightDownloadHandler

from crawlers.urls import AddressPolicy

log = logging.getLogger(__name__)

PLAYWRIGHT_HANDLER = "crawlers.chromium.SharedPlaywrightHandler"


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
