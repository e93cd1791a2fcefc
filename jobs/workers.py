"""Runs shared by several worker processes: on one machine (``--workers N``) or many
(``evidence enqueue`` + ``evidence worker`` over one Redis, PostgreSQL and S3/MinIO).

A run is split into the source's work items (``SourceSettings.work_items``: a URL of the
`pages` source; a source that cannot be split is one item). Workers take items in batches and
run each batch as a part of the run, in a subprocess (Twisted's reactor cannot restart):
``evidence crawl-part``, which archives with the run's id and reports its outcomes. When no
item is left, one process finishes the run: status and counts from every part's outcomes,
then ``after_run`` over every snapshot of the run (one Merkle tree per run), then the run row.

The frontier is a reliable queue, not scrapy-redis's scheduler. scrapy-redis pops a request
and forgets it; a worker killed with requests in hand loses them, and its dupefilter then
refuses them for good, so "every page exactly once" fails on the first kill -9. Here a worker
*moves* a batch from the run's ``pending`` list to its own ``taken`` list (LMOVE, atomic) and
removes it only after the part's outcomes are stored; a worker whose heartbeat stops has its
``taken`` items moved back to ``pending`` by the others. An item archived by a worker that
died before it could say so is not captured again: a part first looks in the index for what
the run already archived and reports those items as archived (the resumable runs of a single
machine work the same way: ``evidence crawl SOURCE --resume RUN``).

Redis keys (``{p}`` is ``[workers] prefix``): ``{p}:runs`` (set of open runs), and per run
``{p}:run:{id}:spec`` (JSON: source, arguments, note, trigger), ``:pending`` (list of items),
``:taken:{worker}`` (list), ``:outcomes`` (list of JSON outcomes), ``:finishing`` (lock);
per worker ``{p}:worker:{id}`` (heartbeat, expires).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from crawlers.redaction import Redactor
from evidence_store.archive import check_signer
from evidence_store.errors import EvidenceError
from evidence_store.index.models import Run, Snapshot
from evidence_store.runs import finish_run, start_run
from jobs.config import Settings
from jobs.context import open_evidence
from jobs.crawl import (
    CrawlResult,
    _failures,
    count_outcomes,
    execute,
    run_plan,
    run_status,
)
from jobs.progress import NO_PROGRESS, Progress
from jobs.runs import RunRecord, after_run
from jobs.sources import configured_source, settings_for_run
from schemas import CaptureOutcome

log = logging.getLogger(__name__)
PART_ATTEMPTS = 3  # failed parts of a run given back before their items count as failed


class WorkerError(EvidenceError):
    """No frontier configured, or a run that cannot be worked on."""


# -- one part of a run ---------------------------------------------------------------------------
@dataclass
class PartResult:
    outcomes: list[CaptureOutcome]
    skipped: int = 0  # items the run had archived already
    stats: dict[str, Any] = field(default_factory=dict)


def crawl_part(
    settings: Settings,
    run_id: str,
    items: list[dict[str, Any]],
    *,
    progress: Progress = NO_PROGRESS,
) -> PartResult:
    """Capture ``items`` of the run ``run_id`` (started elsewhere) and archive them into it;
    items the run has archived already are reported as archived, not captured again."""
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        row = session.get(Run, run_id)
        if row is None:
            raise WorkerError(f"no run {run_id}")
        if row.status != "running":
            raise WorkerError(f"run {run_id} is {row.status}: no more parts")
        stats = dict(row.stats)
    spec_data = stats.get("distributed") or {}
    _refuse_redacted(run_id, spec_data)
    entry, spec, configured = configured_source(settings.sources, spec_data["source"])
    source_settings = settings_for_run(
        spec, configured, spec_data.get("arguments") or [], spec_data.get("overrides")
    )
    collection = source_settings.collection or spec.collection
    done = _archived_items(evidence, run_id, items)
    todo = [item for item in items if _item_key(item) not in done]
    outcomes = list(done.values())
    result = PartResult(outcomes=outcomes, skipped=len(outcomes))
    if not todo:
        return result
    check_signer(evidence)
    run = RunRecord(id=run_id, kind=row.kind or "capture", collection=collection, source=entry)
    workdir = Path(tempfile.mkdtemp(prefix="evidence-part-"))
    try:
        stats_, parsed = execute(
            evidence,
            settings,
            spec,
            source_settings.for_items(todo),
            run,
            spec_data.get("note"),
            outcomes.append,
            workdir,
            progress,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result.stats = {
        "requests": stats_.get("downloader/request_count", 0),
        "records": parsed.records,
    }
    return result


def _refuse_redacted(run_id: str, plan: dict[str, Any]) -> None:
    if plan.get("redacted"):
        raise WorkerError(
            f"run {run_id} was given credentials in its arguments ({', '.join(plan['redacted'])}), "
            "which are never stored: it cannot be taken up again; put credentials in the "
            "source's settings (evidence.toml or the environment) and start a new run"
        )


def _item_key(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True, separators=(",", ":"))


def _archived_items(
    evidence: Any, run_id: str, items: list[dict[str, Any]]
) -> dict[str, CaptureOutcome]:
    """Items of a URL the run archived already (a worker died after archiving, before it
    could report), as the outcomes they had."""
    redactor = Redactor()
    wanted = {
        redactor.redact_url(item["url"])[0]: item
        for item in items
        if isinstance(item.get("url"), str)
    }
    if not wanted:
        return {}
    with evidence.index.session() as session:
        rows = session.execute(
            select(Snapshot.id, Snapshot.sequence, Snapshot.source_url, Snapshot.kind).where(
                Snapshot.run_id == run_id, Snapshot.source_url.in_(list(wanted))
            )
        ).all()
    found: dict[str, CaptureOutcome] = {}
    for snapshot_id, sequence, url, kind in rows:
        item = wanted[url]
        found[_item_key(item)] = CaptureOutcome(
            url=item["url"],
            outcome="archived",
            mode=kind.removeprefix("capture-"),
            snapshot=snapshot_id,
            sequence=sequence,
        )
    return found


def run_part_process(
    settings_env: dict[str, str],
    config: Path | None,
    run_id: str,
    items: list[dict[str, Any]],
    workdir: Path,
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``evidence crawl-part`` for ``items`` in a subprocess that dies with its parent
    (a worker killed with -9 leaves no orphan still archiving)."""
    items_file = workdir / f"items-{uuid.uuid4().hex}.json"
    out_file = items_file.with_suffix(".out.json")
    items_file.write_text(json.dumps(items), encoding="utf-8")
    command = [sys.executable, "-m", "jobs.cli"]
    if config is not None:
        command += ["--config", str(config)]
    command += ["crawl-part", run_id, "--items", str(items_file), "--out", str(out_file)]
    process = subprocess.Popen(command, env=os.environ | settings_env, preexec_fn=_die_with_parent)
    return process, out_file


def part_environment(settings: Settings) -> dict[str, str]:
    """What a part must inherit that a command line set rather than the configuration."""
    return {"EVIDENCE_ALLOW_PRIVATE": "true"} if settings.allow_private else {}


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def read_part_output(out_file: Path) -> list[CaptureOutcome]:
    """The outcomes a part wrote (none if it died before writing them)."""
    try:
        data = json.loads(out_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [CaptureOutcome.model_validate(o) for o in data.get("outcomes", [])]


# -- starting and finishing a shared run ---------------------------------------------------------
@dataclass
class SharedRun:
    run_id: str
    source: str
    collection: str
    items: list[dict[str, Any]]


def start_shared_run(
    settings: Settings,
    name: str,
    arguments: Iterable[str],
    *,
    note: str | None,
    trigger: str,
    where: str,
) -> SharedRun:
    """Validate, start the run row (one run per source at a time) and list its items."""
    arguments = list(arguments)
    entry, spec, configured = configured_source(settings.sources, name)
    source_settings = settings_for_run(spec, configured, arguments)
    plan = run_plan(entry, arguments, None, note)
    if plan.get("redacted"):
        # Parts read the run's arguments from the index, where credentials are never kept.
        raise WorkerError(
            f"credentials in the arguments ({', '.join(plan['redacted'])}): a run shared by "
            "workers cannot carry them; put them in the source's settings"
        )
    collection = source_settings.collection or spec.collection
    evidence = open_evidence(settings)
    evidence.objects.check()
    check_signer(evidence)
    kind = "capture" if spec.kind == "spider" else spec.kind
    run_id = start_run(
        evidence,
        kind=kind,
        collection=collection,
        source=entry,
        trigger=trigger,
        note=note,
        exclusive=True,
    )
    with evidence.index.writing() as session:
        row = session.get(Run, run_id)
        assert row is not None
        # No pid: several processes, perhaps on several hosts, work on it; the one that
        # finishes it says how it ended (a dead local pid must not mark it interrupted).
        row.host, row.pid, row.process_started = where, None, None
        row.stats = {
            **row.stats,
            "distributed": plan,
            "trigger": trigger,
        }
    return SharedRun(run_id, entry, collection, source_settings.work_items())


def finish_shared_run(
    settings: Settings,
    shared: SharedRun,
    outcomes: list[CaptureOutcome],
    *,
    progress: Progress = NO_PROGRESS,
    stats: dict[str, Any] | None = None,
) -> CrawlResult:
    """Status and counts from every part's outcomes, timestamps over every snapshot of the
    run (one Merkle tree), then the run row."""
    evidence = open_evidence(settings)
    items = [o for o in outcomes if o.mode != "robots"]
    status = run_status(items)
    with evidence.index.session() as session:
        snapshots = list(
            session.scalars(
                select(Snapshot.id)
                .where(Snapshot.run_id == shared.run_id)
                .order_by(Snapshot.archived_at)
            )
        )
    after = after_run(
        evidence,
        settings,
        snapshots,
        source=shared.source,
        run_id=shared.run_id,
        progress=progress,
    )
    finish_run(
        evidence,
        shared.run_id,
        status=status,
        stats={
            "items": len(items),
            "snapshots": len(snapshots),
            "outcomes": count_outcomes(items),
            "failures": _failures(items),
            "untimestamped": len(after.untimestamped),
            **(stats or {}),
        },
    )
    return CrawlResult(
        run_id=shared.run_id,
        source=shared.source,
        collection=shared.collection,
        status=status,
        outcomes=outcomes,
        after=after,
    )


# -- --workers N on one machine, and resuming ----------------------------------------------------
def crawl_parallel(
    settings: Settings,
    name: str,
    arguments: Iterable[str],
    *,
    workers: int,
    note: str | None = None,
    trigger: str = "manual",
    config: Path | None = None,
    progress: Progress = NO_PROGRESS,
) -> CrawlResult:
    """One run of ``name`` whose items ``workers`` processes capture side by side (the store,
    the index and the run are shared; each process archives with group commit)."""
    shared = start_shared_run(
        settings, name, arguments, note=note, trigger=trigger, where=socket.gethostname()
    )
    return _run_parts(settings, shared, workers, config, progress)


def resume_run(
    settings: Settings,
    run_id: str,
    *,
    workers: int = 1,
    config: Path | None = None,
    progress: Progress = NO_PROGRESS,
) -> CrawlResult:
    """Finish a run that was interrupted (killed, Ctrl-C, a machine that went down): its
    items are captured in the same run, except those it archived already."""
    evidence = open_evidence(settings)
    with evidence.index.writing() as session:
        row = session.get(Run, run_id)
        if row is None:
            raise WorkerError(f"no run {run_id}")
        if row.status not in ("interrupted", "failed"):
            raise WorkerError(
                f"run {run_id} is {row.status}: only an interrupted or failed run is resumed"
            )
        plan = row.stats.get("distributed")
        _refuse_redacted(run_id, plan or {})
        if not plan:
            raise WorkerError(
                f"run {run_id} did not record its source and arguments: it cannot be resumed "
                "(runs recorded before this version); start a new run"
            )
        row.status, row.finished_at, row.error = "running", None, None
        row.host, row.pid, row.process_started = socket.gethostname(), None, None
        row.stats = {**row.stats, "resumed": int(row.stats.get("resumed", 0)) + 1}
        collection = str(row.stats.get("collection", ""))
    entry, spec, configured = configured_source(settings.sources, plan["source"])
    source_settings = settings_for_run(
        spec, configured, plan.get("arguments") or [], plan.get("overrides")
    )
    shared = SharedRun(run_id, entry, collection or spec.collection, source_settings.work_items())
    return _run_parts(settings, shared, workers, config, progress)


def _run_parts(
    settings: Settings,
    shared: SharedRun,
    workers: int,
    config: Path | None,
    progress: Progress,
) -> CrawlResult:
    chunks = [c for c in (shared.items[i::workers] for i in range(workers)) if c]
    outcomes: list[CaptureOutcome] = []
    progress.stage(
        f"{shared.source}: capturing with {len(chunks)} process(es)", total=len(shared.items)
    )
    workdir = Path(tempfile.mkdtemp(prefix="evidence-parts-"))
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        env = part_environment(settings)
        for chunk in chunks:
            processes.append(run_part_process(env, config, shared.run_id, chunk, workdir))
        for process, out_file in processes:
            process.wait()
            part = read_part_output(out_file)
            outcomes.extend(part)
            progress.advance(len([o for o in part if o.mode != "robots"]))
    except BaseException:
        for process, _ in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=60)
        evidence = open_evidence(settings)
        finish_run(evidence, shared.run_id, status="interrupted", stats={}, error="interrupted")
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    reported = {o.url for o in outcomes if o.mode != "robots"}
    for item in shared.items:
        url = item.get("url")
        if url is not None and url not in reported:
            # A part that died takes its items with it: failures of this run (resume it).
            outcomes.append(
                CaptureOutcome(
                    url=url,
                    outcome="worker-died",
                    mode="part",
                    error="the process capturing it ended without reporting",
                )
            )
    return finish_shared_run(
        settings, shared, outcomes, progress=progress, stats={"workers": len(chunks)}
    )


# -- the Redis frontier --------------------------------------------------------------------------
class Frontier:
    """The shared frontier of distributed runs in Redis (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        url = settings.workers.redis_url
        if not url:
            raise WorkerError(
                "no frontier: set [workers] redis_url (EVIDENCE_WORKERS__REDIS_URL), e.g. "
                "redis://127.0.0.1:6379/0"
            )
        import redis

        self.redis = redis.Redis.from_url(url, decode_responses=True)
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            from evidence_store.index import redact_url

            raise WorkerError(f"cannot reach Redis at {redact_url(url)}: {exc}") from None
        self.p = settings.workers.prefix

    def key(self, *parts: str) -> str:
        return ":".join((self.p, *parts))

    def open_run(self, shared: SharedRun, spec: dict[str, Any]) -> None:
        run = shared.run_id
        pipe = self.redis.pipeline()
        pipe.set(self.key("run", run, "spec"), json.dumps(spec))
        for chunk in _chunks([_item_key(i) for i in shared.items], 1000):
            pipe.rpush(self.key("run", run, "pending"), *chunk)
        pipe.sadd(self.key("runs"), run)
        pipe.execute()

    def runs(self) -> list[str]:
        return sorted(self.redis.smembers(self.key("runs")))

    def take(self, run: str, worker: str, count: int) -> list[dict[str, Any]]:
        taken = []
        for _ in range(count):
            item = self.redis.lmove(
                self.key("run", run, "pending"),
                self.key("run", run, "taken", worker),
                "LEFT",
                "RIGHT",
            )
            if item is None:
                break
            taken.append(json.loads(item))
        return taken

    def report(self, run: str, worker: str, outcomes: list[CaptureOutcome]) -> None:
        """Store a part's outcomes and release its items, in one transaction."""
        pipe = self.redis.pipeline()
        if outcomes:
            pipe.rpush(self.key("run", run, "outcomes"), *(o.model_dump_json() for o in outcomes))
        pipe.delete(self.key("run", run, "taken", worker))
        pipe.execute()

    def give_back(self, run: str, worker: str) -> int:
        """Move a worker's taken items back to pending (it failed or is gone)."""
        moved = 0
        while self.redis.lmove(
            self.key("run", run, "taken", worker), self.key("run", run, "pending"), "RIGHT", "LEFT"
        ):
            moved += 1
        return moved

    def beat(self, worker: str, ttl: float) -> None:
        self.redis.set(self.key("worker", worker), str(time.time()), px=int(ttl * 1000))

    def reap(self, run: str) -> int:
        """Give back the items of workers whose heartbeat expired."""
        moved = 0
        prefix = self.key("run", run, "taken", "")
        for key in self.redis.scan_iter(match=prefix + "*"):
            worker = key[len(prefix) :]
            if not self.redis.exists(self.key("worker", worker)):
                moved += self.give_back(run, worker)
                log.warning(
                    "worker %s is gone: %d item(s) of run %s given back", worker, moved, run
                )
        return moved

    def idle(self, run: str) -> bool:
        """Nothing pending and nothing taken: the run's items are all done."""
        if self.redis.llen(self.key("run", run, "pending")):
            return False
        return not any(True for _ in self.redis.scan_iter(match=self.key("run", run, "taken", "*")))

    def claim_finish(self, run: str, worker: str) -> bool:
        return bool(self.redis.set(self.key("run", run, "finishing"), worker, nx=True, ex=3600))

    def outcomes(self, run: str) -> list[CaptureOutcome]:
        return [
            CaptureOutcome.model_validate_json(o)
            for o in self.redis.lrange(self.key("run", run, "outcomes"), 0, -1)
        ]

    def spec(self, run: str) -> dict[str, Any]:
        text = self.redis.get(self.key("run", run, "spec"))
        return json.loads(text) if text else {}

    def close_run(self, run: str) -> None:
        keys = list(self.redis.scan_iter(match=self.key("run", run, "*")))
        pipe = self.redis.pipeline()
        pipe.srem(self.key("runs"), run)
        if keys:
            pipe.delete(*keys)
        pipe.execute()


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def enqueue(
    settings: Settings,
    name: str,
    arguments: Iterable[str] = (),
    *,
    note: str | None = None,
    trigger: str = "manual",
) -> SharedRun:
    """Start a distributed run of ``name``: its row in the index, its items in the frontier.
    Workers (`evidence worker`) capture them; the last one finishes the run."""
    frontier = Frontier(settings)
    shared = start_shared_run(
        settings,
        name,
        arguments,
        note=note,
        trigger=trigger,
        where=f"workers via {frontier.p}",
    )
    frontier.open_run(
        shared,
        {"source": shared.source, "collection": shared.collection, "items": len(shared.items)},
    )
    return shared


def wait_for_run(settings: Settings, run_id: str, *, poll: float = 1.0) -> str:
    """Wait until the run is finished (by whichever worker finishes it); its status."""
    evidence = open_evidence(settings)
    while True:
        with evidence.index.session() as session:
            row = session.get(Run, run_id)
            status = row.status if row is not None else "failed"
        if status != "running":
            return status
        time.sleep(poll)


@dataclass
class WorkerSummary:
    worker: str
    parts: int = 0
    items: int = 0
    finished_runs: list[str] = field(default_factory=list)


def work(
    settings: Settings,
    *,
    config: Path | None = None,
    idle_exit: float | None = None,
    stop: threading.Event | None = None,
    on_part: Callable[[str, int], None] | None = None,
) -> WorkerSummary:
    """Take batches of the open runs' items until stopped (or idle for ``idle_exit`` s)."""
    frontier = Frontier(settings)
    worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    summary = WorkerSummary(worker)
    stop = stop or threading.Event()
    cfg = settings.workers
    frontier.beat(worker, cfg.lost_after)

    def heartbeat() -> None:
        while not stop.wait(cfg.heartbeat):
            with contextlib.suppress(Exception):
                frontier.beat(worker, cfg.lost_after)

    beating = threading.Thread(target=heartbeat, name="heartbeat", daemon=True)
    beating.start()
    idle_since = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="evidence-worker-"))
    try:
        while not stop.is_set():
            busy = False
            for run in frontier.runs():
                frontier.reap(run)
                items = frontier.take(run, worker, cfg.batch)
                if items:
                    busy = True
                    _work_part(frontier, settings, config, run, worker, items, workdir)
                    summary.parts += 1
                    summary.items += len(items)
                    if on_part is not None:
                        on_part(run, len(items))
                    break  # look at every run again: another may have been enqueued
                if frontier.idle(run) and frontier.claim_finish(run, worker):
                    _finish(frontier, settings, run)
                    summary.finished_runs.append(run)
            if busy:
                idle_since = time.monotonic()
            elif idle_exit is not None and time.monotonic() - idle_since > idle_exit:
                break
            else:
                stop.wait(0.5)
    finally:
        stop.set()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
        with contextlib.suppress(Exception):
            frontier.redis.delete(frontier.key("worker", worker))
    return summary


def _work_part(
    frontier: Frontier,
    settings: Settings,
    config: Path | None,
    run: str,
    worker: str,
    items: list[dict[str, Any]],
    workdir: Path,
) -> None:
    process, out_file = run_part_process(part_environment(settings), config, run, items, workdir)
    try:
        code = process.wait()
    except BaseException:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        frontier.give_back(run, worker)
        raise
    outcomes = read_part_output(out_file)
    if code != 0 and not outcomes:
        failures = frontier.redis.incr(frontier.key("run", run, "part-failures"))
        if failures <= PART_ATTEMPTS:
            log.warning("part of run %s failed (exit %s): its items go back", run, code)
            frontier.give_back(run, worker)
            time.sleep(1)
            return
        # A part that fails every time (a broken source, a full disk) must not go round for
        # ever: its items end as failures of the run, which then finishes.
        outcomes = [
            CaptureOutcome(
                url=item.get("url") or _item_key(item),
                outcome="worker-failed",
                mode="part",
                error=f"the part capturing it failed {failures} times (exit {code})",
            )
            for item in items
        ]
    frontier.report(run, worker, outcomes)


def _finish(frontier: Frontier, settings: Settings, run: str) -> None:
    spec = frontier.spec(run)
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        row = session.get(Run, run)
        running = row is not None and row.status == "running"
    if running:
        shared = SharedRun(run, spec.get("source", ""), spec.get("collection", ""), [])
        finish_shared_run(settings, shared, frontier.outcomes(run))
    frontier.close_run(run)
