"""A timeline exhibit: one page across its captures, with what changed between them.

The exhibit answers the questions a court asks of an online page: was it there at T1, what
did it say at T2, was it gone at T3? It lists every capture of the page (oldest first) with
its state, and between consecutive captures the differences: the visible text (insertions
and deletions marked in colour *and* with ``+``/``-``, so a black-and-white print keeps
them), the figures that changed (likes, views, counts: ``1.204 → 3.870``), and the
screenshots side by side. All captures' originals go into the bundle like any exhibit's.

Everything shown is derived from the bytes in the bundle (already re-hashed against the
signed manifests while they were copied out of the store): the rendered DOM of a browser
capture, else the HTML response in the WARC. The PDF therefore shows nothing an expert
could not recompute from the originals beside it.

References (:func:`resolve_timeline`): a URL (``https://…`` or ``url:https://…``), a
snapshot (``snapshot:<id>``: the timeline of the URL it captured), or a record: an ad
(``ad:PLATFORM:ID``: its versions and its removal from the query that returned it) or a post
(``post:PLATFORM:ID``: every capture of it, with its fields, counts and status). A record's
timeline compares the fields the records layer parsed out of each capture (one
``field: value`` line each, :class:`RecordState`) instead of the page's visible text; the
parsed snapshots are the originals beside it, so the comparison can be redone from them.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from evidence_store.index.models import Snapshot
from evidence_store.queries import resolve_snapshot, snapshot_info
from exhibits.bundle import ExhibitPage, PageContext, SnapshotPart, page_title
from exhibits.items import KINDS, ExhibitError, ExhibitItem
from exhibits.texts import TEXTS, berlin_text, utc_text
from schemas import SnapshotInfo

# States of a capture in the timeline.
PRESENT, CHANGED, UNCHANGED, GONE, UNAVAILABLE = (
    "present",
    "changed",
    "unchanged",
    "gone",
    "unavailable",
)
# HTTP answers that say the page is no longer there (451: removed for legal reasons).
GONE_STATUSES = frozenset({404, 410, 451})
# Capture outcomes that say the content is not shown (any outcome not listed here and not
# "archived" or "too-large" is a failed capture).
GONE_OUTCOMES = frozenset({"login-wall", "removed"})
_KEPT_OUTCOMES = frozenset({"archived", "too-large"})

MAX_DIFF_ROWS = 400  # per transition; the whole texts are in the originals
MAX_ANSWER_LINES = 12  # of a "gone" page's own text
SIDE_WIDTH = 1000  # pixels of each scaled screenshot in the side-by-side view
MAX_SIDE_PAGES = 4  # landscape pages per pair of screenshots
CLOSE_UP_MARGIN = 24  # pixels around the area where two screenshots differ
CLOSE_UP_CONTEXT = 120  # pixels above it: the heading or line the change belongs to
CLOSE_UP_MIN_WIDTH = 480  # narrower close-ups would be blown up past legibility
# Height of one side-by-side page relative to the scaled width: the cell of style.css's
# landscape page (about 133 x 160 mm once the captions are set).
_SIDE_RATIO = 160 / 133


# -- the item ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordState:
    """What a record said at one capture: the lines compared between captures, and why it was
    not shown, when it was not (``gone`` or ``unavailable`` with the platform's words)."""

    snapshot_id: str
    lines: list[str]
    state: str | None = None  # GONE or UNAVAILABLE; None when the record was shown
    why: str = ""  # a key of the texts (formatted with ``why_args``), else shown as it is
    why_args: dict[str, Any] = field(default_factory=dict)

    def why_text(self, lang: str) -> str:
        """Why the record was not shown, in the exhibit's language."""
        texts = TEXTS[lang]
        return texts[self.why].format(**self.why_args) if self.why in texts else self.why


@dataclass
class TimelineItem:
    """A page (or a record) across its captures, oldest first (an
    :class:`~exhibits.items.ExhibitItem`).

    A record's timeline has ``states``, one per capture shown (in order), each naming the
    snapshot it was parsed from; ``captures`` then holds those snapshots and any others that
    prove a state (the other answers of the run that no longer returned an ad).
    """

    ref: str
    page_url: str | None
    captures: list[SnapshotInfo]
    since: datetime | None = None
    until: datetime | None = None
    kind: str = "timeline"
    title: str | None = None
    states: list[RecordState] | None = None
    record_fields: list[tuple[str, str]] = field(default_factory=list)

    @property
    def snapshots(self) -> list[SnapshotInfo]:
        return self.captures

    @property
    def url(self) -> str | None:
        return self.page_url

    def fields(self) -> list[tuple[str, str]]:
        if self.states is not None:
            return [("captures", str(len(self.states))), *self.record_fields]
        rows = [("requested_url", self.page_url or ""), ("captures", str(len(self.captures)))]
        if self.since or self.until:
            rows.append(
                (
                    "range",
                    f"{utc_text(self.since) if self.since else '…'} – "  # noqa: RUF001 (typography of a court document)
                    f"{utc_text(self.until) if self.until else '…'}",
                )
            )
        return rows


def _url_variants(url: str) -> list[str]:
    # `evidence capture https://host` records the URL as typed; a later capture may have
    # been given the same page as https://host/.
    variants = [url]
    _, sep, rest = url.partition("://")
    if sep and "/" not in rest:
        variants.append(url + "/")
    elif sep and rest.count("/") == 1 and rest.endswith("/"):
        variants.append(url[:-1])
    return variants


def find_captures(
    session: Session, url: str, *, since: datetime | None = None, until: datetime | None = None
) -> list[SnapshotInfo]:
    """The captures of ``url`` (as requested) in the index, oldest first, within the range.

    Snapshots whose artifacts the retention policy deleted are left out: they cannot be shown.
    """
    query = (
        select(Snapshot)
        .options(selectinload(Snapshot.artifacts), selectinload(Snapshot.collection))
        .where(Snapshot.source_url.in_(_url_variants(url)))
        .where(Snapshot.kind.startswith("capture"))
        .where(Snapshot.deleted_at.is_(None))
        .order_by(Snapshot.captured_at, Snapshot.archived_at, Snapshot.sequence)
    )
    if since is not None:
        query = query.where(Snapshot.captured_at >= since)
    if until is not None:
        query = query.where(Snapshot.captured_at <= until)
    return [snapshot_info(s) for s in session.scalars(query)]


def resolve_timeline(
    session: Session,
    ref: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ExhibitItem:
    """The timeline a reference names: a URL's captures, or a record's (ad, post)."""
    text = ref.strip()
    head, sep, rest = text.partition(":")
    kind = head.lower() if sep else ""
    if kind in ("http", "https"):
        kind, rest = "url", text
    if since is not None and until is not None and until < since:
        raise ExhibitError("--to is before --from: no capture can be in that range")
    if kind in KINDS and KINDS[kind].resolve is None:
        raise ExhibitError(f"{ref!r}: {KINDS[kind].unavailable}")
    if kind in ("ad", "post"):
        from exhibits import records

        if not rest.strip():
            raise ExhibitError(f"{ref!r}: give a {KINDS[kind].description}")
        timeline = records.ad_timeline if kind == "ad" else records.post_timeline
        return timeline(session, rest.strip(), since=since, until=until)
    if kind == "sor":
        raise ExhibitError(
            f"{ref!r}: a statement of reasons is published once and never changes, so it has "
            f"no timeline; `evidence exhibit build {text}` makes an exhibit of it with the dump "
            "it is in"
        )
    if kind == "snapshot":
        url = snapshot_info(resolve_snapshot(session, rest.strip())).source_url
        if not url:
            raise ExhibitError(f"{ref!r}: that snapshot has no URL to follow over time")
        rest = url
    elif kind != "url":
        raise ExhibitError(
            f"{ref!r}: a timeline follows a page: give its URL (http:// or https://), or "
            "snapshot:<id> for the URL a snapshot captured"
        )
    url = rest.strip()
    captures = find_captures(session, url, since=since, until=until)
    if not captures:
        within = " in that time range" if since or until else ""
        raise ExhibitError(
            f"no capture of {url} in the index{within} (captures are found by the URL as "
            "requested: see `evidence snapshots`)"
        )
    return TimelineItem(ref=ref, page_url=url, captures=captures, since=since, until=until)


# -- text out of the archived bytes ------------------------------------------------------------
_INVISIBLE = ("script", "style", "noscript", "template", "head", "svg", "iframe", "object")
_BLOCKS = [
    *("address", "article", "aside", "blockquote", "dd", "details", "div", "dl", "dt"),
    *("fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5"),
    *("h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary"),
    *("table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul", "button", "label", "option"),
]


def visible_text(html: bytes, encoding: str | None = None) -> list[str]:
    """The text a reader sees, one line per block element, whitespace collapsed."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml", from_encoding=encoding)
    for tag in soup.find_all(_INVISIBLE):
        tag.decompose()
    for tag in soup.find_all(attrs={"hidden": True}):
        tag.decompose()
    for tag in soup.find_all(style=re.compile(r"display\s*:\s*none", re.I)):
        tag.decompose()
    for tag in soup.find_all("br"):
        tag.replace_with("\n")
    for tag in soup.find_all(_BLOCKS):
        # Inline elements stay on their line ("1.204 Likes"); blocks start new ones.
        tag.insert_before("\n")
        tag.insert_after("\n")
    lines = (" ".join(line.split()) for line in soup.get_text().splitlines())
    return [line for line in lines if line]


def _charset(content_type: str | None) -> str | None:
    match = re.search(r"charset=[\"']?([\w.:-]+)", content_type or "", re.I)
    return match.group(1) if match else None


def _warc_html(warc: Path, final_url: str | None) -> tuple[bytes, str | None] | None:
    """The HTML body of the page's response in a WARC (the final URL's, else the last)."""
    from warcio.archiveiterator import ArchiveIterator

    found: tuple[bytes, str | None] | None = None
    with open(warc, "rb") as stream:
        for record in ArchiveIterator(stream):
            if record.rec_type != "response" or record.http_headers is None:
                continue
            content_type = record.http_headers.get_header("Content-Type") or ""
            if "html" not in content_type.lower():
                continue
            target = record.rec_headers.get_header("WARC-Target-URI")
            body = record.content_stream().read()  # chunking and gzip/br undone
            if final_url is None or target == final_url or found is None:
                found = (body, _charset(content_type))
            if final_url is not None and target == final_url:
                break
    return found


def capture_text(part: SnapshotPart) -> list[str] | None:
    """The visible text of a capture, from its archived bytes: the rendered DOM of a browser
    capture, else the HTML response in its WARC; ``None`` when it holds no HTML page."""
    dom = part.artifact("dom")
    if dom is not None:
        return visible_text(dom.read_bytes())
    warc = part.artifact("warc")
    if warc is None:
        return None
    found = _warc_html(warc, part.view.get("final_url"))
    return visible_text(*found) if found else None


# -- states, differences, figures -------------------------------------------------------------
def gone_reason(view: dict[str, Any], lang: str) -> tuple[str, str] | None:
    """(state, why) when a capture does not show the page: gone or unavailable."""
    t = TEXTS[lang]
    status, outcome = view.get("status"), view.get("outcome") or "archived"
    if outcome in GONE_OUTCOMES:
        return GONE, t[f"why_{outcome.replace('-', '_')}"]
    if outcome not in _KEPT_OUTCOMES:
        error = view.get("error") or outcome
        return UNAVAILABLE, t["why_failed"].format(error=error)
    if status in GONE_STATUSES:
        return GONE, t["why_status"].format(status=status)
    if isinstance(status, int) and status >= 400:
        return UNAVAILABLE, t["why_status"].format(status=status)
    return None


@dataclass
class DiffRow:
    """One line of a text diff: ``sign`` is ``+``, ``-`` or `` `` (context); ``segments``
    are (``same``/``ins``/``del``, text) pieces, so changed words are marked within a line."""

    sign: str
    segments: list[tuple[str, str]]

    @property
    def text(self) -> str:
        return "".join(text for _, text in self.segments)


@dataclass
class Figure:
    """A number on the page that changed: where (its line), before and after."""

    context: str
    old: str
    new: str
    at: tuple[int, int] | None = None  # where the new value stands in ``context``


_NUMBER = re.compile(r"\d+(?:[.,\u00a0\u202f]\d+)*(?:[KkMm](?![a-zA-Z]))?")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|\w+|\s+|[^\w\s]")


def _words(old: str, new: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    left: list[tuple[str, str]] = []
    right: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            left.append(("same", "".join(a[i1:i2])))
            right.append(("same", "".join(b[j1:j2])))
            continue
        if i2 > i1:
            left.append(("del", "".join(a[i1:i2])))
        if j2 > j1:
            right.append(("ins", "".join(b[j1:j2])))
    return _coalesce(left), _coalesce(right)


def _coalesce(segments: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # "bis Freitag" reads as one change, not two changes around an unchanged space.
    out: list[tuple[str, str]] = []
    for n, (kind, text) in enumerate(segments):
        after = segments[n + 1][0] if n + 1 < len(segments) else None
        if kind == "same" and text.isspace() and out and after == out[-1][0] != "same":
            kind = after
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))
    return out


def _similar(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= 0.5


def text_diff(old: list[str], new: list[str], *, context: int = 2) -> list[list[DiffRow]]:
    """The changed passages (hunks) between two texts, each with ``context`` lines around."""
    hunks = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        rows: list[DiffRow] = []
        for op, i1, i2, j1, j2 in group:
            if op == "equal":
                rows += [DiffRow(" ", [("same", line)]) for line in old[i1:i2]]
                continue
            removed, added = old[i1:i2], new[j1:j2]
            paired = 0
            if op == "replace":
                # Lines edited in place are shown as a -/+ pair with the changed words marked.
                while paired < min(len(removed), len(added)) and _similar(
                    removed[paired], added[paired]
                ):
                    paired += 1
            pairs = [_words(removed[k], added[k]) for k in range(paired)]
            rows += [DiffRow("-", left) for left, _ in pairs]
            rows += [DiffRow("-", [("del", line)]) for line in removed[paired:]]
            rows += [DiffRow("+", right) for _, right in pairs]
            rows += [DiffRow("+", [("ins", line)]) for line in added[paired:]]
        hunks.append(rows)
    return hunks


def _skeleton(line: str) -> str:
    return _NUMBER.sub("#", line)


def changed_figures(old: list[str], new: list[str]) -> list[Figure]:
    """Numbers that changed between two texts: on lines that are the same apart from their
    numbers (``1.204 Likes`` → ``3.870 Likes``), each changed number once, as printed."""
    figures: list[Figure] = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op != "replace":
            continue
        unmatched = list(range(j1, j2))
        for i in range(i1, i2):
            shape = _skeleton(old[i])
            if "#" not in shape:
                continue
            j = next((j for j in unmatched if _skeleton(new[j]) == shape), None)
            if j is None:
                continue
            unmatched.remove(j)
            before = _NUMBER.findall(old[i])
            after = list(_NUMBER.finditer(new[j]))
            # A number alone on its line takes its label from the line above ("Likes" / "1.204").
            alone = not shape.strip("# ")
            context = new[j - 1] if alone and j > 0 else new[j]
            figures += [
                Figure(context, a, b.group(), None if alone else b.span())
                for a, b in zip(before, after, strict=True)
                if a != b.group()
            ]
    return figures


# -- screenshots side by side ------------------------------------------------------------------
@dataclass
class SidePage:
    """One landscape page of two screenshots side by side: the same pixel area of both."""

    left: str | None
    right: str | None
    top: int  # in the original screenshots' pixels
    bottom: int
    box: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 of a close-up


def _difference_box(a: Any, b: Any) -> tuple[int, int, int, int] | None:
    """Where two screenshots differ (over the area both cover), with a margin; ``None``
    when they are the same there or have different widths (different viewports)."""
    from PIL import ImageChops

    if a.width != b.width:
        return None
    height = min(a.height, b.height)
    box = ImageChops.difference(
        a.convert("RGB").crop((0, 0, a.width, height)),
        b.convert("RGB").crop((0, 0, b.width, height)),
    ).getbbox()
    if box is None:
        return None
    x0, y0, x1, y1 = box
    margin = CLOSE_UP_MARGIN
    x0, x1 = max(0, x0 - margin), min(a.width, x1 + margin)
    if x1 - x0 < CLOSE_UP_MIN_WIDTH:  # a tiny change is shown with its surroundings
        middle = (x0 + x1) // 2
        x0 = max(0, min(a.width - CLOSE_UP_MIN_WIDTH, middle - CLOSE_UP_MIN_WIDTH // 2))
        x1 = min(a.width, x0 + CLOSE_UP_MIN_WIDTH)
    y0 = max(0, y0 - CLOSE_UP_CONTEXT)
    y1 = min(height, y1 + margin, y0 + int((x1 - x0) * _SIDE_RATIO))  # one page at most
    return x0, y0, x1, y1


def side_by_side(
    left: Path, right: Path, folder: Path, stem: str
) -> tuple[list[SidePage], dict[str, int]]:
    """Two screenshots side by side, as copies for the PDF (the originals stay whole): first
    a close-up of the area where they differ, at full resolution, then both whole pages
    scaled to fit, cut into page-high rows."""
    from PIL import Image

    pages: list[SidePage] = []

    def save(image: Any, box: tuple[int, int, int, int], scale: float, name: str) -> str:
        crop = image.crop(box)
        if scale < 1:
            crop = crop.resize(
                (round(crop.width * scale), max(1, round(crop.height * scale))),
                Image.Resampling.LANCZOS,
            )
        path = folder / f"{stem}-{name}.png"
        crop.convert("RGB").save(path, "PNG", compress_level=1)
        return path.resolve().as_uri()

    with Image.open(left) as a, Image.open(right) as b:
        close_up = _difference_box(a, b)
        if close_up is not None:
            cells = (save(a, close_up, 1, "close-a"), save(b, close_up, 1, "close-b"))
            pages.append(SidePage(*cells, close_up[1], close_up[3], box=close_up))
        width = max(a.width, b.width)
        scale = min(1.0, SIDE_WIDTH / width)
        step = int(width * _SIDE_RATIO)
        tallest = max(a.height, b.height)
        rows = min(MAX_SIDE_PAGES, math.ceil(tallest / step))
        for row in range(rows):
            top = row * step
            cells = [
                save(image, (0, top, image.width, min(image.height, top + step)), scale, name)
                if top < image.height
                else None
                for name, image in ((f"{row + 1:02d}a", a), (f"{row + 1:02d}b", b))
            ]
            pages.append(SidePage(cells[0], cells[1], top, min(tallest, top + step)))
    sizes = {
        "shown": pages[-1].bottom if pages else 0,
        "tallest": tallest,
        "width": width,
        "percent": round(scale * 100),
    }
    return pages, sizes


# -- the exhibit's PDF -------------------------------------------------------------------------
@dataclass
class _Capture:
    number: int
    part: SnapshotPart
    state: str = PRESENT
    why: str = ""
    text: list[str] | None = None
    since: int | None = None  # the number of the capture this one is compared with
    hunks: list[list[DiffRow]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    truncated: int = 0


def _number_text(value: int, lang: str) -> str:
    return f"{value:,}".replace(",", "." if lang == "de" else ",")


def present_timeline(
    item: ExhibitItem, parts: list[SnapshotPart], page: PageContext
) -> ExhibitPage:
    """The timeline PDF: the captures and their states, the changes between them, the
    screenshots side by side, and each capture's proofs."""
    lang = page.options.lang
    t = TEXTS[lang]
    states: list[RecordState] | None = getattr(item, "states", None)
    if states is None:
        captures = [_Capture(n, part) for n, part in enumerate(parts, start=1)]
    else:
        by_id = {part.meta["id"]: part for part in parts}
        captures = [_Capture(n, by_id[s.snapshot_id]) for n, s in enumerate(states, start=1)]
    # A record's timeline compares parsed fields, not a page's text: its states say so.
    compared = "fields_" if states is not None else ""
    last_present: _Capture | None = None
    for capture in captures:
        if states is None:
            capture.text = capture_text(capture.part)
            gone = gone_reason(capture.part.view, lang)
        else:
            state = states[capture.number - 1]
            capture.text = state.lines
            gone = (state.state, state.why_text(lang)) if state.state else None
        if gone is not None:
            capture.state, capture.why = gone
            continue
        if last_present is None:
            capture.state, capture.why = PRESENT, t["first"]
        else:
            capture.since = last_present.number
            before, after = last_present.text or [], capture.text or []
            capture.hunks = text_diff(before, after)
            capture.figures = changed_figures(before, after)
            if capture.hunks:
                capture.state = CHANGED
                capture.why = t[f"{compared}changed_since"].format(n=last_present.number)
            elif last_present.number != capture.number - 1:
                capture.state = PRESENT
                capture.why = t["back_since"].format(n=last_present.number)
            else:
                capture.state = UNCHANGED
                capture.why = t[f"{compared}same_since"].format(n=capture.since)
            total = sum(len(h) for h in capture.hunks)
            if total > MAX_DIFF_ROWS:
                capture.truncated = total - MAX_DIFF_ROWS
                kept, budget = [], MAX_DIFF_ROWS
                for hunk in capture.hunks:
                    if budget <= 0:
                        break
                    kept.append(hunk[:budget])
                    budget -= len(hunk)
                capture.hunks = kept
        last_present = capture

    shots = [c for c in captures if c.part.screenshot is not None]
    side = []
    for a, b in itertools.pairwise(shots):
        assert a.part.screenshot is not None and b.part.screenshot is not None
        side_pages, sizes = side_by_side(
            a.part.screenshot, b.part.screenshot, page.render_dir, f"{page.label}-T{b.number}"
        )
        side.append(
            {
                "left": a,
                "right": b,
                "left_file": a.part.screenshot.relative_to(a.part.root or "/").as_posix(),
                "right_file": b.part.screenshot.relative_to(b.part.root or "/").as_posix(),
                "pages": side_pages,
                **sizes,
            }
        )

    first, last = captures[0].part, captures[-1].part
    url = item.url or ("" if states is not None else page_title(first, lang, item.ref))
    shown = getattr(item, "title", None) or url
    shown = shown if len(shown) <= 90 else shown[:89] + "…"
    rows = [
        {
            "n": c.number,
            "state": c.state,
            "state_text": t[c.state],
            "why": c.why,
            "utc": c.part.view["captured_utc"],
            "berlin": c.part.view["captured_berlin"],
            "status": c.part.view.get("status"),
            "outcome": c.part.view.get("outcome"),
            "final_url": c.part.view.get("final_url"),
            "moved": (c.part.view.get("final_url") or url) not in (url, url + "/"),
            "mode": c.part.view.get("mode") or c.part.view.get("kind"),
            "snapshot_id": c.part.meta["id"],
            "folder": c.part.meta["folder"],
            "since": c.since,
            "hunks": c.hunks,
            "figures": c.figures,
            "truncated": c.truncated,
            "has_text": c.text is not None,
            # A gone record's lines are what it was, not what the platform answered.
            "answer": (c.text or [])[:MAX_ANSWER_LINES] if states is None else [],
            "answer_more": max(0, len(c.text or []) - MAX_ANSWER_LINES) if states is None else 0,
            "item": c.part.view,
        }
        for c in captures
    ]
    counts = {s: sum(1 for c in captures if c.state == s) for s in (CHANGED, GONE, UNAVAILABLE)}
    return ExhibitPage(
        template="timeline.html",
        title=f"{t['timeline_of']} {shown}",
        context={
            "url": url,
            "record": states is not None,
            "record_title": getattr(item, "title", None),
            "others": [
                {
                    "folder": p.meta["folder"],
                    "utc": p.view["captured_utc"],
                    "snapshot_id": p.meta["id"],
                }
                for p in parts
                if p.meta["id"] not in {c.part.meta["id"] for c in captures}
            ],
            "captures": rows,
            "side": side,
            "counts": counts,
            "first_utc": utc_text(first.view["captured"]),
            "last_utc": utc_text(last.view["captured"]),
            "first_berlin": berlin_text(first.view["captured"], lang),
            "last_berlin": berlin_text(last.view["captured"], lang),
            "fields": [(t.get(k, k), v) for k, v in item.fields()],
            "number_text": lambda v: _number_text(v, lang),
        },
        captured_at=first.meta["captured_at"],
        captured_until=last.meta["captured_at"] if len(captures) > 1 else None,
    )
