"""Archiving the TSAs' revocation data, so that tokens can still be checked years later.

A CRL shows a certificate's status only for the time it was issued, and CAs stop publishing
when a TSA is retired. So after tokens are granted, the CRLs named by the CRL distribution
points of their TSA certificates (and of CA certificates the tokens carry) are fetched,
checked (the issuer's key signed them) and archived as objects, indexed in
``revocation_lists`` with a ``revocation-archived`` custody entry. A CRL issued after a
token's genTime shows its status at that time; the newest one also shows a key compromise
reported since. `evidence verify` uses the newest archived CRL of each issuer together with
the CRL files of ``[timestamps] crls``.

Fetching needs the network; it runs after each run (``[timestamps] archive_crls``) and by
`evidence timestamp crls`. A CRL that cannot be fetched or is not properly signed is reported
and nothing is stored for it.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from evidence_store import custody
from evidence_store.archive import EvidenceStore, put_verified
from evidence_store.index.models import RevocationList, TimestampRecord
from evidence_store.objects import ObjectStore
from evidence_store.timestamps.tokens import (
    TimestampVerificationError,
    load_certificates,
    load_crls,
)
from schemas import utc_now

CRL_MEDIA_TYPE = "application/pkix-crl"
#: CRLs larger than this are not fetched (a TSA CA's CRL is a few KiB; big public CAs' are MiBs).
MAX_CRL_BYTES = 64 * 1024 * 1024
USER_AGENT = "dsa-evidence-crl-fetcher/1"


@dataclass
class CrlArchiving:
    """What one pass did: CRLs archived, already archived, and failures by URL."""

    archived: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    # Not fetched, but an archived CRL of that issuer exists (a retired TSA's distribution
    # point goes away: what was archived while it lived is what counts).
    stale: list[tuple[str, str]] = field(default_factory=list)


def distribution_points(cert: x509.Certificate) -> list[str]:
    """The http(s) URLs of a certificate's CRL distribution points."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    urls = []
    for point in points:
        for name in point.full_name or []:
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.lower().startswith(
                ("http://", "https://")
            ):
                urls.append(name.value)
    return urls


def _token_certificates(objects: ObjectStore, session: Session) -> list[x509.Certificate]:
    """The distinct certificates the stored tokens carry (from their chain objects)."""
    certs: dict[bytes, x509.Certificate] = {}
    chains = session.scalars(
        select(TimestampRecord.chain_sha256)
        .where(TimestampRecord.chain_sha256.is_not(None))
        .distinct()
    )
    for digest in chains:
        try:
            for cert in load_certificates(objects.get(digest)):
                certs.setdefault(cert.fingerprint(hashes.SHA256()), cert)
        except Exception:  # an unreadable chain object is verify's to report, not ours
            continue
    return list(certs.values())


def _fetch(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read(MAX_CRL_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise TimestampVerificationError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise TimestampVerificationError(f"cannot connect: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise TimestampVerificationError(f"the download failed: {exc}") from None
    if len(data) > MAX_CRL_BYTES:
        raise TimestampVerificationError(f"larger than {MAX_CRL_BYTES} bytes: not fetched")
    return data


def _checked_crl(
    data: bytes, cert: x509.Certificate, issuer: x509.Certificate | None
) -> x509.CertificateRevocationList:
    """The newest CRL in ``data`` of ``cert``'s issuer, once its signature is checked."""
    named = cert.issuer.rfc4514_string()
    crls = [crl for crl in load_crls(data) if crl.issuer == cert.issuer]
    if not crls:
        raise TimestampVerificationError(f"the answer holds no CRL of {named}")
    if issuer is None:
        raise TimestampVerificationError(
            f"CRL of {named}: the issuer's certificate is not among the tokens' certificates, "
            "so its signature cannot be checked"
        )
    for crl in crls:
        if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            raise TimestampVerificationError(
                f"CRL of {named}: not signed by the issuer's key (forged or damaged)"
            )
    return max(crls, key=lambda crl: crl.last_update_utc)


def archive_crls(
    evidence: EvidenceStore, *, anchors: Sequence[bytes] = (), timeout: float = 10.0
) -> CrlArchiving:
    """Fetch, check and archive the CRLs of every certificate the stored tokens carry.

    A CRL's signature is checked with its issuer's certificate, from the tokens or from the
    trust ``anchors``.
    """
    result = CrlArchiving()
    with evidence.index.session() as session:
        certs = _token_certificates(evidence.objects, session)
        known = set(session.scalars(select(RevocationList.crl_sha256)))
        archived_issuers = set(session.scalars(select(RevocationList.issuer).distinct()))
    issuers = [*certs, *(cert for data in anchors for cert in load_certificates(data))]
    by_subject = {cert.subject: cert for cert in issuers}
    seen_urls: set[str] = set()
    for cert in certs:
        issuer = by_subject.get(cert.issuer)
        for url in distribution_points(cert):
            if url in seen_urls:
                continue
            seen_urls.add(url)
            try:
                data = _fetch(url, timeout)
            except TimestampVerificationError as exc:
                unreachable = (url, str(exc))
                if cert.issuer.rfc4514_string() in archived_issuers:
                    result.stale.append(unreachable)
                else:
                    result.failed.append(unreachable)
                continue
            try:
                crl = _checked_crl(data, cert, issuer)
            except TimestampVerificationError as exc:  # forged or wrong: always a failure
                result.failed.append((url, str(exc)))
                continue
            if hashlib.sha256(data).hexdigest() in known:
                result.unchanged += 1
                continue
            stored = put_verified(evidence.objects, data, CRL_MEDIA_TYPE)
            known.add(stored.sha256)
            entry = {
                "url": url,
                "issuer": crl.issuer.rfc4514_string(),
                "crl_sha256": stored.sha256,
                "this_update": crl.last_update_utc.isoformat(),
                "next_update": crl.next_update_utc.isoformat() if crl.next_update_utc else None,
                "revoked": len(crl),
            }
            evidence.objects.flush()
            with evidence.index.writing(custody.CUSTODY_LOCK) as session:
                session.add(
                    RevocationList(
                        issuer=entry["issuer"],
                        url=url,
                        crl_sha256=stored.sha256,
                        this_update=crl.last_update_utc,
                        next_update=crl.next_update_utc,
                        fetched_at=utc_now(),
                    )
                )
                custody.record(
                    session, action="revocation-archived", actor=evidence.actor, details=entry
                )
            result.archived.append(entry)
    return result


def newest_crls(session: Session) -> list[RevocationList]:
    """The newest archived CRL of each issuer."""
    newest = (
        select(RevocationList.issuer, func.max(RevocationList.this_update).label("latest"))
        .group_by(RevocationList.issuer)
        .subquery()
    )
    return list(
        session.scalars(
            select(RevocationList)
            .join(
                newest,
                (RevocationList.issuer == newest.c.issuer)
                & (RevocationList.this_update == newest.c.latest),
            )
            .order_by(RevocationList.issuer)
        )
    )


def archived_crls(objects: ObjectStore, session: Session) -> list[bytes]:
    """The bytes of the newest archived CRL of each issuer (what verification checks
    tokens against, with the configured CRL files)."""
    return [objects.get(row.crl_sha256) for row in newest_crls(session)]
