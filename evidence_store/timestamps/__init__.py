"""RFC 3161 trusted timestamps: ask TSAs (client.py), check tokens and CRLs (tokens.py), and Merkle
trees (merkle.py) so that one timestamp can cover many snapshots.

What is timestamped is a SHA-256 digest, normally the snapshot id (the digest of the manifest
bytes) or a Merkle root over snapshot ids; see docs/timestamps.md.
"""

from evidence_store.timestamps.client import (
    TimestampToken,
    TsaAccess,
    build_timestamp_query,
    request_timestamp,
    request_timestamps,
)
from evidence_store.timestamps.merkle import (
    inclusion_proof,
    inclusion_proofs,
    leaf_hash,
    merkle_root,
    verify_inclusion,
)
from evidence_store.timestamps.tokens import (
    TimestampError,
    TimestampRefused,
    TimestampVerificationError,
    TokenInfo,
    VerifiedTimestamp,
    load_certificates,
    load_crls,
    openssl_verify_argv,
    openssl_verify_command,
    parse_token,
    verify_token,
)

__all__ = [
    "TimestampError",
    "TimestampRefused",
    "TimestampToken",
    "TimestampVerificationError",
    "TokenInfo",
    "TsaAccess",
    "VerifiedTimestamp",
    "build_timestamp_query",
    "inclusion_proof",
    "inclusion_proofs",
    "leaf_hash",
    "load_certificates",
    "load_crls",
    "merkle_root",
    "openssl_verify_argv",
    "openssl_verify_command",
    "parse_token",
    "request_timestamp",
    "request_timestamps",
    "verify_inclusion",
    "verify_token",
]
