"""Archived revocation data: CRLs fetched from the TSA certificate's distribution point, checked,
archived with a custody entry, and used by `evidence verify` (long-term validation)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import select

from evidence_store.index import Index
from evidence_store.index.models import CustodyEvent, RevocationList
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
