"""Long-term validation: CRLs fetched from the TSA certificate's distribution point, checked,
archived with a custody entry and used by `evidence verify`; renewal (archive) timestamps."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import create_engine, select, update

from evidence_store.index import Index
from evidence_store.index.models import CustodyEvent, RevocationList, TimestampRecord
from fixtures.tsa import LocalTSA
from tests.conftest import run_cli


class _CrlServer(ThreadingHTTPServer):
    """A CA's CRL distribution point on 127.0.0.1: serves ``content`` at /ca.crl."""

    daemon_threads = True
    content: bytes | None = None
    fetches = 0


class _Handler(BaseHTTPRequestHandler):
    server: _CrlServer

    def do_GET(self) -> None:
        self.server.fetches += 1
        body = self.server.content if self.path == "/ca.crl" else None
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/pkix-crl")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def crl_point() -> Iterator[tuple[_CrlServer, str]]:
    server = _CrlServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}/ca.crl"
    finally:
        server.shutdown()
        server.server_close()


def _rows(env: dict[str, str]) -> tuple[list[RevocationList], list[str]]:
    index = Index(env["EVIDENCE_DB_URL"])
    with index.session() as session:
        rows = list(session.scalars(select(RevocationList).order_by(RevocationList.id)))
        actions = list(session.scalars(select(CustodyEvent.action)))
    index.dispose()
    return rows, actions


def test_crls_are_archived_after_runs_and_used_by_verify(
    crl_point: tuple[_CrlServer, str], tmp_path: Path, db_url: str
) -> None:
    server, url = crl_point
    with LocalTSA(crl_url=url) as tsa:
        ca = tmp_path / "tsa-ca.pem"
        ca.write_bytes(tsa.ca_pem)
        env = {
            "EVIDENCE_DATA_DIR": str(tmp_path / "data"),
            "EVIDENCE_DB_URL": db_url,
            "EVIDENCE_TIMESTAMPS__TSA_URLS": json.dumps([tsa.url]),
            "EVIDENCE_TIMESTAMPS__TRUST_ANCHORS": json.dumps([str(ca)]),
            "EVIDENCE_TIMESTAMPS__TIMEOUT": "3",
        }
        doc = tmp_path / "statement.txt"
        doc.write_text("statement of reasons 1\n")
        # No CRL published yet: the run goes on and says so.
        proc = run_cli("ingest", str(doc), "--json", env=env, check=True)
        assert json.loads(proc.stdout)[0]["timestamp"]
        assert "CRL not archived" in proc.stderr and "HTTP 404" in proc.stderr
        assert server.fetches == 1

        # The CA publishes a CRL after the token: it is fetched, checked and archived once.
        now = datetime.now(UTC).replace(microsecond=0)
        server.content = tsa.crl_pem(issued_at=now + timedelta(seconds=1))
        first = json.loads(run_cli("timestamp", "crls", "--json", env=env, check=True).stdout)
        [archived] = first["archived"]
        assert archived["url"] == url and archived["revoked"] == 0
        assert "NOT TRUSTED" in archived["issuer"]
        again = json.loads(run_cli("timestamp", "crls", "--json", env=env, check=True).stdout)
        assert again == {"archived": [], "unchanged": 1, "failed": [], "stale": []}
        rows, actions = _rows(env)
        assert len(rows) == 1 and actions.count("revocation-archived") == 1
        crl_object = Path(env["EVIDENCE_DATA_DIR"]) / "objects" / "sha256"
        crl_object = crl_object / rows[0].crl_sha256[:2] / rows[0].crl_sha256[2:4]
        assert (crl_object / rows[0].crl_sha256).read_bytes() == server.content

        # verify uses it without any CRL configured, and the report names it.
        report = tmp_path / "report.txt"
        run_cli("verify", "--all", "--report", str(report), env=env, check=True)
        text = report.read_text()
        assert f"sha256 {rows[0].crl_sha256}" in text
        assert "revocation: TSA certificate: not revoked" in text
        sweep = json.loads(run_cli("store", "sweep", "--json", env=env, check=True).stdout)
        assert sweep["orphans"] == []  # the archived CRL is referenced

        # Later the CA reports a key compromise: the next CRL archived makes the token fall.
        server.content = tsa.crl_pem(
            revoked_at=now,
            reason=x509.ReasonFlags.key_compromise,
            issued_at=now + timedelta(minutes=2),
        )
        run_cli("timestamp", "crls", env=env, check=True)
        bad = run_cli("verify", "--all", "--json", env=env)
        assert bad.returncode == 1
        assert any("key_compromise" in p["message"] for p in json.loads(bad.stdout)["problems"])

        # A forged CRL is refused and not archived.
        server.content = tsa.crl_pem(forged=True, issued_at=now + timedelta(minutes=3))
        forged = run_cli("timestamp", "crls", "--json", env=env)
        assert forged.returncode == 1
        [failure] = json.loads(forged.stdout)["failed"]
        assert "not signed by the issuer's key" in failure["reason"]
        assert len(_rows(env)[0]) == 2

        # The TSA is retired and its distribution point gone: not an error any more, since
        # CRLs of its CA are archived; the newest archived one still decides.
        server.content = None
        gone = json.loads(run_cli("timestamp", "crls", "--json", env=env, check=True).stdout)
        assert gone["failed"] == [] and "HTTP 404" in gone["stale"][0]["reason"]
        assert run_cli("verify", "--all", env=env).returncode == 1  # the compromise stands

        # An archived CRL damaged in the store clears no token: verify says why.
        newest = _rows(env)[0][-1].crl_sha256
        damaged = Path(env["EVIDENCE_DATA_DIR"]) / "objects" / "sha256" / newest[:2] / newest[2:4]
        damaged = damaged / newest
        os.chmod(damaged, 0o644)
        damaged.write_bytes(b"not a CRL any more")
        proc = run_cli("verify", "--all", "--json", env=env)
        assert proc.returncode == 1
        messages = [p["message"] for p in json.loads(proc.stdout)["problems"]]
        assert any("revocation data unreadable" in m for m in messages)


def _env(tsa: LocalTSA, tmp_path: Path, db_url: str, *cas: bytes) -> dict[str, str]:
    paths = []
    for n, pem in enumerate([tsa.ca_pem, *cas]):
        path = tmp_path / f"ca-{n}.pem"
        path.write_bytes(pem)
        paths.append(str(path))
    return {
        "EVIDENCE_DATA_DIR": str(tmp_path / "data"),
        "EVIDENCE_DB_URL": db_url,
        "EVIDENCE_TIMESTAMPS__TSA_URLS": json.dumps([tsa.url]),
        "EVIDENCE_TIMESTAMPS__TRUST_ANCHORS": json.dumps(paths),
        "EVIDENCE_TIMESTAMPS__TIMEOUT": "3",
    }


def test_a_renewal_keeps_a_token_whose_tsa_key_leaks_later(tmp_path: Path, db_url: str) -> None:
    """An archive timestamp (a token over the old reply) made before a key compromise proves
    the old token existed then: the compromise no longer makes it fall."""

    with (
        LocalTSA(tsa_not_after=datetime.now(UTC) + timedelta(days=20)) as first,
        LocalTSA(key_type="ec") as second,
    ):
        env = _env(first, tmp_path, db_url, second.ca_pem)
        doc = tmp_path / "ad.txt"
        doc.write_text("political ad, archived\n")
        [result] = json.loads(run_cli("ingest", str(doc), "--json", env=env, check=True).stdout)

        # The first TSA's certificate ends in 20 days: a renewal with a 30-day horizon picks it
        # (and the custody anchor's token); nothing is due with a 10-day horizon.
        env["EVIDENCE_TIMESTAMPS__TSA_URLS"] = json.dumps([second.url])
        none = run_cli("timestamp", "renew", "--expiring-within", "10", "--json", env=env)
        assert json.loads(none.stdout)["renewed"] == []
        renewed = json.loads(
            run_cli(
                "timestamp", "renew", "--expiring-within", "30", "--json", env=env, check=True
            ).stdout
        )
        assert len(renewed["renewed"]) == 2 and renewed["failed"] == []

        index = Index(env["EVIDENCE_DB_URL"])
        with index.session() as session:
            original = session.scalars(
                select(TimestampRecord).where(TimestampRecord.snapshot_id == result["snapshot"])
            ).one()
            renewal = session.scalars(
                select(TimestampRecord).where(TimestampRecord.renews_id == original.id)
            ).one()
        index.dispose()
        objects = Path(env["EVIDENCE_DATA_DIR"]) / "objects" / "sha256"

        def obj(digest: str) -> Path:
            return objects / digest[:2] / digest[2:4] / digest

        # openssl checks the renewal over the old reply file itself.
        ca2 = Path(json.loads(env["EVIDENCE_TIMESTAMPS__TRUST_ANCHORS"])[1])
        check = subprocess.run(
            [
                "openssl",
                "ts",
                "-verify",
                "-data",
                str(obj(original.reply_sha256)),
                "-in",
                str(obj(renewal.reply_sha256)),
                "-CAfile",
                str(ca2),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert "Verification: OK" in check.stdout, check.stdout + check.stderr
        verified = json.loads(run_cli("verify", "--all", "--json", env=env, check=True).stdout)
        [stamp] = verified["results"][0]["timestamps"]
        assert stamp["renewed"] == [renewal.gen_time.isoformat()]

        # Later the first TSA's key is reported compromised (after the renewal).
        crl = tmp_path / "first.crl"
        crl.write_bytes(
            first.crl_pem(
                revoked_at=datetime.now(UTC) + timedelta(seconds=5),
                reason=x509.ReasonFlags.key_compromise,
                issued_at=datetime.now(UTC) + timedelta(seconds=6),
            )
        )
        with_crl = env | {"EVIDENCE_TIMESTAMPS__CRLS": json.dumps([str(crl)])}
        kept = json.loads(run_cli("verify", "--all", "--json", env=with_crl, check=True).stdout)
        [stamp] = kept["results"][0]["timestamps"]
        assert any("a renewal shows the token existed" in line for line in stamp["revocation"])

        # An exhibit of the snapshot carries the renewal beside the token; the bundle's
        # verifier and VERIFY.md's openssl command check it offline.
        bundle = tmp_path / "bundle"
        exhibit = ["exhibit", "build", result["snapshot"], "--case", "X", "-o", str(bundle)]
        run_cli(*exhibit, env=env, check=True)
        [snap] = json.loads((bundle / "BUNDLE.json").read_text())["exhibits"][0]["snapshots"]
        [token] = snap["timestamps"]
        [again] = token["renewals"]
        assert again["renews"] == token["file"] and again["gen_time"].startswith(
            renewal.gen_time.isoformat()[:19]
        )
        offline = run_cli("exhibit", "verify", str(bundle), env={})
        assert offline.returncode == 0 and "and 1 renewal(s) verified" in offline.stdout
        command = next(
            line
            for line in (bundle / "VERIFY.md").read_text().splitlines()
            if line.startswith("openssl ts -verify") and again["file"] in line
        )
        assert f"-data {token['file']}" in command
        checked = subprocess.run(command, shell=True, cwd=bundle, capture_output=True, text=True)
        assert "Verification: OK" in checked.stdout, checked.stdout + checked.stderr

        # A renewal that does not cover the token's reply is reported, not trusted.
        db = create_engine(env["EVIDENCE_DB_URL"])
        with db.begin() as conn:
            conn.execute(
                update(TimestampRecord)
                .where(TimestampRecord.id == renewal.id)
                .values(imprint="00" * 32)
            )
        db.dispose()
        broken = run_cli("verify", "--all", "--json", env=with_crl)
        assert broken.returncode == 1
        messages = [p["message"] for p in json.loads(broken.stdout)["problems"]]
        assert any(f"renewal timestamp {renewal.id} covers" in m for m in messages)
