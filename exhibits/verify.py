"""Checking an exhibit bundle offline: the bundle alone, no index, no object store.

Each problem names the file that fails and why. Checked:

- SHA256SUMS: every listed file is there and has its digest; no file is there that it does
  not list (apart from the digest files written after it); BUNDLE.sha256 is its digest;
- BUNDLE.tsr, when present: an RFC 3161 token over that digest, from a TSA that chains to an
  anchor in ``trust/``; its absence is reported as not checked, with BUNDLE-TIMESTAMP.txt's
  reason;
- per snapshot: the manifest hashes to the snapshot id and is canonical; its Ed25519
  signature verifies under the key it names, that key is in the bundle's key history (with
  valid endorsements); every artifact has the digest and size the manifest lists; every
  timestamp token covers the snapshot id (or a Merkle root the inclusion proof leads to from
  it, with the leaf list rebuilding that root) and chains to a trust anchor in ``trust/``;
  the WACZ's members have the digests its datapackage lists, and its WARC is the artifact.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from evidence_store.errors import EvidenceError
from evidence_store.manifest import parse_manifest
from evidence_store.signing import verify_signature
from evidence_store.timestamps.merkle import leaf_hash, merkle_root, verify_inclusion
from evidence_store.timestamps.tokens import TimestampError, load_crls, verify_token
from exhibits.bundle import (
    DIGEST_FILE,
    MANIFEST_FILE,
    OUTSIDE_SUMS,
    SUMS,
    TIMESTAMP_NOTE_FILE,
    TOKEN_CHAIN_FILE,
    TOKEN_FILE,
)


@dataclass(frozen=True)
class Problem:
    """A file of the bundle that fails a check, and why."""

    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclass
class BundleCheck:
    """What :func:`verify_bundle` found."""

    path: str
    files: int = 0
    bytes: int = 0
    exhibits: int = 0
    snapshots: int = 0
    signatures: int = 0
    timestamps: int = 0
    renewals: int = 0  # renewal tokens verified (archive timestamps over token files)
    bundle_timestamp: str | None = None  # genTime of BUNDLE.tsr, when it verified
    problems: list[Problem] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if k not in ("problems",)}
        data["ok"] = self.ok
        data["problems"] = [{"file": p.file, "reason": p.reason} for p in self.problems]
        return data


class _Bundle:
    """A bundle folder, or a ZIP holding one (or holding its files at the top)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.prefix = ""
        if path.is_dir():
            self.names = sorted(
                p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()
            )
        elif zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            members = [i.filename for i in self.zip.infolist() if not i.is_dir()]
            tops = {m.split("/", 1)[0] for m in members}
            if SUMS not in members and len(tops) == 1:
                self.prefix = f"{tops.pop()}/"
            self.names = sorted(
                m.removeprefix(self.prefix) for m in members if m.startswith(self.prefix)
            )
        elif path.exists():
            raise EvidenceError(f"{path} is neither a folder nor a ZIP file")
        else:
            raise EvidenceError(f"no such bundle: {path}")
        if SUMS not in self.names and MANIFEST_FILE not in self.names:
            raise EvidenceError(f"{path} is not an exhibit bundle: it has no {SUMS}")

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        if self.zip is not None:
            with self.zip.open(self.prefix + name) as stream:
                yield stream
        else:
            with open(self.path / name, "rb") as stream:
                yield stream

    def read(self, name: str) -> bytes:
        with self.open(name) as stream:
            return stream.read()

    def digest(self, name: str) -> tuple[str, int]:
        hasher = hashlib.sha256()
        size = 0
        with self.open(name) as stream:
            while chunk := stream.read(1 << 20):
                hasher.update(chunk)
                size += len(chunk)
        return hasher.hexdigest(), size

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def verify_bundle(path: Path, *, progress: Callable[[str], None] | None = None) -> BundleCheck:
    """Check every file of the bundle at ``path`` (a folder or a ZIP); see the module doc.

    Raises ``EvidenceError`` only when ``path`` is no bundle at all (nothing to check).
    """
    bundle = _Bundle(path)
    try:
        return _Checker(bundle, progress).run()
    finally:
        bundle.close()


class _Checker:
    def __init__(self, bundle: _Bundle, progress: Callable[[str], None] | None) -> None:
        self.bundle = bundle
        self.progress = progress or (lambda _: None)
        self.result = BundleCheck(path=str(bundle.path))
        self.listed: dict[str, str] = {}
        self.bad: set[str] = set()  # files that failed their digest: not read further
        self.anchors: list[bytes] = []
        self.crls: list[x509.CertificateRevocationList] = []  # parsed once, for every token

    def fail(self, file: str, reason: str) -> None:
        self.result.problems.append(Problem(file, reason))

    def run(self) -> BundleCheck:
        self._check_sums()
        meta = self._bundle_meta()
        if meta is not None:
            for anchor in meta.get("trust_anchors") or []:
                if self._usable(anchor):
                    self.anchors.append(self.bundle.read(anchor))
            for crl in meta.get("crls") or []:
                if self._usable(crl.get("file")):
                    try:
                        self.crls.extend(load_crls(self.bundle.read(crl["file"])))
                    except TimestampError as exc:
                        self.fail(crl["file"], f"not a readable CRL: {exc}")
            self._check_bundle_token()
            history = self._key_history(meta)
            for exhibit in meta.get("exhibits") or []:
                self.result.exhibits += 1
                self.progress(str(exhibit.get("label")))
                for snap in exhibit.get("snapshots") or []:
                    self._check_snapshot(snap, history)
        return self.result

    # -- files and digests ---------------------------------------------------------------
    def _check_sums(self) -> None:
        names = set(self.bundle.names)
        if SUMS not in names:
            self.fail(SUMS, "missing: the list of every file's digest is not in the bundle")
            return
        sums = self.bundle.read(SUMS)
        for number, line in enumerate(sums.decode("utf-8", "replace").splitlines(), start=1):
            digest, sep, name = line.partition("  ")
            if not sep or len(digest) != 64:
                self.fail(SUMS, f"line {number} is not '<sha256>  <file>'")
                continue
            self.listed[name] = digest
        for name, digest in sorted(self.listed.items()):
            if name not in names:
                self.fail(name, "missing: listed in SHA256SUMS but not in the bundle")
                self.bad.add(name)
                continue
            actual, size = self.bundle.digest(name)
            self.result.files += 1
            self.result.bytes += size
            if actual != digest:
                self.fail(name, f"altered: its SHA-256 is {actual}, SHA256SUMS lists {digest}")
                self.bad.add(name)
        for name in sorted(names - set(self.listed) - OUTSIDE_SUMS):
            self.fail(name, "not listed in SHA256SUMS: added after the bundle was made")
        self.sums_digest = hashlib.sha256(sums).hexdigest()
        if DIGEST_FILE not in names:
            self.fail(DIGEST_FILE, "missing: the bundle's digest file is not in the bundle")
            return
        recorded: dict[str, str] = {}
        for line in self.bundle.read(DIGEST_FILE).decode("utf-8", "replace").splitlines():
            digest, sep, name = line.partition("  ")
            if sep:
                recorded[name] = digest
        if SUMS not in recorded:
            self.fail(DIGEST_FILE, "altered: it does not give the digest of SHA256SUMS")
        elif recorded[SUMS] != self.sums_digest:
            # Which of the two changed shows in the token: it covers the original digest.
            self.recorded_digest = recorded[SUMS]
            self.fail(
                SUMS,
                f"its SHA-256 is {self.sums_digest}, but {DIGEST_FILE} records "
                f"{recorded[SUMS]}: SHA256SUMS or {DIGEST_FILE} was altered",
            )
        for name in sorted((OUTSIDE_SUMS - {SUMS, DIGEST_FILE}) & names):
            if name not in recorded:
                self.fail(name, f"not listed in {DIGEST_FILE}: added after the bundle was made")
            elif self.bundle.digest(name)[0] != recorded[name]:
                self.fail(
                    name,
                    f"altered: its SHA-256 differs from the one {DIGEST_FILE} lists (or "
                    f"{DIGEST_FILE} was altered)",
                )
                self.bad.add(name)
        for name in sorted(set(recorded) - names):
            self.fail(name, f"missing: listed in {DIGEST_FILE} but not in the bundle")

    def _usable(self, name: str | None) -> bool:
        """A file the checks may read: listed, present and intact (else already reported)."""
        if not name:
            return False
        if name not in self.listed:
            if name in set(self.bundle.names):
                return False  # reported as unlisted
            self.fail(name, "missing: BUNDLE.json names it, SHA256SUMS does not list it")
            return False
        return name not in self.bad

    def _bundle_meta(self) -> dict[str, Any] | None:
        if not self._usable(MANIFEST_FILE):
            return None
        try:
            meta = json.loads(self.bundle.read(MANIFEST_FILE))
        except ValueError as exc:
            self.fail(MANIFEST_FILE, f"not JSON: {exc}")
            return None
        if meta.get("type") != "dsa-evidence/exhibit-bundle":
            self.fail(
                MANIFEST_FILE, f"not an exhibit-bundle description (type {meta.get('type')!r})"
            )
            return None
        return meta

    def _check_bundle_token(self) -> None:
        names = set(self.bundle.names)
        if TOKEN_FILE not in names:
            self.result.unchecked.append(
                f"the bundle's digest has no timestamp (why: {TIMESTAMP_NOTE_FILE})"
            )
            return
        if TOKEN_FILE in self.bad:
            return
        chain = (
            [self.bundle.read(TOKEN_CHAIN_FILE)]
            if TOKEN_CHAIN_FILE in names and TOKEN_CHAIN_FILE not in self.bad
            else None
        )
        if not self.anchors:
            self.result.unchecked.append(f"{TOKEN_FILE}: no TSA trust anchor in the bundle")
            return
        try:
            verified = verify_token(
                self.bundle.read(TOKEN_FILE),
                bytes.fromhex(self.sums_digest),
                self.anchors,
                untrusted_chain=chain,
            )
        except TimestampError as exc:
            self.fail(TOKEN_FILE, f"the timestamp over SHA256SUMS fails: {exc}")
            return
        self.result.timestamps += 1
        self.result.bundle_timestamp = verified.gen_time.isoformat()

    # -- keys --------------------------------------------------------------------------------
    def _key_history(self, meta: dict[str, Any]) -> set[str] | None:
        """Fingerprints of the endorsed key line in keys/keys.json (endorsements checked)."""
        name = meta.get("keys")
        if not self._usable(name):
            return None
        try:
            keys = json.loads(self.bundle.read(name))["keys"]
        except (ValueError, KeyError, TypeError) as exc:
            self.fail(name, f"not a key history: {exc}")
            return None
        folder = name.rsplit("/", 1)[0] if "/" in name else ""
        by_fp = {k["fingerprint"]: k for k in keys}
        for key in keys:
            files = key.get("files") or {}
            endorser = key.get("endorsed_by")
            if not endorser:
                continue
            record, signature = files.get("record"), files.get("endorsement")
            previous = by_fp.get(endorser, {}).get("files", {}).get("public_key")
            paths = [f"{folder}/{p}" for p in (record, signature, previous) if p]
            if len(paths) != 3 or not all(self._usable(p) for p in paths):
                self.fail(name, f"key {key['fingerprint']}: its endorsement files are missing")
                continue
            try:
                public = load_pem_public_key(self.bundle.read(paths[2]))
                assert isinstance(public, Ed25519PublicKey)
                public.verify(self.bundle.read(paths[1]), self.bundle.read(paths[0]))
            except (ValueError, AssertionError, InvalidSignature):
                self.fail(paths[1], f"the endorsement of {key['fingerprint']} does not verify")
        return set(by_fp)

    # -- one snapshot --------------------------------------------------------------------------
    def _check_snapshot(self, snap: dict[str, Any], history: set[str] | None) -> None:
        self.result.snapshots += 1
        sid = snap.get("id", "")
        manifest_file = snap.get("manifest")
        if not self._usable(manifest_file):
            return
        data = self.bundle.read(manifest_file)
        actual = hashlib.sha256(data).hexdigest()
        if actual != sid:
            self.fail(manifest_file, f"hashes to {actual}, not to the snapshot id {sid}")
            return
        try:
            manifest = parse_manifest(data)
        except EvidenceError as exc:
            self.fail(manifest_file, f"not a canonical manifest: {exc}")
            return
        signature_file = snap.get("signature")
        if self._usable(signature_file):
            reason = verify_signature(manifest.signer, data, self.bundle.read(signature_file))
            if reason:
                self.fail(signature_file, reason)
            else:
                self.result.signatures += 1
        if history is not None and manifest.signer.fingerprint not in history:
            self.fail(
                manifest_file,
                f"signed by {manifest.signer.fingerprint}, which is not in the key history",
            )
        listed = {(a.sha256, a.size) for a in manifest.artifacts}
        for artifact in snap.get("artifacts") or []:
            path = artifact.get("path")
            if (artifact.get("sha256"), artifact.get("size")) not in listed:
                self.fail(path or MANIFEST_FILE, "is not an artifact the manifest lists")
                continue
            if path in self.listed and self.listed[path] != artifact["sha256"]:
                self.fail(path, f"is not the artifact sha256:{artifact['sha256']} of {sid}")
        for artifact in manifest.artifacts:
            if not any(a.get("sha256") == artifact.sha256 for a in snap.get("artifacts") or []):
                self.fail(manifest_file, f"its artifact {artifact.name} is not in the bundle")
        for token in snap.get("timestamps") or []:
            self._check_token(sid, token)
        if not snap.get("timestamps"):
            self.result.unchecked.append(f"snapshot {sid}: no timestamp token")
        if snap.get("wacz"):
            self._check_wacz(snap)

    def _check_token(self, sid: str, token: dict[str, Any]) -> None:
        file = token.get("file")
        if not self._usable(file):
            return
        digest = sid
        if token.get("covers") == "merkle-root":
            root = self._check_proof(sid, token.get("proof"))
            if root is None:
                return
            digest = root
        if not self.anchors:
            self.result.unchecked.append(f"{file}: no TSA trust anchor in the bundle")
            return
        assert file is not None
        existed_by = self._check_renewals(file, token.get("renewals") or [])
        try:
            verified = verify_token(
                self.bundle.read(file),
                bytes.fromhex(digest),
                self.anchors,
                untrusted_chain=self._chain(token),
                crls=self.crls,
                existed_by=existed_by,
            )
        except TimestampError as exc:
            self.fail(file, f"does not verify: {exc}")
            return
        self.result.timestamps += 1
        if not self.crls:
            self.result.unchecked.append(f"{file}: revocation not checked: no CRL in the bundle")
        elif verified.revocation_unknown:
            unknown = "; ".join(verified.revocation_unknown)
            self.result.unchecked.append(f"{file}: revocation not checked: {unknown}")

    def _chain(self, token: dict[str, Any]) -> list[bytes] | None:
        chain_file = token.get("chain")
        return [self.bundle.read(chain_file)] if self._usable(chain_file) else None

    def _check_renewals(self, renewed: str, renewals: list[dict[str, Any]]) -> datetime | None:
        """Check each renewal of the token file ``renewed`` (a token over that file's bytes,
        and its own renewals); the earliest verified one's time, by which the token existed."""
        times = []
        for renewal in renewals:
            file = renewal.get("file")
            if not self._usable(file):
                continue
            assert file is not None
            if renewal.get("renews") != renewed:
                self.fail(file, f"is listed as a renewal of {renewed} but names another token")
                continue
            existed_by = self._check_renewals(file, renewal.get("renewals") or [])
            try:
                verified = verify_token(
                    self.bundle.read(file),
                    hashlib.sha256(self.bundle.read(renewed)).digest(),
                    self.anchors,
                    untrusted_chain=self._chain(renewal),
                    crls=self.crls,
                    existed_by=existed_by,
                )
            except TimestampError as exc:
                self.fail(file, f"does not verify as a renewal of {renewed}: {exc}")
                continue
            self.result.renewals += 1
            times.append(verified.info.gen_time)
        return min(times, default=None)

    def _check_proof(self, sid: str, proof_file: str | None) -> str | None:
        if not self._usable(proof_file):
            return None
        assert proof_file is not None
        try:
            proof = json.loads(self.bundle.read(proof_file))
            path = [bytes.fromhex(h) for h in proof["path"]]
            root = bytes.fromhex(proof["root"])
            holds = proof["snapshot"] == sid and verify_inclusion(
                leaf_hash(bytes.fromhex(sid)), proof["leaf_index"], proof["tree_size"], path, root
            )
        except (ValueError, KeyError, TypeError) as exc:
            self.fail(proof_file, f"not a Merkle proof: {exc}")
            return None
        if not holds:
            self.fail(proof_file, f"the inclusion proof does not lead from {sid} to the root")
            return None
        leaves_file = proof.get("leaves")
        if self._usable(leaves_file):
            leaves = self.bundle.read(leaves_file).decode("ascii", "replace").split()
            try:
                rebuilt = merkle_root([leaf_hash(bytes.fromhex(s)) for s in leaves])
            except ValueError:
                rebuilt = b""
            if rebuilt != root or len(leaves) != proof["tree_size"]:
                self.fail(leaves_file, "the leaf list does not rebuild the Merkle root")
                return None
        return str(proof["root"])

    def _check_wacz(self, snap: dict[str, Any]) -> None:
        wacz = snap["wacz"]
        if not self._usable(wacz):
            return
        warcs = {a["sha256"] for a in snap.get("artifacts") or [] if a.get("role") == "warc"}
        try:
            with zipfile.ZipFile(io.BytesIO(self.bundle.read(wacz))) as archive:
                package = json.loads(archive.read("datapackage.json"))
                found = set()
                for resource in package.get("resources", []):
                    digest = hashlib.sha256(archive.read(resource["path"])).hexdigest()
                    if f"sha256:{digest}" != resource.get("hash"):
                        self.fail(wacz, f"member {resource['path']} differs from datapackage.json")
                    if resource["path"].startswith("archive/"):
                        found.add(digest)
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:
            self.fail(wacz, f"not a readable WACZ: {exc}")
            return
        if not warcs <= found:
            self.fail(wacz, "does not hold the snapshot's WARC unchanged")
