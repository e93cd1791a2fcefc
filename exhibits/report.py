"""The verification report a legal team attaches to an exhibit: text for people, JSON for tools.

It says who checked what, when, against which trust anchors, with which software, what was
found, and how anyone can redo the checks with standard tools. The file is written once
(never over an existing one) and its SHA-256 goes into the custody log by the caller.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evidence_store.errors import EvidenceError
from evidence_store.manifest import software_versions
from evidence_store.verify import ARCHIVED_ANCHORS_NOTE, VerifyReport

CHECKS = """\
What was checked, for every snapshot in scope:
  1. the manifest object hashes (SHA-256) to the snapshot id, is canonical JSON (RFC 8785)
     and agrees with the index;
  2. the manifest's Ed25519 signature verifies under a key the index trusts;
  3. every artifact (WARC, screenshot, PDF, DOM, files) re-hashes to the SHA-256 and size
     the manifest lists, read back from the object store;
  4. each collection's hash chain links every manifest to the one before it, without gaps;
  5. RFC 3161 timestamp tokens: imprint, signature, certificate chain to the trust anchors
     below, the TSA's timeStamping key usage and validity at the token's time; for tokens
     over a Merkle root, the snapshot's inclusion proof (RFC 9162) and the stored leaf list;
     renewal timestamps over the token's reply (their times are listed as "renewed");
     whether the token claims to be an eIDAS qualified time-stamp (ETSI EN 319 422: a claim
     signed by the TSA; its qualified status is for the EU Trusted List to confirm);
     with CRLs listed below, that no certificate of the TSA's chain was revoked at the
     token's time (nor ever for key compromise); tokens are checked against the trust
     anchors supplied to the verifier, else against those archived with the tokens (each
     token's line says which, with the anchor's SHA-256 fingerprint);
  6. with --all, the custody log: every entry's hash and link to the one before, and every
     timestamped head still present with the hash its token covers; the index against the
     log (every archived snapshot still indexed, every snapshot logged, each collection's
     head and length as logged); every manifest in the object store listed by the index.
What could not be checked (no trust anchor, no CRL, no token) is listed under "Not checked":
a result of plain "OK" means nothing was left unchecked."""

BY_HAND = """\
Redoing the checks without this software (see docs/timestamps.md and docs/keys.md):
  sha256sum manifest.json artifact...             # digests as listed in the manifest
  openssl pkeyutl -verify -pubin -inkey key.pub.pem -rawin -in manifest.json -sigfile sig
  openssl ts -verify -digest <snapshot id or Merkle root> -in token.tsr -CAfile tsa-ca.pem \\
      -untrusted tsa-chain.pem
  openssl verify -crl_check -CAfile tsa-ca.pem -CRLfile tsa-ca.crl tsa.pem   # revocation
  a WARC/WACZ validator (warcio check, wacz validate) on exported WARCs/WACZ files."""


@dataclass(frozen=True)
class ReportContext:
    """Where and by whom the verification ran, for the report's header."""

    actor: str
    database: str
    object_store: str
    scope: str
    trust_anchors: tuple[Path, ...] = ()
    crls: tuple[Path, ...] = ()
    archived_crls: tuple[str, ...] = ()  # "issuer, thisUpdate, sha256" of each one used


def _file_lines(paths: tuple[Path, ...], missing: str) -> list[str]:
    if not paths:
        return [f"  {missing}"]
    lines = []
    for path in paths:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            digest = f"unreadable ({exc.strerror})"
        lines.append(f"  {path}  sha256 {digest}")
    return lines


def render_text(report: VerifyReport, context: ReportContext) -> str:
    """The report as plain text (UTF-8), for people."""
    if report.complete:
        verdict = "OK: no problems found, nothing left unchecked"
    elif report.ok:
        verdict = f"OK with {len(report.unchecked)} UNCHECKED: no problems found, see Not checked"
    else:
        verdict = f"{len(report.problems)} PROBLEM(S) FOUND"
        if report.unchecked:
            verdict += f", {len(report.unchecked)} unchecked"
    versions = software_versions()
    lines = [
        "VERIFICATION REPORT (dsa-evidence)",
        "",
        f"Result:        {verdict}",
        f"Started:       {report.started_at}",
        f"Finished:      {report.finished_at}",
        f"Checked by:    {context.actor}",
        f"Scope:         {context.scope}",
        f"Index:         {context.database}",
        f"Object store:  {context.object_store}",
        "Software:      "
        + ", ".join(f"{name} {version}" for name, version in sorted(versions.items())),
        f"Required:      {', '.join(report.require) or 'nothing beyond the default checks'}",
        "TSA trust anchors supplied:",
        *_file_lines(
            context.trust_anchors,
            "none: tokens were checked against the anchors archived with them, if any",
        ),
        "TSA trust anchors used:",
        *_anchor_lines(report),
        "Revocation lists (CRLs):",
        *_file_lines(context.crls, "no CRL files configured"),
        *[f"  archived: {line}" for line in context.archived_crls],
        "",
        "Summary",
        f"  snapshots checked        {report.snapshots}",
        f"  collections              {report.collections}",
        f"  objects re-hashed        {report.objects}",
        f"  bytes re-hashed          {report.bytes_hashed:,}",
        f"  timestamp tokens valid   {report.timestamps}",
        f"  snapshots untimestamped  {report.untimestamped}",
    ]
    if report.custody is not None:
        custody = report.custody
        lines += [
            f"  custody log entries      {custody['entries']}"
            f" ({'intact' if custody['ok'] else 'BROKEN'})",
            f"  custody log head         {custody['head']}",
            f"  custody anchors valid    {custody['anchors_verified']}",
        ]
    lines += ["", "Problems"]
    lines += [f"  - {problem}" for problem in report.problems] or ["  none"]
    lines += ["", "Not checked"]
    lines += [f"  - {item}" for item in report.unchecked] or ["  nothing"]
    lines += ["", "Snapshots"]
    for result in report.results:
        status = "ok" if not result["problems"] else f"{result['problems']} problem(s)"
        if result.get("unchecked"):
            status += f", {result['unchecked']} unchecked"
        lines.append(
            f"  {result['snapshot']}  {result['collection']} #{result['sequence']}  "
            f"captured {result['captured_at']}  {result['artifacts']} artifact(s), "
            f"{result['bytes']:,} bytes  {status}"
        )
        for stamp in result["timestamps"]:
            claim = ", claims eIDAS qualified" if stamp.get("qualified_claim") else ""
            lines.append(
                f"      timestamp {stamp['gen_time']} by {stamp['tsa']} ({stamp['via']}{claim})"
            )
            if anchor := stamp.get("anchor"):
                lines.append(
                    f"        trust anchor ({anchor['source']}): {anchor['subject']}, "
                    f"sha256 fingerprint {anchor['fingerprint']}"
                )
            lines += [f"        revocation: {said}" for said in stamp.get("revocation", [])]
            lines += [f"        renewed: {when}" for when in stamp.get("renewed", [])]
        if not result["timestamps"]:
            lines.append("      no verified timestamp")
    lines += ["", CHECKS, "", BY_HAND, ""]
    return "\n".join(lines)


def _anchor_lines(report: VerifyReport) -> list[str]:
    if not report.anchors:
        return ["  none: no token was verified"]
    lines = [
        f"  {a['source']}: {a['subject']}, sha256 fingerprint {a['fingerprint']} "
        f"({a['tokens']} token(s))"
        for a in report.anchors
    ]
    if report.archived_anchors_only:
        lines.append(f"  NOTE: tokens marked 'archived' were {ARCHIVED_ANCHORS_NOTE}.")
    return lines


def _file_entries(paths: tuple[Path, ...]) -> list[dict[str, str]]:
    return [
        {"file": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
        for p in paths
        if p.is_file()
    ]


def render_json(report: VerifyReport, context: ReportContext) -> str:
    """The report as JSON, for tools: the same content as the text."""
    data: dict[str, Any] = {
        "report": "dsa-evidence verification",
        "checked_by": context.actor,
        "scope": context.scope,
        "index": context.database,
        "object_store": context.object_store,
        "software": software_versions(),
        "trust_anchors": _file_entries(context.trust_anchors),
        "crls": _file_entries(context.crls),
        "archived_crls": list(context.archived_crls),
        **report.to_dict(),
    }
    data["problems"] = [{**vars(p), "text": str(p)} for p in report.problems]
    data["unchecked"] = [{**vars(u), "text": str(u)} for u in report.unchecked]
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def write_report(
    report: VerifyReport, context: ReportContext, path: Path, fmt: str | None = None
) -> str:
    """Write the report to a new file (``fmt`` text or json; by default from the suffix).

    Returns its SHA-256. An existing file is never overwritten; a half-written report never
    appears under the final name.
    """
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "text")
    if fmt not in ("text", "json"):
        raise EvidenceError(f"unknown report format {fmt!r}: use text or json")
    body = (render_json if fmt == "json" else render_text)(report, context).encode()
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with open(temporary, "xb") as stream:
            stream.write(body)
            stream.flush()
            os.fsync(stream.fileno())
        os.link(temporary, path)  # fails if the report exists: never replaced
    except FileExistsError:
        raise EvidenceError(f"{path} exists: a report is never overwritten") from None
    except OSError as exc:
        raise EvidenceError(f"cannot write the report {path}: {exc.strerror}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return hashlib.sha256(body).hexdigest()
