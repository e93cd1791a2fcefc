"""The words of the exhibit PDFs, in German (for German courts) and English."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

LANGS = ("de", "en")
BERLIN = ZoneInfo("Europe/Berlin")

TEXTS: dict[str, dict[str, str]] = {
    "de": {
        "exhibit": "Anlage",
        "index_title": "Anlagenverzeichnis",
        "index_file": "Anlagenverzeichnis.pdf",
        "case": "Verfahren",
        "built": "Erstellt",
        "page": "Seite",
        "of": "von",
        "capture_of": "Erfassung von",
        "file": "Datei",
        "snapshot": "Snapshot",
        "summary": "Übersicht",
        "requested_url": "Angefragte URL",
        "final_url": "Endgültige URL",
        "redirects": "Weiterleitungen",
        "captured_utc": "Erfasst (UTC)",
        "captured_berlin": "Erfasst (Europe/Berlin)",
        "archived_utc": "Archiviert (UTC)",
        "status": "HTTP-Status",
        "kind": "Art der Erfassung",
        "note": "Anmerkung",
        "snapshot_id": "Snapshot-ID (SHA-256 des Manifests)",
        "chain": "Position in der Hash-Kette",
        "chain_value": "Sammlung „{collection}“, Nr. {sequence}; Vorgänger {previous}",
        "chain_first": "Sammlung „{collection}“, Nr. {sequence}; erstes Glied",
        "screenshot": "Bildschirmfoto der gesamten Seite",
        "screenshot_part": "Bildschirmfoto, Teil {part} von {parts} (Pixel {top}–{bottom} von "  # noqa: RUF001 (typography of a court document)
        "{height}, Breite {width} px, unverkleinert aufgeteilt)",
        "no_screenshot": "Diese Erfassung enthält kein Bildschirmfoto (reine HTTP-Erfassung "
        "oder Datei); der Inhalt liegt im Original (WARC) bei.",
        "environment": "Erfassungsumgebung",
        "software": "Software",
        "browser": "Browser",
        "user_agent": "User-Agent",
        "server_ip": "Server-IP-Adresse",
        "protocol": "Protokoll",
        "capture_host": "Erfassungsrechner",
        "clock": "Zeitquelle",
        "tls": "TLS-Zertifikat",
        "tls_subject": "Inhaber",
        "tls_issuer": "Aussteller",
        "tls_valid": "Gültig",
        "tls_none": "keine (unverschlüsselte Verbindung)",
        "source": "Quelle",
        "artifacts": "Dateien dieser Erfassung (Originale)",
        "role": "Rolle",
        "name": "Datei im Bündel",
        "size": "Größe (Bytes)",
        "sha256": "SHA-256",
        "timestamps": "Zeitstempel (RFC 3161)",
        "tsa": "Zeitstempeldienst",
        "tsa_name": "Zertifikat des Dienstes",
        "serial": "Seriennummer",
        "gen_time": "Zeitpunkt",
        "covers": "Deckt ab",
        "covers_snapshot": "die Snapshot-ID",
        "covers_merkle": "Merkle-Wurzel {root} (Blatt {leaf} von {size}; Nachweis in {file})",
        "token_file": "Token-Datei",
        "qualified": "erklärt sich als qualifizierter Zeitstempel (eIDAS)",
        "no_timestamp": "Kein Zeitstempel: Für diesen Snapshot liegt kein Zeitstempel vor.",
        "signature": "Signatur des Manifests",
        "key_fingerprint": "Fingerabdruck des Signaturschlüssels",
        "signature_file": "Signaturdatei (Ed25519, roh)",
        "public_key_file": "Öffentlicher Schlüssel",
        "custody": "Verwahrungskette (Custody-Log)",
        "when": "Zeitpunkt (UTC)",
        "actor": "Handelnde Stelle",
        "action": "Vorgang",
        "details": "Einzelheiten",
        "custody_note": "Die Ausgabe dieses Bündels wird nach seiner Erstellung als "
        "„exported“ mit dem Hashwert des Bündels im Custody-Log vermerkt.",
        "how_to_verify": "So wird diese Anlage geprüft",
        "verify_steps": "Alle Originale liegen im Bündel im Ordner {folder}/. Jede Datei ist mit "
        "ihrem SHA-256-Wert in SHA256SUMS aufgeführt (Prüfung: sha256sum -c SHA256SUMS). Der "
        "SHA-256-Wert von {folder}/manifest.json ist die Snapshot-ID; das Manifest nennt den "
        "SHA-256-Wert jeder Datei, ist mit Ed25519 signiert (openssl pkeyutl -verify) und durch "
        "den Zeitstempel gesichert (openssl ts -verify). Die genauen Befehle stehen in "
        "VERIFY.md; evidence exhibit verify prüft alles ohne Datenbank.",
        "record": "Datensatz",
        # index
        "index_intro": "Das Bündel enthält die folgenden Anlagen. Der SHA-256-Wert jeder "
        "Anlagen-PDF steht darunter; die Originale jeder Anlage liegen im gleichnamigen Ordner.",
        "number": "Nr.",
        "title": "Bezeichnung",
        "url": "URL",
        "captured": "Erfasst",
        "pdf_sha256": "SHA-256 der PDF",
        "bundle_digest": "Prüfsumme des Bündels",
        "bundle_digest_text": "Der SHA-256-Wert der Datei SHA256SUMS (sie listet jede Datei "
        "des Bündels) steht in BUNDLE.sha256 und ist, wenn ein Zeitstempeldienst eingerichtet "
        "war, in BUNDLE.tsr mit einem RFC-3161-Zeitstempel versehen (siehe VERIFY.md).",
        "timeline": "Verlauf",
        "timeline_of": "Verlauf von",
        "captures": "Erfassungen",
        "present": "vorhanden",
        "changed": "geändert",
        "unchanged": "unverändert",
        "gone": "nicht mehr vorhanden",
        "first": "erste Erfassung",
        "text_diff": "Textunterschiede",
        "removed": "entfernt",
        "added": "hinzugefügt",
        "figures": "Geänderte Zahlen",
        "side_by_side": "Bildschirmfotos nebeneinander (sichtbarer Bereich)",
        "no_change": "Keine Textänderung.",
    },
    "en": {
        "exhibit": "Exhibit",
        "index_title": "Index of exhibits",
        "index_file": "Exhibit-index.pdf",
        "case": "Case",
        "built": "Built",
        "page": "Page",
        "of": "of",
        "capture_of": "Capture of",
        "file": "File",
        "snapshot": "Snapshot",
        "summary": "Summary",
        "requested_url": "URL requested",
        "final_url": "Final URL",
        "redirects": "Redirects",
        "captured_utc": "Captured (UTC)",
        "captured_berlin": "Captured (Europe/Berlin)",
        "archived_utc": "Archived (UTC)",
        "status": "HTTP status",
        "kind": "Kind of capture",
        "note": "Note",
        "snapshot_id": "Snapshot id (SHA-256 of the manifest)",
        "chain": "Position in the hash chain",
        "chain_value": "collection “{collection}”, no. {sequence}; previous {previous}",
        "chain_first": "collection “{collection}”, no. {sequence}; first link",
        "screenshot": "Screenshot of the whole page",
        "screenshot_part": "Screenshot, part {part} of {parts} (pixels {top}–{bottom} of "  # noqa: RUF001 (typography of a court document)
        "{height}, width {width} px, split, not scaled down)",
        "no_screenshot": "This capture has no screenshot (a plain HTTP capture or a file); "
        "its content is in the originals (WARC).",
        "environment": "Capture environment",
        "software": "Software",
        "browser": "Browser",
        "user_agent": "User agent",
        "server_ip": "Server IP address",
        "protocol": "Protocol",
        "capture_host": "Capture host",
        "clock": "Clock source",
        "tls": "TLS certificate",
        "tls_subject": "Subject",
        "tls_issuer": "Issuer",
        "tls_valid": "Valid",
        "tls_none": "none (unencrypted connection)",
        "source": "Source",
        "artifacts": "Files of this capture (originals)",
        "role": "Role",
        "name": "File in the bundle",
        "size": "Size (bytes)",
        "sha256": "SHA-256",
        "timestamps": "Trusted timestamps (RFC 3161)",
        "tsa": "Time-stamping authority",
        "tsa_name": "TSA certificate",
        "serial": "Serial number",
        "gen_time": "Time",
        "covers": "Covers",
        "covers_snapshot": "the snapshot id",
        "covers_merkle": "Merkle root {root} (leaf {leaf} of {size}; proof in {file})",
        "token_file": "Token file",
        "qualified": "claims to be an eIDAS qualified time-stamp",
        "no_timestamp": "No timestamp: this snapshot has no timestamp token.",
        "signature": "Manifest signature",
        "key_fingerprint": "Signing key fingerprint",
        "signature_file": "Signature file (raw Ed25519)",
        "public_key_file": "Public key",
        "custody": "Chain of custody (custody log)",
        "when": "Time (UTC)",
        "actor": "Actor",
        "action": "Action",
        "details": "Details",
        "custody_note": "Handing out this bundle is logged after it was built, as “exported” "
        "with the bundle's digest.",
        "how_to_verify": "How to check this exhibit",
        "verify_steps": "Every original is in the bundle's folder {folder}/. Each file is "
        "listed with its SHA-256 in SHA256SUMS (check: sha256sum -c SHA256SUMS). The SHA-256 "
        "of {folder}/manifest.json is the snapshot id; the manifest lists the SHA-256 of every "
        "file, is signed with Ed25519 (openssl pkeyutl -verify) and covered by the timestamp "
        "(openssl ts -verify). VERIFY.md gives the exact commands; evidence exhibit verify "
        "checks everything without any database.",
        "record": "Record",
        "index_intro": "The bundle holds the exhibits below. The SHA-256 of each exhibit's "
        "PDF is printed under it; each exhibit's originals are in the folder of its name.",
        "number": "No.",
        "title": "Title",
        "url": "URL",
        "captured": "Captured",
        "pdf_sha256": "SHA-256 of the PDF",
        "bundle_digest": "Digest of the bundle",
        "bundle_digest_text": "The SHA-256 of the file SHA256SUMS (which lists every file of "
        "the bundle) is in BUNDLE.sha256 and, when a time-stamping authority was configured, "
        "timestamped (RFC 3161) in BUNDLE.tsr (see VERIFY.md).",
        "timeline": "Timeline",
        "timeline_of": "Timeline of",
        "captures": "Captures",
        "present": "present",
        "changed": "changed",
        "unchanged": "unchanged",
        "gone": "gone",
        "first": "first capture",
        "text_diff": "Text differences",
        "removed": "removed",
        "added": "added",
        "figures": "Changed figures",
        "side_by_side": "Screenshots side by side (visible area)",
        "no_change": "No change of text.",
    },
}


def utc_text(moment: datetime) -> str:
    """``2026-12-01 14:34:27.418 UTC``: milliseconds, as the manifests keep them."""
    return moment.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def berlin_text(moment: datetime, lang: str) -> str:
    """The same moment in Europe/Berlin, with MEZ/MESZ (CET/CEST) named."""
    local = moment.astimezone(BERLIN)
    zone = local.tzname() or ""
    if lang == "de":
        zone = {"CET": "MEZ", "CEST": "MESZ"}.get(zone, zone)
    return local.strftime("%Y-%m-%d %H:%M:%S") + f" {zone} (UTC{local.strftime('%z')[:3]})"
