"""VERIFY.md: how to check a bundle with standard tools alone, in German and English.

Every command is written for this very bundle (its file names and digests), to be run in the
bundle's folder with coreutils, OpenSSL 3, unzip and python3 (for the few lines that recompute a
Merkle inclusion proof). Each command exits 0 when its check passes; the tests run them all.
"""

from __future__ import annotations

import shlex
from typing import Any

from schemas import parse_rfc3339

MERKLE_SCRIPT = """\
import hashlib, json, sys
proof = json.load(open(sys.argv[1]))
manifest_id = hashlib.sha256(open(sys.argv[2], "rb").read()).hexdigest()
assert proof["snapshot"] == manifest_id, "the proof is for another manifest"
H = lambda data: hashlib.sha256(data).digest()
fn, sn = proof["leaf_index"], proof["tree_size"] - 1
node = H(b"\\x00" + bytes.fromhex(manifest_id))
for sibling in map(bytes.fromhex, proof["path"]):
    assert sn > 0, "proof too long"
    if fn & 1 or fn == sn:
        node = H(b"\\x01" + sibling + node)
        while not fn & 1 and fn:
            fn, sn = fn >> 1, sn >> 1
    else:
        node = H(b"\\x01" + node + sibling)
    fn, sn = fn >> 1, sn >> 1
assert sn == 0 and node.hex() == proof["root"], "the proof does not lead to the root"
leaves = open(proof["leaves"]).read().split()
assert leaves[proof["leaf_index"]] == manifest_id, "leaf list names another snapshot"
print("Merkle proof OK: root", proof["root"])
"""


def _q(path: str) -> str:
    return shlex.quote(path)


def _ts_verify(
    token: str,
    ca: str,
    *,
    data: str | None = None,
    digest: str | None = None,
    at: int | None = None,
) -> str:
    what = f"-data {_q(data)}" if data else f"-digest {digest}"
    line = f"openssl ts -verify {what} -in {_q(token)} -CAfile {_q(ca)}"
    return line + (f" -attime {at}" if at is not None else "")


def verify_md(bundle: dict[str, Any]) -> str:
    """The VERIFY.md text for a bundle described by its BUNDLE.json content."""
    anchors = bundle["trust_anchors"][0] if bundle["trust_anchors"] else None
    lines = [
        f"# Prüfanleitung / How to verify — {bundle['case']}",
        "",
        "Dieses Bündel lässt sich ohne unsere Software prüfen: mit `sha256sum` (coreutils), "
        "`openssl` (Version 3), `unzip` und `python3`. Alle Befehle im Ordner des Bündels "
        "ausführen (bei einer ZIP-Datei zuerst `unzip BUNDLE.zip` und in den entpackten Ordner "
        "wechseln). Jeder Befehl endet mit Status 0, wenn die Prüfung gelingt; "
        "`sha256sum -c` meldet `OK`, `openssl ts -verify` meldet `Verification: OK`, "
        "`openssl pkeyutl -verify` meldet `Signature Verified Successfully`.",
        "",
        "This bundle can be checked without our software, with `sha256sum` (coreutils), "
        "`openssl` (version 3), `unzip` and `python3`. Run every command in the bundle's folder "
        "(for a ZIP file, `unzip` it first and change into the folder it holds). Each command "
        "exits 0 when its check passes; `sha256sum -c` prints `OK`, `openssl ts -verify` prints "
        "`Verification: OK`, `openssl pkeyutl -verify` prints "
        "`Signature Verified Successfully`.",
        "",
        "With our software / mit unserer Software: `evidence exhibit verify .` checks all of "
        "the following at once, offline.",
        "",
        "## 1. Vollständigkeit / Integrity of every file",
        "",
        "SHA256SUMS listet jede Datei des Bündels mit ihrem SHA-256-Wert; BUNDLE.sha256 "
        "enthält den SHA-256-Wert von SHA256SUMS, den Hashwert des ganzen Bündels. / "
        "SHA256SUMS lists every file of the bundle with its SHA-256; BUNDLE.sha256 holds the "
        "SHA-256 of SHA256SUMS, the digest of the whole bundle.",
        "",
        "```sh",
        "sha256sum -c BUNDLE.sha256",
        "sha256sum -c --strict SHA256SUMS",
        "```",
        "",
        "## 2. Zeitstempel des Bündels / Timestamp of the bundle",
        "",
        "Wenn ein Zeitstempeldienst eingerichtet war, deckt BUNDLE.tsr (RFC 3161) den Hashwert "
        "von SHA256SUMS ab; BUNDLE-TIMESTAMP.txt nennt Dienst und Zeitpunkt oder, warum es "
        "keinen Zeitstempel gibt. Nach Ablauf des TSA-Zertifikats `-attime <genTime als "
        "Unix-Sekunden>` anfügen (steht in BUNDLE-TIMESTAMP.txt). / When a time-stamping "
        "authority was configured, BUNDLE.tsr (RFC 3161) covers the digest of SHA256SUMS; "
        "BUNDLE-TIMESTAMP.txt names the TSA and the time, or why there is no token. Once the "
        "TSA certificate has expired, add `-attime <genTime as Unix seconds>` (given in "
        "BUNDLE-TIMESTAMP.txt).",
        "",
    ]
    if anchors:
        lines += [
            "```sh",
            "if [ -f BUNDLE.tsr ]; then "
            + _ts_verify("BUNDLE.tsr", anchors, data="SHA256SUMS")
            + "; else cat BUNDLE-TIMESTAMP.txt; fi",
            "```",
            "",
        ]
    else:
        lines += ["(Keine TSA-Vertrauensanker im Bündel / no TSA trust anchors in the bundle.)", ""]
    lines += [
        "## 3. Die Anlagen / The exhibits",
        "",
        "Für jeden Snapshot: (a) der SHA-256-Wert des Manifests ist die Snapshot-ID; (b) die "
        "Ed25519-Signatur des Manifests ist gültig, und der Schlüssel hat den genannten "
        "Fingerabdruck; (c) das Manifest nennt den SHA-256-Wert jeder Datei, und die Datei hat "
        "ihn; (d) der Zeitstempel deckt das Manifest ab (direkt oder über eine Merkle-Wurzel); "
        "(e) das WACZ enthält das WARC unverändert. / For each snapshot: (a) the manifest's "
        "SHA-256 is the snapshot id; (b) its Ed25519 signature is valid and the key has the "
        "fingerprint named; (c) the manifest lists each file's SHA-256, and the file has it; "
        "(d) the timestamp covers the manifest (directly or through a Merkle root); (e) the "
        "WACZ holds the WARC unchanged.",
        "",
    ]
    for exhibit in bundle["exhibits"]:
        for snap in exhibit["snapshots"]:
            lines += _snapshot_commands(exhibit["label"], snap, anchors)
    lines += [
        "## 4. Schlüsselhistorie / Signing-key history",
        "",
        "keys/ enthält alle Signaturschlüssel des Archivs mit ihren Bestätigungen "
        "(keys/README.txt erklärt sie). / keys/ holds every signing key of the archive with "
        "its endorsements (keys/README.txt explains them).",
        "",
        "```sh",
        "(cd keys && sha256sum -c --strict SHA256SUMS)",
    ]
    fingerprints = sorted(
        {s["key_fingerprint"] for e in bundle["exhibits"] for s in e["snapshots"]}
    )
    for fp in fingerprints:
        lines.append(f'grep -q \'"fingerprint": "{fp}"\' keys/keys.json')
    lines += ["```", ""]
    lines += _crl_commands(bundle.get("crls") or [], anchors)
    lines += [
        "## Grenzen / Limits",
        "",
        "Ein Zeitstempel beweist, dass die Daten spätestens zu seinem Zeitpunkt vorlagen, nicht "
        "was die Seite zeigte oder wer erfasste: das belegen Signatur und Custody-Log "
        "(custody.json). Der hier beigelegte Vertrauensanker stammt aus dem Archiv selbst; ein "
        "Gutachter sollte das Zertifikat des Zeitstempeldienstes aus eigener Quelle (z. B. der "
        "EU-Vertrauensliste) beziehen. / A timestamp proves the data existed by its time, not "
        "what the page showed or who captured it: the signature and the custody log "
        "(custody.json) speak to that. The trust anchor enclosed here comes from the archive "
        "itself; an expert should take the TSA's certificate from a source of their own (such "
        "as the EU Trusted List).",
        "",
    ]
    return "\n".join(lines)


def _crl_commands(crls: list[dict[str, Any]], anchors: str | None) -> list[str]:
    lines = [
        "## 5. Sperrlisten / Revocation lists",
        "",
    ]
    if not crls or not anchors:
        return [
            *lines,
            "Keine Sperrliste im Bündel: ob ein Zertifikat des Zeitstempeldienstes gesperrt war, "
            "ist hier nicht belegt. / No revocation list in the bundle: whether a certificate of "
            "the time-stamping authority was revoked is not shown here.",
            "",
        ]
    lines += [
        "trust/crls/ enthält die neueste archivierte Sperrliste (CRL) jeder ausstellenden CA. "
        "Der erste Befehl prüft ihre Signatur (`verify OK`), der zweite listet die gesperrten "
        "Seriennummern: die des Zeitstempel-Zertifikats (in den *-chain.pem-Dateien, `openssl "
        "x509 -noout -serial`) darf nicht darunter sein. / trust/crls/ holds the newest "
        "archived revocation list (CRL) of each issuing CA. The first command checks its "
        "signature (`verify OK`), the second lists the revoked serial numbers: the TSA "
        "certificate's (in the *-chain.pem files, `openssl x509 -noout -serial`) must not be "
        "among them.",
        "",
        "```sh",
    ]
    for crl in crls:
        inform = "PEM" if crl.get("format") == "PEM" else "DER"
        # openssl crl exits 0 even on "verify failure": the grep makes the check fail.
        lines.append(
            f"openssl crl -inform {inform} -in {_q(crl['file'])} -CAfile {_q(anchors)} -noout "
            "2>&1 | grep -qx 'verify OK'"
        )
        lines.append(f"openssl crl -inform {inform} -in {_q(crl['file'])} -noout -text")
    return [*lines, "```", ""]


def _renewal_commands(renewals: list[dict[str, Any]], anchors: str) -> list[str]:
    """A renewal is a token over the renewed token's file: openssl checks it with -data."""
    lines = []
    for renewal in renewals:
        at = int(parse_rfc3339(renewal["gen_time"]).timestamp())
        lines.append(_ts_verify(renewal["file"], anchors, data=renewal["renews"], at=at))
        lines += _renewal_commands(renewal.get("renewals") or [], anchors)
    return lines


def _snapshot_commands(label: str, snap: dict[str, Any], anchors: str | None) -> list[str]:
    manifest = snap["manifest"]
    fp = snap["key_fingerprint"].removeprefix("sha256:")
    lines = [
        f"### {label}: Snapshot {snap['id']}",
        "",
        "```sh",
        f"echo '{snap['id']}  {manifest}' | sha256sum -c",
        f"openssl pkeyutl -verify -pubin -inkey {_q(snap['public_key'])} -rawin "
        f"-in {_q(manifest)} -sigfile {_q(snap['signature'])}",
        f"openssl pkey -pubin -in {_q(snap['public_key'])} -outform DER | tail -c 32 | "
        f"sha256sum | grep -q '^{fp} '",
    ]
    for artifact in snap["artifacts"]:
        lines.append(
            f'grep -q \'"sha256":"{artifact["sha256"]}"\' {_q(manifest)} && '
            f"echo '{artifact['sha256']}  {artifact['path']}' | sha256sum -c"
        )
    for token in snap["timestamps"]:
        if not anchors:
            break
        at = int(parse_rfc3339(token["gen_time"]).timestamp())
        if token["covers"] == "snapshot":
            lines.append(_ts_verify(token["file"], anchors, data=manifest, at=at))
        else:
            lines.append(_ts_verify(token["file"], anchors, digest=token["imprint"], at=at))
            lines.append(
                f"python3 - {_q(token['proof'])} {_q(manifest)} <<'EOF'\n{MERKLE_SCRIPT}EOF"
            )
        lines += _renewal_commands(token.get("renewals") or [], anchors)
    if snap.get("wacz"):
        wacz = snap["wacz"]
        lines.append(f"unzip -tq {_q(wacz)}")
        for n, artifact in enumerate(a for a in snap["artifacts"] if a["role"] == "warc"):
            member = f"archive/{snap['id'][:16]}-{n}.warc.gz"
            lines.append(
                f"unzip -p {_q(wacz)} {member} | sha256sum | grep -q '^{artifact['sha256']} '"
            )
    lines += ["```", ""]
    if not snap["timestamps"]:
        lines += [
            "Kein Zeitstempel für diesen Snapshot. / No timestamp for this snapshot.",
            "",
        ]
    return lines
