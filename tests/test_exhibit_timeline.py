"""Timeline exhibits end to end: a page of the fixture site captured while it changes and after
it is taken down (two Chromium captures, one HTTP capture), the timeline bundle built through
the CLI with the local TSA, its PDF read back with poppler, checked offline; and the pieces
that find the differences, on plain text."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from exhibits.texts import utc_text
from exhibits.timeline import changed_figures, text_diff, visible_text
from exhibits.verify import verify_bundle
from fixtures.site import FixtureSite
from fixtures.tsa import LocalTSA
from schemas import format_rfc3339, parse_rfc3339
from tests.conftest import run_cli

HAVE_TOOLS = Path("/usr/bin/chromium").exists() and shutil.which("pdftotext") is not None
CASE = "Verbraucherzentrale e. V. ./. Plattform GmbH – Übermaß & Größe"  # noqa: RUF001 (typography of a court document)

BEFORE = """
<article class="card"><h1>Beitrag von @alice</h1>
<p>Grüße aus München: unser Angebot für Größe XL.</p>
<p><span class="count">1.204</span> Likes · <span>87</span> Kommentare · 15.300 Aufrufe</p>
<p>Angebot gilt nur heute.</p>
<p>Impressum: Fixturegram GmbH</p></article>
"""
AFTER = """
<article class="card"><h1>Beitrag von @alice</h1>
<p>Grüße aus München: unser Angebot für Größe XL.</p>
<p><span class="count">3.870</span> Likes · <span>87</span> Kommentare · 41.002 Aufrufe</p>
<p>Angebot gilt bis Freitag.</p>
<p>Jetzt 20 % Rabatt für Neukunden!</p>
<p>Impressum: Fixturegram GmbH</p></article>
"""


# -- the pieces, on text ------------------------------------------------------------------------
def test_visible_text_keeps_inline_runs_and_drops_what_is_not_shown() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        "<p><b>1.204</b> Likes</p><script>var x = 1;</script><div hidden>versteckt</div>"
        "<ul><li>Grüße</li><li>aus<br>München</li></ul></body></html>"
    ).encode()
    assert visible_text(html) == ["1.204 Likes", "Grüße", "aus", "München"]


def test_diff_marks_words_and_lines_and_figures_are_paired() -> None:
    old = ["Kopf", "1.204 Likes · 87 Kommentare", "Angebot gilt nur heute.", "Fuß"]
    new = ["Kopf", "3.870 Likes · 87 Kommentare", "Angebot gilt bis Freitag.", "Neu!", "Fuß"]
    [hunk] = text_diff(old, new)
    signs = [(row.sign, row.text) for row in hunk]
    assert ("-", "1.204 Likes · 87 Kommentare") in signs
    assert ("+", "3.870 Likes · 87 Kommentare") in signs
    assert ("+", "Neu!") in signs and (" ", "Kopf") in signs
    plus = next(r for r in hunk if r.sign == "+" and "Freitag" in r.text)
    assert ("ins", "bis Freitag") in plus.segments  # the changed words, not the whole line
    figures = changed_figures(old, new)
    assert [(f.old, f.new) for f in figures] == [("1.204", "3.870")]
    assert figures[0].context == "3.870 Likes · 87 Kommentare"
    assert text_diff(old, old) == [] and changed_figures(old, old) == []


# -- end to end ---------------------------------------------------------------------------------
def _capture(site_url: str, mode: str, env: dict[str, str]) -> str:
    proc = run_cli("capture", f"--{mode}", site_url, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    [page] = [o for o in json.loads(proc.stdout) if o["mode"] == mode]
    return page["snapshot"]


@pytest.fixture(scope="module")
def timeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """T1 and T2 in Chromium (the counts and a sentence change), T3 over HTTP after the page
    was taken down (404); then the timeline bundle of the page."""
    if not HAVE_TOOLS:  # pragma: no cover
        pytest.skip("Chromium and poppler-utils are needed (make setup)")
    root = tmp_path_factory.mktemp("timeline")
    with FixtureSite() as site, LocalTSA() as tsa:
        ca = root / "tsa-ca.pem"
        ca.write_bytes(tsa.ca_pem)
        env = {
            "EVIDENCE_DATA_DIR": str(root / "data"),
            "EVIDENCE_ALLOW_PRIVATE": "true",
            "EVIDENCE_TIMESTAMPS__TSA_URLS": json.dumps([tsa.url]),
            "EVIDENCE_TIMESTAMPS__TRUST_ANCHORS": json.dumps([str(ca)]),
            "EVIDENCE_TIMESTAMPS__ARCHIVE_CRLS": "false",
        }
        url = site.url("/mutable/post-1001")
        site.set_mutable("post-1001", BEFORE, title="Beitrag 1001")
        ids = [_capture(url, "browser", env)]
        site.set_mutable("post-1001", AFTER, title="Beitrag 1001")
        ids.append(_capture(url, "browser", env))
        site.set_mutable("post-1001", None, status=404)
        ids.append(_capture(url, "http", env))
        bundle = root / "timeline"
        built = run_cli(
            "exhibit", "timeline", url, "--case", CASE, "--start", "3", "-o", str(bundle),
            "--json", env=env,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
        yield {
            "env": env,
            "root": root,
            "url": url,
            "ids": ids,
            "bundle": bundle,
            "result": json.loads(built.stdout),
            "tsa": tsa,
        }


def _pdf_text(path: Path, *layout: str) -> str:
    return subprocess.run(
        ["pdftotext", *layout, str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.slow
def test_timeline_bundle_holds_every_capture(timeline: dict) -> None:
    bundle, result, ids = timeline["bundle"], timeline["result"], timeline["ids"]
    [exhibit] = result["exhibits"]
    assert exhibit["label"] == "K3" and exhibit["kind"] == "timeline"
    assert exhibit["snapshots"] == ids  # oldest first
    assert result["timestamp"]["tsa"] == timeline["tsa"].url
    for n, sid in enumerate(ids, start=1):
        folder = bundle / "K3" / f"T{n}-{sid[:12]}"
        assert (folder / "manifest.json").is_file() and (folder / "capture.wacz").is_file()
    assert (bundle / "K3" / f"T1-{ids[0][:12]}" / "artifacts" / "screenshot.png").is_file()
    assert "K3.pdf" in (bundle / "SHA256SUMS").read_text()
    index = _pdf_text(bundle / "Anlagenverzeichnis.pdf")
    assert "Verlauf von" in index and exhibit["pdf_sha256"] in index
    for sid in ids:  # every capture's export is in its custody trail
        proc = run_cli("custody", "show", sid, "--json", env=timeline["env"], check=True)
        [exported] = [e for e in json.loads(proc.stdout)["entries"] if e["action"] == "exported"]
        assert exported["details"]["sha256"] == result["digest"]
        assert exported["details"]["exhibit"] == "K3"


@pytest.mark.slow
def test_timeline_pdf_says_present_changed_gone_with_the_changes(timeline: dict) -> None:
    bundle = timeline["bundle"]
    meta = json.loads((bundle / "BUNDLE.json").read_text())
    times = [utc_text(parse_rfc3339(s["captured_at"])) for s in meta["exhibits"][0]["snapshots"]]
    text = _pdf_text(bundle / "K3.pdf", "-layout")
    flat = " ".join(text.split())
    assert "Anlage K3" in text and "Übermaß & Größe" in text
    # the timeline table: each capture's time and its finding, in order
    rows = [
        f"T1 {times[0]}",
        "vorhanden – erste Erfassung",  # noqa: RUF001 (typography of a court document)
        f"T2 {times[1]}",
        "geändert – Text gegenüber T1 geändert",  # noqa: RUF001 (typography of a court document)
        f"T3 {times[2]}",
        "nicht mehr vorhanden – Server antwortete mit HTTP-Status 404",  # noqa: RUF001 (typography of a court document)
    ]
    positions = [flat.find(row) for row in rows]
    assert all(p >= 0 for p in positions), list(zip(rows, positions, strict=True))
    assert positions == sorted(positions)
    # the changed figures, old → new, and the text diff with its signs
    assert re.search(r"1\.204 → 3\.870", text) and re.search(r"15\.300 → 41\.002", text)
    assert "87 →" not in text
    assert re.search(r"^\s*-\s+Angebot gilt nur heute\.", text, re.M)
    assert re.search(r"^\s*\+\s+Angebot gilt bis Freitag\.", text, re.M)
    assert re.search(r"^\s*\+\s+Jetzt 20 % Rabatt für Neukunden!", text, re.M)
    assert "Grüße aus München" in text  # umlauts, from the archived DOM
    # the 404 page's own words, and the screenshots side by side
    assert "This content is no longer available." in flat
    assert "Bildschirmfotos nebeneinander" in flat and "T1 (links" in flat
    # every capture's proofs: artifact digests and token serials
    for snap in meta["exhibits"][0]["snapshots"]:
        assert snap["id"] in text
        for artifact in snap["artifacts"]:
            assert artifact["sha256"] in text
        for token in snap["timestamps"]:
            assert token["serial"] in text


@pytest.mark.slow
def test_timeline_pdf_renders_with_the_pair_on_a_landscape_page(
    timeline: dict, tmp_path: Path
) -> None:
    pdf = timeline["bundle"] / "K3.pdf"
    info = subprocess.run(["pdfinfo", "-l", "99", str(pdf)], capture_output=True, text=True)
    sizes = re.findall(r"Page\s+\d+ size:\s+([\d.]+) x ([\d.]+)", info.stdout)
    assert any(float(w) > float(h) for w, h in sizes)  # landscape: the side-by-side view
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True)
    assert all(" yes " in row for row in fonts.stdout.splitlines()[2:]), fonts.stdout


@pytest.mark.slow
def test_timeline_verifies_offline_and_names_a_flipped_byte(timeline: dict, tmp_path: Path) -> None:
    bundle = tmp_path / "copy"
    shutil.copytree(timeline["bundle"], bundle)
    proc = run_cli("exhibit", "verify", str(bundle), "--json")  # no EVIDENCE_* at all
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check = json.loads(proc.stdout)
    assert check["ok"] and check["exhibits"] == 1 and check["snapshots"] == 3
    assert check["signatures"] == 3 and check["timestamps"] == 4
    sid = timeline["ids"][1]
    for name in ("K3.pdf", f"K3/T2-{sid[:12]}/artifacts/screenshot.png"):
        path = bundle / name
        original = path.read_bytes()
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0x01
        path.chmod(0o644)
        path.write_bytes(bytes(flipped))
        try:
            failed = run_cli("exhibit", "verify", str(bundle))
        finally:
            path.write_bytes(original)
        assert failed.returncode == 1 and name in failed.stdout, failed.stdout
    assert verify_bundle(bundle).ok


@pytest.mark.slow
def test_timeline_range_english_zip_and_refusals(timeline: dict) -> None:
    env, root, ids = timeline["env"], timeline["root"], timeline["ids"]
    meta = json.loads((timeline["bundle"] / "BUNDLE.json").read_text())
    second = parse_rfc3339(meta["exhibits"][0]["snapshots"][1]["captured_at"])
    zipped = root / "from-t2.zip"
    proc = run_cli(
        "exhibit", "timeline", timeline["url"], "--case", "X", "--lang", "en",
        "--from", format_rfc3339(second), "-o", str(zipped), "--json", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [exhibit] = json.loads(proc.stdout)["exhibits"]
    assert exhibit["snapshots"] == ids[1:] and exhibit["label"] == "K1"
    assert run_cli("exhibit", "verify", str(zipped)).returncode == 0
    import zipfile

    with zipfile.ZipFile(zipped) as archive:
        pdf = archive.read("from-t2/K1.pdf")
    (root / "en.pdf").write_bytes(pdf)
    text = " ".join(_pdf_text(root / "en.pdf").split())
    assert "Timeline of" in text and "present – first capture" in text  # noqa: RUF001 (typography of a court document)
    assert "gone – the server answered with HTTP status 404" in text  # noqa: RUF001 (typography of a court document)
    # nothing in the range, records not in the index, not a URL: refused, nothing written
    early = format_rfc3339(second - timedelta(days=400))
    for ref, extra, message in (
        (timeline["url"], ["--to", early[:10]], "no capture of"),
        ("ad:123", [], "no such ad"),
        ("post:x/1", [], "no such post"),
        ("sor:abc", [], "never changes, so it has no timeline"),
        ("nonsense", [], "a timeline follows a page"),
    ):
        out = root / "refused"
        proc = run_cli("exhibit", "timeline", ref, *extra, "--case", "X", "-o", str(out), env=env)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert message in proc.stderr, proc.stderr
        assert not out.exists()
