"""WACZ 1.1.1 export: capture WARCs, their CDXJ index and a page list in one replayable ZIP.

::

    export_wacz(
        [Path("capture-1.warc.gz")],
        [{"url": "https://example.org/post/1", "title": "Post 1", "ts": captured_at}],
        Path("exhibit-7.wacz"),
        title="Exhibit 7", description="Posts of account @x, captured 2026-11-28",
    )

The ZIP holds, in this order and all stored uncompressed (ZIP ``STORE``, as the WACZ
specification asks, so that replay tools can read records by offset without inflating):

- ``archive/<name>.warc.gz`` — the WARC files, byte for byte;
- ``indexes/index.cdx`` — a sorted CDXJ index of every response, resource and metadata record
  (built with ``cdxj-indexer``, with POST bodies appended to the URL key as pywb does, and a
  ``recordDigest``, the SHA-256 of each record's bytes in the WARC). Plain, not gzipped:
  ReplayWeb.page reads ``.cdx``/``.cdxj`` or a ZipNum ``.idx``, and skips a lone ``.cdx.gz``;
- ``pages/pages.jsonl`` — a ``json-pages-1.0`` header line, then one line per page
  (``id``, ``url``, ``ts`` as RFC 3339, ``title``);
- ``datapackage.json`` — a Frictionless data package listing every file above with its path,
  ``sha256:`` hex hash and size in bytes, and the title, description, creation time, main
  page and ``wacz_version`` ``1.1.1``;
- ``datapackage-digest.json`` — the ``sha256:`` hash of ``datapackage.json``. It is not signed
  here: the exhibit's integrity rests on the project's signed snapshot manifests.

Before writing, every WARC's block and payload digests are checked, and every page must have
been archived (its URL is the target of an indexed record), so that an exhibit never lists a
page that cannot be replayed. After writing, every member is read back from the ZIP and its
hash and size compared with ``datapackage.json``. The file appears at ``out`` only when
complete (written beside it, fsync'd, then linked into place); an existing ``out`` is never
overwritten.

Check with ``wacz validate -f FILE.wacz`` (PyPI ``wacz``) and replay in pywb
(``wb-manager add --unpack-wacz``) or ReplayWeb.page; see ``docs/warc.md``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from cdxj_indexer.main import CDXJIndexer
from warcio.archiveiterator import ArchiveIterator

from evidence_store.support import fsync_dir
from schemas.time import format_rfc3339, parse_rfc3339, utc_now

WACZ_VERSION = "1.1.1"
PAGES_FORMAT = "json-pages-1.0"
INDEX_PATH = "indexes/index.cdx"
PAGES_PATH = "pages/pages.jsonl"
DATAPACKAGE = "datapackage.json"
DATAPACKAGE_DIGEST = "datapackage-digest.json"
_CHUNK = 1024 * 1024
_ARCHIVE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.warc(\.gz)?$")


class WaczError(ValueError):
    """The inputs cannot make a valid WACZ, or the written file does not read back."""


def _version(package: str) -> str:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _resource_name(path: str) -> str:
    # Frictionless resource names: lower-case letters, digits, '-', '.', '_', '/'
    return re.sub(r"[^-a-z0-9._/]", "-", path.rsplit("/", 1)[-1].lower())


def _check_warc(path: Path) -> None:
    """Refuse a WARC whose records do not match their digests: an exhibit must not carry it."""
    try:
        with open(path, "rb") as stream:
            for record in ArchiveIterator(stream, check_digests="raise"):
                while record.raw_stream.read(_CHUNK):
                    pass
    except Exception as exc:
        raise WaczError(f"{path}: not a readable WARC with matching digests: {exc}") from exc


def build_cdxj(warcs: Sequence[tuple[Path, str]]) -> list[str]:
    """Sorted CDXJ lines for ``(path, name in archive/)`` pairs, named by the archive name."""
    lines: list[str] = []
    for path, name in warcs:
        out = io.StringIO()
        indexer = CDXJIndexer(
            out,
            [str(path)],
            post_append=True,
            digest_records=True,
            fields="referrer",
            filename=name,
        )
        indexer.process_all()
        lines.extend(line + "\n" for line in out.getvalue().splitlines() if line.strip())
    return sorted(set(lines))


def _indexed_urls(cdxj: Sequence[str]) -> set[str]:
    urls = set()
    for line in cdxj:
        data = json.loads(line.split(" ", 2)[2])
        if "url" in data:
            urls.add(data["url"].split("#", 1)[0])
    return urls


def _timestamp(value: Any) -> str:
    if isinstance(value, datetime):
        return format_rfc3339(value)
    if isinstance(value, str):
        return format_rfc3339(parse_rfc3339(value))
    raise WaczError(f"page ts must be a datetime or an RFC 3339 string, not {value!r}")


def pages_jsonl(pages: Sequence[Mapping[str, Any]]) -> bytes:
    """The ``pages/pages.jsonl`` bytes: a header line, then one JSON object per page."""
    lines = [{"format": PAGES_FORMAT, "id": "pages", "title": "All Pages"}]
    seen: set[str] = set()
    for page in pages:
        if not page.get("url"):
            raise WaczError(f"page without a url: {dict(page)!r}")
        ts = _timestamp(page.get("ts"))
        page_id = str(page.get("id") or hashlib.sha256(f"{ts} {page['url']}".encode()).hexdigest())
        if page_id in seen:
            raise WaczError(f"two pages with id {page_id} (the same url and ts?)")
        seen.add(page_id)
        entry: dict[str, Any] = {"id": page_id, "url": page["url"], "ts": ts}
        if page.get("title"):
            entry["title"] = str(page["title"])
        for key, value in page.items():
            if key not in ("id", "url", "ts", "title"):
                entry[key] = value
        lines.append(entry)
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")


def _zip_info(path: str, when: datetime, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(path, date_time=when.timetuple()[:6])
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = size
    info.external_attr = 0o644 << 16
    return info


def _write_member(archive: zipfile.ZipFile, path: str, data: bytes, when: datetime) -> dict:
    archive.writestr(_zip_info(path, when, len(data)), data)
    return {
        "name": _resource_name(path),
        "path": path,
        "hash": "sha256:" + hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }


def _copy_member(archive: zipfile.ZipFile, path: str, source: Path, when: datetime) -> dict:
    digest = hashlib.sha256()
    size = 0
    with (
        open(source, "rb") as reader,
        archive.open(_zip_info(path, when, source.stat().st_size), "w") as writer,
    ):
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
            size += len(chunk)
    return {
        "name": _resource_name(path),
        "path": path,
        "hash": "sha256:" + digest.hexdigest(),
        "bytes": size,
    }


def _verify(path: Path, resources: Sequence[Mapping[str, Any]], datapackage: bytes) -> None:
    """Read every member back from the written ZIP and compare with the data package."""
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
        if bad is not None:
            raise WaczError(f"{path}: member {bad} fails its CRC")
        if archive.read(DATAPACKAGE) != datapackage:
            raise WaczError(f"{path}: {DATAPACKAGE} did not read back")
        digest = json.loads(archive.read(DATAPACKAGE_DIGEST))
        if digest["hash"] != "sha256:" + hashlib.sha256(datapackage).hexdigest():
            raise WaczError(f"{path}: {DATAPACKAGE_DIGEST} does not match {DATAPACKAGE}")
        for resource in resources:
            hasher = hashlib.sha256()
            size = 0
            with archive.open(resource["path"]) as member:
                while chunk := member.read(_CHUNK):
                    hasher.update(chunk)
                    size += len(chunk)
            actual = "sha256:" + hasher.hexdigest()
            if actual != resource["hash"] or size != resource["bytes"]:
                raise WaczError(
                    f"{path}: {resource['path']} read back as {actual} ({size} bytes), "
                    f"expected {resource['hash']} ({resource['bytes']} bytes)"
                )


def output_problem(out: Path) -> str | None:
    """Why ``out`` cannot be written as a new file (its folder is missing), or None.

    Checked before any work: the file is built beside ``out`` under a temporary name, and a
    missing folder would otherwise be reported late, naming that temporary file.
    """
    folder = Path(out).absolute().parent
    if not folder.exists():
        return f"cannot write {out}: the folder {folder} does not exist"
    if not folder.is_dir():
        return f"cannot write {out}: {folder} is not a folder"
    return None


def export_wacz(
    warc_paths: Sequence[Path],
    pages: Sequence[Mapping[str, Any]],
    out: Path,
    *,
    title: str,
    description: str,
    created: datetime | None = None,
) -> Path:
    """Write a WACZ 1.1.1 of ``warc_paths`` with ``pages`` (dicts of url, title, ts) to ``out``.

    ``ts`` is a datetime or an RFC 3339 string; a page may also give an ``id`` and further
    keys, which are kept. The first page is the main page. Raises ``WaczError`` for a WARC
    that fails its digests, a page URL that no WARC record targets, or two WARCs with the same
    file name or a missing output folder, and ``FileExistsError`` if ``out`` exists. Returns
    ``out``.
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: an exhibit is never overwritten")
    if (problem := output_problem(out)) is not None:
        raise WaczError(problem)
    if not warc_paths:
        raise WaczError("a WACZ needs at least one WARC file")
    when = (created or utc_now()).astimezone(UTC)
    warcs: list[tuple[Path, str]] = []
    names: set[str] = set()
    for warc in map(Path, warc_paths):
        if not warc.is_file():
            raise WaczError(f"no such WARC file: {warc}")
        if not _ARCHIVE_NAME.match(warc.name):
            raise WaczError(f"{warc.name}: WARC file names must be [A-Za-z0-9._-]+.warc[.gz]")
        if _resource_name(warc.name) in names:
            raise WaczError(f"two WARC files named {warc.name}: names in archive/ must differ")
        names.add(_resource_name(warc.name))
        _check_warc(warc)
        warcs.append((warc, warc.name))

    cdxj = build_cdxj(warcs)
    archived = _indexed_urls(cdxj)
    for page in pages:
        url = str(page.get("url", "")).split("#", 1)[0]
        if url not in archived:
            raise WaczError(
                f"page {page.get('url')!r} is not the target of any record in the WARCs "
                "(is it the redacted URL?)"
            )
    pages_bytes = pages_jsonl(pages)

    package: dict[str, Any] = {
        "profile": "data-package",
        "wacz_version": WACZ_VERSION,
        "title": title,
        "description": description,
        "created": format_rfc3339(when),
        "software": (
            f"dsa-evidence {_version('dsa-evidence')} "
            f"(cdxj-indexer {_version('cdxj-indexer')}, warcio {_version('warcio')})"
        ),
    }
    if pages:
        package["mainPageURL"] = pages[0]["url"]
        package["mainPageDate"] = _timestamp(pages[0]["ts"])

    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        with open(partial, "xb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as archive:
            resources = [_copy_member(archive, f"archive/{name}", p, when) for p, name in warcs]
            resources.append(_write_member(archive, INDEX_PATH, "".join(cdxj).encode(), when))
            resources.append(_write_member(archive, PAGES_PATH, pages_bytes, when))
            package["resources"] = resources
            datapackage = json.dumps(package, indent=2, ensure_ascii=False).encode("utf-8")
            archive.writestr(_zip_info(DATAPACKAGE, when, len(datapackage)), datapackage)
            digest = {
                "path": DATAPACKAGE,
                "hash": "sha256:" + hashlib.sha256(datapackage).hexdigest(),
            }
            digest_bytes = json.dumps(digest, indent=2).encode("utf-8")
            archive.writestr(_zip_info(DATAPACKAGE_DIGEST, when, len(digest_bytes)), digest_bytes)
            archive.close()
            raw.flush()
            os.fsync(raw.fileno())
        _verify(partial, resources, datapackage)
        os.link(partial, out)  # fails if out appeared meanwhile: never overwrite
        fsync_dir(out.parent)
    finally:
        partial.unlink(missing_ok=True)
    return out
