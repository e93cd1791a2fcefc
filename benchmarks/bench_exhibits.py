"""exhibits: an exhibit bundle of browser captures, against zipping the same originals.

One real browser capture of the fixture site is made (Chromium); its artifacts (WARC,
full-page screenshot, PDF print, DOM) are then archived again as ``--exhibits`` synthetic
snapshots, each with a metadata artifact of its own, because fifty Chromium captures would
take minutes and measure Chromium, not the exhibits. Each snapshot is timestamped by the local
TSA, so the bundle holds real tokens and the verifier checks them.

Figures (same run): seconds per exhibit, bundle size, peak memory of the building process,
and two ratios. ``build_vs_zip``: the time a plain ``zipfile`` ZIP of the bundle's originals
takes divided by the time of `evidence exhibit build` (PDFs, WACZ, copies, sums): goal 0.3.
``verify_vs_sha256sum``: `sha256sum -c SHA256SUMS` time divided by `exhibit verify` time over
the same files (which also checks signatures, tokens and the WACZ): goal 0.8.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from benchmarks.common import Figure, figure, report, timed


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.cli", *args],
        env=os.environ | env,
        capture_output=True,
        text=True,
    )
    if proc.returncode not in (0,):
        raise SystemExit(f"evidence {' '.join(args[:2])} failed:\n{proc.stderr}")
    return proc


def _synthetic(env: dict[str, str], source_id: str, count: int) -> list[str]:
    """``count`` snapshots with the real capture's artifacts, archived and timestamped."""
    from evidence_store.archive import archive_many
    from evidence_store.timestamps.service import timestamp_snapshots
    from jobs.config import load_settings
    from jobs.context import open_evidence
    from schemas import Capture, CaptureArtifact

    os.environ.update(env)
    settings = load_settings(None)
    evidence = open_evidence(settings)
    manifest = json.loads(evidence.objects.get(source_id))
    artifacts = [
        CaptureArtifact(
            role=a["role"],
            name=a["name"],
            media_type=a["media_type"],
            data=evidence.objects.get(a["sha256"]),
        )
        for a in manifest["artifacts"]
        if a["role"] != "metadata"
    ]
    captures = [
        Capture(
            collection="bench-exhibits",
            kind=manifest["kind"],
            source_url=manifest["source_url"],
            source="bench",
            metadata={**manifest["capture"], "bench_copy": n},
            artifacts=[
                *artifacts,
                CaptureArtifact(
                    role="metadata",
                    name="capture-metadata.json",
                    media_type="application/json",
                    data=json.dumps({**manifest["capture"], "bench_copy": n}).encode(),
                ),
            ],
        )
        for n in range(count)
    ]
    ids = [result.id for result in archive_many(evidence, captures)]
    timestamp_snapshots(evidence, ids, settings.timestamp_settings())
    evidence.index.dispose()
    return ids


def _zip_originals(bundle: Path, target: Path) -> None:
    """The baseline: the same originals (and nothing else) in a ZIP, as one would by hand."""
    with zipfile.ZipFile(target, "x", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(bundle.rglob("*")):
            relative = path.relative_to(bundle).as_posix()
            if path.is_file() and "/" in relative and not relative.startswith(("keys/", "trust/")):
                stored = path.suffix in (".gz", ".png", ".pdf", ".wacz", ".tsr")
                archive.write(
                    path,
                    relative,
                    compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
                )


def main(argv: list[str] | None = None) -> list[Figure]:
    from fixtures.site import FixtureSite
    from fixtures.tsa import LocalTSA

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exhibits", type=int, default=50)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-exhibits-"))
    try:
        with FixtureSite() as site, LocalTSA() as tsa:
            ca = work / "tsa-ca.pem"
            ca.write_bytes(tsa.ca_pem)
            env = {
                "EVIDENCE_DATA_DIR": str(work / "data"),
                "EVIDENCE_ALLOW_PRIVATE": "true",
                "EVIDENCE_TIMESTAMPS__TSA_URLS": json.dumps([tsa.url]),
                "EVIDENCE_TIMESTAMPS__TRUST_ANCHORS": json.dumps([str(ca)]),
                "EVIDENCE_TIMESTAMPS__ARCHIVE_CRLS": "false",
            }
            captured = _cli("capture", "--browser", site.url("/@alice"), "--json", env=env)
            [page] = [o for o in json.loads(captured.stdout) if o["mode"] == "browser"]
            ids = _synthetic(env, page["snapshot"], args.exhibits)
            bundle = work / "bundle"
            with timed() as build:
                _cli("exhibit", "build", *ids, "--case", "bench", "-o", str(bundle), env=env)
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        with timed() as plain:
            _zip_originals(bundle, work / "originals.zip")
        size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
        verify_s, sums_s = [], []
        for _ in range(3):  # alternating, best of three: both read warm files
            with timed() as ours:
                _cli("exhibit", "verify", str(bundle), env={})
            with timed() as coreutils:
                subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=bundle, check=True)
            verify_s.append(ours["seconds"])
            sums_s.append(coreutils["seconds"])
        figures: dict[str, float | int | str] = {
            "exhibits": args.exhibits,
            "synthetic": "artifacts of one real browser capture, re-archived",
            "build_seconds": build["seconds"],
            "seconds_per_exhibit": build["seconds"] / args.exhibits,
            "bundle_mb": size / 1e6,
            "build_peak_rss_mb": peak_mb,
            "zip_originals_seconds": plain["seconds"],
            "build_vs_zip (goal >= 0.3)": plain["seconds"] / build["seconds"],
            "verify_seconds": min(verify_s),
            "sha256sum_c_seconds": min(sums_s),
            "verify_vs_sha256sum (goal >= 0.8)": min(sums_s) / min(verify_s),
        }
        report("exhibits", figures)
        return [
            figure(
                "exhibits",
                "exhibit build s per exhibit",
                build["seconds"] / args.exhibits,
                unit="s",
                baseline=plain["seconds"] / args.exhibits,
                baseline_name="s per exhibit, zip of the originals",
                ratio=plain["seconds"] / build["seconds"],
                goal=0.3,
                note=f"{args.exhibits} exhibits, bundle {size / 1e6:.0f} MB, "
                f"build peak RSS {peak_mb:.0f} MB",
            ),
            figure(
                "exhibits",
                "exhibit verify s",
                min(verify_s),
                unit="s",
                baseline=min(sums_s),
                baseline_name="s sha256sum -c",
                ratio=min(sums_s) / min(verify_s),
                goal=0.8,
            ),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
