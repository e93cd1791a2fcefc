"""From a report file's bytes to its documents: the text of PDFs (pypdf), the cells of
tables (XLSX with python-calamine, CSV with the standard library), and the members of ZIPs.

Nothing here touches the index: ``extract`` is a pure function of the bytes, so the same
file always gives the same documents, and an old snapshot can be parsed again. A document
that cannot be read is returned with ``status`` "unparseable" and the reason; the other
documents of the same file are still read.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import math
import posixpath
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

MAX_TEXT_CHARS = 10_000_000  # per document: a longer text is cut (and says so)
MAX_CELLS = 200_000  # per document
MAX_MEMBERS = 500  # per ZIP
MAX_MEMBER_BYTES = 512 * 1024 * 1024  # one unpacked member
MAX_UNPACKED_BYTES = 2 * 1024 * 1024 * 1024  # a whole ZIP, unpacked (zip bombs)
MAX_LABEL_CHARS = 300
TEMPLATE_MARK = "2024/2835"  # the implementing regulation of the harmonised templates

MEDIA_TYPES = {
    "pdf": "application/pdf",
    "zip": "application/zip",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv",
}


@dataclass
class Cell:
    """One non-empty cell of a table, with the labels that say what it means."""

    sheet: str
    row: int
    column: int
    value: str
    number: float | None
    row_label: str | None = None
    column_label: str | None = None


@dataclass
class Document:
    """A document of a report file: the file itself, or one member of a ZIP."""

    path: str
    kind: str  # pdf, table, other
    media_type: str
    sha256: str
    size: int
    status: str = "parsed"  # parsed, unparseable, skipped
    error: str | None = None
    page_count: int | None = None
    text: str | None = None
    title: str | None = None  # a PDF's own title (document information)
    cells: list[Cell] = field(default_factory=list)
    template: str | None = None

    @property
    def text_length(self) -> int | None:
        if self.kind == "pdf":
            return len(self.text or "")
        return None

    def content_text(self) -> str:
        """The text to read report facts from: a PDF's text, a table's rows as lines."""
        if self.text is not None:
            return self.text
        lines: dict[tuple[str, int], list[str]] = {}
        for cell in self.cells:
            lines.setdefault((cell.sheet, cell.row), []).append(cell.value)
        return "\n".join(" | ".join(values) for values in lines.values())


def sniff(data: bytes, name: str, declared: str | None = None) -> str:
    """What a file is, from its first bytes, then its name and declared media type:
    pdf, xlsx, zip, csv or other."""
    lowered = name.lower()
    declared = (declared or "").split(";")[0].strip().lower()
    if data[:1024].lstrip().startswith(b"%PDF") or b"%PDF-" in data[:1024]:
        return "pdf"
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        if lowered.endswith((".xlsx", ".xlsm")) or "spreadsheetml" in declared:
            return "xlsx"
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if "xl/workbook.xml" in archive.namelist():
                    return "xlsx"
        except zipfile.BadZipFile:
            pass
        return "zip"
    if lowered.endswith(".pdf") or declared == "application/pdf":
        return "pdf"  # says PDF, is not one: the PDF reader will say why
    if lowered.endswith(".zip") or declared in ("application/zip", "application/x-zip-compressed"):
        return "zip"
    if lowered.endswith(".xlsx") or "spreadsheetml" in declared:
        return "xlsx"
    if lowered.endswith((".csv", ".tsv")) or declared in ("text/csv", "application/csv"):
        return "csv"
    return "other"


def extract(data: bytes, name: str, declared: str | None = None) -> list[Document]:
    """The documents of a report file named ``name`` (its URL's file name)."""
    kind = sniff(data, name, declared)
    if kind == "zip":
        return _zip_documents(data, name)
    return [_document(data, name, kind)]


def _new(data: bytes, path: str, kind: str) -> Document:
    return Document(
        path=path,
        kind="table" if kind in ("xlsx", "csv") else kind,
        media_type=MEDIA_TYPES.get(kind, "application/octet-stream"),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


def _document(data: bytes, path: str, kind: str) -> Document:
    document = _new(data, path, kind)
    try:
        if kind == "pdf":
            _read_pdf(document, data)
        elif kind == "xlsx":
            _read_xlsx(document, data)
        elif kind == "csv":
            _read_csv(document, data, posixpath.basename(path))
        else:
            document.status = "skipped"
            document.error = "not a PDF, spreadsheet or CSV file"
            return document
    except Exception as exc:  # every reader raises its own kinds; all mean "cannot read"
        document.status = "unparseable"
        document.error = f"{_what(kind)}: {type(exc).__name__}: {exc}"[:2000]
        document.text = None
        document.cells = []
        document.page_count = None
    return document


def _what(kind: str) -> str:
    return {"pdf": "not a readable PDF", "xlsx": "not a readable XLSX workbook"}.get(
        kind, f"not a readable {kind.upper()} file"
    )


# -- PDF ------------------------------------------------------------------------------------
class _Warnings(logging.Handler):
    """Collects what pypdf logs while it reads a file (it logs problems it works around)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.messages) < 20:
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def _pypdf_warnings() -> Iterator[list[str]]:
    # Kept with the document instead of printed: a broken PDF is an outcome of the run,
    # not noise on the operator's terminal.
    logger = logging.getLogger("pypdf")
    handler = _Warnings()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _read_pdf(document: Document, data: bytes) -> None:
    with _pypdf_warnings() as warnings:
        try:
            _read_pdf_pages(document, data)
        except Exception as exc:
            if warnings:
                raise ValueError(f"{exc} ({'; '.join(dict.fromkeys(warnings))})") from exc
            raise


def _read_pdf_pages(document: Document, data: bytes) -> None:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted and not reader.decrypt(""):
        raise ValueError("the PDF is encrypted with a password")
    pages = len(reader.pages)
    if pages == 0:
        raise ValueError("the PDF has no pages")
    texts = []
    for page in reader.pages:
        texts.append(_clean(page.extract_text() or ""))
    text = "\n".join(t.rstrip("\n") for t in texts)
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS]
        document.error = f"text cut at {MAX_TEXT_CHARS} characters"
    document.page_count = pages
    document.text = text
    title = (reader.metadata or {}).get("/Title") if reader.metadata is not None else None
    document.title = _clean(str(title)).strip() or None if title else None


def _clean(text: str) -> str:
    # NUL cannot be stored in PostgreSQL text; other controls but tab and newline are noise.
    return "".join(c for c in text if c in "\t\n" or c >= " " or c == "\f").replace("\f", "\n")


# -- tables ---------------------------------------------------------------------------------
def cell_value(value: Any) -> tuple[str, float | None] | None:
    """(text as shown, number) of a cell value; None for an empty cell."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE"), None
    if isinstance(value, int):
        return str(value), float(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value), None
        text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
        return text, value
    if isinstance(value, datetime | date | time):
        return value.isoformat(), None
    if isinstance(value, timedelta):
        return str(value), value.total_seconds()
    text = _clean(str(value)).strip()
    if not text:
        return None
    return text, parse_number(text)


def parse_number(text: str) -> float | None:
    """A number written in a cell as text: "1,204", "1.204.000", "12,5", "48 300 000",
    "12.5 %"; None when the text is not a number (or only looks like a date or a year span)."""
    cleaned = text.strip().replace("\u00a0", " ").replace("\u202f", " ")
    cleaned = cleaned.removesuffix("%").strip()
    sign = ""
    if cleaned[:1] in "+-\u2212":
        sign = "-" if cleaned[0] != "+" else ""
        cleaned = cleaned[1:].strip()
    if re.fullmatch(r"\d+", cleaned):
        number = cleaned
    elif re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", cleaned):
        number = cleaned.replace(",", "")
    elif re.fullmatch(r"\d{1,3}(\.\d{3})+(,\d+)?", cleaned):
        number = cleaned.replace(".", "").replace(",", ".")
    elif re.fullmatch(r"\d{1,3}( \d{3})+([.,]\d+)?", cleaned):
        number = cleaned.replace(" ", "").replace(",", ".")
    elif re.fullmatch(r"\d*\.\d+", cleaned):
        number = cleaned
    elif re.fullmatch(r"\d+,\d{1,2}", cleaned):
        number = cleaned.replace(",", ".")
    else:
        return None
    return float(sign + number)


def _label(value: str) -> str:
    return " ".join(value.split())[:MAX_LABEL_CHARS]


def _table_cells(sheet: str, rows: list[list[Any]]) -> list[Cell]:
    """The non-empty cells of a sheet with their labels. A row's label is the nearest text to
    the left; a column's is the text of the first row of the block the cell is in (blocks
    are separated by empty rows; the templates stack their tables so), else the nearest text
    above."""
    cells: list[Cell] = []
    header: dict[int, str] = {}  # the block's first row, when it is all text
    above: dict[int, str] = {}  # the nearest text above, per column, in this block
    block_start = True
    for r, row in enumerate(rows, start=1):
        shown = [(c, cell_value(raw)) for c, raw in enumerate(row, start=1)]
        present = [(c, v) for c, v in shown if v is not None]
        if not present:
            block_start, header, above = True, {}, {}
            continue
        if block_start and all(number is None for _, (_, number) in present):
            header = {c: _label(value) for c, (value, _) in present}
        block_start = False
        left: str | None = None
        for c, (value, number) in present:
            cells.append(
                Cell(
                    sheet=sheet,
                    row=r,
                    column=c,
                    value=value,
                    number=number,
                    row_label=left,
                    column_label=header.get(c) if header.get(c) != value else above.get(c),
                )
            )
            if len(cells) > MAX_CELLS:
                raise ValueError(f"more than {MAX_CELLS} cells: not a report table")
            if number is None:
                left = _label(value)
                above[c] = _label(value)
    return cells


def _read_xlsx(document: Document, data: bytes) -> None:
    from python_calamine import CalamineWorkbook

    workbook = CalamineWorkbook.from_filelike(io.BytesIO(data))
    try:
        for name in workbook.sheet_names:
            sheet = workbook.get_sheet_by_name(name)
            # Not skipping the empty area keeps row and column numbers as Excel shows them.
            rows = sheet.to_python(skip_empty_area=False)
            document.cells.extend(_table_cells(name, rows))
    finally:
        workbook.close()
    _check_table(document)


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _read_csv(document: Document, data: bytes, sheet: str) -> None:
    if b"\x00" in data[:4096]:
        raise ValueError("binary data, not CSV text")
    text = _decode(data)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text, newline=""), dialect))
    document.cells = _table_cells(sheet, rows)
    _check_table(document)


def _check_table(document: Document) -> None:
    if not document.cells:
        raise ValueError("the table is empty")
    if any(TEMPLATE_MARK in cell.value for cell in document.cells):
        document.template = TEMPLATE_MARK


# -- ZIP ------------------------------------------------------------------------------------
def _zip_documents(data: bytes, name: str) -> list[Document]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [
            info
            for info in archive.infolist()
            if not info.is_dir()
            and not info.filename.startswith("__MACOSX/")
            and not posixpath.basename(info.filename).startswith("._")
        ]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        broken = _new(data, name, "zip")
        broken.kind = "other"
        broken.status = "unparseable"
        broken.error = f"not a readable ZIP file: {exc}"
        return [broken]
    documents: list[Document] = []
    unpacked = 0
    with archive:
        for info in infos[:MAX_MEMBERS]:
            if info.file_size > MAX_MEMBER_BYTES or unpacked + info.file_size > MAX_UNPACKED_BYTES:
                documents.append(_unreadable_member(info, "too large to unpack"))
                continue
            try:
                member = archive.read(info)
            except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, EOFError) as exc:
                documents.append(_unreadable_member(info, f"cannot unpack: {exc}"))
                continue
            unpacked += len(member)
            kind = sniff(member, info.filename)
            if kind == "zip":  # one level only: a ZIP in a ZIP is kept, not opened
                document = _new(member, info.filename, "other")
                document.status, document.error = "skipped", "a ZIP inside the ZIP"
            else:
                document = _document(member, info.filename, kind)
            documents.append(document)
    # A template published as one CSV per sheet names the regulation in one part only.
    if any(d.template for d in documents):
        for document in documents:
            if document.kind == "table" and document.status == "parsed":
                document.template = TEMPLATE_MARK
    if len(infos) > MAX_MEMBERS:
        note = _new(b"", f"({len(infos) - MAX_MEMBERS} more members)", "other")
        note.status, note.error = "skipped", f"only the first {MAX_MEMBERS} members are read"
        documents.append(note)
    if not documents:
        empty = _new(data, name, "other")
        empty.status, empty.error = "unparseable", "the ZIP file holds no files"
        return [empty]
    return documents


def _unreadable_member(info: zipfile.ZipInfo, reason: str) -> Document:
    document = Document(
        path=info.filename,
        kind="other",
        media_type="application/octet-stream",
        sha256="",
        size=info.file_size,
        status="unparseable",
        error=reason,
    )
    return document
