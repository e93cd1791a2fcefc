"""Records as exhibits: a statement of reasons (``sor:UUID``), an ad (``ad:PLATFORM:ID``)
and a platform post (``post:PLATFORM:ID``), each alone or, for ads and posts, as a timeline.

A record's exhibit shows its fields and where it came from, and carries the snapshots it was
parsed from as originals, so that it is checked like any capture:

- a statement of reasons: the archived dump holding it (the smallest one, when a platform's
  own dump and the global one both do), and in the fields the part, the CSV file and the row,
  with the command that prints that row from the dump with unzip alone;
- an ad: the snapshots of each of its versions (the API answers) and of its rendered creative,
  and in the fields the current values and the version history;
- a post: the capture that last showed it (page, screenshot, the platform's data, the video:
  stills from the video are printed, with the ffmpeg command that takes them again), the
  captures of its other versions and the last capture (a removal notice), and in the fields
  its current values, versions, status and counts.

A timeline of an ad or a post (:func:`ad_timeline`, :func:`post_timeline`) is a
:class:`~exhibits.timeline.TimelineItem` whose states are the record's fields at each capture:
an ad's versions and, when the query stopped returning it, the answers of the run that noticed;
a post's every capture, with the counts it read and the status it found.

The resolvers read the index and the object store that ``build_bundle`` puts into the
session's ``info`` (``"index"``, ``"objects"``): they need more than SQL (statements live in
Parquet files).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from evidence_store.queries import resolve_snapshot, snapshot_info
from exhibits.items import ExhibitError
from schemas import SnapshotInfo

if TYPE_CHECKING:
    from exhibits.timeline import TimelineItem


@dataclass
class RecordItem:
    """A record as an exhibit: its fields, and the snapshots it was parsed from."""

    kind: str
    ref: str
    title: str
    record_fields: list[tuple[str, str]]
    record_snapshots: list[SnapshotInfo]
    record_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def snapshots(self) -> list[SnapshotInfo]:
        return self.record_snapshots

    @property
    def url(self) -> str | None:
        return self.record_url

    def fields(self) -> list[tuple[str, str]]:
        return self.record_fields


@dataclass(frozen=True)
class _Stores:
    index: Any
    objects: Any


def _stores(session: Session) -> _Stores:
    try:
        return _Stores(session.info["index"], session.info["objects"])
    except KeyError:
        raise ExhibitError("record exhibits are built by build_bundle (no store given)") from None


def _is_range(value: Any) -> bool:
    return (
        isinstance(value, dict) and "original" in value and ("lower" in value or "upper" in value)
    )


def _text(value: Any) -> str:
    if _is_range(value):  # as the platform wrote it
        return _range_text(value)
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return "-" if value is None or value == "" else str(value)


def _range_text(bounds: dict[str, Any]) -> str:
    if bounds.get("original"):
        text = str(bounds["original"])
    else:
        lower, upper = bounds.get("lower"), bounds.get("upper")
        text = f"{lower if lower is not None else '…'}-{upper if upper is not None else '…'}"
    return f"{text} {bounds['currency']}" if bounds.get("currency") else text


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _compact(value: Any) -> str:
    """A value of a list of objects on one line: ``key=value, …`` without the empty ones."""
    if _is_range(value):
        return _range_text(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_compact(v)}" for k, v in value.items() if not _empty(v))
    if isinstance(value, list):
        return "; ".join(_compact(v) for v in value)
    return _text(value)


def record_lines(fields: dict[str, Any], order: tuple[str, ...] = ()) -> list[str]:
    """A record's fields as ``name: value`` lines, the lines a timeline compares.

    Nested objects become dotted names (``targeting.interests``), a range its text as
    published (``10K-15K``), each object of a list one line (``demographics[2]: age=25-34,
    …``); empty fields are left out, so a field that appears or goes is a line added or
    removed. ``order`` puts the fields a reader looks for first; the rest follow sorted, so
    the lines do not depend on how the database returns a JSON object's keys.
    """
    lines: list[str] = []

    def walk(name: str, value: Any) -> None:
        if _empty(value):
            return
        if isinstance(value, dict) and not _is_range(value):
            for key in sorted(value):
                walk(f"{name}.{key}", value[key])
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            for n, entry in enumerate(value, start=1):
                lines.append(f"{name}[{n}]: {_compact(entry)}")
        else:
            lines.append(f"{name}: {_text(value)}")

    for key in [k for k in order if k in fields] + sorted(set(fields) - set(order)):
        walk(key, fields[key])
    return lines


SOR_FIELDS = (
    "uuid",
    "platform_name",
    "platform_uid",
    "created_at",
    "application_date",
    "content_date",
    "category",
    "category_as_published",
    "category_specification",
    "decision_ground",
    "decision_visibility",
    "decision_visibility_other",
    "decision_account",
    "decision_monetary",
    "decision_provision",
    "account_type",
    "content_type",
    "content_language",
    "territorial_scope",
    "illegal_content_legal_ground",
    "illegal_content_explanation",
    "incompatible_content_ground",
    "incompatible_content_explanation",
    "decision_facts",
    "source_type",
    "automated_detection",
    "automated_decision",
)


def resolve_statement(session: Session, ref: str) -> RecordItem:
    """``sor:UUID``: the statement and the smallest archived dump that holds it."""
    from records.sor.models import SorDump
    from records.sor.query import NoStatements, find, ingested_parts, parquet_paths, statements

    stores = _stores(session)
    uuid = ref.strip().lower()
    files = ingested_parts(stores, current=False)
    cache = Path(tempfile.gettempdir()) / "evidence-sor-cache"
    try:
        with statements(parquet_paths(stores, files, cache)) as con:
            rows = find(con, uuid)
    except NoStatements:
        rows = []
    if not rows:
        raise ExhibitError(f"sor:{ref}: no statement {uuid} in the ingested dumps")
    dumps = {
        d.snapshot_id: d
        for d in session.scalars(
            select(SorDump).where(SorDump.snapshot_id.in_({r["dump_snapshot"] for r in rows}))
        )
    }
    # The smallest dump that holds the statement: a platform's own dump rather than the
    # global one, which can run to gigabytes.
    row = min(rows, key=lambda r: (dumps[r["dump_snapshot"]].size, r["row"]))
    dump = dumps[row["dump_snapshot"]]
    snap = snapshot_info(resolve_snapshot(session, dump.snapshot_id))
    fields = [(name, _text(row.get(name))) for name in SOR_FIELDS if name in row]
    fields += [
        ("dump_file", dump.filename),
        ("dump_published_sha1", dump.sha1),
        ("part", row["part"]),
        ("csv_file", row["csv_file"]),
        ("row", str(row["row"])),
        (
            "row_command",
            f"unzip -p {dump.filename} {row['part']} > part.zip && unzip -p part.zip "
            f'{row["csv_file"]} | python3 -c "import csv,sys; '
            f'print(list(csv.reader(sys.stdin))[{row["row"]}])"',
        ),
        ("found_in", f"{len(rows)} row(s) of {len({r['dump_snapshot'] for r in rows})} dump(s)"),
    ]
    return RecordItem(
        kind="sor",
        ref=f"sor:{uuid}",
        title=f"{uuid} ({row.get('platform_name') or '?'})",
        record_fields=fields,
        record_snapshots=[snap],
        record_url=dump.url,
    )


AD_FIELDS = (
    "platform",
    "ad_id",
    "advertiser_name",
    "page_name",
    "funding_entity",
    "beneficiaries",
    "payers",
    "first_shown",
    "last_shown",
    "status",
    "removal_reason",
    "spend",
    "impressions",
    "reach",
    "countries",
    "languages",
    "targeting",
    "special_categories",
    "creative",
    "snapshot_url",
)


def _find_record(session: Session, model: Any, id_column: Any, kind: str, ref: str) -> Any:
    """The row ``PLATFORM:ID`` (or a bare ``ID`` on one platform only) names."""
    platform, sep, record_id = ref.partition(":")
    query = select(model).where(id_column == (record_id if sep else platform).strip())
    if sep:
        query = query.where(model.platform == platform.strip().lower())
    rows = session.scalars(query).all()
    if len(rows) != 1:
        problem = f"no such {kind}" if not rows else "the id is on several platforms: say which"
        raise ExhibitError(f"{kind}:{ref}: {problem}")
    return rows[0]


def _infos(session: Session, snapshot_ids: list[str]) -> dict[str, SnapshotInfo]:
    """The snapshots by id, those the retention policy emptied left out (nothing to show)."""
    infos = {}
    for sid in dict.fromkeys(snapshot_ids):
        info = snapshot_info(resolve_snapshot(session, sid))
        if info.deleted_at is None:
            infos[sid] = info
    return infos


def _in_range(info: SnapshotInfo, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or info.captured_at >= since) and (
        until is None or info.captured_at <= until
    )


def resolve_ad(session: Session, ref: str) -> RecordItem:
    """``ad:PLATFORM:ID`` (or ``ad:ID``): the ad, its versions' snapshots and its creative."""
    from records.ads.models import Ad, AdVersion

    ad = _find_record(session, Ad, Ad.ad_id, "ad", ref)
    versions = session.scalars(
        select(AdVersion).where(AdVersion.ad_pk == ad.id).order_by(AdVersion.number)
    ).all()
    snapshot_ids = list(dict.fromkeys(v.snapshot_id for v in versions))
    if ad.creative_snapshot_id:
        snapshot_ids.append(ad.creative_snapshot_id)
    snaps = [snapshot_info(resolve_snapshot(session, sid)) for sid in snapshot_ids]
    current = ad.current or {}
    # "status" alone is the label of the HTTP status in the exhibit's texts.
    fields = [
        ("ad_status" if name == "status" else name, _text(current.get(name)))
        for name in AD_FIELDS
        if name in current
    ]
    for version in versions:
        fields.append(
            (
                f"version {version.number}",
                f"seen {version.seen_at.isoformat()}, snapshot {version.snapshot_id}, "
                f"WARC record {version.warc_record_id or '-'}",
            )
        )
    if ad.unseen_since:
        fields.append(("unseen_since", f"{ad.unseen_since.isoformat()} (run {ad.unseen_run_id})"))
    if not snaps:
        raise ExhibitError(f"ad:{ref}: no archived snapshot holds it")
    return RecordItem(
        kind="ad",
        ref=f"ad:{ad.platform}:{ad.ad_id}",
        title=f"{ad.platform}:{ad.ad_id} ({ad.advertiser_name or '?'})",
        record_fields=fields,
        record_snapshots=snaps,
        record_url=current.get("snapshot_url"),
    )


def ad_timeline(
    session: Session,
    ref: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> TimelineItem:
    """``ad:PLATFORM:ID`` over time: each version as the API answer that returned it (T1 the
    first), and, when a query stopped returning it, the answers of the run that noticed."""
    from evidence_store.index.models import Snapshot
    from exhibits.texts import utc_text
    from exhibits.timeline import GONE, RecordState, TimelineItem
    from records.ads.models import Ad, AdVersion

    ad = _find_record(session, Ad, Ad.ad_id, "ad", ref)
    versions = session.scalars(
        select(AdVersion).where(AdVersion.ad_pk == ad.id).order_by(AdVersion.number)
    ).all()
    infos = _infos(session, [v.snapshot_id for v in versions])
    states = [
        RecordState(v.snapshot_id, record_lines(v.fields, AD_FIELDS))
        for v in versions
        if v.snapshot_id in infos and _in_range(infos[v.snapshot_id], since, until)
    ]
    captures = [infos[s.snapshot_id] for s in states]
    fields = [("record", f"ad:{ad.platform}:{ad.ad_id}"), ("versions", str(len(versions)))]
    if ad.unseen_since is not None and ad.unseen_run_id:
        # The run's answers prove the absence together: all of them go into the bundle, the
        # first stands for the run in the table.
        answers = session.scalars(
            select(Snapshot.id)
            .where(Snapshot.run_id == ad.unseen_run_id, Snapshot.deleted_at.is_(None))
            .where(Snapshot.id != (ad.creative_snapshot_id or ""))
            .order_by(Snapshot.captured_at, Snapshot.sequence)
        ).all()
        gone = [info for info in _infos(session, list(answers)).values()]
        gone = [info for info in gone if _in_range(info, since, until)]
        when = utc_text(ad.unseen_since)
        if gone:
            last_lines = states[-1].lines if states else []
            why = {"when": when, "run": ad.unseen_run_id, "n": len(gone)}
            states.append(RecordState(gone[0].id, last_lines, GONE, "ad_gone", why))
            captures += gone
        fields.append(("unseen_since", f"{when} (run {ad.unseen_run_id})"))
    if not states:
        raise ExhibitError(f"ad:{ref}: no archived version of it in that time range")
    return TimelineItem(
        ref=f"ad:{ad.platform}:{ad.ad_id}",
        page_url=(ad.current or {}).get("snapshot_url"),
        captures=captures,
        since=since,
        until=until,
        title=f"ad:{ad.platform}:{ad.ad_id} ({ad.advertiser_name or '?'})",
        states=states,
        record_fields=fields,
    )


POST_FIELDS = (
    "platform",
    "post_id",
    "url",
    "author",
    "created_at",
    "text",
    "hashtags",
    "mentions",
    "language",
    "location",
    "labels",
    "media",
    "music",
    "reply_to",
    "quoted",
)
COUNTS = ("views", "likes", "comments", "shares", "saves", "reposts", "quotes")
# Not shown, but not gone either: the post may come back for another viewer or later.
UNAVAILABLE_STATUSES = frozenset({"geo_blocked", "account_private", "age_restricted"})


def _post_rows(session: Session, ref: str) -> tuple[Any, list[Any], list[Any]]:
    from records.posts.models import Post, PostCount, PostVersion

    post = _find_record(session, Post, Post.post_id, "post", ref)
    versions = session.scalars(
        select(PostVersion).where(PostVersion.post_pk == post.id).order_by(PostVersion.number)
    ).all()
    counts = session.scalars(
        select(PostCount).where(PostCount.post_pk == post.id).order_by(PostCount.captured_at)
    ).all()
    return post, list(versions), list(counts)


def _count_text(row: Any) -> str:
    return ", ".join(f"{n} {getattr(row, n)}" for n in COUNTS if getattr(row, n) is not None)


def resolve_post(session: Session, ref: str) -> RecordItem:
    """``post:PLATFORM:ID`` (or ``post:ID``): the capture that last showed the post first (its
    screenshot and video are printed), then its other versions' captures and the last one."""
    post, versions, counts = _post_rows(session, ref)
    shown = [v for v in versions if v.status == "available"]
    last_shown = max(
        [(c.captured_at, c.snapshot_id) for c in counts]
        + [(v.captured_at, v.snapshot_id) for v in shown],
        default=None,
    )
    order = ([last_shown[1]] if last_shown else []) + [v.snapshot_id for v in versions]
    infos = _infos(session, [*order, post.last_snapshot_id])
    if not infos:
        raise ExhibitError(f"post:{ref}: no archived capture holds it")
    current = post.current or {}
    fields = [("post_status", f"{post.status} ({_text(current.get('status_detail'))})")]
    fields += [
        (line.partition(": ")[0], line.partition(": ")[2])
        for line in record_lines(current, POST_FIELDS)
        if not line.startswith(("status:", "status_detail:"))
    ]
    for version in versions:
        fields.append(
            (
                f"version {version.number}",
                f"{version.status}, captured {version.captured_at.isoformat()}, "
                f"snapshot {version.snapshot_id}",
            )
        )
    for row in counts:
        fields.append(("counts", f"{row.captured_at.isoformat()}: {_count_text(row)}"))
    return RecordItem(
        kind="post",
        ref=f"post:{post.platform}:{post.post_id}",
        title=f"{post.platform}:{post.post_id} (@{post.author_handle or '?'})",
        record_fields=fields,
        record_snapshots=list(infos.values()),
        record_url=post.url,
    )


def post_timeline(
    session: Session,
    ref: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> TimelineItem:
    """``post:PLATFORM:ID`` over time: every capture of it, with the fields in force (its
    version), the counts it read and the status it found (removed, geo-blocked, …)."""
    from exhibits.timeline import GONE, UNAVAILABLE, RecordState, TimelineItem

    post, versions, counts = _post_rows(session, ref)
    if not versions:
        raise ExhibitError(f"post:{ref}: no capture of it is indexed")
    by_snapshot = {c.snapshot_id: c for c in counts}
    ids = [v.snapshot_id for v in versions] + list(by_snapshot) + [post.last_snapshot_id]
    infos = sorted(
        (i for i in _infos(session, ids).values() if _in_range(i, since, until)),
        key=lambda i: (i.captured_at, i.sequence),
    )
    if not infos:
        raise ExhibitError(f"post:{ref}: no capture of it in that time range")
    version_of = {v.snapshot_id: v for v in versions}
    states = []
    for info in infos:
        # The version in force: the one this capture made, else the newest before it.
        version = version_of.get(info.id) or max(
            (v for v in versions if v.captured_at <= info.captured_at),
            key=lambda v: v.number,
            default=versions[0],
        )
        fields = {k: v for k, v in version.fields.items() if k not in ("status", "status_detail")}
        lines = record_lines(fields, POST_FIELDS)
        if info.id in by_snapshot:
            row = by_snapshot[info.id]
            lines += [
                f"counts.{n}: {getattr(row, n)}" for n in COUNTS if getattr(row, n) is not None
            ]
        state = None
        if version.status != "available":
            state = UNAVAILABLE if version.status in UNAVAILABLE_STATUSES else GONE
        detail = version.fields.get("status_detail") or ""
        why = f"{version.status}: {detail}" if detail else version.status
        states.append(RecordState(info.id, lines, state, why if state else ""))
    return TimelineItem(
        ref=f"post:{post.platform}:{post.post_id}",
        page_url=post.url,
        captures=infos,
        since=since,
        until=until,
        title=f"post:{post.platform}:{post.post_id} (@{post.author_handle or '?'})",
        states=states,
        record_fields=[
            ("record", f"post:{post.platform}:{post.post_id}"),
            ("post_status", post.status),
            ("versions", str(len(versions))),
        ],
    )


# -- stills of a post's video ------------------------------------------------------------------
STILLS = (0.1, 0.5, 0.9)  # where in the video, as fractions of its duration


def _duration(video: Path) -> float | None:
    done = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-show_entries", "format=duration"),
            *("-of", "default=noprint_wrappers=1:nokey=1", str(video)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        return float(done.stdout.strip())
    except ValueError:
        return None


def video_stills(part: Any, folder: Path, stem: str) -> tuple[list[dict[str, Any]], str | None]:
    """Stills of the videos of a capture, for its PDF (the files stay whole as originals).

    Each still names the time, the file, its SHA-256 and the ffmpeg command that takes it
    again from the bundle's copy; returns (stills, why none could be taken).
    """
    videos = [
        entry
        for entry in part.meta["artifacts"]
        if entry["role"] == "media" and str(entry.get("media_type", "")).startswith("video/")
    ]
    if not videos:
        return [], None
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        return [], "ffmpeg is not installed"
    stills, problem = [], None
    for n, entry in enumerate(videos, start=1):
        video = part.root / entry["path"]
        duration = _duration(video)
        if not duration:
            problem = f"ffprobe reads no duration in {entry['path']}"
            continue
        for at in sorted({round(duration * f, 1) for f in STILLS}):
            target = folder / f"{stem}-video{n}-{at:.1f}.png"
            command = ["ffmpeg", "-v", "error", "-ss", f"{at:.1f}", "-i", entry["path"]]
            command += ["-frames:v", "1", "still.png"]
            done = subprocess.run(
                [*command[:-1], "-y", str(target)],
                cwd=part.root,
                capture_output=True,
                timeout=120,
                check=False,
            )
            if done.returncode != 0 or not target.exists():
                problem = done.stderr.decode(errors="replace").strip()[:200] or "ffmpeg failed"
                continue
            stills.append(
                {
                    "uri": target.resolve().as_uri(),
                    "at": f"{at:.1f}",
                    "file": entry["path"],
                    "sha256": entry["sha256"],
                    "command": " ".join(command),
                }
            )
    return stills, problem if not stills else None


def present_record(item: Any, parts: list[Any], page: Any) -> Any:
    """A record's exhibit: the snapshot presenter, titled by the record."""
    from exhibits.bundle import present_snapshot
    from exhibits.texts import TEXTS

    shown = present_snapshot(item, parts, page)
    shown.title = f"{TEXTS[page.options.lang][f'record_{item.kind}']} {item.title}"
    if item.kind == "post":
        stills, problem = video_stills(parts[0], page.render_dir, page.label)
        shown.context["item"]["stills"] = stills
        shown.context["item"]["stills_problem"] = problem
    if len(parts) > 1:
        shown.captured_until = max(p.meta["captured_at"] for p in parts)
        shown.captured_at = min(p.meta["captured_at"] for p in parts)
    return shown
