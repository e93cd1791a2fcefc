"""Which URLs a capture may fetch: the checks made before any request, and the address policy.

Only ``http`` and ``https`` URLs are ever fetched. A URL is refused, with an outcome of its own
and no request made, when:

- ``invalid-url``: it cannot be parsed, has no scheme or no host, contains whitespace or control
  characters, or names a bad port or host;
- ``unsupported-scheme``: its scheme is anything but http or https (``file:`` would archive a
  local file, ``data:``/``javascript:``/``about:`` are not network resources at all);
- ``credentials-in-url``: it carries a user name or password (``http://user:pass@host/``):
  they would be sent, logged and archived. The URL is only ever shown as ``http://***@host/``;
- ``private-address``: it is, or resolves to, a loopback, link-local, private, shared (CGNAT),
  multicast, reserved or otherwise non-public address, unless the run allows them
  (``EVIDENCE_ALLOW_PRIVATE``). A capture host usually sits next to things that the public
  internet cannot reach (cloud metadata at 169.254.169.254, admin interfaces on 127.0.0.1,
  the intranet); a URL handed in, or a redirect, must not turn the archiver into a way in.

``check_url`` makes the checks that need no network (host names are resolved later, where the
connection is made: ``crawlers.resolver``, and in the browser ``crawlers.recorder``), so a CLI
can reject bad input before any work starts.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

SCHEMES = ("http", "https")

INVALID_URL = "invalid-url"
UNSUPPORTED_SCHEME = "unsupported-scheme"
CREDENTIALS_IN_URL = "credentials-in-url"
PRIVATE_ADDRESS = "private-address"
REFUSAL_OUTCOMES = (INVALID_URL, UNSUPPORTED_SCHEME, CREDENTIALS_IN_URL, PRIVATE_ADDRESS)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f]")
# A DNS name as sent on the wire (after IDNA): letters, digits, hyphens, dots; underscores
# occur in real host names although RFC 952 forbids them.
_HOST_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?$")
# Networks that is_global misses in Python 3.11 (multicast is "global" there) or that embed
# another address (NAT64), checked in is_public_address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UrlRefused(Exception):
    """A URL the capture will not fetch: ``outcome`` (one of ``REFUSAL_OUTCOMES``), a
    ``message`` saying what is wrong, and ``url``, the URL safe to show (no credentials)."""

    def __init__(self, outcome: str, message: str, url: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message
        self.url = url


def mask_credentials(url: str) -> str:
    """``url`` with any user name and password replaced by ``***`` (``http://***@host/``).

    Works on URLs that do not parse as well: everything between ``//`` and the last ``@``
    of the authority goes, so that no part of a credential survives.
    """
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*:)?//([^/?#]*)", url)
    if match is None or "@" not in match.group(2):
        return url
    host = match.group(2).rpartition("@")[2]
    return f"{match.group(1) or ''}//***@{host}{url[match.end() :]}"


def is_public_address(address: IPAddress | str) -> bool:
    """Whether ``address`` is a public unicast address a capture may connect to by default.

    Refused: loopback, private (RFC 1918, fc00::/7), link-local (169.254/16 with cloud
    metadata, fe80::/10), shared CGNAT space (100.64/10), unspecified (0.0.0.0, ::),
    multicast, reserved and documentation ranges, and IPv6 forms that embed one of these
    (IPv4-mapped ``::ffff:127.0.0.1``, 6to4, NAT64 ``64:ff9b::/96``).
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        # scoped addresses (fe80::1%eth0) name an interface of this host
        if ip.scope_id:
            return False
        embedded: IPAddress | None = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is None and ip.teredo is not None:
            embedded = ip.teredo[1]
        if embedded is not None and not is_public_address(embedded):
            return False
    return not (
        not ip.is_global
        or ip.is_multicast
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_unspecified
    )


def parse_ip(host: str) -> IPAddress | None:
    """The address if ``host`` is an IP literal (brackets around IPv6 allowed), else None."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _split(url: str) -> SplitResult:
    shown = mask_credentials(url)
    if not isinstance(url, str) or not url:
        raise UrlRefused(INVALID_URL, "empty URL", shown)
    if _UNSAFE_CHARS.search(url):
        raise UrlRefused(
            INVALID_URL,
            "the URL contains whitespace or control characters (percent-encode them, "
            "e.g. %20 for a space)",
            repr(shown)[1:-1],
        )
    match = _SCHEME.match(url)
    if match is None:
        raise UrlRefused(INVALID_URL, "no scheme: give an absolute http:// or https:// URL", shown)
    scheme = match.group(1).lower()
    if scheme not in SCHEMES:
        raise UrlRefused(
            UNSUPPORTED_SCHEME,
            f"{scheme}: URLs are never fetched: only http and https are captured",
            shown,
        )
    try:
        return urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise UrlRefused(INVALID_URL, f"cannot parse the URL: {exc}", shown) from None


def _check_host(parts: SplitResult, shown: str) -> IPAddress | None:
    if not parts.netloc:
        raise UrlRefused(INVALID_URL, "no host in the URL", shown)
    try:
        port = parts.port
    except ValueError:
        raise UrlRefused(INVALID_URL, "the port is not a number from 1 to 65535", shown) from None
    if port == 0:
        raise UrlRefused(INVALID_URL, "the port is not a number from 1 to 65535", shown)
    host = parts.hostname or ""
    if not host:
        raise UrlRefused(INVALID_URL, "no host in the URL", shown)
    if "[" in parts.netloc:
        ip = parse_ip(host)
        if not isinstance(ip, ipaddress.IPv6Address):
            raise UrlRefused(INVALID_URL, "the bracketed host is not an IPv6 address", shown)
        return ip
    ip = parse_ip(host)
    if ip is not None:
        return ip
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UrlRefused(INVALID_URL, "the host name is not a valid domain name", shown) from None
    labels = ascii_host.rstrip(".").split(".")
    if len(ascii_host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise UrlRefused(INVALID_URL, "the host name is not a valid domain name", shown)
    if labels[-1].isdigit():  # 127.1 or 2130706433: numeric forms resolvers read as IPv4
        raise UrlRefused(INVALID_URL, "the host is neither a domain name nor an IP address", shown)
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses a run may connect to: public ones, and private ones only if allowed.

    ``allow_private`` lets every address through; ``allowed_networks`` lets through only
    the private networks listed (one intranet host, say, and still not the metadata
    service). Built from ``EVIDENCE_ALLOW_PRIVATE`` and ``EVIDENCE_ALLOW_PRIVATE_NETWORKS``.
    """

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> AddressPolicy:
        """The policy of a Scrapy settings object."""
        return cls(
            allow_private=settings.getbool("EVIDENCE_ALLOW_PRIVATE", False),
            allowed_networks=tuple(
                ipaddress.ip_network(str(n), strict=False)
                for n in settings.getlist("EVIDENCE_ALLOW_PRIVATE_NETWORKS")
            ),
        )

    def allows(self, address: IPAddress | str) -> bool:
        """Whether a connection to ``address`` is allowed."""
        if self.allow_private:
            return True
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if any(ip.version == net.version and ip in net for net in self.allowed_networks):
            return True
        return is_public_address(ip)

    def check_addresses(self, host: str, addresses: list[str]) -> None:
        """Raise ``UrlRefused`` (``private-address``) if any address of ``host`` is refused.

        One refused address is enough: which of several addresses a client connects to is
        not in the caller's hands (and a rebinding name would mix public and private ones).
        """
        for address in addresses:
            if not self.allows(address.split("%", 1)[0]):
                raise UrlRefused(PRIVATE_ADDRESS, private_message(host, address), host)


def check_url(
    url: str, *, allow_private: bool = False, policy: AddressPolicy | None = None
) -> None:
    """Raise ``UrlRefused`` if a capture must not fetch ``url``; checks that need no network.

    Checked in this order: form (``invalid-url``), scheme (``unsupported-scheme``), user
    name or password (``credentials-in-url``), host and port (``invalid-url``) and, unless
    ``allow_private`` (or ``policy`` allows it), a host given as a non-public IP address
    (``private-address``). Host names are not resolved here: that happens where the
    connection is made, which checks the addresses it actually uses (``localhost`` is
    refused there).
    """
    policy = policy or AddressPolicy(allow_private=allow_private)
    parts = _split(url)
    shown = mask_credentials(url)
    if "@" in parts.netloc:
        raise UrlRefused(
            CREDENTIALS_IN_URL,
            "the URL carries a user name or password: credentials are never sent, logged or "
            "archived; remove them from the URL",
            shown,
        )
    ip = _check_host(parts, shown)
    if ip is not None and not policy.allows(ip):
        raise UrlRefused(PRIVATE_ADDRESS, private_message(parts.hostname or "", str(ip)), shown)


def url_problem(
    url: str, *, allow_private: bool = False, policy: AddressPolicy | None = None
) -> UrlRefused | None:
    """``check_url`` as a value: the refusal, or None if the URL may be fetched."""
    try:
        check_url(url, allow_private=allow_private, policy=policy)
    except UrlRefused as refused:
        return refused
    return None


def private_message(host: str, address: str) -> str:
    """The error text of a ``private-address`` refusal."""
    where = host if host == address or not host else f"{host} ({address})"
    return (
        f"{where} is not a public address (loopback, private, link-local or reserved): "
        "refused unless private addresses are allowed (--allow-private)"
    )


def resolve(host: str, port: int | None = None) -> list[str]:
    """Every address ``host`` resolves to on this machine (getaddrinfo, blocking)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
