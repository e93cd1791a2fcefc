"""Court exhibits end to end: real captures of the fixture site (Chromium and plain HTTP), a
file in a Merkle-mode run, the local TSA, real WeasyPrint PDFs read back with poppler, and the
VERIFY.md commands run in a shell with coreutils, OpenSSL and unzip."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from exhibits.items import ExhibitError, parse_ref, resolve_item
from exhibits.verify import verify_bundle
from fixtures.site import FixtureSite
from fixtures.tsa import LocalTSA
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

if not Path("/usr/bin/chromium").exists() or not shutil.which("pdftotext"):  # pragma: no cover
    pytest.skip("Chromium and poppler-utils are needed (make setup)", allow_module_level=True)

SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "samples" / "README.md"
CASE = "Verbraucherzentrale e. V. ./. Plattform GmbH – Übermaß & Größe"  # noqa: RUF001 (typography of a court document)
LONG_QUERY = "?utm_source=" + "verbraucherschutz-" * 12 + "&ref=" + "x" * 90 + "&page=2"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A browser capture, two HTTP captures and a file (Merkle mode), all timestamped."""
    root = tmp_path_factory.mktemp("exhibits")
    with FixtureSite() as site, LocalTSA(publish_crl=True) as tsa:
        ca = root / "tsa-ca.pem"
        ca.write_bytes(tsa.ca_pem)
        env = {
            "EVIDENCE_DATA_DIR": str(root / "data"),
            "EVIDENCE_ALLOW_PRIVATE": "true",
            "EVIDENCE_TIMESTAMPS__TSA_URLS": json.dumps([tsa.url]),
            "EVIDENCE_TIMESTAMPS__TRUST_ANCHORS": json.dumps([str(ca)]),
            "EVIDENCE_TIMESTAMPS__SOURCES": json.dumps({"files": "merkle"}),
        }
        ids = {}
        browser = run_cli("capture", "--browser", site.url("/@alice"), "--json", env=env)
        assert browser.returncode == 0, browser.stderr
        [page] = [o for o in json.loads(browser.stdout) if o["mode"] == "browser"]
        ids["browser"] = page["snapshot"]
        http = run_cli("capture", "--http", site.url("/redirect/1"), "--json", env=env, check=True)
        [page] = [o for o in json.loads(http.stdout) if o["mode"] == "http"]
        ids["http"] = page["snapshot"]
        long = run_cli(
            "capture",
            "--http",
            site.url("/@alice/post/1001" + LONG_QUERY),
            "--json",
            env=env,
            check=True,
        )
        [page] = [o for o in json.loads(long.stdout) if o["mode"] == "http"]
        ids["long"] = page["snapshot"]
        ingest = run_cli("ingest", str(SAMPLE), "--json", env=env, check=True)
        ids["file"] = json.loads(ingest.stdout)[0]["snapshot"]
        bundle = root / "bundle"
        built = run_cli(
            "exhibit",
            "build",
            ids["browser"],
            ids["http"],
            ids["file"][:12],
            ids["long"],
            "--case",
            CASE,
            "-o",
            str(bundle),
            "--json",
            env=env,
        )
        assert built.returncode == 0, built.stderr
        zipped = root / "bundle-en.zip"
        built_zip = run_cli(
            "exhibit",
            "build",
            ids["http"],
            "--case",
            CASE,
            "--lang",
            "en",
            "--prefix",
            "B",
            "--start",
            "7",
            "-o",
            str(zipped),
            "--json",
            env=env,
        )
        assert built_zip.returncode == 0, built_zip.stderr
        yield {
            "env": env,
            "root": root,
            "ids": ids,
            "bundle": bundle,
            "result": json.loads(built.stdout),
            "zip": zipped,
            "zip_result": json.loads(built_zip.stdout),
            "tsa": tsa,
        }


def _copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / bundle.name
    shutil.copytree(bundle, target)
    return target


def test_bundle_holds_pdfs_originals_and_proofs(archive: dict) -> None:
    bundle, result = archive["bundle"], archive["result"]
    assert [e["label"] for e in result["exhibits"]] == ["K1", "K2", "K3", "K4"]
    for name in (
        "Anlagenverzeichnis.pdf",
        "K1.pdf",
        "K2.pdf",
        "K3.pdf",
        "VERIFY.md",
        "BUNDLE.json",
        "SHA256SUMS",
        "BUNDLE.sha256",
        "BUNDLE.tsr",
        "trust/tsa-anchors.pem",
        "keys/keys.json",
    ):
        assert (bundle / name).is_file(), name
    for role in ("capture.warc.gz", "screenshot.png", "page.pdf", "dom.html"):
        assert (bundle / "K1" / "artifacts" / role).is_file()
    assert (bundle / "K1" / "capture.wacz").is_file()
    assert (bundle / "K3" / "timestamps" / "merkle-proof.json").is_file()
    sums = (bundle / "SHA256SUMS").read_bytes()
    assert hashlib.sha256(sums).hexdigest() == result["digest"]
    assert result["timestamp"]["tsa"] == archive["tsa"].url
    manifest = (bundle / "K1" / "manifest.json").read_bytes()
    assert hashlib.sha256(manifest).hexdigest() == archive["ids"]["browser"]


def test_revocation_is_checked_offline_with_the_bundled_crls(archive: dict) -> None:
    bundle = archive["bundle"]
    meta = json.loads((bundle / "BUNDLE.json").read_text())
    [crl] = meta["crls"]  # the local TSA's CA publishes one, archived after each run
    assert (bundle / crl["file"]).is_file() and "NOT TRUSTED" in crl["issuer"]
    assert "openssl crl" in (bundle / "VERIFY.md").read_text()
    check = verify_bundle(bundle)
    assert check.ok, check.problems
    assert not [u for u in check.unchecked if "revocation" in u], check.unchecked


def test_exported_custody_entry_names_the_bundle_digest(archive: dict) -> None:
    proc = run_cli(
        "custody", "show", archive["ids"]["browser"], "--json", env=archive["env"], check=True
    )
    entries = json.loads(proc.stdout)["entries"]
    [exported] = [e for e in entries if e["action"] == "exported"]
    assert exported["details"]["sha256"] == archive["result"]["digest"]
    assert exported["details"]["format"] == "exhibit-bundle"
    assert exported["details"]["timestamp"]["gen_time"]


def test_verify_offline_folder_and_zip(archive: dict) -> None:
    for path in (archive["bundle"], archive["zip"]):
        proc = run_cli("exhibit", "verify", str(path), "--json")  # no EVIDENCE_* at all
        assert proc.returncode == 0, proc.stdout + proc.stderr
        check = json.loads(proc.stdout)
        assert check["ok"] and check["bundle_timestamp"]
        assert check["signatures"] == check["snapshots"]
        assert check["timestamps"] == check["snapshots"] + 1
    zipped = run_cli("exhibit", "verify", str(archive["zip"]), "--json")
    assert json.loads(zipped.stdout)["exhibits"] == 1
    assert archive["zip_result"]["exhibits"][0]["label"] == "B7"


def test_verify_md_commands_pass_in_a_shell(archive: dict, tmp_path: Path) -> None:
    bundle = _copy(archive["bundle"], tmp_path)
    text = (bundle / "VERIFY.md").read_text()
    assert "Prüfanleitung" in text and "How to verify" in text
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    script = "set -euo pipefail\n" + "".join(blocks)
    proc = subprocess.run(
        ["bash", "-c", script], cwd=bundle, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("Verification: OK") == 5  # the bundle and four snapshots
    assert "Signature Verified Successfully" in proc.stdout
    assert "Merkle proof OK" in proc.stdout
    # and the same commands catch a change
    warc = bundle / "K2" / "artifacts" / "capture.warc.gz"
    data = bytearray(warc.read_bytes())
    data[100] ^= 1
    warc.chmod(0o644)
    warc.write_bytes(bytes(data))
    failed = subprocess.run(["bash", "-c", script], cwd=bundle, capture_output=True, text=True)
    assert failed.returncode != 0 and "K2/artifacts/capture.warc.gz: FAILED" in failed.stdout


def test_a_flipped_byte_in_any_file_is_named(archive: dict, tmp_path: Path) -> None:
    bundle = _copy(archive["bundle"], tmp_path)
    files = sorted(p for p in bundle.rglob("*") if p.is_file())
    assert len(files) > 40
    for path in files:
        name = path.relative_to(bundle).as_posix()
        original = path.read_bytes()
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0x01
        path.chmod(0o644)
        path.write_bytes(bytes(flipped))
        try:
            check = verify_bundle(bundle)
        finally:
            path.write_bytes(original)
        assert not check.ok, f"a flipped byte in {name} went unnoticed"
        assert any(name in str(p) for p in check.problems), (name, check.problems)
    assert verify_bundle(bundle).ok


def test_added_file_and_cli_exit_codes(archive: dict, tmp_path: Path) -> None:
    bundle = _copy(archive["bundle"], tmp_path)
    (bundle / "K1" / "note.txt").write_text("added later")
    proc = run_cli("exhibit", "verify", str(bundle))
    assert proc.returncode == 1
    assert "K1/note.txt" in proc.stdout and "not listed in SHA256SUMS" in proc.stdout
    assert run_cli("exhibit", "verify", str(tmp_path / "nothing")).returncode == 2


def _pdf_text(path: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_pdfs_print_the_digests_of_the_files(archive: dict, tmp_path: Path) -> None:
    bundle = archive["bundle"]
    meta = json.loads((bundle / "BUNDLE.json").read_text())
    index_text = _pdf_text(bundle / "Anlagenverzeichnis.pdf")
    assert "Anlagenverzeichnis" in index_text and "Übermaß & Größe" in index_text
    for exhibit in meta["exhibits"]:
        pdf = bundle / exhibit["pdf"]
        digest = hashlib.sha256(pdf.read_bytes()).hexdigest()
        assert digest in index_text, exhibit["label"]
        text = _pdf_text(pdf)
        assert f"Anlage {exhibit['label']}" in text
        for snap in exhibit["snapshots"]:
            assert snap["id"] in text
            for artifact in snap["artifacts"]:
                on_disk = hashlib.sha256((bundle / artifact["path"]).read_bytes()).hexdigest()
                assert on_disk in text, (exhibit["label"], artifact["path"])
            for token in snap["timestamps"]:
                assert token["serial"] in text
        assert "Europe/Berlin" in text and ("MEZ" in text or "MESZ" in text)
    # a long URL is wrapped, never cut: all of it is on the page
    k4 = "".join(_pdf_text(bundle / "K4.pdf").split())
    assert LONG_QUERY in k4
    k1 = _pdf_text(bundle / "K1.pdf")
    assert "Bildschirmfoto, Teil 1 von" in k1 and "Chrome/" in k1


def test_pdfs_are_pdfa_with_embedded_fonts_and_render(archive: dict, tmp_path: Path) -> None:
    pdf = archive["bundle"] / "K1.pdf"
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True)
    rows = fonts.stdout.splitlines()[2:]
    assert rows and all(" yes " in row for row in rows), fonts.stdout
    from pypdf import PdfReader

    root = PdfReader(pdf).trailer["/Root"]
    xmp = root["/Metadata"].get_object().get_data().decode()
    assert re.search(r"pdfaid:part[^0-9]*2", xmp) and "pdfaid:conformance" in xmp
    assert root["/OutputIntents"]  # PDF/A: the sRGB output intent
    subprocess.run(
        ["pdftoppm", "-r", "40", "-png", "-f", "1", "-l", "4", str(pdf), str(tmp_path / "p")],
        check=True,
    )
    pages = sorted(tmp_path.glob("p-*.png"))
    assert len(pages) == 4 and all(p.stat().st_size > 5_000 for p in pages)


def test_english_zip_bundle(archive: dict, tmp_path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(archive["zip"]) as z:
        z.extractall(tmp_path)
    [folder] = list(tmp_path.iterdir())
    text = _pdf_text(folder / "B7.pdf")
    assert "Exhibit B7" in text and "Captured (UTC)" in text and "Europe/Berlin" in text
    assert "Index of exhibits" in _pdf_text(folder / "Exhibit-index.pdf")


def test_records_not_in_the_index_are_refused_clearly(archive: dict) -> None:
    expected = {"ad:123": "no such ad", "sor:abc": "no statement", "post:x/1": "no such post"}
    for ref, message in expected.items():
        proc = run_cli(
            "exhibit",
            "build",
            ref,
            "--case",
            "X",
            "-o",
            str(archive["root"] / "no"),
            env=archive["env"],
        )
        assert proc.returncode == 2
        assert message in proc.stderr, proc.stderr
    assert parse_ref("snapshot:abcdef")[0].name == "snapshot"
    with pytest.raises(ExhibitError, match="unknown kind"):
        resolve_item(None, "video:1")  # type: ignore[arg-type]
    assert not (archive["root"] / "no").exists()
