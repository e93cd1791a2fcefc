"""The signing key's life: rotation, the endorsed key history, its check and its export.

A rotation makes a new Ed25519 key and has the old key sign a *key record* of it (canonical
JSON: fingerprint, algorithm, public key, creation time, previous fingerprint). The index keeps
every key ever used (``signing_keys``), so manifests signed by a retired key still verify, and
each key after the first names its predecessor and the signature object that endorses it: the
history is a chain that anyone can check with openssl, starting from the first key.

Crash order (the index decides which key is active; the key folder follows it):

1. the new private key is written to ``PENDING_KEY_FILE`` (temporary file, fsync, rename);
2. under the custody lock, the key record and the old key's signature over it are stored and
   read back, ``objects.flush()``, then one transaction inserts the new key row, retires the old
   one and appends the ``key-rotated`` custody event;
3. the pending file is renamed over the active key file, which destroys the old private key.

A crash before 2 commits leaves a pending key the index does not know (``reconcile`` deletes it:
it never signed anything) and perhaps unreferenced objects (listed by ``evidence store sweep``);
a crash after it leaves a pending key the index lists as active (``reconcile`` installs it). The
active key file is replaced by one atomic rename, so it always holds a whole key, old or new.

The history is one line: the first key an empty index sees is its genesis, and every later key
comes from a rotation. ``archive`` and ``rotate_key`` refuse any other key (a key file replaced
by hand, or a fresh one made after the key was lost); ``check_key_history`` and
``unendorsed_signatures`` report the keys outside the line, and the manifests they signed,
that older versions let in.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from evidence_store import custody
from evidence_store.archive import SIGNATURE_MEDIA_TYPE, put_verified
from evidence_store.errors import EvidenceError, ObjectNotFound, SigningKeyError
from evidence_store.index import Index
from evidence_store.index.models import SigningKey, Snapshot
from evidence_store.manifest import canonical_json
from evidence_store.objects import ObjectStore
from evidence_store.signing import (
    KEY_FILE,
    PUBLIC_KEY_FILE,
    Signer,
    endorsed_history,
    fingerprint,
    public_key_pem,
    unendorsed_key_message,
)
from evidence_store.support import fsync_dir, write_atomic
from schemas import SignerInfo, format_rfc3339, utc_now

log = logging.getLogger(__name__)

KEY_RECORD_TYPE = "dsa-evidence/signing-key"
PENDING_KEY_FILE = "manifest-signing.next.ed25519.pem"
LOCK_FILE = ".keys.lock"
KEY_HISTORY_TYPE = "dsa-evidence/key-history"


# -- the key record ------------------------------------------------------------------------
def key_record(
    *, fingerprint: str, algorithm: str, public_key: str, created_at: datetime, previous: str
) -> bytes:
    """The canonical JSON (RFC 8785) a key's predecessor signs when it hands over to it.

    Every field is a column of ``signing_keys``, so the bytes can be rebuilt from the index
    alone; the stored copy is there for exports and offline checks.
    """
    return canonical_json(
        {
            "type": KEY_RECORD_TYPE,
            "version": 1,
            "fingerprint": fingerprint,
            "algorithm": algorithm,
            "public_key": public_key,
            "created_at": format_rfc3339(created_at),
            "previous": previous,
        }
    )


def record_of(row: SigningKey) -> bytes | None:
    """The key record of an endorsed key's row (None for a key nobody endorsed)."""
    if row.endorsed_by is None:
        return None
    return key_record(
        fingerprint=row.fingerprint,
        algorithm=row.algorithm,
        public_key=row.public_key,
        created_at=row.created_at,
        previous=row.endorsed_by,
    )


def key_object_digests(session: Session) -> set[str]:
    """Digests of the objects the key history refers to (records and endorsements)."""
    digests: set[str] = set()
    for row in session.scalars(select(SigningKey).where(SigningKey.endorsed_by.is_not(None))):
        record = record_of(row)
        assert record is not None
        digests.add(hashlib.sha256(record).hexdigest())
        if row.endorsement_sha256:
            digests.add(row.endorsement_sha256)
    return digests


# -- key files -----------------------------------------------------------------------------
def _public_pem(entry: KeyEntry) -> bytes:
    return public_key_pem(SignerInfo(public_key=entry.public_key, fingerprint=entry.fingerprint))


@contextmanager
def _keys_lock(keys_dir: Path) -> Iterator[None]:
    # Serialises rotations and their recovery on this machine: without it, a process starting
    # mid-rotation would take the pending key for the leftover of a crash and delete it.
    try:
        keys_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(keys_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise SigningKeyError(f"cannot lock the key folder {keys_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _install_pending(keys_dir: Path, pending: Signer) -> None:
    # One rename replaces the old private key: the active file is always one whole key.
    os.replace(keys_dir / PENDING_KEY_FILE, keys_dir / KEY_FILE)
    fsync_dir(keys_dir)
    write_atomic(keys_dir / PUBLIC_KEY_FILE, public_key_pem(pending.info), 0o644)


def _reconcile_locked(keys_dir: Path, index: Index) -> str | None:
    path = keys_dir / PENDING_KEY_FILE
    if not path.exists():
        return None
    try:
        pending = Signer.load(path)
    except SigningKeyError:
        # The pending key is fsynced before the commit that could trust it, so an unreadable
        # one is from a write that failed before any commit: nobody trusts it.
        path.unlink()
        fsync_dir(keys_dir)
        return "discarded"
    with index.session() as session:
        row = session.get(SigningKey, pending.info.fingerprint)
        active = row is not None and row.retired_at is None
    try:
        if active:
            _install_pending(keys_dir, pending)
            return "installed"
        # The rotation never committed (or the key is already retired): nobody trusts this key
        # and it signed nothing, so there is nothing to keep.
        path.unlink()
        fsync_dir(keys_dir)
        return "discarded"
    except OSError as exc:
        raise SigningKeyError(
            f"cannot finish the interrupted key rotation in {keys_dir}: {exc.strerror}"
        ) from None


def reconcile(keys_dir: Path, index: Index) -> str | None:
    """Finish or undo a rotation a crash interrupted; the index decides which.

    Returns None when there was nothing to do, ``"installed"`` when the pending key was
    committed as the active key and now is the key file, ``"discarded"`` when it was not.
    """
    if not (keys_dir / PENDING_KEY_FILE).exists():
        return None  # the usual case; needs no lock, so read-only key folders keep working
    with _keys_lock(keys_dir):
        return _reconcile_locked(keys_dir, index)


def load_signer(keys_dir: Path, index: Index) -> Signer:
    """The active signer of this machine, after recovering from an interrupted rotation.

    The public key file is rewritten if it does not match the key file. Whether the index
    accepts the key is decided when it signs (``archive``), so that a machine whose key is
    refused can still list and verify.
    """
    reconcile(keys_dir, index)
    signer = Signer.load_or_create(keys_dir)
    _refresh_public_key(keys_dir, signer)
    return signer


def _refresh_public_key(keys_dir: Path, signer: Signer) -> None:
    # The public key file is derived from the key file; one replaced by hand must not leave it
    # naming a key this machine no longer holds.
    path = keys_dir / PUBLIC_KEY_FILE
    expected = public_key_pem(signer.info)
    try:
        if path.read_bytes() == expected:
            return
    except OSError:
        pass  # missing or unreadable: rewrite it
    try:
        write_atomic(path, expected, 0o644)
    except OSError as exc:
        # A read-only key folder (verification on archived media) still works; the file is
        # only a convenience for openssl, nothing here reads it.
        log.warning("cannot rewrite %s for key %s: %s", path, signer.info.fingerprint, exc)


# -- rotation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rotation:
    """What ``rotate_key`` committed."""

    old: SignerInfo
    new: SignerInfo
    rotated_at: datetime
    record_sha256: str
    endorsement_sha256: str
    custody_hash: str


def rotate_key(
    keys_dir: Path, objects: ObjectStore, index: Index, *, actor: str, reason: str
) -> Rotation:
    """Replace this machine's signing key with a new one that the old key endorses.

    The old key stays trusted for what it signed until now and is retired (its private key is
    destroyed); the rotation is a ``key-rotated`` custody event, so ``reason`` is mandatory.
    Returns once the index commit is durable and the new key is the active key file.
    """
    reason = (reason or "").strip()
    if not reason:
        raise EvidenceError("a key rotation needs a reason (it goes into the custody log)")
    with _keys_lock(keys_dir):
        _reconcile_locked(keys_dir, index)
        if not (keys_dir / KEY_FILE).exists():
            raise SigningKeyError(f"no signing key in {keys_dir} to rotate")
        old = Signer.load(keys_dir / KEY_FILE)
        new = Signer(Ed25519PrivateKey.generate())
        try:
            fd = os.open(keys_dir / PENDING_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(new.private_key_pem())
                out.flush()
                os.fsync(out.fileno())
            fsync_dir(keys_dir)
        except OSError as exc:
            (keys_dir / PENDING_KEY_FILE).unlink(missing_ok=True)
            raise SigningKeyError(
                f"cannot write the new signing key in {keys_dir}: {exc.strerror}"
            ) from None
        try:
            rotation = _commit_rotation(old, new, objects, index, actor=actor, reason=reason)
        except BaseException:
            # The index decides whether the failed commit happened (a connection lost during
            # COMMIT leaves it unknown here); if it cannot be asked now, the pending key stays
            # for the next reconcile rather than risk deleting a key the index trusts.
            with contextlib.suppress(Exception):
                _reconcile_locked(keys_dir, index)
            raise
        try:
            _install_pending(keys_dir, new)
        except OSError as exc:
            raise SigningKeyError(
                f"the rotation to {new.info.fingerprint} is committed, but the key file could not "
                f"be replaced ({exc.strerror}); the next `evidence` command finishes it"
            ) from None
    return rotation


def _commit_rotation(
    old: Signer, new: Signer, objects: ObjectStore, index: Index, *, actor: str, reason: str
) -> Rotation:
    # The time is taken under the custody lock that every archive also holds, so no manifest
    # the old key signed can carry an archived_at later than its retirement.
    with index.writing(custody.CUSTODY_LOCK) as session:
        old_row = session.get(SigningKey, old.info.fingerprint)
        if old_row is not None and old_row.retired_at is not None:
            raise SigningKeyError(
                f"the key file in use holds {old.info.fingerprint}, which was retired at "
                f"{format_rfc3339(old_row.retired_at)}: the key folder is out of date"
            )
        # A clock stepped back must not make a manifest the old key signed before this moment
        # look as if it came after the retirement.
        last_signed = session.scalar(
            select(func.max(Snapshot.archived_at)).where(
                Snapshot.key_fingerprint == old.info.fingerprint
            )
        )
        now = max(utc_now(), last_signed) if last_signed is not None else utc_now()
        history = endorsed_history(session)
        if old.info.fingerprint not in history and (
            old_row is not None or session.scalar(select(func.count()).select_from(SigningKey))
        ):
            # Rotating from a key outside the history would endorse a second line into it.
            raise SigningKeyError(unendorsed_key_message(old.info.fingerprint, history))
        if old_row is None:
            # A key that never signed a snapshot is not in a new index yet; it enters the
            # history as its genesis, exactly as archive() would have added it.
            old_row = SigningKey(
                fingerprint=old.info.fingerprint,
                algorithm=old.info.algorithm,
                public_key=old.info.public_key,
                created_at=now,
            )
            session.add(old_row)
        record = key_record(
            fingerprint=new.info.fingerprint,
            algorithm=new.info.algorithm,
            public_key=new.info.public_key,
            created_at=now,
            previous=old.info.fingerprint,
        )
        stored_record = put_verified(objects, record, "application/json")
        endorsement = put_verified(objects, old.sign(record), SIGNATURE_MEDIA_TYPE)
        objects.flush()  # durable before the row that names them
        old_row.retired_at = now
        session.add(
            SigningKey(
                fingerprint=new.info.fingerprint,
                algorithm=new.info.algorithm,
                public_key=new.info.public_key,
                created_at=now,
                endorsed_by=old.info.fingerprint,
                endorsement_sha256=endorsement.sha256,
            )
        )
        session.flush()
        custody_hash = custody.record(
            session,
            action="key-rotated",
            actor=actor,
            reason=reason,
            details={
                "old_fingerprint": old.info.fingerprint,
                "new_fingerprint": new.info.fingerprint,
                "record_sha256": stored_record.sha256,
                "endorsement_sha256": endorsement.sha256,
                "rotated_at": format_rfc3339(now),
            },
        )
    return Rotation(
        old=old.info,
        new=new.info,
        rotated_at=now,
        record_sha256=stored_record.sha256,
        endorsement_sha256=endorsement.sha256,
        custody_hash=custody_hash,
    )


# -- the history ---------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyEntry:
    """One key of the history, as listed and exported."""

    fingerprint: str
    algorithm: str
    public_key: str
    created_at: datetime
    retired_at: datetime | None
    endorsed_by: str | None
    endorsement_sha256: str | None
    record_sha256: str | None

    @property
    def active(self) -> bool:
        return self.retired_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "algorithm": self.algorithm,
            "public_key": self.public_key,
            "created_at": format_rfc3339(self.created_at),
            "retired_at": format_rfc3339(self.retired_at) if self.retired_at else None,
            "endorsed_by": self.endorsed_by,
            "endorsement_sha256": self.endorsement_sha256,
            "record_sha256": self.record_sha256,
            "active": self.active,
        }


def list_keys(session: Session) -> list[KeyEntry]:
    """Every key the index trusts, oldest first."""
    rows = session.scalars(
        select(SigningKey).order_by(SigningKey.created_at, SigningKey.fingerprint)
    )
    entries = []
    for row in rows:
        record = record_of(row)
        entries.append(
            KeyEntry(
                fingerprint=row.fingerprint,
                algorithm=row.algorithm,
                public_key=row.public_key,
                created_at=row.created_at,
                retired_at=row.retired_at,
                endorsed_by=row.endorsed_by,
                endorsement_sha256=row.endorsement_sha256,
                record_sha256=hashlib.sha256(record).hexdigest() if record else None,
            )
        )
    return entries


def check_key_history(objects: ObjectStore, session: Session) -> list[str]:
    """Check that every key row is self-consistent and every endorsement holds; problems as text.

    The history is one line from the genesis (the oldest key nobody endorsed): any other key is
    reported, as older versions trusted any key file they found. Each endorsed key must name a
    known predecessor, whose signature object must be stored intact and verify over the key
    record rebuilt from the index, and the predecessor must be retired exactly when its
    successor was created.
    """
    problems: list[str] = []
    rows = list(session.scalars(select(SigningKey).order_by(SigningKey.created_at)))
    by_fp = {row.fingerprint: row for row in rows}
    successors: dict[str, list[str]] = {}
    for row in rows:
        fp = row.fingerprint
        try:
            raw = base64.b64decode(row.public_key, validate=True)
            Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            problems.append(f"key {fp}: the public key is malformed: {exc}")
            continue
        if fingerprint(raw) != fp:
            problems.append(
                f"key {fp}: the fingerprint does not match the public key ({fingerprint(raw)})"
            )
        if row.algorithm != "Ed25519":
            problems.append(f"key {fp}: unknown algorithm {row.algorithm!r}")
        if row.endorsed_by is None and row.endorsement_sha256 is None:
            continue
        if row.endorsed_by is None or row.endorsement_sha256 is None:
            problems.append(f"key {fp}: names an endorser or an endorsement, not both")
            continue
        successors.setdefault(row.endorsed_by, []).append(fp)
        previous = by_fp.get(row.endorsed_by)
        if previous is None:
            problems.append(f"key {fp}: endorsed by {row.endorsed_by}, which the index lacks")
            continue
        record = record_of(row)
        assert record is not None
        record_digest = hashlib.sha256(record).hexdigest()
        if not objects.exists(record_digest):
            problems.append(f"key {fp}: the key record object sha256:{record_digest} is missing")
        try:
            signature = objects.get(row.endorsement_sha256)
        except ObjectNotFound:
            problems.append(
                f"key {fp}: the endorsement object sha256:{row.endorsement_sha256} is missing"
            )
            signature = None
        except EvidenceError as exc:
            problems.append(f"key {fp}: the endorsement object cannot be read: {exc}")
            signature = None
        if signature is not None:
            actual = hashlib.sha256(signature).hexdigest()
            if actual != row.endorsement_sha256:
                problems.append(
                    f"key {fp}: the endorsement object does not hash to its digest "
                    f"(expected {row.endorsement_sha256}, actual {actual})"
                )
            elif (reason := _endorsement_problem(previous, record, signature)) is not None:
                problems.append(f"key {fp}: {reason}")
        if previous.retired_at != row.created_at:
            retired = format_rfc3339(previous.retired_at) if previous.retired_at else "never"
            problems.append(
                f"key {fp}: created at {format_rfc3339(row.created_at)}, but its endorser "
                f"{previous.fingerprint} was retired {retired}"
            )
    for endorser, endorsed in successors.items():
        if len(endorsed) > 1:
            problems.append(f"key {endorser}: endorsed {len(endorsed)} successors: {endorsed}")
    history = endorsed_history(session)
    for row in rows:
        if row.fingerprint not in history:
            problems.append(
                f"key {row.fingerprint}: not in the endorsed key history (genesis "
                f"{history[0] if history else 'none'}): it was neither the index's first key "
                "nor endorsed by `evidence keys rotate`"
            )
    return problems


def unendorsed_signatures(
    session: Session, snapshot_ids: Iterable[str] | None = None
) -> list[tuple[str, str]]:
    """``(snapshot id, problem)`` for every snapshot (of ``snapshot_ids``; None: all) whose
    signing key is outside the endorsed key history.

    Such a key signed with a valid signature but was never handed over to by the archive's own
    keys: the manifest cannot be told apart from one made outside the archive.
    """
    history = endorsed_history(session)
    query = select(Snapshot.id, Snapshot.key_fingerprint).order_by(Snapshot.id)
    if history:
        query = query.where(Snapshot.key_fingerprint.not_in(history))
    if snapshot_ids is None:
        rows = list(session.execute(query))
    else:
        ids = sorted(set(snapshot_ids))
        rows = [
            row
            for start in range(0, len(ids), 500)
            for row in session.execute(query.where(Snapshot.id.in_(ids[start : start + 500])))
        ]
    genesis = history[0] if history else "none"
    return [
        (
            sid,
            f"signed by key {fp}, which is not in the endorsed key history (genesis {genesis}); "
            "keys change only by `evidence keys rotate`",
        )
        for sid, fp in rows
    ]


def _endorsement_problem(previous: SigningKey, record: bytes, signature: bytes) -> str | None:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(previous.public_key))
        key.verify(signature, record)
    except (ValueError, InvalidSignature):
        return (
            f"the endorsement signature does not verify under the endorser "
            f"{previous.fingerprint} over the key record"
        )
    return None


# -- export --------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyExport:
    """What ``export_key_history`` wrote."""

    path: Path
    keys: int
    sha256sums: str  # SHA-256 of the SHA256SUMS file, which lists every other file
    problems: list[str]


def _hex(fp: str) -> str:
    return fp.removeprefix("sha256:")


def export_key_history(objects: ObjectStore, session: Session, output: Path) -> KeyExport:
    """Write the key history to a new folder: PEM public keys, key records, endorsements,
    ``keys.json``, ``SHA256SUMS`` and a README with the openssl commands that check it.

    The folder is built under a temporary name beside ``output`` and renamed at the end, so an
    interrupted export never looks complete; an existing ``output`` is never overwritten.
    Problems ``check_key_history`` finds are returned; the files are written regardless, so a
    broken history can still be examined.
    """
    if output.exists():
        raise EvidenceError(f"{output} exists: an export is never overwritten")
    entries = list_keys(session)
    rows = {row.fingerprint: row for row in session.scalars(select(SigningKey))}
    problems = check_key_history(objects, session)
    parent = output.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=parent))
    except OSError as exc:
        raise EvidenceError(f"cannot create {output}: {exc.strerror}") from None
    try:
        files: dict[str, bytes] = {}
        listing = []
        for entry in entries:
            name = _hex(entry.fingerprint)
            item = entry.to_dict()
            item["files"] = {"public_key": f"keys/{name}.pub.pem"}
            files[f"keys/{name}.pub.pem"] = _public_pem(entry)
            record = record_of(rows[entry.fingerprint])
            if record is not None:
                files[f"keys/{name}.record.json"] = record
                item["files"]["record"] = f"keys/{name}.record.json"
                try:
                    signature = objects.get(entry.endorsement_sha256 or "")
                except EvidenceError:
                    signature = None  # reported by check_key_history
                if signature is not None:
                    files[f"keys/{name}.endorsement.sig"] = signature
                    item["files"]["endorsement"] = f"keys/{name}.endorsement.sig"
            listing.append(item)
        files["keys.json"] = (
            json.dumps(
                {
                    "type": KEY_HISTORY_TYPE,
                    "version": 1,
                    "exported_at": format_rfc3339(utc_now()),
                    "keys": listing,
                },
                indent=2,
            ).encode()
            + b"\n"
        )
        files["README.txt"] = _readme(entries).encode()
        sums = "".join(
            f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items())
        ).encode()
        files["SHA256SUMS"] = sums
        (work / "keys").mkdir()
        for name, data in files.items():
            write_atomic(work / name, data, 0o444)
        os.chmod(work, 0o755)
        if output.exists():
            raise EvidenceError(f"{output} exists: an export is never overwritten")
        os.rename(work, output)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return KeyExport(
        path=output,
        keys=len(entries),
        sha256sums=hashlib.sha256(sums).hexdigest(),
        problems=problems,
    )


def _readme(entries: list[KeyEntry]) -> str:
    lines = [
        "Signing-key history of a dsa-evidence archive",
        "=============================================",
        "",
        "Every manifest of the archive is signed with Ed25519 by one of these keys. A key after",
        "the first of its line is endorsed by its predecessor: the predecessor signed the new",
        "key's record (canonical JSON: fingerprint, algorithm, public key, created_at, previous),",
        "and retired at that moment. A manifest signed by a key after its retired_at is not",
        "genuine output of the archive.",
        "",
        "Files:",
        "  keys.json                  every key: fingerprint, created/retired, endorsed by, files",
        "  keys/<hex>.pub.pem         public key (PEM); <hex> is the fingerprint without sha256:",
        "  keys/<hex>.record.json     the key record its predecessor signed",
        "  keys/<hex>.endorsement.sig the predecessor's raw 64-byte Ed25519 signature of it",
        "  SHA256SUMS                 digests of all the files above",
        "",
        "Run these commands in this folder (OpenSSL 3.0 or later, coreutils).",
        "",
        "1. The files are intact:",
        "",
        "  $ sha256sum -c SHA256SUMS",
        "",
        "2. Each public key has its fingerprint (the SHA-256 of the raw 32-byte key, the last 32",
        "   bytes of the DER form):",
        "",
    ]
    for entry in entries:
        name = _hex(entry.fingerprint)
        lines.append(
            f"  $ openssl pkey -pubin -in keys/{name}.pub.pem -outform DER | tail -c 32 | sha256sum"
        )
        lines.append(f"    (prints {name})")
    lines += [
        "",
        "3. Each endorsement verifies under the previous key (prints",
        '   "Signature Verified Successfully"), and the record names the new key:',
        "",
    ]
    endorsed = [e for e in entries if e.endorsed_by]
    if not endorsed:
        lines.append("  (no key has been rotated yet: there is no endorsement to check)")
    for entry in endorsed:
        name, previous = _hex(entry.fingerprint), _hex(entry.endorsed_by or "")
        lines.append(
            f"  $ openssl pkeyutl -verify -pubin -inkey keys/{previous}.pub.pem -rawin "
            f"-in keys/{name}.record.json -sigfile keys/{name}.endorsement.sig"
        )
        lines.append(f'  $ grep -c \'"fingerprint":"sha256:{name}"\' keys/{name}.record.json')
        lines.append("    (prints 1)")
    lines += [
        "",
        "4. A manifest's signature verifies under the key named in its signer.fingerprint:",
        "",
        "  openssl pkeyutl -verify -pubin -inkey keys/<hex>.pub.pem -rawin \\",
        "      -in <manifest.json> -sigfile <signature>",
        "",
        "   and its archived_at is not after that key's retired_at (keys.json).",
        "",
    ]
    return "\n".join(lines)
