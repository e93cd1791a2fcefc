"""Asking RFC 3161 time-stamping authorities (TSAs) for a timestamp over a digest.

:func:`request_timestamp` sends one TimeStampReq (SHA-256 imprint, a fresh 64-bit nonce,
certReq) to each TSA in turn, each with its own time-out, and returns the first answer that is
a granted token over exactly our digest and nonce, signed by a certificate the token names.
With ``trust_anchors`` it also runs the full :func:`~evidence_store.timestamps.tokens.
verify_token`, so that an untrusted or expired TSA counts as a failure and the next one is
tried. If no TSA succeeds, :class:`TimestampError` lists every TSA with its reason.
:func:`request_timestamps` goes on down the list to collect tokens from several TSAs.

The query is built with asn1crypto: ``rfc3161-client``'s request builder hashes the data
itself, and we only ever hold the digest. The transport is the standard library's urllib:
TSAs are plain HTTP(S) POST endpoints and the token authenticates itself, so no HTTP library
is needed.
"""

from __future__ import annotations

import base64
import functools
import http.client
import secrets
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from asn1crypto import tsp

from evidence_store.timestamps.tokens import (
    DIGEST_ALGORITHM,
    TimestampError,
    TimestampRefused,
    TimestampVerificationError,
    TokenInfo,
    VerifiedTimestamp,
    parse_token,
    verify_token,
)

QUERY_MEDIA_TYPE = "application/timestamp-query"
REPLY_MEDIA_TYPE = "application/timestamp-reply"
#: Replies larger than this are refused (a token with a certificate chain is a few KiB).
MAX_REPLY_BYTES = 1 << 20
USER_AGENT = "dsa-evidence-timestamp-client/1"


@dataclass(frozen=True)
class TimestampToken:
    """A timestamp one TSA granted over our digest."""

    tsa_url: str
    response_der: bytes
    """The TimeStampResp as received (keep this: it is the ``.tsr`` openssl reads)."""
    info: TokenInfo
    verified: VerifiedTimestamp | None
    """The full verification, when ``trust_anchors`` were given."""
    skipped: tuple[tuple[str, str], ...] = ()
    """(URL, reason) of every TSA that was tried before this one and failed."""

    @property
    def token_der(self) -> bytes:
        """The bare TimeStampToken (CMS ContentInfo), e.g. for a PDF or CAdES container."""
        return self.info.token_der

    @property
    def gen_time(self) -> datetime:
        """The TSA's time for the token (UTC, aware)."""
        return self.info.gen_time

    @property
    def serial_number(self) -> int:
        return self.info.serial_number

    @property
    def nonce(self) -> int | None:
        return self.info.nonce

    @property
    def certificates(self) -> tuple[bytes, ...]:
        """The DER certificates in the token (the TSA certificate and its chain)."""
        return self.info.certificates

    @property
    def tsa_certificate(self) -> bytes | None:
        """The DER certificate that signed the token, when the token carries it."""
        return self.info.tsa_certificate


@dataclass(frozen=True)
class TsaAccess:
    """How to reach a TSA that wants credentials, as most qualified (eIDAS) TSAs do.

    ``username``/``password`` are sent as HTTP Basic authentication, and only over https;
    ``client_cert``/``client_key`` (PEM files) authenticate by TLS client certificate;
    ``ca_file`` names the CA of the TSA's *server* certificate when the system's store does
    not hold it. None of this is ever written to the archive.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_file: Path | None = None


class _Failure(Exception):
    """One TSA's failure; the message is the reason shown to the user."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a GET without the query; a TSA that redirects
    # is misconfigured, so the redirect is reported as that TSA's failure instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


@functools.lru_cache(maxsize=16)
def _opener(access: TsaAccess | None) -> urllib.request.OpenerDirector:
    """The opener for a TSA: ours, with a TLS context when the access needs one."""
    if access is None or (access.client_cert is None and access.ca_file is None):
        return _OPENER
    try:
        context = ssl.create_default_context(cafile=str(access.ca_file) if access.ca_file else None)
        if access.client_cert is not None:
            context.load_cert_chain(
                access.client_cert, access.client_key if access.client_key else None
            )
    except (ssl.SSLError, OSError) as exc:
        which = access.client_cert or access.ca_file
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise _Failure(f"cannot load the TLS files for this TSA ({which}): {reason}") from None
    return urllib.request.build_opener(_NoRedirects, urllib.request.HTTPSHandler(context=context))


def build_timestamp_query(digest: bytes, *, nonce: int | None, cert_req: bool = True) -> bytes:
    """The DER TimeStampReq for a SHA-256 ``digest`` (no policy: the TSA's default)."""
    if len(digest) != 32:
        raise ValueError(f"digest must be the 32-byte SHA-256, got {len(digest)} bytes")
    fields: dict[str, Any] = {
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": {"algorithm": DIGEST_ALGORITHM},
            "hashed_message": digest,
        },
        "cert_req": cert_req,
    }
    if nonce is not None:
        fields["nonce"] = nonce
    return tsp.TimeStampReq(fields).dump()


def _post(
    url: str, query: bytes, timeout: float, access: TsaAccess | None = None
) -> tuple[bytes, str]:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise _Failure(f"not an http(s) URL (scheme {scheme or 'missing'!r})")
    headers = {
        "Content-Type": QUERY_MEDIA_TYPE,
        "Accept": REPLY_MEDIA_TYPE,
        "User-Agent": USER_AGENT,
    }
    if access is not None and access.username is not None:
        if scheme != "https":
            raise _Failure("credentials are only ever sent over https: nothing was sent")
        pair = f"{access.username}:{access.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    opener = _opener(access)
    request = urllib.request.Request(url, data=query, method="POST", headers=headers)
    # The socket time-out bounds the connect and each read; the deadline bounds the whole
    # answer, so that a TSA trickling bytes cannot hold the run for longer than `timeout`.
    deadline = time.monotonic() + timeout
    try:
        with opener.open(request, timeout=timeout) as response:
            content_type = response.headers.get("Content-Type", "none")
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read(64 * 1024):
                size += len(chunk)
                if size > MAX_REPLY_BYTES:
                    raise _Failure(f"the answer is larger than {MAX_REPLY_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise _Failure(f"no complete answer within {timeout:g} s")
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            where = exc.headers.get("Location", "?")
            raise _Failure(f"HTTP {exc.code} redirect to {where} (not followed)") from None
        if exc.code in (401, 403):
            asked = "refused our credentials" if "Authorization" in headers else "wants credentials"
            raise _Failure(
                f"HTTP {exc.code} {exc.reason}: the TSA {asked} ([timestamps.tsa_auth])"
            ) from None
        raise _Failure(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _Failure(f"timed out: no answer within {timeout:g} s") from None
        raise _Failure(f"cannot connect: {exc.reason}") from None
    except TimeoutError:
        raise _Failure(f"timed out: no answer within {timeout:g} s") from None
    except (http.client.HTTPException, OSError) as exc:
        raise _Failure(f"the connection failed: {type(exc).__name__}: {exc}") from None
    body = b"".join(chunks)
    if not body:
        raise _Failure(f"empty answer (Content-Type {content_type})")
    return body, content_type


def _ask(
    url: str,
    digest: bytes,
    *,
    timeout: float,
    nonce: int | None,
    cert_req: bool,
    trust_anchors: Sequence[bytes] | None,
    access: TsaAccess | None = None,
) -> tuple[bytes, TokenInfo, VerifiedTimestamp | None]:
    query = build_timestamp_query(digest, nonce=nonce, cert_req=cert_req)
    body, content_type = _post(url, query, timeout, access)
    try:
        info = parse_token(body)
    except TimestampRefused as exc:
        raise _Failure(str(exc)) from None
    except TimestampVerificationError as exc:
        raise _Failure(
            f"unusable answer (Content-Type {content_type}, {len(body)} bytes): {exc}"
        ) from None
    if info.response_der is None:
        raise _Failure("the answer is a bare token, not a TimeStampResp")
    if info.hash_algorithm != DIGEST_ALGORITHM or info.message_imprint != digest:
        raise _Failure(
            f"message imprint mismatch: the token covers {info.hash_algorithm}:"
            f"{info.message_imprint.hex()}, we sent {DIGEST_ALGORITHM}:{digest.hex()}"
        )
    if nonce is not None and info.nonce != nonce:
        got = "none" if info.nonce is None else f"{info.nonce:#x}"
        raise _Failure(f"nonce mismatch: sent {nonce:#x}, the token has {got} (a replayed answer?)")
    if cert_req and info.tsa_certificate is None:
        raise _Failure("certReq was set but the token does not carry the TSA certificate")
    verified = None
    if trust_anchors is not None:
        try:
            verified = verify_token(body, digest, trust_anchors)
        except TimestampVerificationError as exc:
            raise _Failure(str(exc)) from None
    return body, info, verified


def request_timestamp(
    digest: bytes,
    tsa_urls: Sequence[str],
    *,
    timeout: float,
    nonce: bool = True,
    cert_req: bool = True,
    trust_anchors: Sequence[bytes] | None = None,
    access: Mapping[str, TsaAccess] | None = None,
) -> TimestampToken:
    """Get an RFC 3161 timestamp over a SHA-256 ``digest`` from the first TSA that gives one.

    Each URL in ``tsa_urls`` is tried in order with ``timeout`` seconds for its answer. An
    answer counts only if it is a granted TimeStampResp whose imprint is our digest, whose
    nonce is ours (with ``nonce``) and which carries the TSA certificate (with ``cert_req``);
    with ``trust_anchors`` (PEM/DER CA certificates) the token must also pass
    :func:`~evidence_store.timestamps.tokens.verify_token`. ``access`` gives the credentials
    of the TSAs that want them, by URL.

    Raises :class:`TimestampError` naming every TSA and why it failed when none succeeded.
    """
    return request_timestamps(
        digest,
        tsa_urls,
        want=1,
        timeout=timeout,
        nonce=nonce,
        cert_req=cert_req,
        trust_anchors=trust_anchors,
        access=access,
    )[0]


def request_timestamps(
    digest: bytes,
    tsa_urls: Sequence[str],
    *,
    want: int,
    timeout: float,
    nonce: bool = True,
    cert_req: bool = True,
    trust_anchors: Sequence[bytes] | None = None,
    access: Mapping[str, TsaAccess] | None = None,
) -> list[TimestampToken]:
    """Tokens over ``digest`` from up to ``want`` independent TSAs, asked in order.

    As :func:`request_timestamp`, but it goes on down the list until ``want`` TSAs have each
    given a usable token (a court may want a qualified TSA and a second, independent one).
    Fewer than ``want`` is not an error as long as one answered; each token's ``skipped``
    names the TSAs that failed before it. Raises :class:`TimestampError` when none did.
    """
    if len(digest) != 32:
        raise ValueError(f"digest must be the 32-byte SHA-256, got {len(digest)} bytes")
    if not tsa_urls:
        raise TimestampError("no TSA URLs configured: cannot request a timestamp")
    if want < 1:
        raise ValueError(f"want must be at least 1, got {want}")
    failures: list[tuple[str, str]] = []
    tokens: list[TimestampToken] = []
    for url in tsa_urls:
        # A fresh nonce per TSA: an answer meant for another request can never match.
        request_nonce = secrets.randbits(64) if nonce else None
        try:
            body, info, verified = _ask(
                url,
                digest,
                timeout=timeout,
                nonce=request_nonce,
                cert_req=cert_req,
                trust_anchors=trust_anchors,
                access=(access or {}).get(url),
            )
        except _Failure as failure:
            failures.append((url, str(failure)))
            continue
        tokens.append(
            TimestampToken(
                tsa_url=url,
                response_der=body,
                info=info,
                verified=verified,
                skipped=tuple(failures),
            )
        )
        if len(tokens) == want:
            break
    if tokens:
        return tokens
    listed = "; ".join(f"{url}: {reason}" for url, reason in failures)
    raise TimestampError(
        f"no TSA issued a usable timestamp ({len(failures)} tried): {listed}", failures=failures
    )
