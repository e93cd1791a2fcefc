"""RFC 3161 timestamps: the client, the verifier and Merkle proofs.

Tokens come from real local TSAs over HTTP on 127.0.0.1 (fixtures.tsa) and from OpenSSL's own
TSA (``openssl ts -reply``); ``openssl ts -verify`` is the independent referee. No mocks.
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import tsp
from cryptography import x509

from evidence_store.errors import EvidenceError
from evidence_store.timestamps import (
    TimestampError,
    TimestampToken,
    TimestampVerificationError,
    TsaAccess,
    build_timestamp_query,
    inclusion_proof,
    inclusion_proofs,
    leaf_hash,
    merkle_root,
    openssl_verify_argv,
    openssl_verify_command,
    parse_token,
    request_timestamp,
    request_timestamps,
    verify_inclusion,
    verify_token,
)
from fixtures.tsa import LocalTSA

TIMEOUT = 10
DATA = b'{"type":"dsa-evidence/manifest","note":"stand-in manifest bytes"}'
DIGEST = hashlib.sha256(DATA).digest()


# --------------------------------------------------------------------------------------------
# Fixtures: one TSA of each kind per module
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tsa() -> Iterator[LocalTSA]:
    with LocalTSA() as running:
        yield running


@pytest.fixture(scope="module")
def other_tsa() -> Iterator[LocalTSA]:
    """A TSA with its own CA: the same names, other keys, never among our trust anchors."""
    with LocalTSA(key_type="ec") as running:
        yield running


@pytest.fixture(scope="module")
def token(tsa: LocalTSA) -> TimestampToken:
    return request_timestamp(DIGEST, [tsa.url], timeout=TIMEOUT, trust_anchors=[tsa.ca_pem])


@pytest.fixture(scope="module")
def files(
    tsa: LocalTSA, token: TimestampToken, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("token")
    paths = tsa.write_pems(folder)
    paths["tsr"] = folder / "snapshot.tsr"
    paths["tsr"].write_bytes(token.response_der)
    paths["token"] = folder / "snapshot.tst"
    paths["token"].write_bytes(token.token_der)
    paths["data"] = folder / "manifest.json"
    paths["data"].write_bytes(DATA)
    return paths


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def openssl_accepts(argv: list[str]) -> bool:
    result = run(argv)
    return result.returncode == 0 and "Verification: OK" in result.stdout


def fresh_token(tsa: LocalTSA, digest: bytes = DIGEST) -> bytes:
    return request_timestamp(digest, [tsa.url], timeout=TIMEOUT).response_der


# --------------------------------------------------------------------------------------------
# A good token
# --------------------------------------------------------------------------------------------


def test_token_from_local_tsa_verifies(tsa: LocalTSA, token: TimestampToken) -> None:
    assert token.tsa_url == tsa.url
    assert token.skipped == ()
    assert token.verified is not None
    assert token.gen_time.tzinfo is not None
    assert abs(datetime.now(UTC) - token.gen_time) < timedelta(minutes=1)
    assert token.serial_number == tsa.served[-1].serial_number
    assert token.nonce == tsa.served[-1].nonce
    assert token.tsa_certificate == tsa.tsa_cert_der
    assert set(token.certificates) == {tsa.tsa_cert_der, tsa.ca_der}

    verified = verify_token(token.response_der, DIGEST, [tsa.ca_pem])
    assert verified.gen_time == token.gen_time
    assert verified.serial_number == token.serial_number
    assert verified.chain == (tsa.tsa_cert_der, tsa.ca_der)
    assert "NOT TRUSTED - dsa-evidence test TSA" in verified.tsa_subject
    # Both verifiers ran: ours and rfc3161-client.
    assert verified.checked_by == ("dsa-evidence", "rfc3161-client")

    # The bare token and DER anchors work as well.
    assert verify_token(token.token_der, DIGEST, [tsa.ca_der]).serial_number == token.serial_number


def test_token_verifies_with_openssl(token: TimestampToken, files: dict[str, Path]) -> None:
    argv = openssl_verify_argv(files["tsr"], DIGEST, files["ca"])
    assert argv[:5] == ["openssl", "ts", "-verify", "-digest", DIGEST.hex()]
    assert openssl_accepts(argv)
    # The printable form is the same command; the -attime and -token_in variants work too.
    assert shlex.split(openssl_verify_command(files["tsr"], DIGEST, files["ca"])) == argv
    assert openssl_accepts(
        openssl_verify_argv(
            files["token"], DIGEST, files["ca"], token_only=True, at_time=token.gen_time
        )
    )
    assert openssl_accepts(
        openssl_verify_argv(files["tsr"], DIGEST, files["ca"], untrusted_file=files["tsa"])
    )
    # And the plain -data form over the bytes themselves.
    assert openssl_accepts(
        ["openssl", "ts", "-verify", "-data", str(files["data"]), "-in", str(files["tsr"]),
         "-CAfile", str(files["ca"])]
    )  # fmt: skip
    assert not openssl_accepts(openssl_verify_argv(files["tsr"], bytes(32), files["ca"]))


def test_ec_tsa_token_verifies_with_us_and_openssl(other_tsa: LocalTSA, tmp_path: Path) -> None:
    response = fresh_token(other_tsa)
    verified = verify_token(response, DIGEST, [other_tsa.ca_pem])
    assert "rfc3161-client" in verified.checked_by
    paths = other_tsa.write_pems(tmp_path)
    (tmp_path / "t.tsr").write_bytes(response)
    assert openssl_accepts(openssl_verify_argv(tmp_path / "t.tsr", DIGEST, paths["ca"]))


def test_pinned_tsa_certificate_as_trust_anchor(
    tsa: LocalTSA, token: TimestampToken, files: dict[str, Path]
) -> None:
    # The EU Trusted Lists name TSA units by their own certificate; that must work as anchor.
    verified = verify_token(token.response_der, DIGEST, [tsa.tsa_cert_pem])
    assert verified.chain == (tsa.tsa_cert_der,)
    assert verified.checked_by == ("dsa-evidence",)
    assert verified.notes
    # openssl needs -partial_chain for an anchor that is not a self-signed root.
    assert not openssl_accepts(openssl_verify_argv(files["tsr"], DIGEST, files["tsa"]))
    assert openssl_accepts(
        openssl_verify_argv(files["tsr"], DIGEST, files["tsa"], partial_chain=True)
    )


def test_parse_token_reads_without_checking(token: TimestampToken) -> None:
    info = parse_token(token.response_der)
    assert info == token.info
    assert info.hash_algorithm == "sha256" and info.message_imprint == DIGEST
    assert info.accuracy == timedelta(seconds=1)
    assert info.tsa_name is not None and "NOT TRUSTED" in info.tsa_name


# --------------------------------------------------------------------------------------------
# Rejections
# --------------------------------------------------------------------------------------------


def test_token_over_other_bytes_is_rejected(
    tsa: LocalTSA, token: TimestampToken, files: dict[str, Path]
) -> None:
    other = hashlib.sha256(DATA + b" ").digest()
    with pytest.raises(TimestampVerificationError, match="message imprint does not match"):
        verify_token(token.response_der, other, [tsa.ca_pem])
    assert not openssl_accepts(openssl_verify_argv(files["tsr"], other, files["ca"]))


def test_untrusted_tsa_is_rejected(
    tsa: LocalTSA, other_tsa: LocalTSA, token: TimestampToken, tmp_path: Path
) -> None:
    foreign = fresh_token(other_tsa)
    with pytest.raises(TimestampVerificationError, match="not signed by a trusted TSA"):
        verify_token(foreign, DIGEST, [tsa.ca_pem])
    with pytest.raises(TimestampVerificationError, match="not signed by a trusted TSA"):
        verify_token(token.response_der, DIGEST, [other_tsa.ca_pem])
    # The foreign chain offered as "untrusted" certificates does not make it trusted.
    with pytest.raises(TimestampVerificationError, match="not signed by a trusted TSA"):
        verify_token(foreign, DIGEST, [tsa.ca_pem], untrusted_chain=[other_tsa.chain_pem])
    (tmp_path / "f.tsr").write_bytes(foreign)
    (tmp_path / "ca.pem").write_bytes(tsa.ca_pem)
    assert not openssl_accepts(openssl_verify_argv(tmp_path / "f.tsr", DIGEST, tmp_path / "ca.pem"))


def _flip(data: bytes, needle: bytes, offset: int) -> bytes:
    position = data.index(needle) + offset
    assert data.count(needle) == 1
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def test_tampered_signature_is_rejected(
    tsa: LocalTSA, token: TimestampToken, tmp_path: Path
) -> None:
    response = tsp.TimeStampResp.load(token.response_der)
    signer_info = response["time_stamp_token"]["content"]["signer_infos"][0]
    signature = signer_info["signature"].native
    tampered = _flip(token.response_der, signature, len(signature) // 2)
    with pytest.raises(TimestampVerificationError, match="signature invalid"):
        verify_token(tampered, DIGEST, [tsa.ca_pem])
    (tmp_path / "t.tsr").write_bytes(tampered)
    (tmp_path / "ca.pem").write_bytes(tsa.ca_pem)
    assert not openssl_accepts(openssl_verify_argv(tmp_path / "t.tsr", DIGEST, tmp_path / "ca.pem"))


def test_tampered_tst_info_is_rejected(
    tsa: LocalTSA, token: TimestampToken, tmp_path: Path
) -> None:
    # Move the genTime by a second: the TSTInfo no longer matches the signed messageDigest.
    gen_time = token.gen_time.strftime("%Y%m%d%H%M%SZ").encode()
    tampered = _flip(token.response_der, gen_time, len(gen_time) - 2)
    assert parse_token(tampered).gen_time != token.gen_time
    with pytest.raises(TimestampVerificationError, match="messageDigest does not match"):
        verify_token(tampered, DIGEST, [tsa.ca_pem])
    (tmp_path / "t.tsr").write_bytes(tampered)
    (tmp_path / "ca.pem").write_bytes(tsa.ca_pem)
    assert not openssl_accepts(openssl_verify_argv(tmp_path / "t.tsr", DIGEST, tmp_path / "ca.pem"))


def test_tampered_signing_certificate_attribute_is_rejected(
    tsa: LocalTSA, token: TimestampToken
) -> None:
    cert_hash = hashlib.sha256(tsa.tsa_cert_der).digest()
    tampered = _flip(token.response_der, cert_hash, 0)
    with pytest.raises(TimestampVerificationError, match="signingCertificateV2"):
        verify_token(tampered, DIGEST, [tsa.ca_pem])


def test_garbage_and_truncation_are_rejected(tsa: LocalTSA, token: TimestampToken) -> None:
    for data in (b"", b"not DER at all", token.response_der[:-10], token.response_der + b"\x00"):
        with pytest.raises(TimestampVerificationError):
            verify_token(data, DIGEST, [tsa.ca_pem])
    with pytest.raises(TimestampVerificationError, match="no trust anchors"):
        verify_token(token.response_der, DIGEST, [])


def test_expired_tsa_is_rejected_with_the_expiry(tmp_path: Path) -> None:
    expired_at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    with LocalTSA(tsa_not_after=expired_at, key_type="ec") as expired:
        response = fresh_token(expired)
        with pytest.raises(TimestampVerificationError) as caught:
            verify_token(response, DIGEST, [expired.ca_pem])
        assert f"TSA certificate expired at {expired_at:%Y-%m-%dT%H:%M:%SZ}" in str(caught.value)
        # openssl agrees, even when told to judge at the token's genTime.
        paths = expired.write_pems(tmp_path)
    (tmp_path / "t.tsr").write_bytes(response)
    gen_time = parse_token(response).gen_time
    argv = openssl_verify_argv(tmp_path / "t.tsr", DIGEST, paths["ca"], at_time=gen_time)
    assert not openssl_accepts(argv)


def test_token_made_before_the_tsa_expired_stays_valid(tmp_path: Path) -> None:
    # Years later the TSA certificate has expired; the token still proves its genTime.
    now = datetime.now(UTC).replace(microsecond=0)
    with LocalTSA(
        tsa_not_after=now - timedelta(days=1), clock_offset=-timedelta(hours=36), key_type="ec"
    ) as old:
        response = fresh_token(old)
        verified = verify_token(response, DIGEST, [old.ca_pem])
        paths = old.write_pems(tmp_path)
    assert verified.gen_time < old.tsa_cert.not_valid_after_utc < now
    (tmp_path / "t.tsr").write_bytes(response)
    # openssl judges certificates now unless told the genTime: this is why the printed
    # command carries -attime.
    assert not openssl_accepts(openssl_verify_argv(tmp_path / "t.tsr", DIGEST, paths["ca"]))
    assert openssl_accepts(
        openssl_verify_argv(tmp_path / "t.tsr", DIGEST, paths["ca"], at_time=verified.gen_time)
    )


@pytest.mark.parametrize(
    ("eku", "reason"),
    [
        ("missing", "lacks the timeStamping extended key usage"),
        ("server-auth", "lacks the timeStamping extended key usage"),
        ("non-critical", "not marked critical"),
    ],
)
def test_tsa_certificate_without_proper_eku_is_rejected(eku: str, reason: str) -> None:
    with LocalTSA(eku=eku, key_type="ec") as wrong:  # type: ignore[arg-type]
        response = fresh_token(wrong)
        with pytest.raises(TimestampVerificationError, match=reason):
            verify_token(response, DIGEST, [wrong.ca_pem])


def test_token_without_certificates_needs_the_chain(tsa: LocalTSA) -> None:
    bare = request_timestamp(DIGEST, [tsa.url], timeout=TIMEOUT, cert_req=False)
    assert bare.certificates == () and bare.tsa_certificate is None
    with pytest.raises(TimestampVerificationError, match="TSA certificate is neither"):
        verify_token(bare.response_der, DIGEST, [tsa.ca_pem])
    verified = verify_token(
        bare.response_der, DIGEST, [tsa.ca_pem], untrusted_chain=[tsa.tsa_cert_pem]
    )
    assert verified.chain == (tsa.tsa_cert_der, tsa.ca_der)


# --------------------------------------------------------------------------------------------
# Tokens written by OpenSSL's TSA and by a TSA with an out-of-order certificate SET
# --------------------------------------------------------------------------------------------

OPENSSL_TSA_CONFIG = """\
[ tsa ]
default_tsa = test_tsa
[ test_tsa ]
serial = {serial}
crypto_device = builtin
signer_digest = sha256
default_policy = 2.999.3161.1
other_policies = 2.999.3161.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def test_openssl_tsa_token_verifies_via_fallback(tsa: LocalTSA, tmp_path: Path) -> None:
    paths = tsa.write_pems(tmp_path)
    key = tmp_path / "tsa.key"
    key.write_bytes(tsa.tsa_key_pem)
    (tmp_path / "serial").write_text("1000\n")
    config = tmp_path / "tsa.cnf"
    config.write_text(OPENSSL_TSA_CONFIG.format(serial=tmp_path / "serial"))
    query = tmp_path / "q.tsq"
    query.write_bytes(build_timestamp_query(DIGEST, nonce=12345, cert_req=True))
    reply = tmp_path / "reply.tsr"
    result = run(
        ["openssl", "ts", "-reply", "-config", str(config), "-queryfile", str(query),
         "-inkey", str(key), "-signer", str(paths["tsa"]), "-chain", str(paths["ca"]),
         "-out", str(reply)]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    verified = verify_token(reply.read_bytes(), DIGEST, [tsa.ca_pem])
    assert verified.info.nonce == 12345
    assert verified.checked_by == ("dsa-evidence",)
    assert any("rfc3161-client cannot parse" in note for note in verified.notes)


def test_unsorted_certificate_set_verifies_via_fallback() -> None:
    with LocalTSA(der_sorted_certificates=False, key_type="ec") as unsorted:
        response = fresh_token(unsorted)
        verified = verify_token(response, DIGEST, [unsorted.ca_pem])
    assert verified.checked_by == ("dsa-evidence",)
    assert any("rfc3161-client cannot parse" in note for note in verified.notes)


# --------------------------------------------------------------------------------------------
# The client: falling through the TSA list
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def failing() -> Iterator[dict[str, LocalTSA]]:
    tsas = {
        "slow": LocalTSA(delay=5, key_type="ec"),
        "garbage": LocalTSA(mode="garbage", key_type="ec"),
        "error": LocalTSA(mode="error", key_type="ec"),
        "reject": LocalTSA(mode="reject", key_type="ec"),
        "bad-nonce": LocalTSA(mode="bad-nonce", key_type="ec"),
        "bad-imprint": LocalTSA(mode="bad-imprint", key_type="ec"),
    }
    for each in tsas.values():
        each.start()
    try:
        yield tsas
    finally:
        for each in tsas.values():
            each.stop()


def test_client_falls_through_to_the_next_tsa(tsa: LocalTSA, failing: dict[str, LocalTSA]) -> None:
    urls = [failing[name].url for name in ("slow", "garbage", "error", "reject")] + [tsa.url]
    started = time.monotonic()
    token = request_timestamp(DIGEST, urls, timeout=0.5, trust_anchors=[tsa.ca_pem])
    assert time.monotonic() - started < 4
    assert token.tsa_url == tsa.url
    assert [url for url, _ in token.skipped] == urls[:4]
    assert token.verified is not None


def test_client_collects_tokens_from_several_tsas(
    tsa: LocalTSA, other_tsa: LocalTSA, failing: dict[str, LocalTSA]
) -> None:
    urls = [failing["garbage"].url, tsa.url, failing["error"].url, other_tsa.url]
    anchors = [tsa.ca_pem, other_tsa.ca_pem]
    tokens = request_timestamps(DIGEST, urls, want=2, timeout=TIMEOUT, trust_anchors=anchors)
    assert [t.tsa_url for t in tokens] == [tsa.url, other_tsa.url]
    assert [url for url, _ in tokens[0].skipped] == [failing["garbage"].url]
    assert [url for url, _ in tokens[1].skipped] == [failing["garbage"].url, failing["error"].url]
    assert all(t.verified is not None for t in tokens)
    # Stops once it has enough; fewer than wanted is what there is, not an error.
    [first] = request_timestamps(DIGEST, urls, want=1, timeout=TIMEOUT, trust_anchors=anchors)
    assert first.tsa_url == tsa.url
    some = request_timestamps(DIGEST, urls, want=5, timeout=TIMEOUT, trust_anchors=anchors)
    assert len(some) == 2
    with pytest.raises(ValueError, match="at least 1"):
        request_timestamps(DIGEST, urls, want=0, timeout=TIMEOUT)


def test_client_names_every_failure(
    tsa: LocalTSA, other_tsa: LocalTSA, failing: dict[str, LocalTSA]
) -> None:
    names = ["slow", "garbage", "error", "reject", "bad-nonce", "bad-imprint"]
    urls = [failing[name].url for name in names]
    # A TSA outside the trust anchors, and one not listening at all.
    urls += [other_tsa.url, "http://127.0.0.1:9/tsa"]
    with pytest.raises(TimestampError) as caught:
        request_timestamp(DIGEST, urls, timeout=0.5, trust_anchors=[tsa.ca_pem])
    error = caught.value
    assert isinstance(error, EvidenceError)
    reasons = dict(error.failures)
    assert list(reasons) == urls
    assert "timed out" in reasons[failing["slow"].url]
    assert "not a DER timestamp" in reasons[failing["garbage"].url]
    assert "HTTP 500" in reasons[failing["error"].url]
    assert "status rejection" in reasons[failing["reject"].url]
    assert "nonce mismatch" in reasons[failing["bad-nonce"].url]
    assert "message imprint mismatch" in reasons[failing["bad-imprint"].url]
    assert "not signed by a trusted TSA" in reasons[other_tsa.url]
    assert "cannot connect" in reasons["http://127.0.0.1:9/tsa"]
    for url in urls:
        assert url in str(error)


def test_client_without_trust_anchors_still_checks_nonce_and_imprint(
    failing: dict[str, LocalTSA], other_tsa: LocalTSA
) -> None:
    with pytest.raises(TimestampError, match="nonce mismatch"):
        request_timestamp(DIGEST, [failing["bad-nonce"].url], timeout=TIMEOUT)
    # Without a nonce the same TSA's answer is acceptable (it only corrupts the nonce).
    token = request_timestamp(DIGEST, [failing["bad-nonce"].url], timeout=TIMEOUT, nonce=False)
    assert token.nonce is None
    # Without anchors, trust is not judged: the caller must verify_token later.
    assert request_timestamp(DIGEST, [other_tsa.url], timeout=TIMEOUT).verified is None


def test_client_refuses_bad_arguments() -> None:
    with pytest.raises(TimestampError, match="no TSA URLs"):
        request_timestamp(DIGEST, [], timeout=1)
    with pytest.raises(ValueError, match="32-byte"):
        request_timestamp(b"short", ["http://127.0.0.1:9/"], timeout=1)
    with pytest.raises(TimestampError, match="not an http"):
        request_timestamp(DIGEST, ["file:///etc/passwd"], timeout=1)


# --------------------------------------------------------------------------------------------
# Merkle trees
# --------------------------------------------------------------------------------------------


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH from RFC 6962 section 2.1, literally."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = reference_root(leaves[:k]), reference_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def reference_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) from RFC 6962 section 2.1.1, literally."""
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if index < k:
        return [*reference_path(index, leaves[:k]), reference_root(leaves[k:])]
    return [*reference_path(index - k, leaves[k:]), reference_root(leaves[:k])]


def leaves_of(size: int) -> list[bytes]:
    return [leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(size)]


def test_leaf_hash_is_domain_separated() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert merkle_root([]) == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("size", range(1, 21))
def test_merkle_roots_and_proofs(size: int) -> None:
    leaves = leaves_of(size)
    root = merkle_root(leaves)
    assert root == reference_root(leaves)
    all_proofs = inclusion_proofs(leaves)
    for index, leaf in enumerate(leaves):
        proof = inclusion_proof(index, leaves)
        assert proof == reference_path(index, leaves) == all_proofs[index]
        assert verify_inclusion(leaf, index, size, proof, root)
        # A wrong leaf, index or root fails. (The size is not bound by the proof: it comes
        # with the root, from the timestamped record, as in RFC 9162.)
        assert not verify_inclusion(leaves[(index + 1) % size] if size > 1 else bytes(32),
                                    index, size, proof, root)  # fmt: skip
        if size > 1:
            assert not verify_inclusion(leaf, (index + 1) % size, size, proof, root)
        assert not verify_inclusion(leaf, index, size, proof, hashlib.sha256(root).digest())
        assert not verify_inclusion(leaf, size, size, proof, root)
        if proof:
            assert not verify_inclusion(leaf, index, size, proof[:-1], root)
            assert not verify_inclusion(leaf, index, size, [*proof, proof[0]], root)


def test_merkle_rejects_non_hash_leaves() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        merkle_root([b"too short"])
    with pytest.raises(IndexError):
        inclusion_proof(3, leaves_of(3))


def test_a_timestamped_root_covers_each_snapshot(tsa: LocalTSA) -> None:
    # The intended use: one token over the root, one proof per snapshot id.
    snapshot_ids = [hashlib.sha256(f"manifest {i}".encode()).digest() for i in range(5)]
    leaves = [leaf_hash(snapshot_id) for snapshot_id in snapshot_ids]
    root = merkle_root(leaves)
    token = request_timestamp(root, [tsa.url], timeout=TIMEOUT, trust_anchors=[tsa.ca_pem])
    for index, proof in enumerate(inclusion_proofs(leaves)):
        assert verify_inclusion(leaf_hash(snapshot_ids[index]), index, 5, proof, root)
    assert verify_token(token.response_der, root, [tsa.ca_pem]).info.message_imprint == root


# -- TSAs that want credentials (qualified TSAs mostly do) ----------------------------------
PASSWORD = "tsa-pass-3f9c1e77"


def test_basic_auth_over_https(tmp_path: Path) -> None:
    with LocalTSA(tls=True, basic_auth=("evidence", PASSWORD)) as locked:
        server_ca = tmp_path / "tls-ca.pem"
        server_ca.write_bytes(locked.tls_ca_pem)
        anchors = [locked.ca_pem]

        def ask(access: TsaAccess | None) -> TimestampToken:
            given = {locked.url: access} if access else None
            return request_timestamp(
                DIGEST, [locked.url], timeout=TIMEOUT, trust_anchors=anchors, access=given
            )

        with pytest.raises(TimestampError, match=r"HTTP 401.*wants credentials"):
            ask(TsaAccess(ca_file=server_ca))
        with pytest.raises(TimestampError, match=r"HTTP 401.*refused our credentials"):
            ask(TsaAccess(username="evidence", password="wrong", ca_file=server_ca))
        # Without the server's CA the connection itself is refused: nothing was sent.
        with pytest.raises(TimestampError, match="CERTIFICATE_VERIFY_FAILED"):
            ask(TsaAccess(username="evidence", password=PASSWORD))
        assert locked.unauthorized == 2
        token = ask(TsaAccess(username="evidence", password=PASSWORD, ca_file=server_ca))
        assert token.verified is not None and token.tsa_url == locked.url
        # The password never shows in what is kept or printed of the access.
        assert PASSWORD not in repr(TsaAccess(username="evidence", password=PASSWORD))


def test_credentials_are_never_sent_over_plain_http() -> None:
    with LocalTSA(basic_auth=("evidence", PASSWORD)) as plain:
        access = {plain.url: TsaAccess(username="evidence", password=PASSWORD)}
        with pytest.raises(TimestampError, match="only ever sent over https"):
            request_timestamp(DIGEST, [plain.url], timeout=TIMEOUT, access=access)
        assert plain.requests == 0


def test_client_certificate(tmp_path: Path) -> None:
    with LocalTSA(tls=True, client_certs=True) as mtls:
        server_ca, cert, key = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "key.pem"
        server_ca.write_bytes(mtls.tls_ca_pem)
        cert.write_bytes(mtls.client_cert_pem)
        key.write_bytes(mtls.client_key_pem)
        without = {mtls.url: TsaAccess(ca_file=server_ca)}
        with pytest.raises(TimestampError) as refused:
            request_timestamp(DIGEST, [mtls.url], timeout=TIMEOUT, access=without)
        assert mtls.url in str(refused.value) and not mtls.served
        access = {mtls.url: TsaAccess(client_cert=cert, client_key=key, ca_file=server_ca)}
        token = request_timestamp(
            DIGEST, [mtls.url], timeout=TIMEOUT, trust_anchors=[mtls.ca_pem], access=access
        )
        assert token.verified is not None
        missing = {mtls.url: TsaAccess(client_cert=tmp_path / "nope.pem", ca_file=server_ca)}
        with pytest.raises(TimestampError, match="cannot load the TLS files"):
            request_timestamp(DIGEST, [mtls.url], timeout=TIMEOUT, access=missing)


# -- revocation: CRLs of the TSA's CA -------------------------------------------------------
def _openssl_crl_check(tsa: LocalTSA, crl: bytes, tmp_path: Path) -> str:
    """What ``openssl verify -crl_check`` says of the TSA certificate under this CRL."""
    paths = tsa.write_pems(tmp_path / "pki")
    (tmp_path / "crl.pem").write_bytes(crl)
    argv = ["openssl", "verify", "-crl_check", "-purpose", "timestampsign"]
    argv += ["-CAfile", str(paths["ca"]), "-CRLfile", str(tmp_path / "crl.pem"), str(paths["tsa"])]
    result = run(argv)
    return result.stdout + result.stderr


def test_a_clean_crl_issued_after_the_token_shows_it_was_not_revoked(
    tsa: LocalTSA, token: TimestampToken, tmp_path: Path
) -> None:
    crl = tsa.crl_pem()
    result = verify_token(token.response_der, DIGEST, [tsa.ca_pem], crls=[crl])
    assert len(result.revocation) == 1 and "TSA certificate: not revoked" in result.revocation[0]
    assert ": OK" in _openssl_crl_check(tsa, crl, tmp_path)
    # A CRL from before the token cannot speak for its time; no CRL at all says nothing.
    old = tsa.crl_pem(issued_at=token.gen_time - timedelta(days=1))
    stale = verify_token(token.response_der, DIGEST, [tsa.ca_pem], crls=[old])
    assert "status at the genTime unknown" in stale.revocation[0]
    assert verify_token(token.response_der, DIGEST, [tsa.ca_pem]).revocation == ()


def test_a_tsa_revoked_before_the_token_is_rejected(
    tsa: LocalTSA, token: TimestampToken, tmp_path: Path
) -> None:
    crl = tsa.crl_pem(
        revoked_at=token.gen_time - timedelta(hours=1), reason=x509.ReasonFlags.superseded
    )
    with pytest.raises(TimestampVerificationError, match=r"revoked at .* \(superseded\), before"):
        verify_token(token.response_der, DIGEST, [tsa.ca_pem], crls=[crl])
    assert "certificate revoked" in _openssl_crl_check(tsa, crl, tmp_path)


def test_a_tsa_revoked_after_the_token_stands_unless_its_key_was_compromised(
    tsa: LocalTSA, token: TimestampToken
) -> None:
    later = token.gen_time + timedelta(hours=1)
    routine = tsa.crl_pem(revoked_at=later, reason=x509.ReasonFlags.cessation_of_operation)
    result = verify_token(token.response_der, DIGEST, [tsa.ca_pem], crls=[routine])
    assert "after the genTime: stands" in result.revocation[0]
    compromised = tsa.crl_pem(revoked_at=later, reason=x509.ReasonFlags.key_compromise)
    with pytest.raises(TimestampVerificationError, match=r"key_compromise.*whatever its genTime"):
        verify_token(token.response_der, DIGEST, [tsa.ca_pem], crls=[compromised])


def test_a_forged_crl_is_refused(tsa: LocalTSA, token: TimestampToken) -> None:
    forged = tsa.crl_pem(forged=True)
    with pytest.raises(TimestampVerificationError, match="not signed by that issuer's key"):
        verify_token(token.response_der, DIGEST, [tsa.ca_pem], crls=[forged])
    with pytest.raises(TimestampVerificationError, match="not a CRL"):
        verify_token(token.response_der, DIGEST, [tsa.ca_pem], crls=[b"junk"])


# -- the eIDAS "qualified" claim (ETSI EN 319 422) ------------------------------------------
def test_a_token_claiming_qualified_status_is_read_as_such(
    token: TimestampToken, tmp_path: Path
) -> None:
    assert token.info.qualified_claim is False
    with LocalTSA(qualified_claim=True) as claiming:
        claimed = request_timestamp(
            DIGEST, [claiming.url], timeout=TIMEOUT, trust_anchors=[claiming.ca_pem]
        )
        ca = tmp_path / "ca.pem"
        ca.write_bytes(claiming.ca_pem)
    assert claimed.info.qualified_claim is True
    assert claimed.verified is not None and "rfc3161-client" in claimed.verified.checked_by
    # openssl prints the extension and accepts the token.
    reply = tmp_path / "claimed.tsr"
    reply.write_bytes(claimed.response_der)
    assert openssl_accepts(openssl_verify_argv(reply, DIGEST, ca))
    shown = run(["openssl", "ts", "-reply", "-in", str(reply), "-text"])
    assert "1.3.6.1.5.5.7.1.3" in shown.stdout or "qcStatements" in shown.stdout
