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
        "record_sor": "Begründung einer Moderationsentscheidung (DSA Art. 17)",
        "record_ad": "Anzeige",
        "record_post": "Beitrag",
        "ad_status": "Status der Anzeige",
        "renewed": "Erneuert (Archivzeitstempel über die Zeitstempeldatei)",
        "unseen_since": "Nicht mehr geliefert seit",
        "timeline_record_intro": "Diese Anlage zeigt denselben Datensatz in {n} Erfassungen, "
        "die älteste zuerst (T1, T2, …). Verglichen werden die Felder, die aus jeder Erfassung "
        "gelesen wurden (eine Zeile „Feld: Wert“ je Feld); zwischen aufeinanderfolgenden "
        "Erfassungen sind die geänderten Felder und Zahlen dargestellt, bei Browser-Erfassungen "
        "auch die Bildschirmfotos nebeneinander. Die Erfassungen, aus denen die Felder gelesen "
        "wurden, liegen als Originale bei; jeder Vergleich lässt sich aus ihnen nachvollziehen.",
        "field_diff": "Geänderte Felder",
        "no_field_change": "Kein Feld geändert.",
        "fields_changed_since": "Felder gegenüber T{n} geändert",
        "fields_same_since": "Felder wie T{n}",
        "further_originals": "Weitere Originale",
        "further_originals_text": "Diese Erfassungen belegen einen der Befunde (etwa alle "
        "Antworten des Abrufs, in denen die Anzeige nicht mehr enthalten war) und liegen wie die "
        "übrigen Originale im genannten Ordner bei.",
        "ad_gone": "von der Abfrage seit {when} nicht mehr geliefert (Lauf {run}; {n} Antwort(en) "
        "ohne die Anzeige)",
        "post_status": "Status auf der Plattform",
        "media": "Medien",
        "video_frames": "Standbilder aus dem Video",
        "video_frame_caption": "Standbild bei {at} s aus {file} (SHA-256 {sha256}); "
        "nachvollziehbar mit: {command}",
        "no_frames": "Aus der Videodatei ließ sich kein Standbild gewinnen ({why}); die Datei "
        "liegt als Original bei.",
        "versions": "Fassungen",
        "counts": "Zahlen je Erfassung",
        "dump_file": "Tagesexport (Datei)",
        "dump_published_sha1": "Veröffentlichter SHA-1 des Exports",
        "part": "Teilarchiv im Export",
        "csv_file": "CSV-Datei im Teilarchiv",
        "row": "Zeile (Datensatz nach der Kopfzeile)",
        "row_command": "Befehl, der die Zeile aus dem Export ausgibt",
        "found_in": "Gefunden in",
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
        "first": "erste Erfassung in dieser Anlage",
        "text_diff": "Textunterschiede",
        "removed": "entfernt",
        "added": "hinzugefügt",
        "figures": "Geänderte Zahlen",
        "side_by_side": "Bildschirmfotos nebeneinander",
        "no_change": "Keine Textänderung.",
        "unavailable": "nicht abrufbar",
        "range": "Zeitraum der Auswahl",
        "period": "Erfassungszeitraum",
        "state": "Befund",
        "capture_no": "Erfassung",
        "changed_since": "Text gegenüber T{n} geändert",
        "same_since": "Text wie T{n}",
        "back_since": "wieder vorhanden (zuletzt T{n})",
        "why_status": "Server antwortete mit HTTP-Status {status}",
        "why_login_wall": "statt der Seite wurde eine Anmeldeseite angezeigt (Login-Sperre)",
        "why_removed": "die Plattform zeigte die Seite als entfernt an",
        "why_failed": "Erfassung gescheitert: {error}",
        "outcome": "Ergebnis der Erfassung",
        "timeline_intro": "Diese Anlage zeigt dieselbe Seite in {n} Erfassungen, die älteste "
        "zuerst (T1, T2, …). Zwischen aufeinanderfolgenden Erfassungen sind die Unterschiede "
        "des sichtbaren Textes, die geänderten Zahlen und die Bildschirmfotos nebeneinander "
        "dargestellt. Alles wurde aus den beigefügten Originalen abgeleitet (bei "
        "Browser-Erfassungen aus dem gerenderten DOM, sonst aus der HTML-Antwort im WARC).",
        "changes": "Änderungen",
        "changes_between": "T{a} → T{b}",
        "legend": "Lesehilfe: Zeilen mit „-“ am Anfang und rot hinterlegtem, durchgestrichenem "
        "Text wurden entfernt; Zeilen mit „+“ und grün hinterlegtem, unterstrichenem Text kamen "
        "hinzu; Zeilen ohne Zeichen sind unveränderter Zusammenhang. Innerhalb einer Zeile sind "
        "die geänderten Wörter zusätzlich fett hervorgehoben.",
        "figure_where": "Stelle (Zeile in der neueren Fassung)",
        "figure_change": "vorher → nachher",
        "no_figures": "Keine geänderten Zahlen.",
        "diff_truncated": "… weitere {n} Zeilen mit Unterschieden sind hier nicht abgedruckt; "
        "die vollständigen Fassungen liegen in den Originalen.",
        "server_answer": "Sichtbarer Text der Antwort",
        "answer_more": "… und {n} weitere Zeilen (siehe Original).",
        "no_text": "Die Erfassung enthält keine HTML-Seite, aus der Text gewonnen werden kann.",
        "capture_details": "Einzelheiten und Nachweise der Erfassungen",
        "capture_heading": "T{n}: Erfassung vom {when}",
        "folder": "Ordner der Originale",
        "side_caption": "T{a} (links, {a_when}) und T{b} (rechts, {b_when}); Pixelzeilen "
        "{top}–{bottom} von {tallest}, verkleinert. Die vollständigen "  # noqa: RUF001 (typography of a court document)
        "Bildschirmfotos in voller Auflösung liegen als Originale bei: {a_file} und {b_file}.",
        "side_close": "T{a} (links, {a_when}) und T{b} (rechts, {b_when}): der Bereich, in dem "
        "sich die Bildschirmfotos unterscheiden (Pixel {x0}–{x1} waagerecht, {y0}–{y1} "  # noqa: RUF001 (typography of a court document)
        "senkrecht, von {width} × {tallest}), in beiden derselbe Ausschnitt, in voller "  # noqa: RUF001 (typography of a court document)
        "Auflösung. Danach die ganzen Seiten verkleinert.",
        "side_cut": "Nur die ersten {shown} Pixelzeilen sind nebeneinander abgebildet; die "
        "ganzen Seiten zeigen die Originale.",
        "side_none": "keine weitere Fläche",
        "verify_timeline": "Die Originale jeder Erfassung liegen im Bündel im jeweils genannten "
        "Ordner (T1 ist die älteste). Jede Datei ist mit ihrem SHA-256-Wert in SHA256SUMS "
        "aufgeführt (Prüfung: sha256sum -c SHA256SUMS). Der SHA-256-Wert jedes manifest.json "
        "ist die Snapshot-ID; das Manifest nennt den SHA-256-Wert jeder Datei, ist mit Ed25519 "
        "signiert und durch einen Zeitstempel gesichert. Die genauen Befehle stehen in "
        "VERIFY.md; evidence exhibit verify prüft alles ohne Datenbank.",
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
        "record_sor": "Statement of reasons (DSA Art. 17)",
        "record_ad": "Ad",
        "record_post": "Post",
        "ad_status": "Status of the ad",
        "renewed": "Renewed (archive timestamp over the token file)",
        "unseen_since": "No longer returned since",
        "timeline_record_intro": "This exhibit shows the same record in {n} captures, oldest "
        "first (T1, T2, …). What is compared are the fields read out of each capture (one line "
        "“field: value” per field); between consecutive captures it shows the fields and figures "
        "that changed and, for browser captures, the screenshots side by side. The captures the "
        "fields were read from are enclosed as originals: every comparison can be redone from "
        "them.",
        "field_diff": "Fields that changed",
        "no_field_change": "No field changed.",
        "fields_changed_since": "fields changed since T{n}",
        "fields_same_since": "fields as at T{n}",
        "further_originals": "Further originals",
        "further_originals_text": "These captures prove one of the findings (such as every "
        "answer of the run that no longer held the ad) and are enclosed in the folders named, "
        "like the other originals.",
        "ad_gone": "no longer returned by the query since {when} (run {run}; {n} answer(s) "
        "without the ad)",
        "post_status": "Status on the platform",
        "media": "Media",
        "video_frames": "Stills from the video",
        "video_frame_caption": "Still at {at} s of {file} (SHA-256 {sha256}); reproduce with: "
        "{command}",
        "no_frames": "No still could be taken from the video file ({why}); the file is enclosed "
        "as an original.",
        "versions": "Versions",
        "counts": "Figures per capture",
        "dump_file": "Daily dump (file)",
        "dump_published_sha1": "SHA-1 of the dump as published",
        "part": "Part of the dump",
        "csv_file": "CSV file in the part",
        "row": "Row (record after the header)",
        "row_command": "Command printing the row from the dump",
        "found_in": "Found in",
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
        "first": "first capture in this exhibit",
        "text_diff": "Text differences",
        "removed": "removed",
        "added": "added",
        "figures": "Changed figures",
        "side_by_side": "Screenshots side by side",
        "no_change": "No change of text.",
        "unavailable": "unavailable",
        "range": "Range selected",
        "period": "Period of the captures",
        "state": "Finding",
        "capture_no": "Capture",
        "changed_since": "text changed since T{n}",
        "same_since": "text as at T{n}",
        "back_since": "present again (last at T{n})",
        "why_status": "the server answered with HTTP status {status}",
        "why_login_wall": "a login page was shown instead of the page (login wall)",
        "why_removed": "the platform showed the page as removed",
        "why_failed": "the capture failed: {error}",
        "outcome": "Outcome of the capture",
        "timeline_intro": "This exhibit shows the same page in {n} captures, oldest first (T1, "
        "T2, …). Between consecutive captures it shows the differences of the visible text, the "
        "figures that changed and the screenshots side by side. All of it is derived from the "
        "originals enclosed (the rendered DOM of a browser capture, else the HTML response in "
        "the WARC).",
        "changes": "Changes",
        "changes_between": "T{a} → T{b}",
        "legend": "How to read: lines starting with “-” with text on red, struck through, were "
        "removed; lines starting with “+” with text on green, underlined, were added; lines "
        "without a sign are unchanged context. Within a line the words that changed are also "
        "set in bold.",
        "figure_where": "Where (line in the newer version)",
        "figure_change": "before → after",
        "no_figures": "No figures changed.",
        "diff_truncated": "… {n} more lines with differences are not printed here; the "
        "complete versions are in the originals.",
        "server_answer": "Visible text of the answer",
        "answer_more": "… and {n} more lines (see the original).",
        "no_text": "The capture holds no HTML page to take text from.",
        "capture_details": "Details and proofs of the captures",
        "capture_heading": "T{n}: capture of {when}",
        "folder": "Folder of the originals",
        "side_caption": "T{a} (left, {a_when}) and T{b} (right, {b_when}); pixel rows "
        "{top}–{bottom} of {tallest}, scaled down. The full screenshots at full "  # noqa: RUF001 (typography of a court document)
        "resolution are enclosed as originals: {a_file} and {b_file}.",
        "side_close": "T{a} (left, {a_when}) and T{b} (right, {b_when}): the area where the "
        "screenshots differ (pixels {x0}–{x1} across, {y0}–{y1} down, of {width} × "  # noqa: RUF001 (typography of a court document)
        "{tallest}), the same area of both, at full resolution. The whole pages follow, scaled "
        "down.",
        "side_cut": "Only the first {shown} pixel rows are shown side by side; the originals "
        "show the whole pages.",
        "side_none": "nothing further",
        "verify_timeline": "Each capture's originals are in the bundle, in the folder named "
        "(T1 is the oldest). Each file is listed with its SHA-256 in SHA256SUMS (check: "
        "sha256sum -c SHA256SUMS). The SHA-256 of each manifest.json is the snapshot id; the "
        "manifest lists the SHA-256 of every file, is signed with Ed25519 and covered by a "
        "timestamp. VERIFY.md gives the exact commands; evidence exhibit verify checks "
        "everything without any database.",
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
