"""Errors the evidence store raises. Each message names what was wrong, in one line."""


class EvidenceError(Exception):
    """Base class: the CLI prints the message on one line and exits non-zero."""


class StoreError(EvidenceError):
    """The object store cannot be reached, read or written."""


class ObjectNotFound(StoreError):
    """No object with that digest is in the store."""

    def __init__(self, sha256: str, where: str) -> None:
        super().__init__(f"object sha256:{sha256} is not in the store {where}")
        self.sha256 = sha256


class IntegrityError(EvidenceError):
    """Bytes read back do not hash to what was expected."""


class IndexError_(EvidenceError):
    """The SQL index cannot be opened, migrated or written."""


class SnapshotNotFound(EvidenceError):
    """No snapshot matches the id or prefix given."""


class SigningKeyError(EvidenceError):
    """The signing key is missing, unreadable or not the one the index knows."""


class InputError(EvidenceError):
    """A file handed over for archiving is missing, unreadable or not a regular file."""


class SourceChangedError(InputError):
    """A file handed over for archiving changed between its hashing and its storing."""
