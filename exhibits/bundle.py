"""Building a court-exhibit bundle: PDFs for the judge, originals and proofs for the expert.

A bundle (a folder, or a ZIP holding that folder) contains::

    Anlagenverzeichnis.pdf      the index of exhibits (Exhibit-index.pdf in English)
    K1.pdf, K2.pdf, ...         one PDF per exhibit
    K1/manifest.json            the snapshot's manifest: its SHA-256 is the snapshot id
    K1/manifest.sig             the raw Ed25519 signature over it
    K1/signer.pub.pem           the signing key (PEM), as named in the manifest
    K1/artifacts/...            every artifact (WARC, screenshot, PDF print, DOM, metadata, files)
    K1/capture.wacz             the WARC as a replayable WACZ (when the capture has a WARC)
    K1/timestamps/...           the TSA replies (.tsr), the certificates they carry, Merkle proofs
    K1/custody.json             the snapshot's custody trail
    K2/T1-<id>/...              the same per snapshot, when an exhibit shows several (a
                                timeline: T1 is the oldest capture)
    keys/                       the endorsed history of the signing keys (keys.json, PEMs)
    trust/tsa-anchors.pem       the TSA trust anchors the tokens chain to
    trust/crls/N.crl            the newest archived CRL of each TSA CA (revocation status)
    BUNDLE.json                 what the bundle holds, machine-readable
    VERIFY.md                   how to check all of it with standard tools (German, English)
    SHA256SUMS                  the SHA-256 of every file above
    BUNDLE.sha256               the SHA-256 of SHA256SUMS: the bundle's digest
    BUNDLE.tsr                  an RFC 3161 token over that digest (when a TSA was configured)
    BUNDLE-tsa-chain.pem        the certificates that token carries
    BUNDLE-TIMESTAMP.txt        whether and how the digest was timestamped, or why not

Building has two steps, because timestamping belongs to the caller (the jobs layer holds the
TSA settings and the custody log): :func:`build_bundle` writes everything up to SHA256SUMS
into a work folder and returns a :class:`PendingBundle` with the digest; :func:`finish_bundle`
adds the digest files and the token and puts the bundle in place (never over an existing
file). Every artifact is re-hashed while it is copied out of the store: a bundle never holds
bytes that differ from what the manifest lists.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from evidence_store import custody
from evidence_store.index import Index
from evidence_store.index.models import MerkleProof, MerkleTree, Snapshot, TimestampRecord
from evidence_store.index.models.timestamp import SUBJECT_SNAPSHOT, TimestampAnchor, TrustAnchor
from evidence_store.keys import export_key_history
from evidence_store.manifest import software_versions
from evidence_store.objects import ObjectStore
from evidence_store.signing import public_key_pem
from evidence_store.support import fsync_dir
from evidence_store.timestamps.anchors import fingerprint as anchor_fingerprint
from evidence_store.timestamps.tokens import load_certificates, parse_token
from exhibits.items import ExhibitError, ExhibitItem, resolve_item
from exhibits.pdf import render_pdf, slice_screenshot
from exhibits.texts import LANGS, TEXTS, berlin_text, utc_text
from schemas import SignerInfo, format_rfc3339, parse_rfc3339, utc_now

BUNDLE_TYPE = "dsa-evidence/exhibit-bundle"
SUMS = "SHA256SUMS"
DIGEST_FILE = "BUNDLE.sha256"
TOKEN_FILE = "BUNDLE.tsr"
TOKEN_CHAIN_FILE = "BUNDLE-tsa-chain.pem"
TIMESTAMP_NOTE_FILE = "BUNDLE-TIMESTAMP.txt"
MANIFEST_FILE = "BUNDLE.json"
VERIFY_FILE = "VERIFY.md"
ANCHORS_FILE = "trust/tsa-anchors.pem"
CRLS_FOLDER = "trust/crls"
KEYS_FOLDER = "keys"
# Written after SHA256SUMS, so not listed in it; everything else must be.
OUTSIDE_SUMS = frozenset({SUMS, DIGEST_FILE, TOKEN_FILE, TOKEN_CHAIN_FILE, TIMESTAMP_NOTE_FILE})
_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,15}$")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class BundleOptions:
    """How the exhibits are named and in which language their PDFs are written."""

    case: str
    prefix: str = "K"
    start: int = 1
    lang: str = "de"

    def check(self) -> None:
        if self.lang not in LANGS:
            raise ExhibitError(f"language {self.lang!r}: choose {' or '.join(LANGS)}")
        if not self.case.strip():
            raise ExhibitError("give the case name (--case)")
        if self.start < 1:
            raise ExhibitError("exhibit numbers start at 1 or later")
        if not _LABEL.match(f"{self.prefix}{self.start}"):
            raise ExhibitError(f"exhibit prefix {self.prefix!r}: use letters, digits and '-'")


@dataclass
class ExhibitEntry:
    """One exhibit of a bundle, as the index lists it."""

    label: str
    title: str
    kind: str
    ref: str
    url: str | None
    captured_at: str
    snapshots: list[str]
    pdf: str
    pdf_sha256: str = ""
    captured_until: str | None = None  # the last capture, when the exhibit spans several


@dataclass
class PendingBundle:
    """A bundle written up to SHA256SUMS, waiting for its digest files and token."""

    work: Path  # the bundle folder being built (its name is the bundle's name)
    output: Path
    digest: str  # SHA-256 of SHA256SUMS
    exhibits: list[ExhibitEntry]
    files: int
    size: int
    snapshots: list[str]
    lang: str
    scratch: Path  # holds work and the renderer's temporary files

    def discard(self) -> None:
        """Remove everything written so far (the output was never created)."""
        shutil.rmtree(self.scratch, ignore_errors=True)


@dataclass(frozen=True)
class BundleStamp:
    """The token over a bundle's digest, as the TSA returned it."""

    reply: bytes
    chain_pem: bytes | None
    tsa_url: str
    gen_time: datetime
    serial: str


# -- helpers ---------------------------------------------------------------------------------
def _safe_name(name: str, taken: set[str]) -> str:
    clean = _UNSAFE_NAME.sub("_", name).strip("._") or "file"
    candidate, n = clean, 1
    while candidate in taken:
        n += 1
        candidate = f"{n}-{clean}"
    taken.add(candidate)
    return candidate


class _Writer:
    """Writes the bundle's files, keeping each one's SHA-256 and size for SHA256SUMS."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.digests: dict[str, tuple[str, int]] = {}

    def path(self, relative: str) -> Path:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def bytes(self, relative: str, data: bytes) -> str:
        with open(self.path(relative), "xb") as stream:
            stream.write(data)
        digest = hashlib.sha256(data).hexdigest()
        self.digests[relative] = (digest, len(data))
        return digest

    def file(self, relative: str, source: Path) -> str:
        with open(source, "rb") as stream:
            digest = hashlib.file_digest(stream, "sha256").hexdigest()
        if source != self.path(relative):
            shutil.copyfile(source, self.path(relative))
        self.digests[relative] = (digest, source.stat().st_size)
        return digest

    def object(self, relative: str, objects: ObjectStore, sha256: str, what: str) -> None:
        """Copy an object out of the store, re-hashing it on the way."""
        hasher = hashlib.sha256()
        size = 0
        with objects.open(sha256) as source, open(self.path(relative), "xb") as target:
            while chunk := source.read(1 << 20):
                hasher.update(chunk)
                target.write(chunk)
                size += len(chunk)
        if hasher.hexdigest() != sha256:
            raise ExhibitError(
                f"{what} (sha256:{sha256}) in the store hashes to {hasher.hexdigest()}: it was "
                "altered; run `evidence verify` before building exhibits"
            )
        self.digests[relative] = (sha256, size)

    def json(self, relative: str, value: Any) -> str:
        return self.bytes(
            relative, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()
        )


def _short_details(details: dict[str, Any], limit: int = 240) -> str:
    text = ", ".join(
        f"{k}={v if isinstance(v, str | int | float) else json.dumps(v, ensure_ascii=False)}"
        for k, v in details.items()
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tls_rows(capture: dict[str, Any]) -> list[tuple[str, str]]:
    tls = capture.get("tls")
    if not tls:
        return []
    subject, issuer = tls.get("subject"), tls.get("issuer")
    valid_from, valid_to = tls.get("valid_from"), tls.get("valid_to")
    pems = tls.get("certificate_chain_pem") or []
    if pems:
        try:
            cert = x509.load_pem_x509_certificate(pems[0].encode())
        except ValueError:
            cert = None
        if cert is not None:
            subject = cert.subject.rfc4514_string()
            issuer = cert.issuer.rfc4514_string()
            valid_from = format_rfc3339(cert.not_valid_before_utc)
            valid_to = format_rfc3339(cert.not_valid_after_utc)
    rows = [("tls_subject", subject or "?"), ("tls_issuer", issuer or "?")]
    rows.append(("tls_valid", f"{valid_from or '?'} – {valid_to or '?'}"))  # noqa: RUF001 (typography of a court document)
    if tls.get("protocol"):
        rows.append(("protocol", str(tls["protocol"])))
    return rows


def _environment_rows(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    capture = manifest.get("capture") or {}
    software = manifest.get("software") or {}
    rows = [("software", ", ".join(f"{k} {v}" for k, v in sorted(software.items())))]
    browser = capture.get("browser")
    if isinstance(browser, dict):
        viewport = browser.get("viewport") or {}
        parts = [f"{browser.get('name', '?')} {browser.get('version', '')}".strip()]
        if browser.get("headless"):
            parts.append("headless")
        if viewport:
            parts.append(f"viewport {viewport.get('width')}×{viewport.get('height')}")  # noqa: RUF001 (typography of a court document)
        for key in ("locale", "timezone"):
            if browser.get(key):
                parts.append(f"{key} {browser[key]}")
        rows.append(("browser", ", ".join(parts)))
    for key in ("user_agent", "server_ip", "protocol", "capture_host"):
        if capture.get(key):
            rows.append((key, str(capture[key])))
    clock = manifest.get("clock") or {}
    if clock:
        rows.append(("clock", ", ".join(f"{k} {v}" for k, v in sorted(clock.items()))))
    source = manifest.get("source")
    if source:
        run = manifest.get("run_id")
        rows.append(("source", f"{source}" + (f" (run {run})" if run else "")))
    return rows


# -- one snapshot's originals ------------------------------------------------------------------
@dataclass
class SnapshotPart:
    """What one snapshot contributes to an exhibit: the files written into the bundle (already
    re-hashed against the manifest), and what its PDF shows of them."""

    meta: dict[str, Any]  # for BUNDLE.json
    view: dict[str, Any]  # for the template
    screenshot: Path | None = None
    anchors: dict[str, bytes] = field(default_factory=dict)  # fingerprint -> PEM
    manifest: dict[str, Any] = field(default_factory=dict)
    root: Path | None = None  # the bundle folder the artifact paths are relative to

    def artifact(self, role: str, media_type: str | None = None) -> Path | None:
        """The bundle's copy of the first artifact of ``role`` (and media type), if any."""
        assert self.root is not None
        for entry in self.meta["artifacts"]:
            if entry["role"] == role and media_type in (None, entry["media_type"]):
                return self.root / entry["path"]
        return None


def _write_snapshot(
    writer: _Writer,
    objects: ObjectStore,
    session: Session,
    snapshot_id: str,
    folder: str,
    lang: str,
) -> SnapshotPart:
    t = TEXTS[lang]
    snap = session.get(Snapshot, snapshot_id)
    assert snap is not None
    if snap.deleted_at is not None:
        raise ExhibitError(
            f"snapshot {snapshot_id} cannot be an exhibit: its artifacts were deleted under the "
            f"retention policy on {format_rfc3339(snap.deleted_at)}"
        )
    writer.object(f"{folder}/manifest.json", objects, snapshot_id, "the manifest")
    manifest_bytes = (writer.root / folder / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    writer.object(f"{folder}/manifest.sig", objects, snap.signature_sha256, "the signature")
    signer = SignerInfo.model_validate(manifest["signer"])
    writer.bytes(f"{folder}/signer.pub.pem", public_key_pem(signer))

    files = []
    taken: set[str] = set()
    screenshot = None
    for entry in manifest["artifacts"]:
        name = _safe_name(entry["name"], taken)
        path = f"{folder}/artifacts/{name}"
        writer.object(path, objects, entry["sha256"], f"artifact {entry['name']}")
        files.append({**entry, "path": path})
        if entry["role"] == "screenshot" and entry["media_type"] == "image/png":
            screenshot = writer.root / path
    wacz = _write_wacz(writer, folder, files, snap, manifest)

    stamps, anchor_pems, tokens_meta = _write_tokens(writer, objects, session, snapshot_id, folder)
    trail = custody.events_of(session, snapshot_id, collection_id=snap.collection_id)
    custody_entries = [
        {
            "id": e.id,
            "occurred_at": format_rfc3339(e.occurred_at),
            "actor": e.actor,
            "action": e.action,
            "snapshot": e.snapshot_id,
            "reason": e.reason,
            "details": e.details,
            "previous_hash": e.previous_hash,
            "entry_hash": e.entry_hash,
        }
        for e in trail
    ]
    writer.json(f"{folder}/custody.json", {"snapshot": snapshot_id, "entries": custody_entries})

    capture = manifest.get("capture") or {}
    captured = parse_rfc3339(manifest["captured_at"])
    archived = parse_rfc3339(manifest["archived_at"])
    redirects = [
        f"{hop.get('status')} {hop.get('url')}"
        for hop in capture.get("redirect_chain") or []
        if hop.get("location")
    ]
    previous = manifest.get("previous")
    chain = (
        t["chain_value"].format(
            collection=manifest["collection"], sequence=manifest["sequence"], previous=previous
        )
        if previous
        else t["chain_first"].format(
            collection=manifest["collection"], sequence=manifest["sequence"]
        )
    )
    listed = [
        {
            "path": f"{folder}/manifest.json",
            "role": "manifest",
            "sha256": snapshot_id,
            "size": len(manifest_bytes),
        },
        {
            "path": f"{folder}/manifest.sig",
            "role": "signature",
            "sha256": snap.signature_sha256,
            "size": writer.digests[f"{folder}/manifest.sig"][1],
        },
        *(
            {"path": f["path"], "role": f["role"], "sha256": f["sha256"], "size": f["size"]}
            for f in files
        ),
    ]
    if wacz:
        listed.append(
            {
                "path": wacz,
                "role": "wacz",
                "sha256": writer.digests[wacz][0],
                "size": writer.digests[wacz][1],
            }
        )
    view = {
        "snapshot_id": snapshot_id,
        "requested_url": capture.get("requested_url") or manifest.get("source_url"),
        "final_url": capture.get("final_url"),
        "redirects": redirects,
        "status": capture.get("status"),
        "outcome": capture.get("outcome"),
        "error": capture.get("error"),
        "mode": capture.get("mode"),
        "captured": captured,
        "captured_utc": utc_text(captured),
        "captured_berlin": berlin_text(captured, lang),
        "archived_utc": utc_text(archived),
        "kind": manifest.get("kind"),
        "note": manifest.get("note"),
        "chain": chain,
        "environment": _environment_rows(manifest),
        "tls": _tls_rows(capture),
        "files": listed,
        "timestamps": stamps,
        "key_fingerprint": signer.fingerprint.removeprefix("sha256:"),
        "public_key_file": f"{folder}/signer.pub.pem",
        "signature_file": f"{folder}/manifest.sig",
        "custody": [
            {
                "when": e["occurred_at"].replace("T", " "),
                "actor": e["actor"],
                "action": e["action"],
                "details": _short_details(e["details"] or {}),
            }
            for e in custody_entries
        ],
    }
    meta = {
        "id": snapshot_id,
        "folder": folder,
        "collection": manifest["collection"],
        "sequence": manifest["sequence"],
        "captured_at": manifest["captured_at"],
        "source_url": manifest.get("source_url"),
        "manifest": f"{folder}/manifest.json",
        "signature": f"{folder}/manifest.sig",
        "public_key": f"{folder}/signer.pub.pem",
        "key_fingerprint": signer.fingerprint,
        "artifacts": [
            {k: f[k] for k in ("role", "name", "media_type", "size", "sha256", "path")}
            for f in files
        ],
        "wacz": wacz,
        "timestamps": tokens_meta,
        "custody": f"{folder}/custody.json",
    }
    return SnapshotPart(
        meta=meta,
        view=view,
        screenshot=screenshot,
        anchors=anchor_pems,
        manifest=manifest,
        root=writer.root,
    )


def _write_wacz(
    writer: _Writer, folder: str, files: list[dict[str, Any]], snap: Snapshot, manifest: dict
) -> str | None:
    from exhibits.wacz import WaczError, export_wacz

    warcs = [writer.root / f["path"] for f in files if f["role"] == "warc"]
    if not warcs:
        return None
    url = (manifest.get("capture") or {}).get("requested_url") or snap.source_url
    pages = (
        [{"url": url, "title": f"snapshot {snap.id}", "ts": manifest["captured_at"], "id": snap.id}]
        if url
        else []
    )
    relative = f"{folder}/capture.wacz"
    # export_wacz wants the WARCs under a name of its own pattern: hard links, no copies.
    staging = writer.root.parent / f"wacz-{snap.id[:16]}"
    staging.mkdir(exist_ok=True)
    linked = []
    for n, warc in enumerate(warcs):
        target = staging / f"{snap.id[:16]}-{n}.warc.gz"
        if not target.exists():
            os.link(warc, target)
        linked.append(target)
    try:
        export_wacz(
            linked,
            pages,
            writer.path(relative),
            title=f"snapshot {snap.id}",
            description=f"WARC of snapshot {snap.id}",
            created=snap.archived_at,
        )
    except WaczError as exc:
        raise ExhibitError(f"snapshot {snap.id}: cannot package its WARC as WACZ: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    writer.file(relative, writer.root / relative)
    return relative


def _write_tokens(
    writer: _Writer, objects: ObjectStore, session: Session, snapshot_id: str, folder: str
) -> tuple[list[dict[str, Any]], dict[str, bytes], list[dict[str, Any]]]:
    """The snapshot's own tokens and its Merkle tree's, with proofs and anchors."""
    shown: list[dict[str, Any]] = []
    meta: list[dict[str, Any]] = []
    records: list[tuple[TimestampRecord, dict[str, Any]]] = []
    own = session.scalars(
        select(TimestampRecord)
        .where(TimestampRecord.snapshot_id == snapshot_id)
        .where(TimestampRecord.subject == SUBJECT_SNAPSHOT)
        .order_by(TimestampRecord.id)
    )
    records += [(r, {"covers": "snapshot"}) for r in own]
    proof = session.get(MerkleProof, snapshot_id)
    if proof is not None:
        tree = session.get(MerkleTree, proof.tree_id)
        assert tree is not None
        leaves_file = f"{folder}/timestamps/merkle-leaves.txt"
        writer.object(leaves_file, objects, tree.leaves_sha256, "the Merkle leaf list")
        proof_file = f"{folder}/timestamps/merkle-proof.json"
        writer.json(
            proof_file,
            {
                "algorithm": "RFC 9162 section 2.1.3.2 (leaf = SHA-256(0x00 || snapshot id), "
                "node = SHA-256(0x01 || left || right))",
                "snapshot": snapshot_id,
                "leaf_index": proof.leaf_index,
                "tree_size": tree.tree_size,
                "root": tree.root,
                "path": [h for h in proof.path.split(",") if h],
                "leaves": leaves_file,
            },
        )
        tree_tokens = session.scalars(
            select(TimestampRecord)
            .where(TimestampRecord.tree_id == tree.id)
            .order_by(TimestampRecord.id)
        )
        records += [
            (
                r,
                {
                    "covers": "merkle-root",
                    "proof": proof_file,
                    "leaf": proof.leaf_index,
                    "size": tree.tree_size,
                    "root": tree.root,
                },
            )
            for r in tree_tokens
        ]
    anchors: dict[str, bytes] = {}
    for n, (record, how) in enumerate(records, start=1):
        stem = f"{folder}/timestamps/{how['covers']}-{n}"
        entry = _write_token(writer, objects, session, record, stem, anchors)
        info = parse_token((writer.root / f"{stem}.tsr").read_bytes())
        tsa_subject = (
            x509.load_der_x509_certificate(info.tsa_certificate).subject.rfc4514_string()
            if info.tsa_certificate
            else (info.tsa_name or "?")
        )
        entry["covers"] = how["covers"]
        if "proof" in how:
            entry["proof"] = how["proof"]
        entry["renewals"] = _write_renewals(writer, objects, session, record, stem, anchors)
        meta.append(entry)
        shown.append(
            {
                "tsa": record.tsa_url,
                "tsa_subject": tsa_subject,
                "qualified": info.qualified_claim,
                "serial": str(record.serial_number),
                "gen_utc": utc_text(record.gen_time),
                "gen_berlin": "",  # filled by the caller, which knows the language
                "gen_time": record.gen_time,
                "covers_how": how,
                "file": f"{stem}.tsr",
                "renewals": [
                    (utc_text(parse_rfc3339(r["gen_time"])), r["tsa"], r["file"])
                    for r in _flat_renewals(entry["renewals"])
                ],
            }
        )
    return shown, anchors, meta


def _write_token(
    writer: _Writer,
    objects: ObjectStore,
    session: Session,
    record: TimestampRecord,
    stem: str,
    anchors: dict[str, bytes],
) -> dict[str, Any]:
    """One token's reply (and chain) as ``stem.tsr``; its trust anchors added to ``anchors``."""
    writer.object(f"{stem}.tsr", objects, record.reply_sha256, "a timestamp reply")
    chain = None
    if record.chain_sha256:
        chain = f"{stem}-chain.pem"
        writer.object(chain, objects, record.chain_sha256, "a TSA certificate chain")
    for row in session.scalars(
        select(TrustAnchor)
        .join(TimestampAnchor, TimestampAnchor.anchor_id == TrustAnchor.id)
        .where(TimestampAnchor.timestamp_id == record.id)
    ):
        anchors.setdefault(row.fingerprint, objects.get(row.object_sha256))
    return {
        "file": f"{stem}.tsr",
        "chain": chain,
        "imprint": record.imprint,
        "tsa": record.tsa_url,
        "gen_time": format_rfc3339(record.gen_time),
        "serial": str(record.serial_number),
    }


def _write_renewals(
    writer: _Writer,
    objects: ObjectStore,
    session: Session,
    record: TimestampRecord,
    stem: str,
    anchors: dict[str, bytes],
    seen: frozenset[int] = frozenset(),
) -> list[dict[str, Any]]:
    """The renewals of a token (archive timestamps over its reply file), and theirs, written
    beside it: they prove the token existed before its TSA's certificate ended or its key
    was compromised, so it still verifies after either (``existed_by``)."""
    written = []
    renewals = session.scalars(
        select(TimestampRecord)
        .where(TimestampRecord.renews_id == record.id)
        .order_by(TimestampRecord.id)
    )
    for k, renewal in enumerate(renewals, start=1):
        if renewal.id in seen | {record.id}:
            continue  # a loop is a finding of `evidence verify`, not something to copy
        renewal_stem = f"{stem}-renewal-{k}"
        entry = _write_token(writer, objects, session, renewal, renewal_stem, anchors)
        entry["renews"] = f"{stem}.tsr"
        entry["renewals"] = _write_renewals(
            writer, objects, session, renewal, renewal_stem, anchors, seen | {record.id}
        )
        written.append(entry)
    return written


def _flat_renewals(renewals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for entry in renewals for r in (entry, *_flat_renewals(entry["renewals"]))]


def _write_crls(writer: _Writer, objects: ObjectStore, session: Session) -> list[dict[str, Any]]:
    """The newest archived CRL of each TSA CA, as fetched (PEM or DER), so that the tokens'
    revocation status can be checked offline, years on."""
    from evidence_store.timestamps.revocation import newest_crls

    written = []
    for n, row in enumerate(newest_crls(session), start=1):
        file = f"{CRLS_FOLDER}/{n}.crl"
        writer.object(file, objects, row.crl_sha256, "an archived CRL")
        written.append(
            {
                "file": file,
                "issuer": row.issuer,
                "this_update": format_rfc3339(row.this_update),
                "next_update": format_rfc3339(row.next_update) if row.next_update else None,
                "url": row.url,
                "format": "PEM" if writer.path(file).read_bytes().startswith(b"-----") else "DER",
            }
        )
    return written


# -- the bundle ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PageContext:
    """What a presenter needs besides the item and its snapshots' parts."""

    label: str
    options: BundleOptions
    render_dir: Path  # scratch space for derived images (never part of the bundle)


@dataclass
class ExhibitPage:
    """What an exhibit's PDF shows: a template of ``templates/``, its context, its title, and
    the period it covers (for the index)."""

    template: str
    title: str
    context: dict[str, Any]
    captured_at: str  # RFC 3339
    captured_until: str | None = None  # the last capture, when the exhibit spans several


Presenter = Callable[[ExhibitItem, list[SnapshotPart], PageContext], ExhibitPage]

# Kind -> "module:function" of its presenter. Imported when needed, so that a presenter may
# import this module (for SnapshotPart and friends) without a cycle.
PRESENTERS: dict[str, str] = {
    "snapshot": "exhibits.bundle:present_snapshot",
    "timeline": "exhibits.timeline:present_timeline",
    "sor": "exhibits.records:present_record",
    "ad": "exhibits.records:present_record",
    "post": "exhibits.records:present_record",
}


def _presenter(kind: str) -> Presenter:
    import importlib

    target = PRESENTERS.get(kind, PRESENTERS["snapshot"])
    module, _, name = target.partition(":")
    presenter: Presenter = getattr(importlib.import_module(module), name)
    return presenter


def page_title(part: SnapshotPart, lang: str, fallback: str) -> str:
    """The page a snapshot shows, shortened for a title (the full URL is in the table)."""
    url = part.view["final_url"] or part.view["requested_url"]
    if url:
        return url if len(url) <= 90 else url[:89] + "…"
    names = [f["name"] for f in part.meta["artifacts"]]
    return f"{TEXTS[lang]['file']} {', '.join(names) or fallback}"


def present_snapshot(
    item: ExhibitItem, parts: list[SnapshotPart], page: PageContext
) -> ExhibitPage:
    """One snapshot (or the first of an item's): its facts, proofs and full screenshot."""
    t = TEXTS[page.options.lang]
    main = parts[0]
    url = main.view["final_url"] or main.view["requested_url"]
    shown = page_title(main, page.options.lang, item.ref)
    title = f"{t['capture_of']} {shown}" if url else shown
    slices = (
        slice_screenshot(main.screenshot, page.render_dir, page.label) if main.screenshot else []
    )
    view = dict(main.view)
    view["fields"] = [(t.get(k, k), v) for k, v in item.fields()]
    view["slices"] = slices
    return ExhibitPage(
        template="exhibit.html",
        title=title,
        context={"item": view, "folder": main.meta["folder"]},
        captured_at=main.meta["captured_at"],
    )


def _fill_timestamps(part: SnapshotPart, lang: str) -> None:
    t = TEXTS[lang]
    for stamp in part.view["timestamps"]:
        how = stamp["covers_how"]
        stamp["gen_berlin"] = berlin_text(stamp["gen_time"], lang)
        stamp["covers"] = (
            t["covers_merkle"].format(
                root=how["root"], leaf=how["leaf"], size=how["size"], file=how["proof"]
            )
            if how["covers"] == "merkle-root"
            else f"{t['covers_snapshot']} {part.meta['id']}"
        )


def build_bundle(
    objects: ObjectStore,
    index: Index,
    refs: Sequence[str],
    output: Path,
    options: BundleOptions,
    *,
    configured_anchors: Sequence[bytes] = (),
    on_exhibit: Callable[[str], None] | None = None,
    resolve: Callable[[Session, str], ExhibitItem] = resolve_item,
) -> PendingBundle:
    """Write the exhibits of ``refs`` (snapshot ids or prefixes; later records) into a new
    bundle, up to SHA256SUMS; :func:`finish_bundle` completes it.

    ``resolve`` turns each reference into an item (``exhibits.timeline.resolve_timeline`` for
    a timeline); each item's PDF is made by the presenter of its kind (:data:`PRESENTERS`).
    ``configured_anchors`` (PEM) are the TSA trust anchors of this installation: they go into
    ``trust/`` too, so that the token the caller gets over the bundle's digest can be checked.
    """
    options.check()
    if not refs:
        raise ExhibitError("name at least one snapshot to make an exhibit of")
    if output.exists():
        raise ExhibitError(f"{output} exists: an exhibit bundle is never overwritten")
    parent = output.absolute().parent
    if not parent.is_dir():
        raise ExhibitError(f"cannot write {output}: no folder {parent}")
    t = TEXTS[options.lang]
    name = output.name.removesuffix(".zip") if output.suffix == ".zip" else output.name
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=parent))
    work = scratch / name
    work.mkdir()
    writer = _Writer(work)
    render_dir = scratch / "render"
    render_dir.mkdir()
    try:
        with index.session() as session:
            # Record kinds read Parquet files and other objects, not only rows.
            session.info.update(index=index, objects=objects)
            items = [resolve(session, ref) for ref in refs]
            entries: list[ExhibitEntry] = []
            exhibits_meta: list[dict[str, Any]] = []
            anchors: dict[str, bytes] = {}
            built_at = utc_now()
            for number, item in enumerate(items, start=options.start):
                label = f"{options.prefix}{number}"
                if on_exhibit:
                    on_exhibit(label)
                parts = []
                several = len(item.snapshots) > 1
                for n, snap in enumerate(item.snapshots, start=1):
                    folder = f"{label}/T{n}-{snap.id[:12]}" if several else label
                    parts.append(
                        _write_snapshot(writer, objects, session, snap.id, folder, options.lang)
                    )
                for part in parts:
                    anchors.update(part.anchors)
                    _fill_timestamps(part, options.lang)
                page = _presenter(item.kind)(item, parts, PageContext(label, options, render_dir))
                pdf = f"{label}.pdf"
                render_pdf(
                    page.template,
                    {
                        "lang": options.lang,
                        "case": options.case,
                        "label": f"{t['exhibit']} {label}",
                        "doc_title": f"{t['exhibit']} {label}: {page.title}",
                        "title": page.title,
                        **page.context,
                    },
                    writer.path(pdf),
                    base=scratch,
                )
                pdf_sha256 = writer.file(pdf, writer.path(pdf))
                entry = ExhibitEntry(
                    label=label,
                    title=page.title,
                    kind=item.kind,
                    ref=item.ref,
                    url=item.url,
                    captured_at=page.captured_at,
                    captured_until=page.captured_until,
                    snapshots=[p.meta["id"] for p in parts],
                    pdf=pdf,
                    pdf_sha256=pdf_sha256,
                )
                entries.append(entry)
                exhibits_meta.append(
                    {**vars(entry), "snapshots": [p.meta for p in parts], "fields": item.fields()}
                )
            export_key_history(objects, session, work / KEYS_FOLDER)
            crl_files = _write_crls(writer, objects, session)
        for relative in sorted(
            p.relative_to(work).as_posix() for p in (work / KEYS_FOLDER).rglob("*") if p.is_file()
        ):
            writer.file(relative, work / relative)
        for data in configured_anchors:
            for cert in load_certificates(data):
                fp = anchor_fingerprint(cert.public_bytes(Encoding.DER))
                anchors.setdefault(fp, cert.public_bytes(Encoding.PEM))
        anchor_files = []
        if anchors:
            bundle_pem = b"".join(anchors[fp] for fp in sorted(anchors))
            writer.bytes(ANCHORS_FILE, bundle_pem)
            anchor_files.append(ANCHORS_FILE)
        index_name = t["index_file"]
        render_pdf(
            "index.html",
            {
                "lang": options.lang,
                "case": options.case,
                "label": t["index_title"],
                "doc_title": f"{t['index_title']}: {options.case}",
                "built_utc": utc_text(built_at),
                "built_berlin": berlin_text(built_at, options.lang),
                "exhibits": [
                    {
                        **vars(e),
                        "captured_utc": utc_text(parse_rfc3339(e.captured_at)),
                        "captured_berlin": berlin_text(parse_rfc3339(e.captured_at), options.lang),
                        "until_utc": utc_text(parse_rfc3339(e.captured_until))
                        if e.captured_until
                        else None,
                        "until_berlin": berlin_text(parse_rfc3339(e.captured_until), options.lang)
                        if e.captured_until
                        else None,
                    }
                    for e in entries
                ],
            },
            writer.path(index_name),
            base=scratch,
        )
        writer.file(index_name, writer.path(index_name))
        bundle_meta = {
            "type": BUNDLE_TYPE,
            "version": 1,
            "case": options.case,
            "lang": options.lang,
            "built_at": format_rfc3339(built_at),
            "software": software_versions(),
            "index_pdf": index_name,
            "trust_anchors": anchor_files,
            "crls": crl_files,
            "keys": f"{KEYS_FOLDER}/keys.json",
            "digest": {
                "file": SUMS,
                "digest_file": DIGEST_FILE,
                "token": TOKEN_FILE,
                "note": TIMESTAMP_NOTE_FILE,
            },
            "exhibits": exhibits_meta,
        }
        writer.json(MANIFEST_FILE, bundle_meta)
        from exhibits.verifymd import verify_md

        writer.bytes(VERIFY_FILE, verify_md(bundle_meta).encode())
        sums = "".join(
            f"{digest}  {path}\n" for path, (digest, _) in sorted(writer.digests.items())
        ).encode()
        (work / SUMS).write_bytes(sums)
        size = sum(s for _, s in writer.digests.values()) + len(sums)
        return PendingBundle(
            work=work,
            output=output,
            digest=hashlib.sha256(sums).hexdigest(),
            exhibits=entries,
            files=len(writer.digests) + 1,
            size=size,
            snapshots=[sid for e in entries for sid in e.snapshots],
            lang=options.lang,
            scratch=scratch,
        )
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def timestamp_note(stamp: BundleStamp | None, reason: str, digest: str) -> str:
    """BUNDLE-TIMESTAMP.txt: whether the digest was timestamped, in German and English."""
    if stamp is not None:
        return (
            f"SHA-256 von SHA256SUMS / of SHA256SUMS: {digest}\n\n"
            f"Zeitstempel / timestamp: {TOKEN_FILE} (RFC 3161), Zertifikate / certificates: "
            f"{TOKEN_CHAIN_FILE}\n"
            f"TSA: {stamp.tsa_url}\n"
            f"genTime: {format_rfc3339(stamp.gen_time)} "
            f"(Unix-Sekunden / Unix seconds {int(stamp.gen_time.timestamp())})\n"
            f"Seriennummer / serial: {stamp.serial}\n"
        )
    return (
        f"SHA-256 von SHA256SUMS / of SHA256SUMS: {digest}\n\n"
        "NICHT mit Zeitstempel versehen / NOT timestamped:\n"
        f"{reason}\n"
        "Die einzelnen Snapshots haben ihre eigenen Zeitstempel (siehe VERIFY.md).\n"
        "The snapshots carry their own timestamps (see VERIFY.md).\n"
    )


def finish_bundle(pending: PendingBundle, stamp: BundleStamp | None, reason: str) -> Path:
    """Write BUNDLE.sha256, the token (if any) and its note, and put the bundle in place:
    a folder renamed into place, or a ZIP holding the folder. Never overwrites."""
    work = pending.work
    try:
        extra: list[tuple[str, bytes]] = []
        if stamp is not None:
            extra.append((TOKEN_FILE, stamp.reply))
            if stamp.chain_pem:
                extra.append((TOKEN_CHAIN_FILE, stamp.chain_pem))
        extra.append((TIMESTAMP_NOTE_FILE, timestamp_note(stamp, reason, pending.digest).encode()))
        for name, data in extra:
            (work / name).write_bytes(data)
        # The bundle's digest first; then the files written after SHA256SUMS, so that
        # `sha256sum -c BUNDLE.sha256` checks them too.
        lines = [f"{pending.digest}  {SUMS}\n"]
        lines += [f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in extra]
        (work / DIGEST_FILE).write_text("".join(lines))
        output = pending.output
        if output.suffix == ".zip":
            partial = pending.scratch / "bundle.zip"
            _zip_folder(work, partial)
            os.link(partial, output)  # fails if the output appeared meanwhile
        else:
            if output.exists():
                raise ExhibitError(f"{output} exists: an exhibit bundle is never overwritten")
            os.rename(work, output)
        fsync_dir(output.absolute().parent)
    finally:
        shutil.rmtree(pending.scratch, ignore_errors=True)
    return pending.output


# Already compressed: deflating them again costs time and saves nothing.
_STORED = (".gz", ".png", ".pdf", ".wacz", ".zip", ".jpg", ".jpeg", ".tsr")


def _zip_folder(folder: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "x", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            member = f"{folder.name}/{path.relative_to(folder).as_posix()}"
            stored = path.suffix.lower() in _STORED
            archive.write(
                path, member, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            )
    with open(target, "rb+") as stream:
        os.fsync(stream.fileno())
