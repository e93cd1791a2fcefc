"""Secrets never reach the archive: redaction of URLs, headers, text and capture metadata.

A ``Redactor`` replaces the *values* of secret query parameters, URL fragments and passwords,
and of secret headers (``Authorization``, ``Cookie``, ``Set-Cookie``, ...), by the marker
``REDACTED``, and keeps the *names*, so that the archive shows that something was there and
what it was called::

    redactor = Redactor(query_params={"ticket"}, header_names={"x-session"})
    url, names = redactor.redact_url("https://x.example/a?access_token=abc123&page=2")
    # url == "https://x.example/a?access_token=REDACTED&page=2"; names == ["query:access_token"]
    headers, names = redactor.redact_headers([("Set-Cookie", "sid=abc; HttpOnly; Path=/")])
    # headers == [("Set-Cookie", "sid=REDACTED; HttpOnly; Path=/")]; names == ["header:set-cookie"]
    dom, names = redactor.redact_text(dom_bytes)   # the values seen above, wherever they occur

Every method returns the redacted value and the list of names it redacted (``query:NAME``,
``fragment:NAME``, ``url:password``, ``url:userinfo``, ``header:NAME``, ``field:NAME``,
``secret:NAME`` or ``secret``), never a value. ``CaptureWarc`` (``crawlers/warc.py``) applies
a redactor to every URL and header it writes and records these names in ``WARC-Redacted``.

The redactor remembers the secret values it removed (in memory only, never written) so that
``redact_text`` can scrub them from a rendered DOM, a log or metadata, raw and in the escaped
forms a page would show them in (percent-, form-, HTML- and JSON-escaped). Remembered values
shorter than ``min_learned_length`` are not scrubbed from text: replacing every ``1`` of a page
because a cookie was ``consent=1`` would destroy evidence. Secrets passed to ``redact_text``
explicitly are scrubbed whatever their length.

Names are matched case-insensitively; for query parameters ``-`` and ``_`` are the same
(``api-key`` is ``api_key``). Names given to the constructor are added to the built-in lists;
``defaults=False`` uses only the given ones, for a source where a built-in name carries
evidence rather than a secret.

What is not done: message bodies (request and response bodies, resource data) are never changed
implicitly, because redacting them changes the evidence; whether to scrub a body is the
caller's decision, made with ``redact_text``.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus, unquote, unquote_plus

REDACTED = "REDACTED"

DEFAULT_QUERY_PARAMS: frozenset[str] = frozenset(
    {
        "access_token",
        "token",
        "key",
        "api_key",
        "apikey",
        "sig",
        "signature",
        "auth",
        "password",
        "session",
        # unambiguous credentials of OAuth and of pre-signed cloud URLs
        "client_secret",
        "refresh_token",
        "id_token",
        "x_amz_signature",
        "x_amz_credential",
        "x_amz_security_token",
        "x_goog_signature",
        "x_goog_credential",
    }
)
DEFAULT_HEADER_NAMES: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        # unambiguous credential headers
        "set-cookie2",
        "x-auth-token",
        "x-amz-security-token",
    }
)
# Headers whose value is a URL: its secret query parameters are redacted like any other URL's.
URL_HEADERS: frozenset[str] = frozenset({"location", "content-location", "referer"})
# Headers that carry a credential after an authentication scheme (kept: "Bearer REDACTED").
_SCHEME_HEADERS = frozenset({"authorization", "proxy-authorization"})
_COOKIE_PAIR = re.compile(r"(^|;)(\s*)([^=;]+?)(\s*=\s*)([^;]*)")

# A parameter in a URL inside text (a DOM, a log line): after ?, & (also HTML's &amp;), # or ;
_EMBEDDED_PARAM = re.compile(r"([?&#;](?:amp;)?)([A-Za-z0-9_.%+-]+)=([^&#;\s\"'<>\\]+)")
_EMBEDDED_USERINFO = re.compile(r"(://[^/\s:@\"'<>]*:)([^/\s@\"'<>]+)@")

T = TypeVar("T", str, bytes)


def _param_key(name: str) -> str:
    return unquote_plus(name).strip().lower().replace("-", "_")


class Redactor:
    """Replaces secret values in URLs, headers, text and metadata; remembers what it removed."""

    def __init__(
        self,
        query_params: Iterable[str] = (),
        header_names: Iterable[str] = (),
        *,
        defaults: bool = True,
        marker: str = REDACTED,
        min_learned_length: int = 8,
    ) -> None:
        """``query_params`` and ``header_names`` are added to the built-in lists (or replace
        them with ``defaults=False``); ``marker`` replaces every secret value."""
        if not marker or any(c in marker for c in "\r\n;&=#"):
            raise ValueError(f"unusable redaction marker {marker!r}")
        self.marker = marker
        self.min_learned_length = min_learned_length
        self.query_params = frozenset(
            {_param_key(n) for n in query_params} | (DEFAULT_QUERY_PARAMS if defaults else set())
        )
        self.header_names = frozenset(
            {n.strip().lower() for n in header_names}
            | (DEFAULT_HEADER_NAMES if defaults else set())
        )
        # value -> name it was found under; only values long enough to scrub safely from text
        self._learned: dict[str, str] = {}

    # -- what was seen ---------------------------------------------------------------------
    def _learn(self, value: str, name: str) -> None:
        value = value.strip().strip('"')  # a quoted cookie value is the same secret
        if len(value) >= self.min_learned_length and value != self.marker:
            self._learned.setdefault(value, name)

    @property
    def learned_names(self) -> list[str]:
        """Names of the secret values remembered for ``redact_text`` (the values stay hidden)."""
        return sorted(set(self._learned.values()))

    # -- URLs ------------------------------------------------------------------------------
    def redact_url(self, url: str) -> tuple[str, list[str]]:
        """The URL with secret query/fragment parameter values and any password replaced.

        Everything else is kept byte for byte (no re-encoding, parameter order unchanged).
        """
        names: list[str] = []
        base, hash_mark, fragment = url.partition("#")
        base, question, query = base.partition("?")
        base = self._redact_userinfo(base, names)
        if question:
            query = self._redact_params(query, "query", names)
        if hash_mark:
            # OAuth's implicit flow puts tokens in the fragment; hash routers put a query there
            head, fq_mark, fquery = fragment.partition("?")
            if fq_mark:
                fragment = head + fq_mark + self._redact_params(fquery, "fragment", names)
            elif "=" in fragment:
                fragment = self._redact_params(fragment, "fragment", names)
        return base + question + query + hash_mark + fragment, names

    def _redact_userinfo(self, base: str, names: list[str]) -> str:
        scheme_end = base.find("://")
        if scheme_end < 0:
            return base
        start = scheme_end + 3
        end = base.find("/", start)
        end = len(base) if end < 0 else end
        authority = base[start:end]
        userinfo, at, host = authority.rpartition("@")
        if not at or not userinfo:
            return base
        user, colon, password = userinfo.partition(":")
        if colon:
            if not password or password == self.marker:
                return base
            self._learn(unquote(password), "url:password")
            names.append("url:password")
            userinfo = f"{user}:{self.marker}"
        else:
            # a lone user name is often a token (https://TOKEN@host/repo.git)
            if user == self.marker:
                return base
            self._learn(unquote(user), "url:userinfo")
            names.append("url:userinfo")
            userinfo = self.marker
        return base[:start] + userinfo + "@" + host + base[end:]

    def _redact_params(self, params: str, kind: str, names: list[str]) -> str:
        parts = params.split("&")
        for i, part in enumerate(parts):
            name, eq, value = part.partition("=")
            if not eq or not value or value == self.marker:
                continue
            if _param_key(name) not in self.query_params:
                continue
            label = f"{kind}:{unquote_plus(name).strip()}"
            self._learn(unquote_plus(value), label)
            self._learn(value, label)
            parts[i] = f"{name}={self.marker}"
            names.append(label)
        return "&".join(parts)

    # -- headers ---------------------------------------------------------------------------
    def redact_headers(
        self, headers: Sequence[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], list[str]]:
        """The headers, in order and with their names, with secret values replaced.

        ``Cookie`` keeps each cookie's name (``a=REDACTED; b=REDACTED``), ``Set-Cookie`` the
        name and the attributes (``sid=REDACTED; HttpOnly; Path=/``), ``Authorization`` the
        scheme (``Bearer REDACTED``); other secret headers become ``REDACTED``. URL-valued
        headers (``Location``, ``Referer``, ``Content-Location``) are redacted as URLs, and
        secret values already seen anywhere are scrubbed from every other header.
        """
        names: list[str] = []
        out: list[tuple[str, str]] = []
        # learn every secret of this header block first, so that a value repeated in another
        # header of the same block is scrubbed there too
        for name, value in headers:
            self._learn_header(name.strip().lower(), value)
        for name, value in headers:
            lname = name.strip().lower()
            if lname in self.header_names:
                new = self._redact_secret_header(lname, value)
                if new != value:
                    names.append(f"header:{lname}")
                value = new
            else:
                if lname in URL_HEADERS:
                    value, found = self.redact_url(value)
                    names.extend(found)
                value, found = self.redact_text(value)
                names.extend(found)
            out.append((name, value))
        return out, _unique(names)

    def _learn_header(self, lname: str, value: str) -> None:
        if lname not in self.header_names:
            return
        label = f"header:{lname}"
        if lname in ("cookie", "set-cookie", "set-cookie2"):
            pairs = _COOKIE_PAIR.finditer(value)
            for match in pairs if lname == "cookie" else list(pairs)[:1]:
                self._learn(match.group(5), label)
        elif lname in _SCHEME_HEADERS and " " in value.strip():
            self._learn(value.strip().split(None, 1)[1], label)
        else:
            self._learn(value, label)

    def _redact_secret_header(self, lname: str, value: str) -> str:
        if lname == "cookie":
            return _COOKIE_PAIR.sub(self._cookie_value, value)
        if lname in ("set-cookie", "set-cookie2"):
            # only the first pair is the cookie; the rest are attributes (Path, Expires, ...)
            return _COOKIE_PAIR.sub(self._cookie_value, value, count=1)
        if not value.strip() or value.strip() == self.marker:
            return value
        if lname in _SCHEME_HEADERS and " " in value.strip():
            scheme = value.strip().split(None, 1)[0]
            return f"{scheme} {self.marker}"
        return self.marker

    def _cookie_value(self, match: re.Match[str]) -> str:
        start, space, name, eq, value = match.groups()
        if not value.strip() or value.strip() == self.marker:
            return match.group(0)
        return f"{start}{space}{name}{eq}{self.marker}"

    # -- text ------------------------------------------------------------------------------
    def redact_text(
        self, data: T, secrets: Mapping[str, str] | Iterable[str] | None = None
    ) -> tuple[T, list[str]]:
        """``data`` (str or bytes, same type back) with every known secret value replaced.

        Known secrets are the values this redactor removed so far (if at least
        ``min_learned_length`` long) and ``secrets`` (a mapping name -> value, whose names are
        recorded as ``secret:NAME``, or plain values, recorded as ``secret``). Each is also
        matched percent-, form-, HTML- and JSON-escaped. Bytes are matched as UTF-8.
        """
        table: dict[str, str] = dict(self._learned)
        if isinstance(secrets, Mapping):
            items = [(v, f"secret:{k}") for k, v in secrets.items()]
        else:
            items = [(v, "secret") for v in (secrets or ())]
        for value, label in items:
            if not value:
                raise ValueError(f"empty secret for {label}: nothing to redact")
            table[value] = label
        variants: dict[str, str] = {}
        for value, label in table.items():
            for form in _escaped_forms(value):
                variants.setdefault(form, label)
        names: list[str] = []
        if isinstance(data, bytes):
            text = data.decode("latin-1")  # one character per byte: the pattern match is exact
            text = self._redact_embedded(text, names)
            data = text.encode("latin-1")
        else:
            data = self._redact_embedded(data, names)
        # longest first, so that a secret containing another is replaced whole
        for form in sorted(variants, key=len, reverse=True):
            if isinstance(data, bytes):
                needle = form.encode("utf-8")
                if needle in data:
                    data = data.replace(needle, self.marker.encode("utf-8"))
                    names.append(variants[form])
            elif form in data:
                data = data.replace(form, self.marker)
                names.append(variants[form])
        return data, _unique(names)

    def _redact_embedded(self, text: str, names: list[str]) -> str:
        """Secret parameters and passwords of URLs inside text (values not seen before)."""

        def param(match: re.Match[str]) -> str:
            lead, name, value = match.groups()
            if _param_key(name) not in self.query_params or value == self.marker:
                return match.group(0)
            label = f"query:{unquote_plus(name)}"
            self._learn(unquote_plus(value), label)
            names.append(label)
            return f"{lead}{name}={self.marker}"

        def userinfo(match: re.Match[str]) -> str:
            if match.group(2) == self.marker:
                return match.group(0)
            names.append("url:password")
            return f"{match.group(1)}{self.marker}@"

        text = _EMBEDDED_PARAM.sub(param, text)
        return _EMBEDDED_USERINFO.sub(userinfo, text)

    # -- structured metadata ---------------------------------------------------------------
    def redact_data(self, value: Any) -> tuple[Any, list[str]]:
        """A JSON-like value (dicts, lists, strings, ...) with secrets removed, for metadata.

        Strings that are URLs are redacted as URLs, and known secret values are scrubbed from
        every string; a dict entry or ``[name, value]`` pair named like a secret header
        (``cookie``, ``authorization``, ...) has its string value redacted as that header.
        """
        names: list[str] = []
        result = self._redact_value(value, names)
        return result, _unique(names)

    def _redact_value(self, value: Any, names: list[str]) -> Any:
        if isinstance(value, str):
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", value) and "\n" not in value:
                value, found = self.redact_url(value)
                names.extend(found)
            value, found = self.redact_text(value)
            names.extend(found)
            return value
        if isinstance(value, Mapping):
            out = {}
            for key, item in value.items():
                lkey = str(key).strip().lower()
                if lkey in self.header_names and isinstance(item, str):
                    self._learn_header(lkey, item)
                    new = self._redact_secret_header(lkey, item)
                    if new != item:
                        names.append(f"field:{lkey}")
                    out[key] = new
                else:
                    out[key] = self._redact_value(item, names)
            return out
        if isinstance(value, list | tuple):
            if (
                len(value) == 2
                and all(isinstance(v, str) for v in value)
                and value[0].strip().lower() in self.header_names
            ):
                redacted, found = self.redact_headers([(value[0], value[1])])
                names.extend(found)
                return type(value)(redacted[0])
            return type(value)(self._redact_value(v, names) for v in value)
        return value


@functools.lru_cache(maxsize=1 << 16)
def _escaped_forms(value: str) -> frozenset[str]:
    # Cached: a run's redactor learns every cookie of the run and scrubs each of them from
    # every later capture's metadata; recomputing eight escapings of hundreds of secrets for
    # every string made long browser runs slow down quadratically (benchmarks/bench_posts.py).
    forms = {
        value,
        quote(value, safe=""),
        quote_plus(value, safe=""),
        quote(value, safe="/:@"),
        html.escape(value, quote=True),
        html.escape(value, quote=False),
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(value)[1:-1],
    }
    forms.discard("")
    return frozenset(forms)


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))
