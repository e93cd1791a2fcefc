"""Snapshots timestamped by a TSA after archiving: the CLI, retries and verification."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from evidence_store.timestamps import openssl_verify_argv
from fixtures.tsa import LocalTSA
from tests.conftest import run_cli

SAMPLE = (
    Path(__file__).resolve().parent.parent
    / "fixtures"
    / "samples"
    / "transparency-report-sample.html"
)


@pytest.fixture
def env(tsa_env: dict[str, str]) -> dict[str, str]:
    return tsa_env


def reply_path(env: dict[str, str], snapshot: str, column: str = "reply_sha256") -> Path:
    """The object file of a snapshot's token reply (or, by ``column``, its chain)."""
    from sqlalchemy import select

    from evidence_store.index import Index, TimestampRecord

    index = Index(env["EVIDENCE_DB_URL"])
    with index.session() as session:
        digest = session.scalars(
            select(getattr(TimestampRecord, column)).where(TimestampRecord.snapshot_id == snapshot)
        ).one()
    index.dispose()
    return Path(env["EVIDENCE_DATA_DIR"]) / "objects" / "sha256" / digest[:2] / digest[2:4] / digest


def test_archived_snapshots_are_timestamped_and_verified(
    env: dict[str, str], tmp_path: Path
) -> None:
    proc = run_cli("ingest", str(SAMPLE), "--json", env=env, check=True)
    [result] = json.loads(proc.stdout)
    assert result["timestamp"]
    verified = json.loads(run_cli("verify", "--all", "--json", env=env, check=True).stdout)
    assert verified["ok"] and verified["timestamps"] == 1
    # The same token passes openssl's own check over the snapshot id.
    argv = openssl_verify_argv(
        reply_path(env, result["snapshot"]),
        bytes.fromhex(result["snapshot"]),
        Path(json.loads(env["EVIDENCE_TIMESTAMPS__TRUST_ANCHORS"])[0]),
    )
    check = subprocess.run(argv, capture_output=True, text=True)
    assert "Verification: OK" in check.stdout, check.stdout + check.stderr


def test_unreachable_tsa_leaves_snapshot_marked_and_retry_stamps_it(env: dict[str, str]) -> None:
    down = env | {"EVIDENCE_TIMESTAMPS__TSA_URLS": json.dumps(["http://127.0.0.1:9/tsr"])}
    proc = run_cli("ingest", str(SAMPLE), "--json", env=down)
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)
    assert result["timestamp"] is None
    assert "without a timestamp" in proc.stderr
    listed = json.loads(
        run_cli("timestamp", "retry", "--list", "--json", env=env, check=True).stdout
    )
    assert listed["untimestamped"] == [result["snapshot"]]
    again = run_cli("timestamp", "retry", "--json", env=down)
    assert again.returncode == 1  # still no TSA: said, not hidden
    retried = json.loads(run_cli("timestamp", "retry", "--json", env=env, check=True).stdout)
    assert [t["snapshot"] for t in retried["timestamped"]] == [result["snapshot"]]
    assert (
        json.loads(run_cli("verify", "--all", "--json", env=env, check=True).stdout)["timestamps"]
        == 1
    )


def test_tampered_or_untrusted_token_is_reported(env: dict[str, str], tmp_path: Path) -> None:
    [result] = json.loads(run_cli("ingest", str(SAMPLE), "--json", env=env, check=True).stdout)
    with LocalTSA() as other:
        stranger = tmp_path / "other-ca.pem"
        stranger.write_bytes(other.ca_pem)
    untrusted = env | {"EVIDENCE_TIMESTAMPS__TRUST_ANCHORS": json.dumps([str(stranger)])}
    proc = run_cli("verify", "--all", "--json", env=untrusted)
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)["problems"]
    # The snapshot's token and the custody log's anchor both come from the now-untrusted TSA.
    assert {(p["kind"], p["snapshot"]) for p in problems} == {
        ("timestamp-invalid", result["snapshot"]),
        ("custody-anchor", None),
    }
    assert all("not signed by a trusted TSA" in p["message"] for p in problems)
    path = reply_path(env, result["snapshot"])
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-40] ^= 0x01  # inside the signature
    path.write_bytes(bytes(data))
    proc = run_cli("verify", "--all", "--json", env=env)
    assert proc.returncode == 1
    kinds = {p["kind"] for p in json.loads(proc.stdout)["problems"]}
    assert "timestamp-invalid" in kinds


def test_an_edit_outside_the_signed_part_of_a_reply_is_reported(env: dict[str, str]) -> None:
    """The status wrapper of a TimeStampResp is not signed: 'granted' can become
    'grantedWithMods' and the token still verifies. The object's digest catches it."""
    from asn1crypto import tsp

    [result] = json.loads(run_cli("ingest", str(SAMPLE), "--json", env=env, check=True).stdout)
    path = reply_path(env, result["snapshot"])
    reply = tsp.TimeStampResp.load(path.read_bytes())
    edited = tsp.TimeStampResp(
        {"status": {"status": "granted_with_mods"}, "time_stamp_token": reply["time_stamp_token"]}
    ).dump()
    os.chmod(path, 0o644)
    path.write_bytes(edited)
    proc = run_cli("verify", result["snapshot"], "--json", env=env)
    assert proc.returncode == 1
    [problem] = json.loads(proc.stdout)["problems"]
    assert problem["kind"] == "timestamp-invalid" and "was altered" in problem["message"]
    # The same for the certificate chain kept beside the token, for openssl -untrusted.
    path.write_bytes(reply.dump())
    assert run_cli("verify", result["snapshot"], env=env).returncode == 0
    chain = reply_path(env, result["snapshot"], column="chain_sha256")
    os.chmod(chain, 0o644)
    chain.write_bytes(chain.read_bytes().replace(b"-----END CERTIFICATE-----", b"-----END X", 1))
    proc = run_cli("verify", result["snapshot"], "--json", env=env)
    [problem] = json.loads(proc.stdout)["problems"]
    assert "TSA chain object" in problem["message"] and "was altered" in problem["message"]


def test_sweep_counts_tokens_as_referenced(env: dict[str, str]) -> None:
    run_cli("ingest", str(SAMPLE), env=env, check=True)
    report = json.loads(run_cli("store", "sweep", "--json", env=env, check=True).stdout)
    assert report["orphans"] == []
    # artifact, manifest, signature, the snapshot's token, the custody head's token, the
    # TSA's certificate chain (one object: both tokens carry the same chain), and the
    # archived trust anchor (the TSA's CA)
    assert report["referenced"] == 7


def test_tokens_from_two_tsas_are_kept_and_each_verified(
    env: dict[str, str], tmp_path: Path
) -> None:
    """``[timestamps] tokens = 2``: a dead TSA is skipped, the next two each give a token."""
    from sqlalchemy import select

    from evidence_store.index import Index, TimestampRecord

    with LocalTSA(key_type="ec") as second:
        ca2 = tmp_path / "second-ca.pem"
        ca2.write_bytes(second.ca_pem)
        first_url = json.loads(env["EVIDENCE_TIMESTAMPS__TSA_URLS"])[0]
        anchors = [*json.loads(env["EVIDENCE_TIMESTAMPS__TRUST_ANCHORS"]), str(ca2)]
        env = env | {
            "EVIDENCE_TIMESTAMPS__TSA_URLS": json.dumps(
                ["http://127.0.0.1:9/dead", first_url, second.url]
            ),
            "EVIDENCE_TIMESTAMPS__TRUST_ANCHORS": json.dumps(anchors),
            "EVIDENCE_TIMESTAMPS__TOKENS": "2",
        }
        [result] = json.loads(run_cli("ingest", str(SAMPLE), "--json", env=env).stdout)
        snapshot = result["snapshot"]
        index = Index(env["EVIDENCE_DB_URL"])
        with index.session() as session:
            records = list(
                session.scalars(
                    select(TimestampRecord)
                    .where(TimestampRecord.snapshot_id == snapshot)
                    .order_by(TimestampRecord.id)
                )
            )
        index.dispose()
        assert [r.tsa_url for r in records] == [first_url, second.url]

        report = json.loads(run_cli("verify", snapshot, "--json", env=env, check=True).stdout)
        [checked] = report["results"]
        assert sorted(t["tsa"] for t in checked["timestamps"]) == sorted([first_url, second.url])
        # Each reply passes openssl's own check against its own TSA's CA.
        data = Path(env["EVIDENCE_DATA_DIR"]) / "objects" / "sha256"
        for record, ca in zip(records, anchors, strict=True):
            digest = record.reply_sha256
            argv = openssl_verify_argv(
                data / digest[:2] / digest[2:4] / digest, bytes.fromhex(snapshot), Path(ca)
            )
            check = subprocess.run(argv, capture_output=True, text=True)
            assert "Verification: OK" in check.stdout, check.stdout + check.stderr
        # Only one TSA left: one token is still a timestamp, not a failure.
        env["EVIDENCE_TIMESTAMPS__TSA_URLS"] = json.dumps([second.url])
        [alone] = json.loads(
            run_cli("ingest", str(tmp_path / "second-ca.pem"), "--json", env=env, check=True).stdout
        )
        assert alone["timestamp"]


def test_a_tsa_behind_https_and_a_password(env: dict[str, str], tmp_path: Path) -> None:
    """Credentials come from the settings, reach the TSA, and nowhere else."""
    password = "qualified-tsa-pw-81d2e6"
    with LocalTSA(tls=True, basic_auth=("kanzlei", password), qualified_claim=True) as locked:
        server_ca, tokens_ca = tmp_path / "tls-ca.pem", tmp_path / "tsa-ca.pem"
        server_ca.write_bytes(locked.tls_ca_pem)
        tokens_ca.write_bytes(locked.ca_pem)
        auth = {
            locked.url: {"username": "kanzlei", "password": password, "ca_file": str(server_ca)}
        }
        env = env | {
            "EVIDENCE_TIMESTAMPS__TSA_URLS": json.dumps([locked.url]),
            "EVIDENCE_TIMESTAMPS__TRUST_ANCHORS": json.dumps([str(tokens_ca)]),
            "EVIDENCE_TIMESTAMPS__TSA_AUTH": json.dumps(auth),
        }
        [result] = json.loads(run_cli("ingest", str(SAMPLE), "--json", env=env, check=True).stdout)
        assert result["timestamp"] and locked.served
        verified = json.loads(run_cli("verify", "--all", "--json", env=env, check=True).stdout)
        assert verified["ok"] and verified["untimestamped"] == 0
        assert verified["results"][0]["timestamps"][0]["qualified_claim"] is True
        report = tmp_path / "report.txt"
        run_cli("verify", "--all", "--report", str(report), env=env, check=True)
        assert "(token, claims eIDAS qualified)" in report.read_text()
        shown = run_cli("config", "show", "--json", env=env, check=True).stdout
        assert password not in shown and "kanzlei" in shown
        # Not in any object, the index or anything else under the data folder.
        for path in Path(env["EVIDENCE_DATA_DIR"]).rglob("*"):
            if path.is_file():
                assert password.encode() not in path.read_bytes(), path

        # A password for a plain-http TSA is refused before anything runs.
        plain = env | {
            "EVIDENCE_TIMESTAMPS__TSA_URLS": json.dumps(["http://127.0.0.1:9/tsa"]),
            "EVIDENCE_TIMESTAMPS__TSA_AUTH": json.dumps(
                {"http://127.0.0.1:9/tsa": {"username": "kanzlei", "password": password}}
            ),
        }
        refused = run_cli("ingest", str(SAMPLE), env=plain)
        assert refused.returncode == 2 and "only ever sent over https" in refused.stderr
        assert password not in refused.stderr


def test_verify_checks_revocation_against_configured_crls(
    env: dict[str, str], tsa: LocalTSA, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509

    [result] = json.loads(run_cli("ingest", str(SAMPLE), "--json", env=env, check=True).stdout)
    clean, revoked = tmp_path / "clean.crl", tmp_path / "revoked.crl"
    clean.write_bytes(tsa.crl_pem(issued_at=datetime.now(UTC) + timedelta(seconds=1)))
    revoked.write_bytes(
        tsa.crl_pem(revoked_at=datetime.now(UTC), reason=x509.ReasonFlags.key_compromise)
    )

    ok_env = env | {"EVIDENCE_TIMESTAMPS__CRLS": json.dumps([str(clean)])}
    report = tmp_path / "clean-report.txt"
    run_cli("verify", "--all", "--report", str(report), env=ok_env, check=True)
    text = report.read_text()
    assert str(clean) in text and "revocation: TSA certificate: not revoked" in text

    bad_env = env | {"EVIDENCE_TIMESTAMPS__CRLS": json.dumps([str(revoked)])}
    proc = run_cli("verify", "--all", "--json", env=bad_env)
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)["problems"]
    assert any(
        p["snapshot"] == result["snapshot"] and "key_compromise" in p["message"] for p in problems
    )
    # The custody log's anchors were made by the same TSA: they fall with it.
    assert any(p["kind"] == "custody-anchor" and "revoked" in p["message"] for p in problems)

    junk = tmp_path / "junk.crl"
    junk.write_bytes(b"not a crl")
    refused = run_cli("verify", "--all", env=env | {"EVIDENCE_TIMESTAMPS__CRLS": f'["{junk}"]'})
    assert refused.returncode == 2 and "not a CRL" in refused.stderr


def test_tsas_down_for_a_run_cost_three_requests_and_the_next_run_catches_up(
    env: dict[str, str], tsa: LocalTSA, tmp_path: Path
) -> None:
    files = []
    for n in range(7):
        path = tmp_path / f"statement-{n}.txt"
        path.write_text(f"statement {n}\n")
        files.append(str(path))
    tsa.mode = "error"
    try:
        before = tsa.requests
        proc = run_cli("ingest", *files[:6], "--json", env=env)
        asked = tsa.requests - before
    finally:
        tsa.mode = "ok"
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [r["timestamp"] for r in results] == [None] * 6
    assert "6 snapshot(s) archived without a timestamp" in proc.stderr
    assert asked == 3 + 1  # three snapshots, then the rest not asked; one custody anchor
    # Every snapshot's custody says why it has no timestamp, asked or not.
    for result in results:
        shown = json.loads(
            run_cli("custody", "show", result["snapshot"], "--json", env=env, check=True).stdout
        )
        [failed] = [e for e in shown["entries"] if e["action"] == "timestamp-failed"]
        assert ("not_asked" in failed["details"]) == (results.index(result) >= 3)

    # The TSA is back: the next run stamps its own snapshot and the six left over.
    later = run_cli("ingest", files[6], "--json", env=env, check=True)
    assert json.loads(later.stdout)[0]["timestamp"]
    assert "timestamped 6 snapshot(s) of earlier runs" in later.stderr
    listed = json.loads(
        run_cli("timestamp", "retry", "--list", "--json", env=env, check=True).stdout
    )
    assert listed["untimestamped"] == []
    verified = json.loads(run_cli("verify", "--all", "--json", env=env, check=True).stdout)
    assert verified["ok"] and verified["untimestamped"] == 0
