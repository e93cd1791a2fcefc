"""Scheduled runs: APScheduler 3 with its job store in the index database.

Each entry of [sources] with a ``schedule`` (cron, in its ``timezone``, Europe/Berlin by
default) is one job. When it fires, the run executes in a subprocess of its own (`evidence
crawl NAME --trigger schedule`: Twisted's reactor cannot restart, and a crash of one run must
not take the scheduler down), which records the run row, archives its report and log, and
alerts. At most one run per source at a time: the run row is taken under a lock in the
database, so two schedulers (or a scheduler and a person) never run a source twice at once.
Missed runs (scheduler down) are coalesced into one within ``[schedule] misfire_grace``.
On SIGTERM or SIGINT the scheduler stops firing, lets running captures finish for
``[schedule] shutdown_grace`` seconds, then stops them (their runs end ``interrupted``).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from evidence_store.errors import EvidenceError
from evidence_store.index.models import Run, ScheduledJob, Source
from jobs.config import Settings, config_file
from jobs.context import open_evidence, open_index
from jobs.sources import configured_source, schedule_trigger
from schemas import utc_now

log = logging.getLogger(__name__)

# Runs started by this scheduler process and still going, by source: stopped on shutdown.
_RUNNING: dict[str, subprocess.Popen[bytes]] = {}
_RUNNING_LOCK = threading.Lock()


@dataclass(frozen=True)
class ScheduledEntry:
    name: str
    source: str  # the registered source it runs
    schedule: str
    timezone: str

    def trigger(self) -> Any:
        return schedule_trigger(self.schedule, self.timezone)


def scheduled_entries(settings: Settings) -> list[ScheduledEntry]:
    """Every configured source that has a schedule, by name."""
    entries = []
    for name in sorted(settings.sources):
        _, spec, values = configured_source(settings.sources, name)
        if values.get("schedule"):
            entries.append(
                ScheduledEntry(
                    name=name,
                    source=spec.name,
                    schedule=values["schedule"],
                    timezone=values.get("timezone") or "Europe/Berlin",
                )
            )
    return entries


def _entry(settings: Settings, name: str) -> ScheduledEntry:
    for entry in scheduled_entries(settings):
        if entry.name == name:
            return entry
    known = ", ".join(e.name for e in scheduled_entries(settings)) or "none"
    raise EvidenceError(f"{name!r} has no schedule in [sources] (scheduled: {known})")


def launch_run(name: str, config_path: str | None) -> int | None:
    """What a job does when it fires (a thread of the scheduler): run `evidence crawl NAME
    --trigger schedule` in a subprocess and wait for it; its exit status, None if skipped."""
    from jobs.config import load_settings

    settings = load_settings(Path(config_path) if config_path else None)
    if (paused := paused_sources(settings).get(name)) is not None:
        log.warning("%s: scheduled run skipped, paused since %s", name, paused)
        return None
    command = [sys.executable, "-m", "jobs.cli"]
    if config_path:
        command += ["--config", config_path]
    # Distributed: the run's items go to the shared frontier and the workers capture them;
    # this subprocess waits until one of them has finished the run.
    verb = "enqueue" if settings.schedule.distributed else "crawl"
    command += [verb, name, "--trigger", "schedule"]
    log.info("%s: starting a scheduled run", name)
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    with _RUNNING_LOCK:
        _RUNNING[name] = process
    try:
        status = process.wait()
    finally:
        with _RUNNING_LOCK:
            _RUNNING.pop(name, None)
    log.info("%s: scheduled run ended with exit status %s", name, status)
    return status


def make_scheduler(settings: Settings) -> Any:
    """A background scheduler whose job store is the index database."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    index = open_index(settings)
    index.ensure_schema()
    return BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=index.engine)},
        executors={"default": ThreadPoolExecutor(settings.schedule.max_parallel)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": settings.schedule.misfire_grace,
        },
        timezone=UTC,
    )


@dataclass
class SyncResult:
    added: list[str]
    changed: list[str]
    kept: list[str]
    removed: list[str]


def sync_jobs(scheduler: Any, settings: Settings, config_path: str | None) -> SyncResult:
    """Make the persisted jobs match the configuration; an unchanged job keeps its next run
    time, so that a run missed while the scheduler was down is still made up."""
    result = SyncResult([], [], [], [])
    wanted = {entry.name: entry for entry in scheduled_entries(settings)}
    for job in scheduler.get_jobs():
        if job.id not in wanted:
            scheduler.remove_job(job.id)
            result.removed.append(job.id)
    for name, entry in wanted.items():
        trigger = entry.trigger()
        args = [name, config_path]
        job = scheduler.get_job(name)
        if job is None:
            scheduler.add_job(launch_run, trigger, args=args, id=name, name=name)
            result.added.append(name)
        elif str(job.trigger) != str(trigger) or list(job.args) != args:
            scheduler.modify_job(name, args=args)
            scheduler.reschedule_job(name, trigger=trigger)
            result.changed.append(name)
        else:
            result.kept.append(name)
    return result


def serve(
    settings: Settings,
    config_path: Path | None = None,
    *,
    on_ready: Callable[[SyncResult], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run the scheduler until SIGTERM or SIGINT (or ``stop``), then shut down cleanly."""
    if not scheduled_entries(settings):
        raise EvidenceError(
            "nothing to schedule: no entry of [sources] has a `schedule` "
            "(see evidence.example.toml)"
        )
    path = config_file(config_path)
    config = str(path.absolute()) if path else None
    stop = stop or threading.Event()
    force = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():
            force.set()  # a second signal: stop the running captures now
        log.warning("signal %s: no new runs; waiting for running ones", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    scheduler = make_scheduler(settings)
    scheduler.start(paused=True)
    try:
        synced = sync_jobs(scheduler, settings, config)
        scheduler.resume()
        if on_ready is not None:
            on_ready(synced)
        while not stop.wait(0.5):
            pass
        scheduler.pause()
        _stop_running(settings.schedule.shutdown_grace, force)
    finally:
        scheduler.shutdown(wait=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_running(grace: float, force: threading.Event) -> None:
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not force.is_set():
        with _RUNNING_LOCK:
            if not _RUNNING:
                return
        time.sleep(0.2)
    with _RUNNING_LOCK:
        running = list(_RUNNING.items())
    for name, process in running:
        # Scrapy stops a crawl cleanly on SIGTERM; the run then ends as interrupted.
        log.warning("%s: stopping the running capture", name)
        process.send_signal(signal.SIGTERM)
    for _, process in running:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()  # the next run start marks its run interrupted


@dataclass
class ScheduleStatus:
    name: str
    source: str
    schedule: str
    timezone: str
    next_run: datetime | None
    paused_at: datetime | None
    last_run: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "next_run": self.next_run.isoformat() if self.next_run else None,
            "paused_at": self.paused_at.isoformat() if self.paused_at else None,
            "last_run": self.last_run,
        }


def schedule_status(settings: Settings) -> list[ScheduleStatus]:
    """Each scheduled source: its next run, whether it is paused, how its last run ended."""
    index = open_index(settings)
    paused = paused_sources(settings)
    rows = []
    with index.session() as session:
        stored = {job.id: job.next_run_time for job in session.scalars(select(ScheduledJob))}
        for entry in scheduled_entries(settings):
            last = session.scalars(
                select(Run)
                .join(Source, Run.source_id == Source.id)
                .where(Source.name == entry.name)
                .order_by(Run.started_at.desc())
            ).first()
            if entry.name in stored:  # what the scheduler will do (None: paused there)
                when = stored[entry.name]
                next_run = datetime.fromtimestamp(when, UTC) if when else None
            else:  # never started with this entry yet: what the schedule says
                next_run = entry.trigger().get_next_fire_time(None, datetime.now(UTC))
            rows.append(
                ScheduleStatus(
                    name=entry.name,
                    source=entry.source,
                    schedule=entry.schedule,
                    timezone=entry.timezone,
                    next_run=next_run,
                    paused_at=paused.get(entry.name),
                    last_run=None
                    if last is None
                    else {
                        "run": last.id,
                        "status": last.status,
                        "trigger": last.trigger,
                        "started_at": last.started_at.isoformat(),
                    },
                )
            )
    return rows


def paused_sources(settings: Settings) -> dict[str, datetime]:
    index = open_index(settings)
    with index.session() as session:
        return {
            s.name: s.paused_at
            for s in session.scalars(select(Source).where(Source.paused_at.is_not(None)))
        }


def set_paused(settings: Settings, name: str, paused: bool, reason: str | None = None) -> None:
    """Pause (or resume) a source's scheduled runs; a paused source's runs are skipped."""
    from evidence_store.archive import source_row
    from evidence_store.custody import CUSTODY_LOCK, record

    entry = _entry(settings, name)
    evidence = open_evidence(settings)
    with evidence.index.writing(CUSTODY_LOCK) as session:
        row = source_row(session, entry.name, kind=entry.source)
        row.paused_at = utc_now() if paused else None
        row.paused_reason = reason if paused else None
        record(
            session,
            action="schedule-paused" if paused else "schedule-resumed",
            actor=evidence.actor,
            reason=reason,
            details={"source": entry.name},
        )


def run_now(settings: Settings, name: str, **kwargs: Any) -> Any:
    """Run a scheduled source now, by hand, in this process (the lock keeps it from
    overlapping a scheduled run of the same source)."""
    from jobs.crawl import crawl

    _entry(settings, name)
    return crawl(settings, name, trigger="manual", **kwargs)
