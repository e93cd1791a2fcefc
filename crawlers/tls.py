"""The TLS certificate chain a server presents, fetched once per host during a browser run.

Chromium reports the leaf certificate's subject, issuer and validity, but not the chain; a
separate TLS connection to the same host and port records the chain as PEM (with openssl's
verification result against the capture host's trust store) for the capture's metadata.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import shutil
import socket
import ssl
import subprocess
from typing import Any
from urllib.parse import urlsplit

from schemas import format_rfc3339, utc_now

log = logging.getLogger(__name__)


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
