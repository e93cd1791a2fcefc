"""Ed25519 manifest signatures and the key that makes them.

The private key lives in the data folder (``keys/``), never in the object store; its public half
and fingerprint go into every manifest and into the index's list of trusted keys. Signatures are
plain 64-byte Ed25519 signatures over the canonical manifest bytes, so that
``openssl pkeyutl -verify -pubin -inkey key.pub.pem -rawin -in manifest.json -sigfile sig``
checks them without our code.

Which keys the index trusts is a history, not a set: the first key an empty index ever sees is
its genesis, and every later key is endorsed by its predecessor at a rotation
(``evidence_store.keys``). ``endorsed_history`` reads that line from the index; a key outside it
signs nothing (``archive`` refuses it) and what it signed is reported by verification.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from evidence_store.errors import SigningKeyError
from evidence_store.index.models import SigningKey
from evidence_store.support import write_atomic
from schemas import SignerInfo

KEY_FILE = "manifest-signing.ed25519.pem"
PUBLIC_KEY_FILE = "manifest-signing.ed25519.pub.pem"


def fingerprint(raw_public_key: bytes) -> str:
    """``sha256:<hex>`` of the raw 32-byte public key."""
    return "sha256:" + hashlib.sha256(raw_public_key).hexdigest()


def public_key_pem(info: SignerInfo) -> bytes:
    """The PEM (SubjectPublicKeyInfo) form of a manifest's signer key, for openssl."""
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(info.public_key))
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def verify_signature(info: SignerInfo, data: bytes, signature: bytes) -> str | None:
    """Check a signature; returns None when it holds, else the reason it does not."""
    try:
        raw = base64.b64decode(info.public_key, validate=True)
        key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        return f"the manifest's public key is malformed: {exc}"
    if fingerprint(raw) != info.fingerprint:
        return f"the manifest's key fingerprint {info.fingerprint} does not match its public key"
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return "the Ed25519 signature does not match the manifest bytes"
    return None


def endorsed_history(session: Session) -> list[str]:
    """Fingerprints of the endorsed key history, oldest first (empty for a new index).

    The genesis is the oldest key nobody endorsed; each next key is the one its predecessor
    endorsed. Other unendorsed keys (older versions trusted any key file they found) and their
    successors are outside it. Where a key endorsed two successors, which
    ``check_key_history`` reports, the older one continues the line.
    """
    rows = session.execute(
        select(SigningKey.fingerprint, SigningKey.endorsed_by).order_by(
            SigningKey.created_at, SigningKey.fingerprint
        )
    ).all()
    roots = [fp for fp, endorser in rows if endorser is None]
    if not roots:
        return []
    successor: dict[str, str] = {}
    for fp, endorser in rows:
        if endorser is not None:
            successor.setdefault(endorser, fp)
    line = [roots[0]]
    while (nxt := successor.get(line[-1])) is not None and nxt not in line:
        line.append(nxt)
    return line


def unendorsed_key_message(fp: str, history: list[str]) -> str:
    """Why a key outside the endorsed history is refused, and how keys do change."""
    current = f"its current key is {history[-1]}" if history else "it has no keys"
    return (
        f"the signing key {fp} is not in the endorsed key history of this index ({current}): "
        "a signing key changes only by `evidence keys rotate`, in which the current key "
        "endorses its successor; put the current key file back, or rotate from it"
    )


class Signer:
    """Signs manifests with one Ed25519 private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.info = SignerInfo(
            public_key=base64.b64encode(raw).decode("ascii"), fingerprint=fingerprint(raw)
        )

    @classmethod
    def load_or_create(cls, keys_dir: Path) -> Signer:
        """Load the key from ``keys_dir``, making it (mode 0600, written once) on first use."""
        path = keys_dir / KEY_FILE
        if path.exists():
            return cls.load(path)
        try:
            keys_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(keys_dir, 0o700)
        except OSError as exc:
            raise SigningKeyError(
                f"cannot create the key folder {keys_dir}: {exc.strerror}"
            ) from None
        key = Ed25519PrivateKey.generate()
        pem = cls(key).private_key_pem()
        try:
            # Written whole under a temporary name, then linked: a link never replaces a file,
            # so of two first uses racing one key wins, and the loser never reads it half
            # written (an O_EXCL create would expose the file before its bytes).
            fd, tmp = tempfile.mkstemp(prefix=f".{KEY_FILE}.", suffix=".tmp", dir=keys_dir)
        except OSError as exc:
            raise SigningKeyError(f"cannot write the signing key {path}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o600)
                out.write(pem)
                out.flush()
                os.fsync(out.fileno())
            os.link(tmp, path)
        except FileExistsError:
            return cls.load(path)
        except OSError as exc:
            raise SigningKeyError(f"cannot write the signing key {path}: {exc.strerror}") from None
        finally:
            os.unlink(tmp)
        signer = cls(key)
        write_atomic(keys_dir / PUBLIC_KEY_FILE, public_key_pem(signer.info), 0o644)
        return signer

    @classmethod
    def load(cls, path: Path) -> Signer:
        """Load a PEM private key; the error names the file and what is wrong with it."""
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise SigningKeyError(f"cannot read the signing key {path}: {exc.strerror}") from None
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(
                f"the signing key {path} is not a usable PEM key: {exc}"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"the signing key {path} is not an Ed25519 key")
        return cls(key)

    def private_key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM, for the key file (mode 0600)."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._key.sign(data)
