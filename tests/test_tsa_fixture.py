"""The local test TSA, exercised with openssl and real HTTP on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import cms, core, tsp
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fixtures.tsa import (
    GARBAGE,
    NOT_TRUSTED_LABEL,
    QUERY_MEDIA_TYPE,
    REPLY_MEDIA_TYPE,
    LocalTSA,
)

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 10


class StatusOnlyResp(core.Sequence):
    """TimeStampResp as RFC 3161 defines it: asn1crypto's makes the token mandatory."""

    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


@pytest.fixture(scope="module")
def tsa() -> Iterator[LocalTSA]:
    with LocalTSA() as running:
        yield running


@pytest.fixture(scope="module")
def pems(tsa: LocalTSA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tsa.write_pems(tmp_path_factory.mktemp("tsa-pems"))


def openssl(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT, check=check
    )


def post(url: str, body: bytes, content_type: str = QUERY_MEDIA_TYPE) -> tuple[int, str, bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def openssl_query(tmp_path: Path, data: bytes, *extra: str) -> tuple[Path, Path]:
    data_file = tmp_path / "data.bin"
    data_file.write_bytes(data)
    query = tmp_path / "q.tsq"
    openssl("ts", "-query", "-data", data_file, "-sha256", *extra, "-out", query)
    return data_file, query


def test_openssl_query_reply_verifies_with_openssl(
    tsa: LocalTSA, pems: dict[str, Path], tmp_path: Path
) -> None:
    data_file, query = openssl_query(tmp_path, b"exhibit bytes\n", "-cert")
    status, content_type, reply = post(tsa.url, query.read_bytes())
    assert (status, content_type) == (200, REPLY_MEDIA_TYPE)
    reply_file = tmp_path / "reply.tsr"
    reply_file.write_bytes(reply)

    # The exact command of the brief: CA as trust anchor, TSA certificate as untrusted.
    result = openssl(
        "ts", "-verify", "-data", data_file, "-in", reply_file,
        "-CAfile", pems["ca"], "-untrusted", pems["tsa"],
    )  # fmt: skip
    assert "Verification: OK" in result.stdout
    # The query form also checks the nonce and the imprint against the request.
    result = openssl("ts", "-verify", "-queryfile", query, "-in", reply_file, "-CAfile", pems["ca"])
    assert "Verification: OK" in result.stdout

    text = openssl("ts", "-reply", "-in", reply_file, "-text").stdout
    assert "Status: Granted." in text
    assert "Policy OID: 2.999.3161.1" in text
    assert NOT_TRUSTED_LABEL in text
    assert "Nonce: 0x" in text


def test_reply_structure_is_what_real_tsas_send(tsa: LocalTSA, tmp_path: Path) -> None:
    _, query = openssl_query(tmp_path, b"structure", "-cert")
    request = tsp.TimeStampReq.load(query.read_bytes())
    _, _, reply = post(tsa.url, query.read_bytes())
    response = tsp.TimeStampResp.load(reply)
    signed_data = response["time_stamp_token"]["content"]
    tst_info = signed_data["encap_content_info"]["content"].parsed
    assert tst_info["nonce"].native == request["nonce"].native
    assert tst_info["message_imprint"].native == request["message_imprint"].native
    assert signed_data["version"].native == "v3"
    attrs = {a["type"].native for a in signed_data["signer_infos"][0]["signed_attrs"]}
    assert {"content_type", "message_digest", "signing_certificate_v2"} <= attrs
    certs = [c.chosen.dump() for c in signed_data["certificates"]]
    assert sorted(certs) == certs == sorted([tsa.tsa_cert_der, tsa.ca_der])


def test_without_cert_req_the_token_has_no_certificates(
    tsa: LocalTSA, pems: dict[str, Path], tmp_path: Path
) -> None:
    data_file, query = openssl_query(tmp_path, b"no certs")
    _, _, reply = post(tsa.url, query.read_bytes())
    token = tsp.TimeStampResp.load(reply)["time_stamp_token"]
    assert not token["content"]["certificates"].native
    reply_file = tmp_path / "reply.tsr"
    reply_file.write_bytes(reply)
    without = openssl(
        "ts", "-verify", "-data", data_file, "-in", reply_file, "-CAfile", pems["ca"], check=False
    )
    assert without.returncode != 0
    with_chain = openssl(
        "ts", "-verify", "-data", data_file, "-in", reply_file,
        "-CAfile", pems["ca"], "-untrusted", pems["tsa"],
    )  # fmt: skip
    assert "Verification: OK" in with_chain.stdout


def test_serial_numbers_increase(tsa: LocalTSA, tmp_path: Path) -> None:
    _, query = openssl_query(tmp_path, b"serials")
    serials = []
    for _ in range(3):
        _, _, reply = post(tsa.url, query.read_bytes())
        token = tsp.TimeStampResp.load(reply)["time_stamp_token"]
        serials.append(token["content"]["encap_content_info"]["content"].parsed["serial_number"])
    values = [serial.native for serial in serials]
    assert values == sorted(values) and len(set(values)) == 3
    assert tsa.served[-1].serial_number == values[-1]


def test_certificates_are_labelled_and_tsa_eku_is_critical(tsa: LocalTSA) -> None:
    for cert in (tsa.ca_cert, tsa.tsa_cert):
        (common_name,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert NOT_TRUSTED_LABEL in str(common_name.value)
    eku = tsa.tsa_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    assert tsa.tsa_cert.issuer == tsa.ca_cert.subject
    assert x509.load_pem_x509_certificates(tsa.chain_pem) == [tsa.tsa_cert, tsa.ca_cert]
    assert tsa.tsa_key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_http_errors_and_bad_queries(tsa: LocalTSA, tmp_path: Path) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(tsa.url, timeout=TIMEOUT)
    assert caught.value.code == 405
    _, query = openssl_query(tmp_path, b"x")
    assert post(tsa.url, query.read_bytes(), "application/octet-stream")[0] == 415

    status, _, reply = post(tsa.url, b"\x30\x03\x02\x01\x07")
    response = StatusOnlyResp.load(reply)
    assert status == 200
    assert response["status"]["status"].native == "rejection"
    assert response["status"]["fail_info"].native == {"bad_data_format"}

    _, policy_query = openssl_query(tmp_path, b"x", "-tspolicy", "1.2.3.4")
    response = StatusOnlyResp.load(post(tsa.url, policy_query.read_bytes())[2])
    assert response["status"]["fail_info"].native == {"unaccepted_policy"}


@pytest.mark.parametrize("mode", ["garbage", "error", "reject"])
def test_failure_modes(mode: str, tmp_path: Path) -> None:
    _, query = openssl_query(tmp_path, b"modes", "-cert")
    with LocalTSA(mode=mode, key_type="ec") as failing:  # type: ignore[arg-type]
        status, _, reply = post(failing.url, query.read_bytes())
    if mode == "garbage":
        assert (status, reply) == (200, GARBAGE)
    elif mode == "error":
        assert status == 500
    else:
        reply_file = tmp_path / "reply.tsr"
        reply_file.write_bytes(reply)
        assert "Status: Rejected." in openssl("ts", "-reply", "-in", reply_file, "-text").stdout


def test_delay_holds_the_answer_back(tmp_path: Path) -> None:
    _, query = openssl_query(tmp_path, b"slow")
    with LocalTSA(delay=5, key_type="ec") as slow:
        request = urllib.request.Request(
            slow.url,
            data=query.read_bytes(),
            method="POST",
            headers={"Content-Type": QUERY_MEDIA_TYPE},
        )
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            urllib.request.urlopen(request, timeout=0.3)
        slow.delay = 0
        assert post(slow.url, query.read_bytes())[0] == 200


def test_expired_tsa_certificate_fails_openssl(tmp_path: Path) -> None:
    expired_at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    with LocalTSA(tsa_not_after=expired_at) as expired:
        assert expired.tsa_cert.not_valid_after_utc == expired_at
        data_file, query = openssl_query(tmp_path, b"late", "-cert")
        reply_file = tmp_path / "reply.tsr"
        reply_file.write_bytes(post(expired.url, query.read_bytes())[2])
        ca = tmp_path / "ca.pem"
        ca.write_bytes(expired.ca_pem)
    result = openssl(
        "ts", "-verify", "-data", data_file, "-in", reply_file, "-CAfile", ca, check=False
    )
    assert result.returncode != 0
    assert "certificate has expired" in result.stderr


def test_unsorted_certificate_set_still_verifies_with_openssl(tmp_path: Path) -> None:
    with LocalTSA(der_sorted_certificates=False) as unsorted:
        data_file, query = openssl_query(tmp_path, b"unsorted", "-cert")
        reply = post(unsorted.url, query.read_bytes())[2]
        ca = tmp_path / "ca.pem"
        ca.write_bytes(unsorted.ca_pem)
    certs = [c.chosen.dump() for c in cms.ContentInfo.load(
        tsp.TimeStampResp.load(reply)["time_stamp_token"].dump()
    )["content"]["certificates"]]  # fmt: skip
    assert certs == sorted(certs, reverse=True)
    reply_file = tmp_path / "reply.tsr"
    reply_file.write_bytes(reply)
    result = openssl("ts", "-verify", "-data", data_file, "-in", reply_file, "-CAfile", ca)
    assert "Verification: OK" in result.stdout


def test_module_runs_in_the_foreground(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "fixtures.tsa", "--quiet", "--out", str(tmp_path / "pems")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        ca_line = process.stdout.readline()
        assert url.startswith("http://127.0.0.1:")
        ca_path = Path(ca_line.rsplit(": ", 1)[1].strip())
        assert ca_path == tmp_path / "pems" / "ca.pem"
        data_file, query = openssl_query(tmp_path, b"foreground", "-cert")
        reply_file = tmp_path / "reply.tsr"
        reply_file.write_bytes(post(url, query.read_bytes())[2])
        result = openssl("ts", "-verify", "-data", data_file, "-in", reply_file, "-CAfile", ca_path)
        assert "Verification: OK" in result.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == 0
