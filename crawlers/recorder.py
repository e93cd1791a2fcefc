"""The page recorder: everything one browser tab does while it is captured.

``start_recording`` (scrapy-playwright's page init callback) attaches a ``PageRecorder`` to
the tab before it navigates. The recorder listens to every request and response (bodies read
while Chromium still holds them, within the page's byte budget), the console, dialogs and
popups, and keeps the interaction log. Document bodies are copied through a DevTools session
at the response stage (Chromium's network log shows a PDF viewer's stand-in page instead).

When the run does not allow private addresses, the same DevTools session holds every request
of the tab at the request stage, redirects included, and fails those to a refused address
(``crawlers.urls``): Chromium resolves names itself, so the host is resolved here too and
each address checked; the address a response actually came from is checked again when it is
recorded, and such an exchange is dropped, so that a name that changes its answer between
the two lookups (DNS rebinding) still leaves nothing private in the capture.

The capture driver (``crawlers.browser``) drives the tab and turns the recording into a
``PageCapture``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from playwright.async_api import CDPSession, ConsoleMessage, Dialog, Page
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Request as BrowserRequest
from playwright.async_api import Response as BrowserResponse
from scrapy import Request

from crawlers.exchanges import Exchange, reason_phrase
from crawlers.urls import (
    PRIVATE_ADDRESS,
    UNSUPPORTED_SCHEME,
    UrlRefused,
    mask_credentials,
    parse_ip,
    resolve,
    url_problem,
)
from schemas import format_rfc3339, utc_now

if TYPE_CHECKING:
    from crawlers.chromium import BrowserOptions

RECORDER = "evidence_browser_recorder"  # request.meta: the PageRecorder of this page
OPTIONS_META = "evidence_browser_options"  # request.meta: the BrowserOptions of the run
ARCHIVED_SCHEMES = ("http", "https")  # chrome://, data:, blob: ... are not network traffic
IN_PAGE_SCHEMES = ("data", "blob")  # made by the page itself: nothing leaves the browser


@dataclass
class SeenRequest:
    """One request as the page's listeners saw it."""

    seq: int
    request: BrowserRequest
    sent_at: datetime
    finished_at: datetime | None = None
    exchange: Exchange | None = None
    failure: str | None = None
    raw_headers: list[tuple[str, str]] = field(default_factory=list)  # response, as received


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _header_pairs(entries: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(e["name"], e["value"]) for e in entries]


def archived_response_headers(
    headers: list[tuple[str, str]], body_length: int, *, body_expected: bool
) -> list[tuple[str, str]]:
    """Response headers made consistent with a decoded (or cut, or missing) body.

    ``Content-Encoding`` no longer applies to a decoded body and is kept as
    ``X-Archive-Orig-Content-Encoding``; a ``Content-Length`` that differs from the stored
    body is kept as ``X-Archive-Orig-Content-Length`` and the stored length is appended.
    Responses that have no body by definition (HEAD, 204, 304) keep their Content-Length.
    """
    out: list[tuple[str, str]] = []
    declared: str | None = None
    for name, value in headers:
        lname = name.lower()
        if lname == "content-encoding":
            out.append(("X-Archive-Orig-Content-Encoding", value))
        elif lname == "content-length" and body_expected:
            declared = value
            if value.strip() == str(body_length):
                out.append((name, value))
            else:
                out.append(("X-Archive-Orig-Content-Length", value))
        else:
            out.append((name, value))
    stale = declared is not None and declared.strip() != str(body_length)
    if body_expected and (stale or (declared is None and body_length)):
        out.append(("Content-Length", str(body_length)))
    return out


class PageRecorder:
    """Listens to one page from before its navigation: requests, bodies, console, timing.

    Attached by ``start_recording`` (scrapy-playwright's page init callback). Bodies are read
    as soon as a request finishes, while Chromium still holds them, within the page's byte
    budget.
    """

    def __init__(self, page: Page, options: BrowserOptions) -> None:
        self.page = page
        self.options = options
        self.started_at = utc_now()
        self.t0 = time.monotonic()
        self.interactions: list[dict[str, Any]] = []
        self.console: list[dict[str, Any]] = []
        self.console_dropped = 0
        self.failed: list[dict[str, Any]] = []
        self.websockets: list[str] = []
        self.truncated: list[dict[str, Any]] = []
        self.kept_bytes = 0
        self.errors: list[str] = []
        self._seq = itertools.count()
        self._seen: dict[BrowserRequest, SeenRequest] = {}
        self._in_flight: set[BrowserRequest] = set()
        self._last_activity = time.monotonic()
        self._tasks: set[asyncio.Task[None]] = set()
        self._budget = asyncio.Lock()
        self.devtools: CDPSession | None = None
        # document bodies as they came from the network, before Chromium handed them to a
        # viewer (the network log of a PDF shows the viewer's stand-in page instead)
        self._documents: dict[str, list[bytes]] = {}
        # the address policy: requests failed before they left, and why
        self.refused: list[dict[str, Any]] = []
        self.refused_main: tuple[str, str] | None = None  # (outcome, message) of the page
        self._refusals: dict[str, UrlRefused] = {}  # URL -> refusal
        self._main_frame_id: str | None = None
        self._hosts: dict[tuple[str, int | None], asyncio.Future[str | None]] = {}
        self._listeners: list[tuple[str, Any]] = [
            ("request", self._on_request),
            ("requestfinished", self._on_finished),
            ("requestfailed", self._on_failed),
            ("console", self._on_console),
            ("pageerror", self._on_page_error),
            ("websocket", lambda ws: self.websockets.append(ws.url)),
            ("popup", lambda popup: self.note("popup-opened", url=popup.url)),
            ("dialog", lambda dialog: self._spawn(self._dismiss(dialog))),
        ]
        for event, listener in self._listeners:
            page.on(event, listener)

    @property
    def guarded(self) -> bool:
        """Whether requests are checked against the address policy before they leave."""
        return not self.options.policy.allow_private

    async def open_devtools(self) -> None:
        """A DevTools session on the page: document bodies as received, storage clearing,
        and, unless private addresses are allowed, the address policy for every request.

        Documents (pages and frames) are held at the response stage just long enough to copy
        their body when its declared length fits the limits. With the policy, every request
        (redirect hops too: Playwright's own routes see only the first URL of a redirect
        chain) is held at the request stage until its host is checked.
        """
        session = await self.page.context.new_cdp_session(self.page)
        self.devtools = session
        session.on("Fetch.requestPaused", lambda event: self._spawn(self._paused(event)))
        patterns = [{"urlPattern": "*", "resourceType": "Document", "requestStage": "Response"}]
        if self.guarded:
            patterns.append({"urlPattern": "*", "requestStage": "Request"})
            # A refused hop of the page's own navigation never shows up as a Playwright
            # request (it is failed before Chromium reports it), so the main document is
            # recognised by its DevTools frame id.
            tree = await session.send("Page.getFrameTree")
            self._main_frame_id = tree["frameTree"]["frame"]["id"]
        await session.send("Fetch.enable", {"patterns": patterns})

    async def _paused(self, event: dict[str, Any]) -> None:
        if "responseStatusCode" in event or "responseErrorReason" in event:
            await self._document(event)
        else:
            await self._guard(event)

    async def _guard(self, event: dict[str, Any]) -> None:
        """Let a request go on, or fail it (as if blocked by an extension) if it is refused."""
        assert self.devtools is not None
        url = event["request"]["url"]
        try:
            refusal = await self._refusal(url)
        except Exception as exc:  # never leave a request paused: the page would hang
            refusal = UrlRefused(PRIVATE_ADDRESS, f"address check failed: {exc}", url)
        with contextlib.suppress(PlaywrightError):
            if refusal is None:
                await self.devtools.send("Fetch.continueRequest", {"requestId": event["requestId"]})
                return
            self._refusals[url] = refusal
            if event.get("resourceType") == "Document" and event.get("frameId") == (
                self._main_frame_id
            ):
                self.refused_main = self.refused_main or (refusal.outcome, refusal.message)
            self.refused.append(
                {
                    "url": mask_credentials(url),
                    "resource_type": event.get("resourceType"),
                    "outcome": refusal.outcome,
                    "error": refusal.message,
                }
            )
            await self.devtools.send(
                "Fetch.failRequest",
                {"requestId": event["requestId"], "errorReason": "BlockedByClient"},
            )

    async def _refusal(self, url: str) -> UrlRefused | None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in IN_PAGE_SCHEMES:
            return None
        if scheme not in ARCHIVED_SCHEMES:
            return UrlRefused(
                UNSUPPORTED_SCHEME, f"{scheme}: URLs are never fetched", mask_credentials(url)
            )
        refused = url_problem(url, policy=self.options.policy)
        if refused is not None or parse_ip(parts.hostname or "") is not None:
            return refused
        # Chromium resolves the name itself: ask the system resolver the same question,
        # once per host and page, and check every address it gives.
        key = (parts.hostname or "", parts.port)
        if key not in self._hosts:
            self._hosts[key] = asyncio.ensure_future(self._check_host(*key))
        message = await asyncio.shield(self._hosts[key])
        return UrlRefused(PRIVATE_ADDRESS, message, mask_credentials(url)) if message else None

    async def _check_host(self, host: str, port: int | None) -> str | None:
        try:
            addresses = await asyncio.to_thread(resolve, host, port)
        except OSError:
            return None  # Chromium will fail to resolve it too, and say so
        try:
            self.options.policy.check_addresses(host, addresses)
        except UrlRefused as refused:
            return refused.message
        return None

    def _refuse_main(self, request: BrowserRequest, refusal: UrlRefused) -> None:
        if self.refused_main is not None:
            return
        with contextlib.suppress(PlaywrightError):
            if request.is_navigation_request() and request.frame == self.page.main_frame:
                self.refused_main = (refusal.outcome, refusal.message)

    async def detach(self) -> None:
        """Stop listening to the page (it is kept for the next capture)."""
        for event, listener in self._listeners:
            with contextlib.suppress(KeyError, ValueError):
                self.page.remove_listener(event, listener)
        if self.devtools is not None:
            with contextlib.suppress(PlaywrightError):
                await self.devtools.detach()
            self.devtools = None

    async def _document(self, event: dict[str, Any]) -> None:
        assert self.devtools is not None
        try:
            status = event.get("responseStatusCode")
            headers = {h["name"].lower(): h["value"] for h in event.get("responseHeaders") or []}
            declared = headers.get("content-length", "")
            limit = min(self.options.max_response_bytes, self.options.max_page_bytes)
            if (
                status is not None
                and not 300 <= status < 400
                and event.get("responseErrorReason") is None
                and declared.strip().isdigit()
                and int(declared) <= limit
            ):
                got = await self.devtools.send(
                    "Fetch.getResponseBody", {"requestId": event["requestId"]}
                )
                raw = got.get("body", "")
                body = base64.b64decode(raw) if got.get("base64Encoded") else raw.encode("utf-8")
                url = event["request"]["url"].split("#", 1)[0]
                self._documents.setdefault(url, []).append(body)
        except PlaywrightError as exc:
            self.errors.append(f"document body of {event['request']['url']}: {exc.message}")
        finally:
            with contextlib.suppress(PlaywrightError):
                await self.devtools.send(
                    "Fetch.continueResponse", {"requestId": event["requestId"]}
                )

    # -- timing and the interaction log ----------------------------------------------------
    def tms(self) -> float:
        """Milliseconds since the recording started."""
        return ms(time.monotonic() - self.t0)

    def note(self, action: str, **fields: Any) -> dict[str, Any]:
        """Append one entry to the interaction log and return it (to add results later)."""
        entry = {"action": action, "at": format_rfc3339(utc_now()), "t_ms": self.tms(), **fields}
        self.interactions.append(entry)
        return entry

    # -- listeners -------------------------------------------------------------------------
    def _on_request(self, request: BrowserRequest) -> None:
        self._in_flight.add(request)
        self._last_activity = time.monotonic()
        if urlsplit(request.url).scheme in ARCHIVED_SCHEMES:
            self._seen[request] = SeenRequest(next(self._seq), request, utc_now())

    def _done(self, request: BrowserRequest) -> SeenRequest | None:
        self._in_flight.discard(request)
        self._last_activity = time.monotonic()
        seen = self._seen.get(request)
        if seen is not None:
            seen.finished_at = utc_now()
        return seen

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_finished(self, request: BrowserRequest) -> None:
        seen = self._done(request)
        if seen is not None:
            self._spawn(self._collect(seen))

    def _on_failed(self, request: BrowserRequest) -> None:
        seen = self._done(request)
        if seen is None:
            return
        seen.failure = request.failure or "failed"
        refusal = self._refusals.get(request.url)
        if refusal is not None:
            self._refuse_main(request, refusal)
        self.failed.append(
            {
                "url": request.url,
                "method": request.method,
                "resource_type": request.resource_type,
                "error": seen.failure,
            }
        )
        # A request can fail after its response headers arrived (aborted body, download):
        # the headers are still evidence.
        self._spawn(self._collect(seen))

    async def _dismiss(self, dialog: Dialog) -> None:
        # a dialog blocks the page until answered; it is dismissed, as a visitor leaving it
        # unanswered would, and recorded
        self.note("dialog-dismissed", type=dialog.type, message=dialog.message[:2000])
        with contextlib.suppress(PlaywrightError):
            await dialog.dismiss()

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type not in ("error", "warning", "assert"):
            return
        location = message.location or {}
        self._add_console(
            {
                "type": message.type,
                "text": message.text[:2000],
                "url": location.get("url") or None,
                "line": location.get("lineNumber"),
            }
        )

    def _on_page_error(self, error: Any) -> None:
        self._add_console({"type": "pageerror", "text": str(error)[:2000]})

    def _add_console(self, entry: dict[str, Any]) -> None:
        if len(self.console) >= self.options.max_console:
            self.console_dropped += 1
            return
        entry["t_ms"] = self.tms()
        self.console.append(entry)

    # -- bodies ----------------------------------------------------------------------------
    async def _collect(self, seen: SeenRequest) -> None:
        request = seen.request
        try:
            response = await request.response()
            if response is None:
                return
            request_headers = _header_pairs(await request.headers_array())
            response_headers = _header_pairs(await response.headers_array())
            seen.raw_headers = response_headers
            address = await response.server_addr()
            body_expected = not (
                request.method == "HEAD"
                or response.status in (204, 304)
                or 100 <= response.status < 200
            )
            body, notes = await self._body(seen, response, body_expected)
        except PlaywrightError as exc:  # the page went away while reading
            self.errors.append(f"{request.url}: {exc.message}")
            return
        if not any(name.lower() == "host" for name, _ in request_headers):
            # Chromium reports provisional headers (without Host) for some requests
            request_headers.insert(0, ("Host", urlsplit(request.url).netloc))
        notes["resource_type"] = request.resource_type
        if seen.failure:
            notes["failure"] = seen.failure
        ip = address["ipAddress"].strip("[]") if address else None
        if self.guarded and ip and parse_ip(ip) is not None and not self.options.policy.allows(ip):
            # Checked before the request left, yet answered from a refused address: the name
            # changed its answer in between (DNS rebinding). Nothing of it is kept.
            refusal = UrlRefused(
                PRIVATE_ADDRESS,
                f"answered from {ip}, not a public address (the name resolved differently "
                "when it was checked): not archived",
                mask_credentials(request.url),
            )
            self.refused.append(
                {
                    "url": refusal.url,
                    "resource_type": request.resource_type,
                    "outcome": refusal.outcome,
                    "error": refusal.message,
                }
            )
            self._refuse_main(request, refusal)
            return
        seen.exchange = Exchange(
            method=request.method,
            url=request.url,
            request_headers=request_headers,
            request_body=request.post_data_buffer or b"",
            sent_at=seen.sent_at,
            status=response.status,
            reason=response.status_text or reason_phrase(response.status),
            response_headers=archived_response_headers(
                response_headers, len(body), body_expected=body_expected
            ),
            body=body,
            received_at=seen.finished_at or utc_now(),
            ip=ip,
            notes=notes,
        )

    async def _body(
        self, seen: SeenRequest, response: BrowserResponse, body_expected: bool
    ) -> tuple[bytes, dict[str, Any]]:
        request = seen.request
        if not body_expected:
            return b"", {}
        if request.redirected_to is not None:
            # WARC-Truncated "unspecified": the record holds the response without its body.
            return b"", {
                "body": "not available: Chromium keeps no body of a redirect",
                "truncated": "unspecified",
            }
        stored = None
        if request.resource_type == "document":
            stored = self._documents.get(request.url.split("#", 1)[0])
        if seen.failure and not stored:  # a download is a "failed" navigation, yet complete
            return b"", {"body": f"not available: {seen.failure}", "truncated": "disconnect"}
        async with self._budget:  # one body at a time, so that the budget holds exactly
            limit = min(
                self.options.max_response_bytes, self.options.max_page_bytes - self.kept_bytes
            )
            if stored:
                body, note = stored.pop(0), "decoded, copied when the response arrived"
            else:
                try:
                    transferred = (await request.sizes())["responseBodySize"]
                except (PlaywrightError, KeyError):
                    transferred = 0
                if limit <= 0 or transferred > limit:
                    self.truncated.append(
                        {"url": request.url, "transferred_bytes": transferred, "kept_bytes": 0}
                    )
                    return b"", {"truncated": "length", "body": "not kept: over the byte limit"}
                try:
                    body, note = await response.body(), "decoded"
                except PlaywrightError as exc:
                    unavailable = f"not available: {exc.message}"
                    return b"", {"body": unavailable, "truncated": "unspecified"}
            if len(body) > max(0, limit):
                self.truncated.append(
                    {"url": request.url, "decoded_bytes": len(body), "kept_bytes": max(0, limit)}
                )
                body = body[: max(0, limit)]
                self.kept_bytes += len(body)
                return body, {"truncated": "length", "body": f"{note}, cut at the byte limit"}
            self.kept_bytes += len(body)
            return body, {"body": note}

    # -- waiting ---------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Requests started and not yet finished or failed."""
        return len(self._in_flight)

    async def wait_for_idle(
        self, quiet_ms: float, cap_seconds: float, *, since: float | None = None
    ) -> tuple[float, bool]:
        """Wait until no request has been in flight for ``quiet_ms``, at most ``cap_seconds``.

        ``since`` (a ``time.monotonic()`` value) counts as network activity: after an action,
        the requests it causes reach the listeners a little later, so the quiet time starts
        with the action. Returns (seconds waited, whether the cap was hit).
        """
        start = time.monotonic()
        deadline = start + max(0.0, cap_seconds)
        quiet = quiet_ms / 1000
        while True:
            now = time.monotonic()
            last = max(self._last_activity, since or 0.0)
            if not self._in_flight and now - last >= quiet:
                return now - start, False
            if now >= deadline:
                return now - start, True
            await asyncio.sleep(min(0.025, max(0.001, deadline - now)))

    async def wait_step(self, what: str, quiet_ms: float, cap_seconds: float) -> dict[str, Any]:
        """``wait_for_idle``, logged as an interaction."""
        entry = self.note("wait", **{"for": what, "quiet_ms": quiet_ms, "cap_ms": ms(cap_seconds)})
        waited, timed_out = await self.wait_for_idle(quiet_ms, cap_seconds)
        entry.update(duration_ms=ms(waited), timed_out=timed_out, in_flight=self.in_flight)
        return entry

    async def settle(self, cap_seconds: float) -> None:
        """Wait for the bodies being read (at most ``cap_seconds``)."""
        pending = list(self._tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=max(0.1, cap_seconds))
            for task in late:
                task.cancel()
            if late:
                self.errors.append(f"{len(late)} response bodies still being read were dropped")

    # -- results ---------------------------------------------------------------------------
    def exchanges(self) -> list[Exchange]:
        """Every finished exchange, in the order the requests were made."""
        seen = sorted(self._seen.values(), key=lambda s: s.seq)
        return [s.exchange for s in seen if s.exchange is not None]

    def urls(self) -> list[str]:
        """Every HTTP(S) URL the page requested."""
        return [s.request.url for s in self._seen.values()]

    def unfinished(self) -> list[dict[str, str]]:
        """Requests still in flight (never answered while the page was captured)."""
        return [
            {"url": r.url, "method": r.method, "resource_type": r.resource_type}
            for r in self._in_flight
            if urlsplit(r.url).scheme in ARCHIVED_SCHEMES
        ]

    def main_chain(self) -> list[SeenRequest]:
        """The main document's requests: the first top-level navigation and its redirects."""
        main_frame = self.page.main_frame
        for seen in sorted(self._seen.values(), key=lambda s: s.seq):
            request = seen.request
            with contextlib.suppress(PlaywrightError):
                if request.is_navigation_request() and request.frame == main_frame:
                    chain = [seen]
                    while request.redirected_to is not None:
                        request = request.redirected_to
                        nxt = self._seen.get(request)
                        if nxt is None:
                            break
                        chain.append(nxt)
                    return chain
        return []


async def start_recording(page: Page, request: Request) -> None:
    """scrapy-playwright's page init callback: listeners on before the navigation starts.

    Also clears the reused context's cookies, so that the page starts without state.
    """
    options: BrowserOptions = request.meta[OPTIONS_META]
    recorder = PageRecorder(page, options)
    request.meta[RECORDER] = recorder
    await page.context.clear_cookies()
    try:
        await recorder.open_devtools()
    except PlaywrightError as exc:  # not Chromium: bodies come from the network log only
        recorder.errors.append(f"no DevTools session: {exc.message}")
