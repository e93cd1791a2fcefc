"""The name resolver of capture runs: IPv4 and IPv6, and no private address unless allowed.

Installed on the reactor through Scrapy's ``TWISTED_DNS_RESOLVER`` (crawlers/settings.py), so
every connection Scrapy makes (pages, redirects, robots.txt) gets its addresses from here. The
check is on the very addresses the connection will use: a name that resolves to a public
address when a URL is checked and to 127.0.0.1 when the connection is made (DNS rebinding)
cannot slip through, because there is no second lookup.

A refused name resolves to nothing, which Twisted reports as a DNS lookup failure; the reason
is kept (``refusal``) so that the spider reports ``private-address`` instead of ``dns-error``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scrapy.crawler import Crawler
from twisted.internet._resolver import GAIResolver
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IResolutionReceiver,
)
from zope.interface import implementer, provider

from crawlers.urls import AddressPolicy, UrlRefused


@provider(IResolutionReceiver)
class _Checked:
    """Holds the addresses back until all are known, then passes them on only if allowed."""

    def __init__(self, owner: PolicyResolver, receiver: IResolutionReceiver, host: str) -> None:
        self.owner = owner
        self.receiver = receiver
        self.host = host
        self.addresses: list[IAddress] = []

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        self.receiver.resolutionBegan(resolution)

    def addressResolved(self, address: IAddress) -> None:
        self.addresses.append(address)

    def resolutionComplete(self) -> None:
        allowed = self.addresses
        try:
            self.owner.policy.check_addresses(self.host, [a.host for a in self.addresses])  # type: ignore[attr-defined]
        except UrlRefused as refused:
            self.owner.refused[self.host] = refused.message
            allowed = []
        for address in allowed:
            self.receiver.addressResolved(address)
        self.receiver.resolutionComplete()


@implementer(IHostnameResolver)
class PolicyResolver:
    """getaddrinfo in the reactor's thread pool (IPv4 and IPv6), filtered by the address
    policy. ``refused`` maps each host name refused during the run to the reason."""

    def __init__(self, reactor: Any, policy: AddressPolicy | None = None) -> None:
        self.reactor = reactor
        self.policy = policy or AddressPolicy()
        self.refused: dict[str, str] = {}
        self._resolver = GAIResolver(reactor, reactor.getThreadPool)

    @classmethod
    def from_crawler(cls, crawler: Crawler, reactor: Any) -> PolicyResolver:
        """Scrapy passes the CrawlerProcess as ``crawler``: the run's settings are there."""
        return cls(reactor, AddressPolicy.from_settings(crawler.settings))

    def install_on_reactor(self) -> None:
        """Make this the reactor's resolver (Scrapy calls it once per process)."""
        self.reactor.installNameResolver(self)

    def refusal(self, host: str) -> str | None:
        """Why ``host`` resolved to nothing, if the policy refused it."""
        return self.refused.get(_bare(host))

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        """Resolve ``hostName``; its addresses reach the receiver only if all are allowed."""
        host = _bare(hostName)
        return self._resolver.resolveHostName(
            _Checked(self, resolutionReceiver, host),
            host,
            portNumber,
            addressTypes,
            transportSemantics,
        )


def _bare(host: str | bytes) -> str:
    # Twisted's Agent hands IPv6 literals over with their URL brackets ("[::1]"), which
    # getaddrinfo cannot read: that was why http://[::1]/ failed as a DNS lookup error.
    text = host.decode("ascii") if isinstance(host, bytes) else host
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def policy_resolver() -> PolicyResolver | None:
    """The running reactor's resolver, if it is a ``PolicyResolver``."""
    from twisted.internet import reactor

    resolver = getattr(reactor, "nameResolver", None)
    return resolver if isinstance(resolver, PolicyResolver) else None
