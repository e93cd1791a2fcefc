"""RFC 6962 / RFC 9162 Merkle trees over SHA-256, so that one timestamp covers many snapshots.

A run timestamps the root of a tree whose leaves are its snapshot ids; each snapshot keeps its
inclusion proof. Anyone can then recompute the root from the snapshot id, its index, the tree
size and the proof (:func:`verify_inclusion`, the RFC 9162 section 2.1.3.2 algorithm) and check
the root's timestamp.

Hashes are domain-separated so that a leaf can never pass for an inner node:

- leaf hash: ``SHA-256(0x00 || data)`` (:func:`leaf_hash`; for a snapshot, ``data`` is the
  32 raw bytes of its id);
- inner node: ``SHA-256(0x01 || left || right)``;
- a tree of n leaves splits at the largest power of two below n (RFC 6962 section 2.1), which
  equals building it level by level and carrying an odd last node up unchanged.

The functions here take leaf *hashes*, as the RFC's proofs do. The root of the empty tree is
``SHA-256("")``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the tree's leaf for ``data`` (e.g. a raw snapshot id)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: an inner node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _check_leaves(leaves: Sequence[bytes]) -> None:
    for position, leaf in enumerate(leaves):
        if len(leaf) != HASH_SIZE:
            raise ValueError(
                f"leaf {position} is {len(leaf)} bytes; leaves are 32-byte hashes (leaf_hash)"
            )


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first, root last."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])  # an odd last node moves up unchanged (RFC 6962 split)
        levels.append(above)
    return levels


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of a list of 32-byte leaf hashes."""
    _check_leaves(leaves)
    if not leaves:
        return hashlib.sha256(b"").digest()
    return _levels(leaves)[-1][0]


def _path(levels: list[list[bytes]], index: int) -> list[bytes]:
    proof = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        index //= 2
    return proof


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path for leaf ``index``: sibling hashes from the leaf up to the root."""
    _check_leaves(leaves)
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} is outside a tree of {len(leaves)} leaves")
    return _path(_levels(leaves), index)


def inclusion_proofs(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """The audit path of every leaf, building the tree once (O(n log n) in all)."""
    _check_leaves(leaves)
    levels = _levels(leaves)
    return [_path(levels, index) for index in range(len(leaves))]


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True if ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree of ``root``.

    This is the algorithm of RFC 9162 section 2.1.3.2, step by step.
    """
    if index < 0 or index >= tree_size:
        return False
    if len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        return False
    fn, sn = index, tree_size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
