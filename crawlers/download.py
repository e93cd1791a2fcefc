"""Plain HTTP for sources that are not spiders: large files streamed to disk, and API calls.

Dump files run to gigabytes: they are streamed to a file while SHA-256 and SHA-1 are computed,
and an interrupted transfer resumes with a Range request. The URL policy of the spiders holds
here too: the host's addresses are resolved once and checked, and the connection goes to a
checked address (so a name that rebinds between the check and the connection cannot reach a
private address); every redirect hop is checked the same way.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from crawlers.settings import USER_AGENT
from crawlers.urls import AddressPolicy, UrlRefused, check_url, resolve

log = logging.getLogger(__name__)
CHUNK = 1 << 20
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Headers a response may set that must not be archived: they can carry a session.
_PRIVATE_HEADERS = frozenset({"set-cookie", "set-cookie2", "authorization", "cookie"})


class DownloadError(Exception):
    """A transfer that failed for good; ``outcome`` names the kind for the run's report."""

    def __init__(
        self,
        outcome: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.status = status
        self.retry_after = retry_after  # seconds the server asked us to wait (429, 503)


@dataclass
class Response:
    """What a server answered: status, final URL, headers (without cookies) and the body
    (in memory for API calls; in ``path`` for downloads, with its digests)."""

    url: str
    final_url: str
    status: int
    headers: dict[str, str]
    server_ip: str | None
    redirects: list[str] = field(default_factory=list)
    body: bytes | None = None
    path: Path | None = None
    size: int = 0
    sha256: str | None = None
    sha1: str | None = None

    def json(self) -> Any:
        """The body parsed as JSON (DownloadError ``invalid-response`` if it is not)."""
        try:
            return json.loads(self.body or b"")
        except ValueError as exc:
            raise DownloadError(
                "invalid-response", f"{self.final_url}: the answer is not JSON ({exc})"
            ) from None


@dataclass(frozen=True)
class Client:
    """Settings of the HTTP client a collector uses: address policy, limits, retries."""

    policy: AddressPolicy = field(default_factory=AddressPolicy)
    user_agent: str = USER_AGENT
    timeout: float = 60.0
    attempts: int = 4
    backoff: float = 2.0  # seconds before the first retry, doubled each time
    max_redirects: int = 5
    max_bytes: int | None = None

    def get(self, url: str, *, headers: Mapping[str, str] | None = None) -> Response:
        """GET ``url`` into memory (small answers: sidecar files, API pages)."""
        return self._with_retries("GET", url, headers=headers)

    def post_json(
        self, url: str, payload: Any, *, headers: Mapping[str, str] | None = None
    ) -> Response:
        """POST ``payload`` as JSON; the answer in memory."""
        body = json.dumps(payload).encode()
        merged = {"Content-Type": "application/json", **(headers or {})}
        return self._with_retries("POST", url, headers=merged, body=body)

    def download(
        self, url: str, dest: Path, *, headers: Mapping[str, str] | None = None
    ) -> Response:
        """GET ``url`` into the file ``dest``, hashing while writing; a transfer that breaks
        off resumes where it stopped (Range), up to ``attempts`` tries."""
        return self._with_retries("GET", url, headers=headers, dest=dest)

    def _with_retries(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None,
        body: bytes | None = None,
        dest: Path | None = None,
    ) -> Response:
        hashes = _Hashes()
        if dest is not None:
            dest.unlink(missing_ok=True)
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                return self._request(method, url, headers, body, dest, hashes)
            except DownloadError as exc:
                retry = exc.status in RETRY_STATUSES or exc.outcome in ("network-error",)
                if not retry or attempt == self.attempts:
                    raise
                wait = exc.retry_after or delay
                log.warning("%s %s: %s; retry %d in %.1f s", method, url, exc, attempt, wait)
                time.sleep(min(wait, 300))
                delay *= 2
        raise AssertionError("unreachable")

    def _request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        body: bytes | None,
        dest: Path | None,
        hashes: _Hashes,
    ) -> Response:
        redirects: list[str] = []
        current = url
        while True:
            try:
                check_url(current, policy=self.policy)
            except UrlRefused as refused:
                raise DownloadError(refused.outcome, str(refused)) from None
            parts = urlsplit(current)
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                addresses = resolve(host, port)
            except OSError as exc:
                raise DownloadError("dns-error", f"{host}: cannot resolve ({exc})") from None
            try:
                self.policy.check_addresses(host, addresses)
            except UrlRefused as refused:
                raise DownloadError(refused.outcome, str(refused)) from None
            request_headers = {
                "User-Agent": self.user_agent,
                "Accept-Encoding": "identity",
                **(headers or {}),
            }
            resume_from = hashes.size if dest is not None and hashes.size else 0
            if resume_from:
                request_headers["Range"] = f"bytes={resume_from}-"
            connection = _connection(parts.scheme, host, port, addresses[0], self.timeout)
            try:
                target = parts.path or "/"
                if parts.query:
                    target += "?" + parts.query
                connection.request(method, target, body=body, headers=request_headers)
                answer = connection.getresponse()
                server_ip = connection.peer
                kept = {
                    k.lower(): v
                    for k, v in answer.getheaders()
                    if k.lower() not in _PRIVATE_HEADERS
                }
                if answer.status in (301, 302, 303, 307, 308) and "location" in kept:
                    answer.read()
                    if len(redirects) >= self.max_redirects:
                        raise DownloadError(
                            "too-many-redirects", f"{url}: more than {self.max_redirects} redirects"
                        )
                    redirects.append(current)
                    current = urljoin(current, kept["location"])
                    if answer.status == 303:
                        method, body = "GET", None
                    continue
                if answer.status >= 400:
                    text = answer.read(2000).decode("utf-8", "replace").strip()
                    retry_after = kept.get("retry-after", "")
                    raise DownloadError(
                        "not-found" if answer.status in (404, 410) else f"http-{answer.status}",
                        f"{method} {current}: HTTP {answer.status} {answer.reason}"
                        + (f": {text[:200]}" if text else ""),
                        status=answer.status,
                        retry_after=float(retry_after) if retry_after.isdigit() else None,
                    )
                response = Response(
                    url=url,
                    final_url=current,
                    status=answer.status,
                    headers=kept,
                    server_ip=server_ip,
                    redirects=redirects,
                )
                if dest is None:
                    response.body = self._read_all(answer, current)
                    response.size = len(response.body)
                    return response
                if resume_from and answer.status != 206:
                    hashes.reset()  # the server ignored the Range: start the file again
                    dest.unlink(missing_ok=True)
                self._stream(answer, dest, hashes, current)
                expected = kept.get("content-length")
                if answer.status == 200 and expected is not None and int(expected) != hashes.size:
                    raise DownloadError(
                        "network-error",
                        f"{current}: {hashes.size} bytes received of {expected}",
                    )
                response.path, response.size = dest, hashes.size
                response.sha256, response.sha1 = hashes.hexdigests()
                return response
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError("network-error", f"{method} {current}: {exc}") from None
            finally:
                connection.close()

    def _read_all(self, answer: http.client.HTTPResponse, url: str) -> bytes:
        limit = self.max_bytes or (64 << 20)
        data = answer.read(limit + 1)
        if len(data) > limit:
            raise DownloadError("too-large", f"{url}: the answer exceeds {limit} bytes")
        return data

    def _stream(
        self, answer: http.client.HTTPResponse, dest: Path, hashes: _Hashes, url: str
    ) -> None:
        with open(dest, "ab") as out:
            while chunk := answer.read(CHUNK):
                hashes.update(chunk)
                out.write(chunk)
                if self.max_bytes is not None and hashes.size > self.max_bytes:
                    raise DownloadError("too-large", f"{url}: larger than {self.max_bytes} bytes")


class _Hashes:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sha256 = hashlib.sha256()
        self.sha1 = hashlib.sha1(usedforsecurity=False)
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.sha1.update(chunk)
        self.size += len(chunk)

    def hexdigests(self) -> tuple[str, str]:
        return self.sha256.hexdigest(), self.sha1.hexdigest()


class _Connection(http.client.HTTPConnection):
    """An HTTP connection to an address checked beforehand, not to whatever the name
    resolves to when the socket opens."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.peer: str | None = None

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        self.peer = self.address


class _TLSConnection(_Connection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, address, timeout)
        self.context = ssl.create_default_context()

    def connect(self) -> None:
        super().connect()
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self.host)


def _connection(scheme: str, host: str, port: int, address: str, timeout: float) -> _Connection:
    if scheme == "https":
        return _TLSConnection(host, port, address, timeout)
    return _Connection(host, port, address, timeout)
